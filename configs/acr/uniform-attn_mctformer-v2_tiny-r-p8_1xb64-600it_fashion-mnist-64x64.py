# Ablation (control): MCTformer-V2 with every attention map forced to uniform, the state ACR's loss can reach trivially.
_base_ = ['../mctformer/mctformer-v2_tiny-r-p8_1xb64-600it_fashion-mnist-64x64.py']

custom_hooks = [dict(type='UniformAttentionHook', module='backbone')]
