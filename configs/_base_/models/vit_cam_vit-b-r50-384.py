# The official ACR standalone host (Sun et al., arXiv 2308.04321): timm vit_base_resnet50_384
# (hybrid R50 + ViT-B/16, 384 px), a linear classifier on the class token of
# block 11's output *before* the final LayerNorm, patch-token CAM from the
# same classifier weights.
# ImageNet weights: save timm's state dict once on a machine with network,
#   python -c "import timm, torch; torch.save(timm.create_model(
#       'vit_base_r50_s16_384.orig_in21k_ft_in1k', pretrained=True).state_dict(),
#       'checkpoints/vit_base_resnet50_384.pth')"
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(384, 384),  # crops are padded to 384x384
)
model = dict(
    type='ViTCAM',
    data_preprocessor=data_preprocessor,
    num_classes=21,
    backbone=dict(
        type='TimmViT',
        model_name='vit_base_r50_s16_384',  # timm's name for vit_base_resnet50_384
        img_size=384,
        out_indices=(11,),
        out_norm=False,
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/vit_base_resnet50_384.pth'),
    ),
    token_head=True,
    patch_head=None,
    cam_source='token',
    test_cfg=dict(scales=(1.0,), flip=True, flip_merge='max', bg_thr=0.5,
                  use_labels=True),
)
