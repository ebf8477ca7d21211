# Ablation (compute-matched control): ACR-MCTformer-V1's two flipped views, no consistency loss.
_base_ = ['./acr_mctformer-v1_tiny-p8_1xb64-600it_synthetic-64x64.py']

model = dict(acr_loss=None)
