# Tiny ViT (patch 8, 96-d, 4 blocks, 3 heads; 0.4 M parameters) for the
# embedded synthetic benchmark (64x64 images, 8x8 tokens).
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    # pad training batches to whole patches
    size_divisor=8,
)
model = dict(
    type='ViTCAM',
    data_preprocessor=data_preprocessor,
    num_classes=7,
    backbone=dict(
        type='TimmViT',
        model_name='vit_tiny_patch16_224',
        img_size=64,
        model_kwargs=dict(patch_size=8, embed_dim=96, depth=4, num_heads=3),
        out_indices=(-1,),
        out_norm=False,
    ),
    token_head=True,
    # small ViTs trained on few images need a max-pooled patch classifier for
    # sharp CAMs (global average pooling gives diffuse maps).
    patch_head=dict(pool='max'),
    cam_source='patch',
    test_cfg=dict(scales=(1.0,), flip=True, flip_merge='max', bg_thr=0.5,
                  use_labels=True),
)
