# The official ACR optimisation: SGD, poly (power 0.9) from lr 0.05.
# Deliberate quirk, kept for reproduction: the original optimiser wrapper
# passed its arguments positionally, so the effective momentum was 5e-4 and
# the weight decay 0. Set momentum=0.9, weight_decay=1e-4 for a conventional
# SGD instead.
max_iters = 26450  # 10 epochs of VOC train_aug (10,582 images) at batch 4
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.05, momentum=5e-4, weight_decay=0.0),
)
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=max_iters,
         by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
