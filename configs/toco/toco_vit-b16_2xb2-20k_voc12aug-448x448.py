# ToCo with ViT-B/16 on PASCAL VOC 2012 train_aug (Ru et al., CVPR 2023): rescale
# 0.5-2.0, crop 448, hflip, colour jitter (0.4, 0.4, 0.2, 0.1) p 0.8, grayscale
# p 0.2, Gaussian blur; batch 4 (2 GPUs x 2), 20k iterations. Seg and dense
# energy losses are off for the first 2,000 iterations (TrainPhaseHook); the
# CTC teacher is an EMA (m 0.9) of the projection head (MomentumTeacherHook).
# tools/test.py reports the decoder's mIoU (IoUMetric on pred_sem_seg; test
# scales 1.0/1.25/1.5 + flip) and the CAM mIoU (CAMMetric on cam_seg_logits,
# keys "cam/...") on VOC val.
#   bash tools/dist_train.sh configs/toco/toco_vit-b16_2xb2-20k_voc12aug-448x448.py 2
# Reported (paper, with CRF at test): VOC val 71.1 / test 72.2. CRF at test:
#   python tools/test.py CFG CKPT --cfg-options model.test_cfg.crf.num_iters=10
_base_ = [
    '../_base_/models/toco_vit-b16.py',
    '../_base_/datasets/voc12aug_wsss.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/toco_adamw_poly_20k.py',
]
train_pipeline = [
    dict(type='WSSSLoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='DeriveImageLabels', num_classes=20, allow_empty=False),
    dict(type='RandomResize', scale=(500, 500), ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=(448, 448)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomColorJitter', brightness=0.4, contrast=0.4, saturation=0.2,
         hue=0.1, prob=0.8, gray_prob=0.2, blur_prob=1.0),
    # no Pad: the data preprocessor pads, img_shape keeps the real extent
    dict(type='PackWSSSInputs', keep_pixel_labels=False),
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_evaluator = dict(type='WSSSMetric', sub_metrics=[
    dict(type='IoUMetric', iou_metrics=['mIoU']),  # segmentation decoder
    dict(type='CAMMetric', pred_key='cam_seg_logits', prefix='cam'),
])
test_evaluator = val_evaluator
custom_hooks = [
    dict(type='TrainPhaseHook', phases=[
        dict(begin=0, loss_weights=dict(loss_seg=0.0, loss_reg=0.0)),
        dict(begin=2000, loss_weights=dict(loss_seg=0.1, loss_reg=0.05)),
    ]),
    dict(type='MomentumTeacherHook', momentum=0.9),
]
env_cfg = dict(dist_cfg=dict(backend='nccl'))
default_hooks = dict(checkpoint=dict(interval=2000, max_keep_ckpts=3))
auto_scale_lr = dict(enable=False, base_batch_size=4)
