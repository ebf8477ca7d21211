# Second stage on PASCAL VOC 2012: DeepLabV3+ R101 trained on pseudo labels of
# train_aug (10,582 images), validated on val (1,449) with the real masks.
# Schedule and augmentation as mmseg's deeplabv3plus_r101-d8_4xb4-20k_voc12aug
# (40k: train_cfg.max_iters=40000 param_scheduler.0.end=40000).
#
# Pseudo labels: tools/generate_pseudo_labels.py writes <image name>.png, the
# layout mmseg reads, into data_root/PseudoLabels (see docs/pseudo_labels.md):
#   python tools/generate_pseudo_labels.py WSSS_CONFIG CKPT \
#       --out-dir data/VOCdevkit/VOC2012/PseudoLabels --bg-thr auto --crf \
#       --split-cfg-key train_dataloader --pipeline-cfg-key test_dataloader \
#       --thr-split-cfg-key train_cam_dataloader
# Another folder: --cfg-options train_dataloader.dataset.data_prefix.seg_map_path=DIR
#   bash tools/dist_train.sh THIS_CONFIG 4
_base_ = [
    '../_base_/models/deeplabv3plus_r101-d8.py',
    '../_base_/default_runtime.py',
]
dataset_type = 'WSSSVOCDataset'
data_root = 'data/VOCdevkit/VOC2012'
pseudo_label_dir = 'PseudoLabels'
crop_size = (512, 512)
num_classes = 21
max_iters = 20000

data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True
    ),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    # annotations after Resize: the metric compares at the original size
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='JPEGImages', seg_map_path=pseudo_label_dir),
        ann_file='ImageSets/Segmentation/trainaug.txt',
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file='ImageSets/Segmentation/val.txt',
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0005),
    clip_grad=None,
)
param_scheduler = [
    dict(
        type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters, by_epoch=False
    ),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=2000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
env_cfg = dict(dist_cfg=dict(backend='nccl'))
default_hooks = dict(
    checkpoint=dict(interval=2000, max_keep_ckpts=3),
    visualization=dict(type='SegVisualizationHook'),
)
auto_scale_lr = dict(enable=False, base_batch_size=16)  # 4 GPUs x 4 (--auto-scale-lr)
