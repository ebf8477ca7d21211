# Fashion-MNIST WSSS benchmark (docs/fashion_mnist.md): 1-3 real Fashion-MNIST
# items (Xiao et al., 2017) rescaled to 24-48 px on a textured 64x64 canvas,
# 10 classes, composed lazily per (seed, index). Data infos already hold `img`
# (BGR), `gt_seg_map`, `gt_part_map` (1 = item) and `img_labels`, so the
# pipelines need no loading transforms. Items of train / val / test come from
# disjoint pools (val: a held-out part of Fashion-MNIST's training file, test:
# its test file). The IDX files: `apt-get install dataset-fashion-mnist`, or set
# data_root to a folder holding them.
dataset_type = 'FashionMNISTWSSSDataset'
data_root = '/usr/share/datasets/fashion-mnist'
img_size = 64
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
        data_root=data_root,
        split='train',
        num_samples=4000,
        seed=0,
        img_size=img_size,
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
        data_root=data_root,
        split='val',
        num_samples=300,
        seed=1,
        img_size=img_size,
        design='wsss',
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='test',
        num_samples=1000,
        seed=2,
        img_size=img_size,
        design='wsss',
        test_mode=True,
        pipeline=test_pipeline,
    ),
)

# one evaluator dict (mmseg's tools/test.py --out sets keys on it); configs
# add CAM metrics by replacing the `sub_metrics` list
val_evaluator = dict(
    type='WSSSMetric', sub_metrics=[dict(type='IoUMetric', iou_metrics=['mIoU'])]
)
test_evaluator = val_evaluator
