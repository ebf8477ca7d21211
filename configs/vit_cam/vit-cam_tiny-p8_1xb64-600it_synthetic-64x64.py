# ViT-CAM on the embedded synthetic WSSS benchmark: trains in minutes on CPU.
_base_ = [
    '../_base_/models/vit_cam_tiny-p8.py',
    '../_base_/datasets/synthetic_wsss.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/synthetic_onecycle_600it.py',
]
val_evaluator = dict(type='WSSSMetric', sub_metrics=[
    dict(type='IoUMetric', iou_metrics=['mIoU']),
    dict(type='CAMMetric', fp_budget=0.10),
])
test_evaluator = val_evaluator
default_hooks = dict(checkpoint=dict(interval=600, max_keep_ckpts=1))
