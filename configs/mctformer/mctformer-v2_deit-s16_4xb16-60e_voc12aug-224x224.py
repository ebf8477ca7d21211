# MCTformer-V2 (Xu et al., CVPR 2022) on PASCAL VOC 2012
# train_aug: DeiT-S/16 with 20 class tokens, 224 crops, batch 64 (4 GPUs x 16),
# 60 epochs (9,920 iterations), AdamW lr 6.25e-5, 5 warm-up epochs + cosine,
# drop path 0.1; DeiT's augmentation: RandomResizedCrop(224, 0.08-1),
# hflip, RandAugment (2 ops, magnitude 9), RandomErasing 0.25.
# Validation/test = CAM quality on VOC train (1,464 images, full resolution,
# pixel labels kept): mIoU at bg_thr and at the best threshold of a sweep.
#   bash tools/dist_train.sh configs/mctformer/mctformer-v2_deit-s16_4xb16-60e_voc12aug-224x224.py 4
_base_ = [
    '../_base_/models/mctformer-v2_deit-s16.py',
    '../_base_/datasets/voc12aug_wsss.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/mctformer_adamw_60e_voc12aug-bs64.py',
]
crop_size = (224, 224)
train_pipeline = [
    dict(type='WSSSLoadImageFromFile'),
    dict(type='LoadAnnotations'),
    # image-level labels from the whole mask, before any crop
    dict(type='DeriveImageLabels', num_classes=20, allow_empty=False),
    # DeiT's training augmentation through torchvision (RGB inside, BGR out).
    # Differences: torchvision's RandAugment (not timm's rand-m9-mstd0.5-inc1)
    # and erasing to black on the uint8 image (DeiT erases the normalised
    # tensor with Gaussian noise). The masks are dropped: RandAugment cannot
    # move them and training uses image-level labels only.
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
val_dataloader = {{_base_.train_cam_dataloader}}
test_dataloader = val_dataloader
val_evaluator = dict(type='WSSSMetric', sub_metrics=[
    dict(type='IoUMetric', iou_metrics=['mIoU']),
    dict(type='CAMMetric'),
    dict(type='MultiLabelF1Metric'),
])
test_evaluator = val_evaluator
env_cfg = dict(dist_cfg=dict(backend='nccl'))
default_hooks = dict(checkpoint=dict(interval=1000, max_keep_ckpts=3))
# linear lr scaling reference for other batch sizes
auto_scale_lr = dict(enable=False, base_batch_size=64)
