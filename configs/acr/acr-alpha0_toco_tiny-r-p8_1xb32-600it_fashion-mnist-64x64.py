# Ablation (compute-matched control): ACR-ToCo's two flipped views, no consistency loss.
_base_ = ['./acr_toco_tiny-r-p8_1xb32-600it_fashion-mnist-64x64.py']

model = dict(acr_loss=None)
