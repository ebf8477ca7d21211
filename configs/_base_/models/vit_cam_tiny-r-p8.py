# Tiny hybrid ViT ("R+ViT-Ti" in timm's naming): the tiny ViT of
# vit_cam_tiny-p8.py (96-d, 4 blocks, 3 heads) behind timm's ResNet-v2 stem
# (7x7 conv, stride 2, + 3x3 max-pool, stride 2; 64 channels) and a 2x2 patch
# embedding, so a token still covers 8x8 pixels (an 8x8 token grid on 64x64
# images). Early convolutions make ViTs far more sample-efficient (Xiao et al.,
# "Early Convolutions Help Transformers See Better", NeurIPS 2021): on the
# Fashion-MNIST pretraining twin (single items, 600 iterations, batch 64) this
# model reached 49 % top-1 validation accuracy against 38 % for the plain tiny
# ViT (docs/fashion_mnist.md, "Choosing the model").
_base_ = ['./vit_cam_tiny-p8.py']
model = dict(
    backbone=dict(
        model_name='vit_tiny_r_s16_p8_224',
        model_kwargs=dict(patch_size=2),  # on the stem's stride-4 feature map
    ),
)
