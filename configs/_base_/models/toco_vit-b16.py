# ToCo (Ru et al., CVPR 2023) with a ViT-B/16 backbone at 448 px
# (28 x 28 tokens): pos-embed bicubic-interpolated to the grid and frozen,
# drop-path 0; GMP classifiers on the final tokens (after the final norm) and
# on block 10 (index 9, no norm); LargeFOV decoder; PTC, CTC, bg/fg-balanced
# seg loss and the dense energy loss. Loss weights (VOC): 1.0 cls + 1.0 aux
# cls + 0.2 PTC + 0.5 CTC + 0.1 seg + 0.05 reg; the schedule that switches seg
# and reg on lives in TrainPhaseHook (configs/toco/*.py).
# ImageNet-21k weights: save timm's state dict once on a machine with network,
#   python -c "import timm, torch; torch.save(timm.create_model(
#       'vit_base_patch16_224.augreg_in21k', pretrained=True).state_dict(),
#       'checkpoints/vit_base_patch16_224_in21k.pth')"
# (the classifier head is dropped and pos_embed resized to 28x28 on loading).
img_norm = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=img_norm['mean'],
    std=img_norm['std'],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(448, 448),  # smaller crops are padded here: img_shape marks the image
    # test images (any size) are padded to whole 16-px patches; predictions
    # are cropped back by mmseg's postprocess_result
    test_cfg=dict(size_divisor=16),
)
model = dict(
    type='ToCo',
    data_preprocessor=data_preprocessor,
    num_classes=21,
    backbone=dict(
        type='TimmViT',
        model_name='vit_base_patch16_224',
        img_size=448,
        model_kwargs=dict(drop_path_rate=0.0),
        out_indices=(9, 11),
        out_norm=(False, True),
        freeze_pos_embed=True,
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/vit_base_patch16_224_in21k.pth'),
    ),
    aux_index=0,
    final_index=1,
    decode_head=dict(
        type='LargeFOVHead',
        in_channels=768,
        channels=512,
        dilation=5,
        num_convs=2,
        bias=False,
        num_classes=21,
        align_corners=False,
        loss_decode=dict(type='BgFgBalancedCELoss', loss_weight=0.1,
                         loss_name='loss_seg'),
    ),
    ctc_head=dict(type='CTCProjectionHead', in_channels=768, hidden_channels=2048,
                  bottleneck_channels=256, out_channels=1024, num_layers=3),
    loss_cls=dict(type='MultiLabelSoftMarginLoss', loss_weight=1.0,
                  loss_name='loss_cls'),
    loss_cls_aux=dict(type='MultiLabelSoftMarginLoss', loss_weight=1.0,
                      loss_name='loss_cls_aux'),
    loss_ptc=dict(type='PatchTokenContrastLoss', loss_weight=0.2),
    loss_ctc=dict(type='ClassTokenContrastLoss', loss_weight=0.5, temperature=0.5),
    loss_reg=dict(type='DenseEnergyLoss', weight=1e-7, loss_weight=0.05,
                  sigma_rgb=15.0, sigma_xy=100.0, scale_factor=0.5),
    par=dict(dilations=(1, 2, 4, 8, 12, 24), num_iter=10, w1=0.3, w2=0.01),
    pseudo_cfg=dict(cam_scales=(1.0, 0.5, 1.5), high=0.7, low=0.25,
                    par_scale=0.5, ignore_index=255),
    ctc_cfg=dict(num_local=8, local_size=96, neg_thr=0.2),
    img_norm=img_norm,
    seg_label_source='final',
    test_cfg=dict(output='seg', seg_scales=(1.0, 1.25, 1.5), seg_flip=True,
                  cam_scales=(1.0, 0.5, 1.5), cam_flip=True, cam_source='final',
                  bg_thr=0.5, use_labels=True),
)
