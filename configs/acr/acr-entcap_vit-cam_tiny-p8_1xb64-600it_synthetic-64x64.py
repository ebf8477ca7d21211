# Ablation: ACR + an attention-entropy cap (uniform attention pays a penalty).
_base_ = ['./acr_vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py']

model = dict(acr_loss=dict(entropy_cap=0.85, entropy_weight=1.0))
