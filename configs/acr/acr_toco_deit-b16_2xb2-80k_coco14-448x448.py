# ACR on ToCo with DeiT-B/16 (COCO), by config inheritance alone: the ViT-B/16
# ACR config (flip view, class-row + affinity terms over all 12 layers, L1,
# alpha 100, CAM-activation term with alpha x cam_weight = 1) with the wrapped
# ToCo switched to DeiT-B/16 exactly as configs/toco/toco_deit-b16_2xb2-80k_coco14-448x448.py
# does, i.e. that file's model wrapped unchanged (a test checks it).
#   bash tools/dist_train.sh configs/acr/acr_toco_deit-b16_2xb2-80k_coco14-448x448.py 2
_base_ = ['./acr_toco_vit-b16_2xb2-80k_coco14-448x448.py']
model = dict(
    model=dict(
        backbone=dict(
            model_name='deit_base_patch16_224',
            init_cfg=dict(type='Pretrained',
                          checkpoint='checkpoints/deit_base_patch16_224.pth'),
        ),
    ),
)
