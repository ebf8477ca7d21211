# Synthetic classification pretraining (the stand-in for ImageNet weights):
# the same bodies and clutter as synthetic_wsss.py but 12 other classes (ring /
# cross / diamond heads, other hues and stripes), so a backbone learns generic
# low-level features without seeing the WSSS classes.
dataset_type = 'SyntheticWSSSDataset'
img_size = 64
num_classes = 12
train_pipeline = [
    dict(type='RandomFlip', prob=0.5),
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
        num_samples=6000,
        seed=100,
        img_size=img_size,
        num_classes=num_classes,
        design='pretrain',
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
        num_samples=500,
        seed=101,
        img_size=img_size,
        num_classes=num_classes,
        design='pretrain',
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader

# classification pretraining is judged by image-level F1
val_evaluator = dict(type='MultiLabelF1Metric')
test_evaluator = val_evaluator
