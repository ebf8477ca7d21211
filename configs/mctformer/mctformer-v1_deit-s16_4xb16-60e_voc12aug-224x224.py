# MCTformer-V1 on PASCAL VOC 2012: the V2 recipe without the patch head. The
# class-token loss alone trains the model; maps are the class-to-patch
# attention of the last 3 blocks refined by the patch affinity of all 12.
_base_ = ['./mctformer-v2_deit-s16_4xb16-60e_voc12aug-224x224.py']
model = dict(version='v1')
