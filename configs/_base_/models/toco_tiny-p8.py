# ToCo's model config (toco_vit-b16.py) with the tiny ViT of vit_cam_tiny-p8.py
# (patch 8, 96-d, 4 blocks, 8x8 tokens on 64x64 images, random init), aux
# classifier on block 3 of 4 (index 2, as block 10 of 12), every ToCo part
# scaled to 64x64 images: decoder dilation 2 (5 would reach past an 8x8 grid),
# PAR dilations up to 8 at the x0.5 PAR scale, 8 local crops of 24 px (3x3
# tokens), narrower decoder / CTC head. 7 classes (the synthetic benchmark's 6
# + background); the training schedule lives in the top-level configs.
_base_ = ['./toco_vit-b16.py']
data_preprocessor = dict(size=None, size_divisor=8, test_cfg=dict(size_divisor=8))
model = dict(
    data_preprocessor=data_preprocessor,
    num_classes=7,
    backbone=dict(
        model_name='vit_tiny_patch16_224',
        img_size=64,
        model_kwargs=dict(patch_size=8, embed_dim=96, depth=4, num_heads=3),
        out_indices=(2, 3),
        init_cfg=None,
    ),
    decode_head=dict(in_channels=96, channels=64, dilation=2, num_classes=7),
    ctc_head=dict(in_channels=96, hidden_channels=256, bottleneck_channels=64,
                  out_channels=128),
    par=dict(dilations=(1, 2, 4, 8)),
    ctc_cfg=dict(local_size=24),
    test_cfg=dict(seg_scales=(1.0,)),
)
