# ACR on the synthetic MCTformer-V1 twin: the V2 ACR twin (flip view, alpha 10,
# L1, 6 class-token rows + affinities, all 4 blocks) with its wrapped model
# switched to V1, i.e. configs/mctformer/mctformer-v1_tiny-p8_... wrapped
# unchanged (a test checks it). Localisation: V1's own maps.
_base_ = ['./acr_mctformer-v2_tiny-p8_1xb64-600it_synthetic-64x64.py']
model = dict(model=dict(version='v1'))
