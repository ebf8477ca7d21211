# Ablation (control): ViT-CAM with every attention map forced to uniform, the state ACR's loss can reach trivially.
_base_ = ['../vit_cam/vit-cam_tiny-r-p8_1xb64-600it_fashion-mnist-64x64.py']

custom_hooks = [dict(type='UniformAttentionHook', module='backbone')]
