# Ablation (control): ToCo with every attention map forced to uniform, the state ACR's loss can reach trivially.
_base_ = ['../toco/toco_tiny-r-p8_1xb32-600it_fashion-mnist-64x64.py']

custom_hooks = _base_.custom_hooks + [dict(type='UniformAttentionHook', module='backbone')]
