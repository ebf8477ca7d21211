# Embedded synthetic WSSS benchmark (docs/synthetic-data.md): 64x64 images,
# 6 classes (VOC names aeroplane..bus), generated lazily per (seed, index).
# Data infos already hold `img` (BGR), `gt_seg_map`, `gt_part_map` and
# `img_labels`, so the pipelines need no loading transforms.
dataset_type = 'SyntheticWSSSDataset'
img_size = 64
num_classes = 6
train_pipeline = [
    dict(type='RandomFlip', prob=0.5),
    # image-level labels only: pixel labels are dropped for training
    dict(type='PackWSSSInputs'),
]
test_pipeline = [
    dict(type='PackWSSSInputs', keep_pixel_labels=True),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        num_samples=4000,
        seed=0,
        img_size=img_size,
        num_classes=num_classes,
        design='wsss',
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        num_samples=300,
        seed=1,
        img_size=img_size,
        num_classes=num_classes,
        design='wsss',
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader

# one evaluator dict (mmseg's tools/test.py --out sets keys on it); configs
# add CAM metrics by replacing the `sub_metrics` list
val_evaluator = dict(
    type='WSSSMetric', sub_metrics=[dict(type='IoUMetric', iou_metrics=['mIoU'])]
)
test_evaluator = val_evaluator
