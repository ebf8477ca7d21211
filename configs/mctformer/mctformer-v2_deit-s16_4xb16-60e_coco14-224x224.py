# MCTformer-V2 on MS COCO 2014 (80 classes): the VOC recipe (224 crops,
# batch 64, 60 epochs, AdamW + warm-up/cosine, DeiT augmentation) on the
# 82,081 train2014 images with objects: 76,950 iterations, warm-up 6,413
# (5 epochs). CAM quality is evaluated on val2014 at full resolution.
#   bash tools/dist_train.sh configs/mctformer/mctformer-v2_deit-s16_4xb16-60e_coco14-224x224.py 4
_base_ = [
    '../_base_/models/mctformer-v2_deit-s16.py',
    '../_base_/datasets/coco14_wsss.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/mctformer_adamw_60e_voc12aug-bs64.py',
]
crop_size = (224, 224)
lr = 6.25e-5
max_iters = 76950
warmup_iters = 6413
model = dict(num_classes=81, backbone=dict(num_class_tokens=80))
train_pipeline = [
    dict(type='WSSSLoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='DeriveImageLabels', num_classes=80, allow_empty=False),
    dict(
        type='TorchvisionTransforms',
        drop_seg_maps=True,
        transforms=[
            dict(
                type='RandomResizedCrop',
                size=crop_size,
                scale=(0.08, 1.0),
                interpolation='bicubic',
                antialias=True,
            ),
            dict(type='RandomHorizontalFlip', p=0.5),
            dict(type='RandAugment', num_ops=2, magnitude=9, interpolation='bilinear'),
            dict(type='RandomErasing', p=0.25),
        ],
    ),
    dict(type='PackWSSSInputs'),
]
train_dataloader = dict(batch_size=16, dataset=dict(pipeline=train_pipeline))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-6 / lr,
        end_factor=1.0,
        begin=0,
        end=warmup_iters,
        by_epoch=False,
    ),
    dict(
        type='CosineAnnealingLR',
        T_max=max_iters - warmup_iters,
        eta_min=1e-5,
        begin=warmup_iters,
        end=max_iters,
        by_epoch=False,
    ),
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
auto_scale_lr = dict(enable=False, base_batch_size=64)
