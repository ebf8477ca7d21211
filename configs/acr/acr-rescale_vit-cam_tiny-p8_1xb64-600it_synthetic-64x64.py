# Ablation: ACR with a rescaled second view (token resampling R A R^T) for the flip.
_base_ = ['./acr_vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py']

model = dict(view=dict(type='rescale', scale_range=(0.75, 1.25)))
