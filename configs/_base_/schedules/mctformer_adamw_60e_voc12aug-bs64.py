# MCTformer's (DeiT's) optimisation (Xu et al., CVPR 2022): AdamW, lr 6.25e-5
# (5e-4 x 64 / 512), weight decay 0.05 (none on norms, biases, class tokens
# and position embedding, as timm's optimiser factory), 5 linear warm-up
# epochs from 1e-6, then cosine to 1e-5; 60 epochs of VOC train_aug
# (10,582 images) at batch 64 = 9,920 iterations (warm-up 827), per iteration.
lr = 6.25e-5
max_iters = 9920
warmup_iters = 827
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=lr, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            'cls_token': dict(decay_mult=0.0),
            'pos_embed': dict(decay_mult=0.0),
        },
    ),
)
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-6 / lr,
        end_factor=1.0,
        begin=0,
        end=warmup_iters,
        by_epoch=False,
    ),
    dict(
        type='CosineAnnealingLR',
        T_max=max_iters - warmup_iters,
        eta_min=1e-5,
        begin=warmup_iters,
        end=max_iters,
        by_epoch=False,
    ),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
