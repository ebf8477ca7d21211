# ToCo on the tiny hybrid ViT of the Fashion-MNIST benchmark (vit_cam_tiny-r-p8.py:
# timm's ResNet-v2 stem + a 2x2 patch embedding, 8x8-px tokens, 96-d, 4 blocks)
# with 11 classes (10 + background); every other ToCo part as on the synthetic
# tiny ViT (toco_tiny-p8.py), unchanged for this benchmark.
_base_ = ['./toco_tiny-p8.py']
model = dict(
    num_classes=11,
    backbone=dict(
        model_name='vit_tiny_r_s16_p8_224',
        model_kwargs=dict(patch_size=2),  # on the stem's stride-4 feature map
    ),
    decode_head=dict(num_classes=11),
)
