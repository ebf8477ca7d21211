# ACR (Sun et al., arXiv 2308.04321) on MCTformer-V2, PASCAL VOC 2012, by config inheritance:
# the MCTformer config is wrapped unchanged; second view = horizontal flip;
# L = MLSM terms of MCTformer on both views + alpha * (L_cls_attn + L_aff),
# alpha = 125, L1, all 12 blocks, heads averaged. With 20 class tokens the
# class rows are A[0:20, 20:] and the affinity block A[20:, 20:]
# (num_prefix_tokens=20).
# Localisation: MCTformer's own maps (class-to-patch attention x patch CAM,
# affinity-refined). They are built from exactly the class rows and the patch
# affinity that ACR makes flip-consistent, so they show its effect directly.
# The class-token-gradient head also applies (MCTformer.logits are the class
# tokens' logits): predictor=dict(type='ClsTokenGradCAMHead', prefix_row='class',
# start_layer=-2, input_size=(224, 224)) explains class c through token c
# (exercised by acr-gradcam_mctformer-v2_tiny-p8_...synthetic-64x64.py).
#   bash tools/dist_train.sh configs/acr/acr_mctformer-v2_deit-s16_4xb16-60e_voc12aug-224x224.py 4
_base_ = ['../mctformer/mctformer-v2_deit-s16_4xb16-60e_voc12aug-224x224.py']

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
