# ACR on ToCo of the Fashion-MNIST benchmark, by config inheritance alone: the
# ToCo model config is wrapped unchanged (its own losses run on both views, CTC crops and
# pseudo labels included); flip view; class-row + affinity terms over all
# layers (ToCo keeps its class token: CTC trains it) plus the CAM-activation
# term on ToCo's patch CAM, |CAM1 - flip(CAM2)| (Sun et al., arXiv 2308.04321; our reading: the natural
# analogue for a patch-CAM model). alpha = 10 as the synthetic ViT-CAM ACR;
# cam_weight 0.1 makes the CAM term's effective weight 1.0 (alpha multiplies
# every term). Prediction: ToCo's own decoder and CAMs - the class-token-
# gradient head does not apply: ToCo classifies from the patch tokens (GMP),
# its class token never reaches the logits, so d(logit)/d(attention) has no
# class-token row.
_base_ = ['../toco/toco_tiny-r-p8_1xb32-600it_fashion-mnist-64x64.py']

model = dict(
    _delete_=True,
    type='ACRSegmentor',
    model={{_base_.model}},
    acr_loss=dict(
        type='AllPairsConsistencyLoss',
        loss_weight=10.0,
        num_prefix_tokens=1,
        distance='l1',
        cls_weight=1.0,
        aff_weight=1.0,
        cam_weight=0.1,
    ),
    view=dict(type='flip'),
    capture=dict(layers=None),
)
