# MCTformer-V1 on the embedded synthetic benchmark: the V2 twin without the
# patch head (class-token loss only; maps = class-to-patch attention of the
# last 3 of 4 blocks, no affinity refinement, see the V2 model base).
_base_ = ['./mctformer-v2_tiny-p8_1xb64-600it_synthetic-64x64.py']
model = dict(version='v1')
