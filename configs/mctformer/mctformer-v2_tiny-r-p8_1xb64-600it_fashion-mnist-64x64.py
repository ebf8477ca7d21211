# MCTformer-V2 on the Fashion-MNIST WSSS benchmark: the twin of
# configs/vit_cam/vit-cam_tiny-r-p8_1xb64-600it_fashion-mnist-64x64.py (same
# tiny hybrid ViT, now with 10 class tokens; same data, schedule and
# evaluators); trains on CPU. Start from the Fashion-MNIST pretraining
# checkpoint (its one class token is replicated to the 10) with
#   --cfg-options model.backbone.init_cfg.type=Pretrained \
#       model.backbone.init_cfg.checkpoint=work_dirs/fashion_mnist_pretrain/iter_2400.pth
_base_ = [
    '../_base_/models/mctformer-v2_tiny-r-p8.py',
    '../_base_/datasets/fashion_mnist_wsss.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/synthetic_onecycle_600it.py',
]
val_evaluator = dict(type='WSSSMetric', sub_metrics=[
    dict(type='IoUMetric', iou_metrics=['mIoU']),
    dict(type='CAMMetric', fp_budget=0.10),
])
test_evaluator = val_evaluator
default_hooks = dict(checkpoint=dict(interval=600, max_keep_ckpts=1))
# GPUs x batch per GPU of the name (tools/train.py --auto-scale-lr)
auto_scale_lr = dict(enable=False, base_batch_size=64)
