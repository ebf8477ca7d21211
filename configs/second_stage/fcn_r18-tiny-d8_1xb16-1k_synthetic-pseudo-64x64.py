# Second stage on the embedded synthetic benchmark: a small FCN (ResNet-18-V1c
# with 8 base channels, dilated to output stride 8; 0.23 M parameters) trained
# on pseudo labels of the synthetic train split (seed 0), validated on the real
# masks of the synthetic val split (seed 1). A few minutes on 2 CPU cores.
# tools/run_synthetic_chain.py runs the whole chain (WSSS model -> pseudo
# labels -> this config); by hand:
#   python tools/generate_pseudo_labels.py WSSS_CONFIG CKPT \
#       --out-dir work_dirs/synthetic_pseudo_labels --bg-thr auto \
#       --split-cfg-key train_dataloader --pipeline-cfg-key test_dataloader \
#       --thr-split-cfg-key val_dataloader
#   python tools/train.py THIS_CONFIG \
#       --cfg-options train_dataloader.dataset.pseudo_label_dir=DIR
_base_ = ['../_base_/default_runtime.py']
dataset_type = 'SyntheticWSSSDataset'
img_size = 64
num_classes = 7  # background + 6
pseudo_label_dir = 'work_dirs/synthetic_pseudo_labels'
max_iters = 1000

norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size_divisor=8,
)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='ResNetV1c',
        depth=18,
        stem_channels=16,
        base_channels=8,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        strides=(1, 2, 1, 1),
        dilations=(1, 1, 2, 4),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        contract_dilation=True,
    ),
    decode_head=dict(
        type='FCNHead',
        in_channels=64,
        in_index=3,
        channels=32,
        num_convs=2,
        concat_input=True,
        dropout_ratio=0.1,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        # CAM pseudo labels are sparse (~4 % foreground with the shipped ACR
        # config: heads only); with uniform weights the tiny net stays at
        # all-background for the whole schedule, so the background counts half.
        loss_decode=dict(
            type='CrossEntropyLoss',
            use_sigmoid=False,
            loss_weight=1.0,
            class_weight=[0.5] + [1.0] * (num_classes - 1),
        ),
    ),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'),
)

train_pipeline = [
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [dict(type='PackSegInputs')]
train_dataloader = dict(
    batch_size=16,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        num_samples=4000,
        seed=0,
        img_size=img_size,
        num_classes=num_classes - 1,
        design='wsss',
        pseudo_label_dir=pseudo_label_dir,
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        num_samples=300,
        seed=1,
        img_size=img_size,
        num_classes=num_classes - 1,
        design='wsss',
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

# lr 1e-2: at 2e-3 the net (mmengine's Kaiming init) had not left the
# all-background solution after 1k iterations on the sparse pseudo labels.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.01),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, begin=0, end=50, by_epoch=False),
    dict(
        type='PolyLR', eta_min=1e-5, power=0.9, begin=50, end=max_iters, by_epoch=False
    ),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1),
    # the synthetic images have no files (mmseg's SegVisualizationHook reads
    # img_path): draw from the data batch
    visualization=dict(type='CAMVisualizationHook'),
)
