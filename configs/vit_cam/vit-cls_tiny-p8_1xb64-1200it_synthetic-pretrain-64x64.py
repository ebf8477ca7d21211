# Synthetic classification pretraining: the stand-in for ImageNet weights.
# 12 classes of *other* head designs (ring/cross/diamond, other hues and
# stripes) on the same kind of bodies and clutter as the WSSS benchmark. The
# checkpoint initialises the synthetic WSSS configs through the pretrained
# route real users take (model.backbone.init_cfg=dict(type='Pretrained', ...)).
#   python tools/train.py configs/vit_cam/vit-cls_tiny-p8_1xb64-1200it_synthetic-pretrain-64x64.py \
#       --work-dir work_dirs/synthetic_pretrain
_base_ = [
    '../_base_/models/vit_cam_tiny-p8.py',
    '../_base_/datasets/synthetic_pretrain.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/synthetic_onecycle_600it.py',
]
max_iters = 1200
model = dict(num_classes=13)  # 12 pretraining classes + background
param_scheduler = [
    dict(type='OneCycleLR', eta_max=2e-3, total_steps=max_iters, by_epoch=False,
         pct_start=0.15),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
