# PASCAL VOC 2012 + SBD (aug) for weakly-supervised semantic segmentation.
# Data preparation: docs/data_preparation.md (mmseg's voc_aug.py layout).
#
# train: trainaug (10,582 images = VOC train 1,464 + SBD aug 9,118), image-level
#   labels only: they are derived from the masks (SegmentationClassAug, falling
#   back to SegmentationClass for VOC images absent from SBD) *before* any
#   geometric transform, and PackWSSSInputs drops every pixel label.
#   Labels from cls_labels.npy instead (no masks needed):
#       train_dataloader = dict(dataset=dict(
#           data_prefix=dict(_delete_=True, img_path='JPEGImages'),
#           pipeline={{_base_.train_pipeline_cls_labels}}))
# val/test: val (1,449 images), pixel labels kept for IoUMetric.
# CAM quality (pseudo-mask mIoU on VOC train, 1,464 images, pixel labels kept):
#       val_dataloader = {{_base_.train_cam_dataloader}}
#       test_dataloader = {{_base_.train_cam_dataloader}}
#   or on the command line:
#       --cfg-options test_dataloader.dataset.ann_file=ImageSets/Segmentation/train.txt
dataset_type = 'WSSSVOCDataset'
data_root = 'data/VOCdevkit/VOC2012'
num_fg_classes = 20  # foreground classes (image-level label length)
crop_size = (448, 448)
# VOC images have a 500-pixel long side: with scale (500, 500) the ratio range
# is the rescale factor of the original image (ToCo: 0.5-2.0).
img_scale = (500, 500)
label_file = data_root + '/cls_labels.npy'

train_pipeline = [
    dict(type='WSSSLoadImageFromFile'),
    dict(type='LoadAnnotations'),
    # training images must hold a foreground class (errors name the image)
    dict(type='DeriveImageLabels', num_classes=num_fg_classes, allow_empty=False),
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    # optional colour augmentation (ToCo uses colour jitter, ACR does not):
    # dict(type='PhotoMetricDistortion'),
    dict(type='Pad', size=crop_size),
    dict(type='PackWSSSInputs', keep_pixel_labels=False),
]
# Same augmentation with labels read from cls_labels.npy (ToCo/AFA convention).
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
# Evaluation at the original resolution; image-level labels are packed too
# (CAM evaluation restricts the maps to the classes present).
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
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassAug'),
        seg_map_fallback='SegmentationClass',
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
# CAM / pseudo-mask evaluation on VOC train (1,464 images), pixel labels kept.
train_cam_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file='ImageSets/Segmentation/train.txt',
        pipeline=test_pipeline,
    ),
)

# one evaluator dict (mmseg's tools/test.py --out sets keys on it); configs
# add CAM metrics by replacing the `sub_metrics` list
val_evaluator = dict(
    type='WSSSMetric', sub_metrics=[dict(type='IoUMetric', iou_metrics=['mIoU'])]
)
test_evaluator = val_evaluator
