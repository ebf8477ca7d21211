# MCTformer-V2 on the embedded synthetic WSSS benchmark: the twin of
# configs/vit_cam/vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py (same tiny
# ViT with 6 class tokens, data, schedule and evaluators); trains on CPU.
_base_ = [
    '../_base_/models/mctformer-v2_tiny-p8.py',
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
