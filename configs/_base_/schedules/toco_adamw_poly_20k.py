# ToCo optimisation (Ru et al., CVPR 2023): AdamW lr 6e-5, weight decay 0.01, x10 lr
# for the classifiers, the decoder and the CTC projection head; linear warm-up
# for 1,500 iterations, then poly (power 0.9). 20k iterations (VOC).
max_iters = 20000
warmup_iters = 1500
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={
        'classifier': dict(lr_mult=10.0),  # also matches aux_classifier
        'decode_head': dict(lr_mult=10.0),
        'ctc_head': dict(lr_mult=10.0),
    }),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='PolyLR', eta_min=0.0, power=0.9, by_epoch=False,
         begin=warmup_iters, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters // 10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
