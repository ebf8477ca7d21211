# ACR on the official host, MS COCO 2014: as the VOC config with alpha = 100
# (Sun et al., arXiv 2308.04321) and the COCO ViT-CAM baseline (5 epochs).
_base_ = ['../vit_cam/vit-cam_vit-b-r50_4xb1-103k_coco14-384x384.py']

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
    ),
    view=dict(type='flip'),
    capture=dict(layers=None),
    predictor=dict(
        type='ClsTokenGradCAMHead',
        variant='grad',
        start_layer=-2,
        refine=True,  # the official script's --aff True
        flip=True,
        input_size=(384, 384),
    ),
)
