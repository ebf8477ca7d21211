# MCTformer-V2 (configs/_base_/models/mctformer-v2_deit-s16.py) on the tiny ViT
# of the synthetic benchmark (patch 8, 96-d, 4 blocks, 3 heads; as
# vit_cam_tiny-p8.py) with 6 class tokens, random init, no drop path.
# attn_layers=3 (as MCTformer's last 3 blocks, here all but the first, whose
# attention is still mostly positional) and refine=False: on this 4-block ViT
# the summed patch affinity is diffuse and smears the maps over the image.
# Measured with this config (600 iterations, 300 val images; V2 seeds 0 / 1,
# V1 seed 0), best-threshold mIoU / body recall at 10 % bg FP:
#   K=3, no refine: 25.6 / 19.9, 27.5 / 18.6, 29.1 / 22.9
#   K=3, refine:    13.8 /  4.3, 14.2 /  3.5, 14.0 /  3.3
#   K=1, 2, 4 without refine: 22.1-26.0, 23.5-27.5, 27.7-29.6 mIoU
# (ViT-CAM on the same data: 19.3 +/- 3.7 / 7.7, docs/results.md; all background 11.4).
_base_ = ['./mctformer-v2_deit-s16.py']
# pad training batches and test images to whole 8-px patches
data_preprocessor = dict(size_divisor=8, test_cfg=dict(size_divisor=8))
model = dict(
    data_preprocessor=data_preprocessor,
    num_classes=7,
    refine=False,
    backbone=dict(
        model_name='vit_tiny_patch16_224',
        num_class_tokens=6,
        img_size=64,
        model_kwargs=dict(
            patch_size=8, embed_dim=96, depth=4, num_heads=3, drop_path_rate=0.0
        ),
        init_cfg=None,
    ),
)
