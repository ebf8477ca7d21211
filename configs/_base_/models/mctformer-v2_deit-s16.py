# MCTformer-V2 (Xu et al., CVPR 2022) on DeiT-S/16 (384-d, 12 blocks, 6 heads): 20 class
# tokens in front of the patches, replicated from DeiT's class token and its
# position embedding; class logits = mean over the embedding of each output
# class token (no final LayerNorm: out_norm=False); Conv2d(384, 20, 3) patch
# head with global average pooling; maps from the class-to-patch attention of
# the last 3 blocks x ReLU(patch CAM), refined by the patch affinity of all
# 12 blocks; flip TTA (summed), per-class min-max (eps 1e-8).
# ImageNet weights (no downloads at run time): save DeiT-S once on a machine
# with network,
#   python -c "import timm, torch; torch.save(timm.create_model(
#       'deit_small_patch16_224.fb_in1k', pretrained=True).state_dict(),
#       'checkpoints/deit_small_patch16_224.pth')"
# The single class token of that checkpoint is replicated to the 20 class
# tokens when it is loaded (MultiClassTokenViT.convert_state_dict).
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size_divisor=16,
    # full-resolution test images are padded to whole patches (the padding is
    # cropped from the predictions by postprocess_result)
    test_cfg=dict(size_divisor=16),
)
model = dict(
    type='MCTformer',
    data_preprocessor=data_preprocessor,
    num_classes=21,
    version='v2',
    attn_layers=3,
    refine=True,
    backbone=dict(
        type='MultiClassTokenViT',
        model_name='deit_small_patch16_224',
        num_class_tokens=20,
        img_size=224,
        model_kwargs=dict(drop_path_rate=0.1),
        out_indices=(-1,),
        out_norm=False,
        init_cfg=dict(
            type='Pretrained', checkpoint='checkpoints/deit_small_patch16_224.pth'
        ),
    ),
    test_cfg=dict(scales=(1.0,), flip=True, bg_thr=0.5, use_labels=True, eps=1e-8),
)
