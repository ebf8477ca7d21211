# MCTformer-V2 on the tiny hybrid ViT of the Fashion-MNIST benchmark
# (vit_cam_tiny-r-p8.py: timm's ResNet-v2 stem + a 2x2 patch embedding, 8x8-px
# tokens, 96-d, 4 blocks, 3 heads) with 10 class tokens, one per Fashion-MNIST
# class. Everything else as on the synthetic tiny ViT (mctformer-v2_tiny-p8.py:
# maps from the last 3 blocks, no affinity refinement), unchanged for this
# benchmark.
_base_ = ['./mctformer-v2_tiny-p8.py']
model = dict(
    num_classes=11,  # 10 classes + background
    backbone=dict(
        model_name='vit_tiny_r_s16_p8_224',
        num_class_tokens=10,
        model_kwargs=dict(patch_size=2),  # on the stem's stride-4 feature map
    ),
)
