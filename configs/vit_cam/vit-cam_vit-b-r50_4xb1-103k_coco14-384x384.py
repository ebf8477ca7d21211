# ViT-CAM on MS COCO 2014 (80 classes): the VOC recipe, 5 epochs of train2014
# (82,081 images at batch 4 = 102,600 iterations). CAM quality is evaluated on
# val2014 (pixel labels from the converted masks, docs/data_preparation.md).
_base_ = [
    '../_base_/models/vit_cam_vit-b-r50-384.py',
    '../_base_/datasets/coco14_wsss.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/sgd_poly_acr_official.py',
]
crop_size = (384, 384)
max_iters = 102600
model = dict(num_classes=81)
train_pipeline = [
    dict(type='WSSSLoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='DeriveImageLabels', num_classes=80, allow_empty=False),
    dict(type='RandomResize', scale=[(345, 345), (438, 438)], keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='Pad', size=crop_size, pad_val=dict(img=0, seg=255)),
    dict(type='PackWSSSInputs'),
]
train_dataloader = dict(batch_size=1, dataset=dict(pipeline=train_pipeline))
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=max_iters,
         by_epoch=False),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
val_evaluator = dict(type='WSSSMetric', sub_metrics=[
    dict(type='IoUMetric', iou_metrics=['mIoU']),
    dict(type='CAMMetric'),
    dict(type='MultiLabelF1Metric'),
])
test_evaluator = val_evaluator
env_cfg = dict(dist_cfg=dict(backend='nccl'))
default_hooks = dict(checkpoint=dict(interval=5000, max_keep_ckpts=3))
auto_scale_lr = dict(enable=False, base_batch_size=4)  # 4 GPUs x 1 (--auto-scale-lr)
