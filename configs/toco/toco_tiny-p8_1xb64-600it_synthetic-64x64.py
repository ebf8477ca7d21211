# ToCo on the embedded synthetic WSSS benchmark (the CPU twin of the VOC
# config): the tiny ViT of configs/_base_/models/vit_cam_tiny-p8.py (patch 8,
# 96-d, 4 blocks, 8x8 tokens), aux classifier on block 3 of 4 (index 2, as
# block 10 of 12), every ToCo part scaled to 64x64 images: decoder dilation 2
# (5 would reach past an 8x8 grid), PAR dilations up to 8 at the x0.5 PAR
# scale, 8 local crops of 24 px (3x3 tokens). The seg / reg losses start after
# 10 % of the iterations (VOC: 2k of 20k). The synthetic one-cycle AdamW
# schedule of the other tiny models (no x10 head lr: the tiny heads train at
# the same rate as the backbone there).
_base_ = [
    '../_base_/datasets/synthetic_wsss.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/synthetic_onecycle_600it.py',
]
img_norm = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=img_norm['mean'],
    std=img_norm['std'],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size_divisor=8,
    test_cfg=dict(size_divisor=8),
)
model = dict(
    type='ToCo',
    data_preprocessor=data_preprocessor,
    num_classes=7,
    backbone=dict(
        type='TimmViT',
        model_name='vit_tiny_patch16_224',
        img_size=64,
        model_kwargs=dict(patch_size=8, embed_dim=96, depth=4, num_heads=3),
        out_indices=(2, 3),
        out_norm=(False, True),
        freeze_pos_embed=True,
    ),
    aux_index=0,
    final_index=1,
    decode_head=dict(
        type='LargeFOVHead',
        in_channels=96,
        channels=64,
        dilation=2,
        num_convs=2,
        bias=False,
        num_classes=7,
        align_corners=False,
        loss_decode=dict(type='BgFgBalancedCELoss', loss_weight=0.1,
                         loss_name='loss_seg'),
    ),
    ctc_head=dict(type='CTCProjectionHead', in_channels=96, hidden_channels=256,
                  bottleneck_channels=64, out_channels=128, num_layers=3),
    loss_cls=dict(type='MultiLabelSoftMarginLoss', loss_name='loss_cls'),
    loss_cls_aux=dict(type='MultiLabelSoftMarginLoss', loss_name='loss_cls_aux'),
    loss_ptc=dict(type='PatchTokenContrastLoss', loss_weight=0.2),
    loss_ctc=dict(type='ClassTokenContrastLoss', loss_weight=0.5, temperature=0.5),
    loss_reg=dict(type='DenseEnergyLoss', weight=1e-7, loss_weight=0.05,
                  sigma_rgb=15.0, sigma_xy=100.0, scale_factor=0.5),
    par=dict(dilations=(1, 2, 4, 8), num_iter=10, w1=0.3, w2=0.01),
    pseudo_cfg=dict(cam_scales=(1.0, 0.5, 1.5), high=0.7, low=0.25,
                    par_scale=0.5, ignore_index=255),
    ctc_cfg=dict(num_local=8, local_size=24, neg_thr=0.2),
    img_norm=img_norm,
    test_cfg=dict(output='seg', seg_scales=(1.0,), seg_flip=True,
                  cam_scales=(1.0, 0.5, 1.5), cam_flip=True, cam_source='final',
                  bg_thr=0.5, use_labels=True),
)
val_evaluator = [
    dict(type='IoUMetric', iou_metrics=['mIoU']),  # segmentation decoder
    dict(type='CAMMetric', pred_key='cam_seg_logits', prefix='cam',
         fp_budget=0.10),
]
test_evaluator = val_evaluator
custom_hooks = [
    dict(type='TrainPhaseHook', phases=[
        dict(begin=0, loss_weights=dict(loss_seg=0.0, loss_reg=0.0)),
        dict(begin=60, loss_weights=dict(loss_seg=0.1, loss_reg=0.05)),
    ]),
    dict(type='MomentumTeacherHook', momentum=0.9),
]
default_hooks = dict(checkpoint=dict(interval=600, max_keep_ckpts=1))
