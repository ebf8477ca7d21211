# ToCo with DeiT-B/16 (ImageNet-1k) on VOC; otherwise the ViT-B/16 recipe.
# Weights: python -c "import timm, torch; torch.save(timm.create_model(
#     'deit_base_patch16_224', pretrained=True).state_dict(),
#     'checkpoints/deit_base_patch16_224.pth')"
# Reported (paper): VOC val 69.8 / test 70.5.
_base_ = ['./toco_vit-b16_2xb2-20k_voc12aug-448x448.py']
model = dict(
    backbone=dict(
        model_name='deit_base_patch16_224',
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/deit_base_patch16_224.pth'),
    ),
)
