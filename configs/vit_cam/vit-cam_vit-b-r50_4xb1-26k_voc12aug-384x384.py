# ViT-CAM, the official ACR host, on PASCAL VOC 2012 train_aug (Sun et al., arXiv 2308.04321):
# long-side resize U[345, 438], hflip 0.5, random crop 384 (zero pad), batch 4
# (4 GPUs x 1), 10 epochs (26,450 iterations), SGD poly lr 0.05, FP32.
# Validation/test = CAM quality on VOC train (1,464 images, pixel labels kept):
# mIoU at bg_thr and at the best threshold of a 0.00..0.99 sweep.
#   bash tools/dist_train.sh configs/vit_cam/vit-cam_vit-b-r50_4xb1-26k_voc12aug-384x384.py 4
_base_ = [
    '../_base_/models/vit_cam_vit-b-r50-384.py',
    '../_base_/datasets/voc12aug_wsss.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/sgd_poly_acr_official.py',
]
crop_size = (384, 384)
train_pipeline = [
    dict(type='WSSSLoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='DeriveImageLabels', num_classes=20, allow_empty=False),
    # long side uniform in [345, 438] (keep_ratio fits the image in the scale)
    dict(type='RandomResize', scale=[(345, 345), (438, 438)], keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='Pad', size=crop_size, pad_val=dict(img=0, seg=255)),
    dict(type='PackWSSSInputs'),
]
train_dataloader = dict(batch_size=1, dataset=dict(pipeline=train_pipeline))
val_dataloader = {{_base_.train_cam_dataloader}}
test_dataloader = val_dataloader
val_evaluator = dict(type='WSSSMetric', sub_metrics=[
    dict(type='IoUMetric', iou_metrics=['mIoU']),
    dict(type='CAMMetric'),
    dict(type='MultiLabelF1Metric'),
])
test_evaluator = val_evaluator
env_cfg = dict(dist_cfg=dict(backend='nccl'))
default_hooks = dict(checkpoint=dict(interval=2000, max_keep_ckpts=3))
# linear lr scaling reference for other batch sizes
auto_scale_lr = dict(enable=False, base_batch_size=4)
