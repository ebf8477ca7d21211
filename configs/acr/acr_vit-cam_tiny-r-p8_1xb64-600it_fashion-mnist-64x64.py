# ACR on ViT-CAM of the Fashion-MNIST benchmark, by config inheritance alone:
# the baseline model config is wrapped unchanged; a horizontally flipped second
# view and the all-pairs consistency loss (class-row + affinity terms, L1, all
# layers) are added. alpha = 10, the synthetic benchmark's default (the published
# VOC alpha of 125 is for ViT-B's attention scale; benchmarks/synthetic_ablation.py
# --alpha 125 runs it at that scale).
_base_ = ['../vit_cam/vit-cam_tiny-r-p8_1xb64-600it_fashion-mnist-64x64.py']

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
    ),
    view=dict(type='flip'),
    capture=dict(layers=None),  # mode follows the loss: (q, k) for the efficient route
)
