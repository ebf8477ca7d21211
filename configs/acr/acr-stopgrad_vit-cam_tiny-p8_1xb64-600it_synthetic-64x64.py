# Ablation: ACR with a stop-gradient on the second view's attention.
_base_ = ['./acr_vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py']

model = dict(acr_loss=dict(stop_grad='view2'))
