# Ablation (compute-matched control): ACR-MCTformer-V2's two flipped views, no consistency loss.
_base_ = ['./acr_mctformer-v2_tiny-r-p8_1xb64-600it_fashion-mnist-64x64.py']

model = dict(acr_loss=None)
