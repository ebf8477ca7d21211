# ToCo on the embedded synthetic WSSS benchmark (the CPU twin of the VOC
# config): ToCo's model config on the tiny ViT (configs/_base_/models/
# toco_tiny-p8.py: patch 8, 96-d, 4 blocks, 8x8 tokens, random init, every ToCo
# part scaled to 64x64 images).
# The seg / reg losses start after 10 % of the iterations (VOC: 2k of 20k).
# The synthetic one-cycle AdamW schedule of the other tiny models (no x10 head
# lr: the tiny heads train at the same rate as the backbone there).
_base_ = [
    '../_base_/models/toco_tiny-p8.py',
    '../_base_/datasets/synthetic_wsss.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/synthetic_onecycle_600it.py',
]
# Batch 32, not the other twins' 64. In image-size terms ToCo's VOC batch
# (4 crops of 448 px = 4 x 28 x 28 = 3136 tokens) lies between 32 and 64 twin
# images of 8 x 8 tokens (2048 / 4096). Per image ToCo runs the ViT on 15
# views (the input, 5 more for the flip CAMs at 3 scales, the second global
# view, 8 local crops) plus PAR and the dense energy, ~8x a ViT-CAM image:
# at 64 the 600 steps alone took 34 min on one CPU core (hours with 2
# threads on shared cores); at 32 the whole run takes 2.4x the ViT-CAM twin's
# (benchmarks/toco_twin_speed.py). 32 is also the batch of the synthetic
# ablation's ToCo runs (benchmarks/synthetic_ablation.py).
train_dataloader = dict(batch_size=32)
val_evaluator = dict(type='WSSSMetric', sub_metrics=[
    dict(type='IoUMetric', iou_metrics=['mIoU']),  # segmentation decoder
    dict(type='CAMMetric', pred_key='cam_seg_logits', prefix='cam',
             fp_budget=0.10),
])
test_evaluator = val_evaluator
custom_hooks = [
    dict(type='TrainPhaseHook', phases=[
        dict(begin=0, loss_weights=dict(loss_seg=0.0, loss_reg=0.0)),
        dict(begin=60, loss_weights=dict(loss_seg=0.1, loss_reg=0.05)),
    ]),
    dict(type='MomentumTeacherHook', momentum=0.9),
]
default_hooks = dict(checkpoint=dict(interval=600, max_keep_ckpts=1))
