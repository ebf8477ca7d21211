# ACR on MCTformer-V1, PASCAL VOC 2012, by config inheritance: the V2 ACR config
# (flip view, alpha 125, L1, class rows A[0:20, 20:] + affinity A[20:, 20:],
# all 12 blocks) with its wrapped model switched to V1, i.e. exactly
# configs/mctformer/mctformer-v1_deit-s16_... wrapped unchanged (a test checks
# it). V1's maps are the class-to-patch attention alone (no conv CAM factor).
#   bash tools/dist_train.sh configs/acr/acr_mctformer-v1_deit-s16_4xb16-60e_voc12aug-224x224.py 4
_base_ = ['./acr_mctformer-v2_deit-s16_4xb16-60e_voc12aug-224x224.py']
model = dict(model=dict(version='v1'))
