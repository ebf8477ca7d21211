# ToCo with DeiT-B/16 (ImageNet-1k) on COCO 2014; otherwise the ViT-B/16 recipe.
# Reported (paper): COCO val 41.3.
_base_ = ['./toco_vit-b16_2xb2-80k_coco14-448x448.py']
model = dict(
    backbone=dict(
        model_name='deit_base_patch16_224',
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/deit_base_patch16_224.pth'),
    ),
)
