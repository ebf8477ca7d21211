# Fashion-MNIST classification pretraining: the stand-in for ImageNet weights
# of the Fashion-MNIST WSSS benchmark. Single items (one per image) of the
# 'pretrain' pool, disjoint from the benchmark's items; the model, the number
# of images and the length were chosen on this twin's validation accuracy only
# (docs/fashion_mnist.md, "Choosing the model"). The checkpoint initialises
# vit-cam_tiny-r-p8_1xb64-600it_fashion-mnist-64x64.py through the pretrained
# route real users take (model.backbone.init_cfg=dict(type='Pretrained', ...)).
#   python tools/train.py configs/vit_cam/vit-cls_tiny-r-p8_1xb64-2400it_fashion-mnist-pretrain-64x64.py \
#       --work-dir work_dirs/fashion_mnist_pretrain
_base_ = [
    '../_base_/models/vit_cam_tiny-r-p8.py',
    '../_base_/datasets/fashion_mnist_pretrain.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/synthetic_onecycle_600it.py',
]
max_iters = 2400
model = dict(num_classes=11)  # 10 Fashion-MNIST classes + background
# every item of the 'pretrain' pool once per epoch of compositions
train_dataloader = dict(dataset=dict(num_samples=20000))
param_scheduler = [
    dict(type='OneCycleLR', eta_max=2e-3, total_steps=max_iters, by_epoch=False,
         pct_start=0.15),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
# GPUs x batch per GPU of the name (tools/train.py --auto-scale-lr)
auto_scale_lr = dict(enable=False, base_batch_size=64)
