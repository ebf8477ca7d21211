# MS COCO 2014 for weakly-supervised semantic segmentation (81 classes).
# Data preparation: docs/data_preparation.md
# (tools/dataset_converters/coco2014_to_semantic.py writes the masks, the split
# lists and cls_labels.npy).
#
# train: train2014 images with at least one object (ImageSets/train.txt),
#   image-level labels derived from the masks before any geometric transform;
#   PackWSSSInputs drops every pixel label. Labels from cls_labels.npy instead:
#       train_dataloader = dict(dataset=dict(
#           data_prefix=dict(_delete_=True, img_path='train2014'),
#           pipeline={{_base_.train_pipeline_cls_labels}}))
# val/test: val2014 (ImageSets/val.txt), pixel labels kept for IoUMetric.
# CAM quality on train2014 (pixel labels kept), optionally on the first N
# images with dataset.indices=N:
#       test_dataloader = {{_base_.train_cam_dataloader}}
dataset_type = 'WSSSCOCODataset'
data_root = 'data/coco2014'
num_fg_classes = 80
crop_size = (448, 448)
# COCO images have a 640-pixel long side: the ratio range rescales the original.
img_scale = (640, 640)
label_file = data_root + '/cls_labels.npy'

train_pipeline = [
    dict(type='WSSSLoadImageFromFile'),
    dict(type='LoadAnnotations'),
    # training images must hold a foreground class (errors name the image)
    dict(type='DeriveImageLabels', num_classes=num_fg_classes, allow_empty=False),
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    # dict(type='PhotoMetricDistortion'),
    dict(type='Pad', size=crop_size),
    dict(type='PackWSSSInputs', keep_pixel_labels=False),
]
train_pipeline_cls_labels = [
    dict(type='WSSSLoadImageFromFile'),
    dict(
        type='LoadImageLabels',
        label_file=label_file,
        num_classes=num_fg_classes,
        allow_empty=False,
    ),
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=crop_size),
    dict(type='PackWSSSInputs', keep_pixel_labels=False),
]
test_pipeline = [
    dict(type='WSSSLoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='DeriveImageLabels', num_classes=num_fg_classes),
    dict(type='PackWSSSInputs', keep_pixel_labels=True),
]

train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(
            img_path='train2014', seg_map_path='SegmentationClass/train2014'
        ),
        ann_file='ImageSets/train.txt',
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
        data_prefix=dict(img_path='val2014', seg_map_path='SegmentationClass/val2014'),
        ann_file='ImageSets/val.txt',
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
# CAM / pseudo-mask evaluation on train2014, pixel labels kept.
train_cam_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(
            img_path='train2014', seg_map_path='SegmentationClass/train2014'
        ),
        ann_file='ImageSets/train.txt',
        pipeline=test_pipeline,
    ),
)

# one evaluator dict (mmseg's tools/test.py --out sets keys on it); configs
# add CAM metrics by replacing the `sub_metrics` list
val_evaluator = dict(
    type='WSSSMetric', sub_metrics=[dict(type='IoUMetric', iou_metrics=['mIoU'])]
)
test_evaluator = val_evaluator
