# ACR on MCTformer-V1, PASCAL VOC 2012, by config inheritance: the V1 config
# is wrapped unchanged (as acr_mctformer-v2_...voc12aug: flip view, alpha 125,
# L1, class rows A[0:20, 20:] + affinity A[20:, 20:], all 12 blocks). V1's
# maps are the class-to-patch attention alone (no conv CAM factor).
#   bash tools/dist_train.sh configs/acr/acr_mctformer-v1_deit-s16_4xb16-60e_voc12aug-224x224.py 4
_base_ = ['../mctformer/mctformer-v1_deit-s16_4xb16-60e_voc12aug-224x224.py']

model = dict(
    _delete_=True,
    type='ACRSegmentor',
    model={{_base_.model}},
    acr_loss=dict(
        type='AllPairsConsistencyLoss',
        loss_weight=125.0,
        num_prefix_tokens=20,
        distance='l1',
        cls_weight=1.0,
        aff_weight=1.0,
    ),
    view=dict(type='flip'),
    capture=dict(layers=None),
)
