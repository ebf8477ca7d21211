# ToCo on the Fashion-MNIST WSSS benchmark: the twin of
# configs/toco/toco_tiny-p8_1xb32-600it_synthetic-64x64.py on the benchmark's
# tiny hybrid ViT (configs/_base_/models/toco_tiny-r-p8.py; same batch 32,
# schedule, seg / reg start after 10 % of the iterations and evaluators).
# Start from the Fashion-MNIST pretraining checkpoint with
#   --cfg-options model.backbone.init_cfg.type=Pretrained \
#       model.backbone.init_cfg.checkpoint=work_dirs/fashion_mnist_pretrain/iter_2400.pth
_base_ = [
    '../_base_/models/toco_tiny-r-p8.py',
    '../_base_/datasets/fashion_mnist_wsss.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/synthetic_onecycle_600it.py',
]
# batch 32: ToCo runs the ViT on ~15 views per image (see the synthetic twin)
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
# GPUs x batch per GPU of the name (tools/train.py --auto-scale-lr)
auto_scale_lr = dict(enable=False, base_batch_size=32)
