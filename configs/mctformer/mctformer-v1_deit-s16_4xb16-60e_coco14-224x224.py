# MCTformer-V1 on MS COCO 2014: the V2 COCO recipe without the patch head
# (class-token loss only; maps = class-to-patch attention of the last 3
# blocks refined by the patch affinity of all 12).
#   bash tools/dist_train.sh configs/mctformer/mctformer-v1_deit-s16_4xb16-60e_coco14-224x224.py 4
_base_ = ['./mctformer-v2_deit-s16_4xb16-60e_coco14-224x224.py']
model = dict(version='v1')
