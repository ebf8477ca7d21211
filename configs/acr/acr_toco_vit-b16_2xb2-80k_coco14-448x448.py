# ACR on ToCo (COCO), by config inheritance alone: configs/toco/toco_vit-b16_2xb2-80k_coco14-448x448.py
# wrapped unchanged; flip view; class-row + affinity terms over all 12 layers,
# L1, alpha = 100 (ACR's COCO value); CAM-activation term |CAM1 - flip(CAM2)| on
# ToCo's patch CAM with cam_weight 0.01 (effective weight alpha x 0.01 = 1.0).
# Prediction stays ToCo's (decoder + CAMs): the class-token-gradient head does
# not apply, ToCo's logits come from the patch tokens, not the class token.
#   bash tools/dist_train.sh configs/acr/acr_toco_vit-b16_2xb2-80k_coco14-448x448.py 2
_base_ = ['../toco/toco_vit-b16_2xb2-80k_coco14-448x448.py']

model = dict(
    _delete_=True,
    type='ACRSegmentor',
    model={{_base_.model}},
    acr_loss=dict(
        type='AllPairsConsistencyLoss',
        loss_weight=100.0,
        num_prefix_tokens=1,
        distance='l1',
        cls_weight=1.0,
        aff_weight=1.0,
        cam_weight=0.01,
    ),
    view=dict(type='flip'),
    capture=dict(layers=None),
)
