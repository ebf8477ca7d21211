# ToCo with ViT-B/16 on MS COCO 2014 (Ru et al., CVPR 2023): thresholds bkg 0.45,
# high 0.65, low 0.25; CTC temperature 1.0; 80k iterations; 3-phase schedule:
# up to 8k no seg / reg loss (the paper: "cls only"; PTC and CTC stay on as in
# the VOC warm-up), 8k-12k the decoder learns from the aux CAM's pseudo
# labels, full losses from the final CAM after 12k.
#   bash tools/dist_train.sh configs/toco/toco_vit-b16_2xb2-80k_coco14-448x448.py 2
# Reported (paper): COCO val 42.2.
_base_ = [
    '../_base_/models/toco_vit-b16.py',
    '../_base_/datasets/coco14_wsss.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/toco_adamw_poly_20k.py',
]
model = dict(
    num_classes=81,
    decode_head=dict(num_classes=81),
    loss_ctc=dict(temperature=1.0),
    pseudo_cfg=dict(high=0.65, low=0.25),
    test_cfg=dict(bg_thr=0.45),
)
max_iters = 80000
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=0.9, by_epoch=False, begin=1500,
         end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters // 10)
train_pipeline = [
    dict(type='WSSSLoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='DeriveImageLabels', num_classes=80, allow_empty=False),
    dict(type='RandomResize', scale=(640, 640), ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=(448, 448)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomColorJitter', brightness=0.4, contrast=0.4, saturation=0.2,
         hue=0.1, prob=0.8, gray_prob=0.2, blur_prob=1.0),
    dict(type='PackWSSSInputs', keep_pixel_labels=False),
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_evaluator = dict(type='WSSSMetric', sub_metrics=[
    dict(type='IoUMetric', iou_metrics=['mIoU']),
    dict(type='CAMMetric', pred_key='cam_seg_logits', prefix='cam'),
])
test_evaluator = val_evaluator
custom_hooks = [
    dict(type='TrainPhaseHook', phases=[
        dict(begin=0, loss_weights=dict(loss_seg=0.0, loss_reg=0.0),
             seg_label_source='aux'),
        dict(begin=8000, loss_weights=dict(loss_seg=0.1, loss_reg=0.05)),
        dict(begin=12000, seg_label_source='final'),
    ]),
    dict(type='MomentumTeacherHook', momentum=0.9),
]
env_cfg = dict(dist_cfg=dict(backend='nccl'))
default_hooks = dict(checkpoint=dict(interval=8000, max_keep_ckpts=3))
auto_scale_lr = dict(enable=False, base_batch_size=4)
