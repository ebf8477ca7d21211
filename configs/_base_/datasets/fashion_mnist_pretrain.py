# Fashion-MNIST classification pretraining (the stand-in for ImageNet weights):
# one item (32-56 px) per 64x64 textured canvas, the 10 Fashion-MNIST classes,
# items from the 'pretrain' pool of Fashion-MNIST's training file, disjoint
# from the items of the WSSS benchmark's train / val / test splits
# (fashion_mnist_wsss.py). Validated on single items of the 'val' pool.
dataset_type = 'FashionMNISTWSSSDataset'
data_root = '/usr/share/datasets/fashion-mnist'
img_size = 64
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
        data_root=data_root,
        split='pretrain',
        num_samples=6000,
        seed=100,
        img_size=img_size,
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
        data_root=data_root,
        split='val',
        num_samples=500,
        seed=101,
        img_size=img_size,
        design='pretrain',
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader

# classification pretraining is judged by image-level F1
val_evaluator = dict(type='MultiLabelF1Metric')
test_evaluator = val_evaluator
