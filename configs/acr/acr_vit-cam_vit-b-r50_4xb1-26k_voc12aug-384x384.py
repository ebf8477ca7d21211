# ACR (Sun et al., arXiv 2308.04321) on the official host, PASCAL VOC 2012:
# the ViT-CAM VOC config wrapped unchanged; second view = horizontal flip;
# L = MLSM(z1) + MLSM(z2) + alpha * (L_cls_attn + L_aff), alpha = 125, L1,
# all 12 layers, heads averaged, no stop-gradient. Localisation: the
# class-token-gradient CAM as the official inference script runs it
# (--getam_func grad --start_layer 10 --aff True): GETAM-style "grad" variant on
# layers 10..11, refined by the patch affinity (head-averaged patch-to-patch
# attention summed over all 12 blocks), input resized to 384, flip TTA summed,
# min-max eps 1e-6.
#   bash tools/dist_train.sh configs/acr/acr_vit-cam_vit-b-r50_4xb1-26k_voc12aug-384x384.py 4
_base_ = ['../vit_cam/vit-cam_vit-b-r50_4xb1-26k_voc12aug-384x384.py']

model = dict(
    _delete_=True,
    type='ACRSegmentor',
    model={{_base_.model}},
    acr_loss=dict(
        type='AllPairsConsistencyLoss',
        loss_weight=125.0,
        num_prefix_tokens=1,
        distance='l1',
        cls_weight=1.0,
        aff_weight=1.0,
    ),
    view=dict(type='flip'),
    capture=dict(layers=None),
    predictor=dict(
        type='ClsTokenGradCAMHead',
        variant='grad',
        start_layer=-2,
        refine=True,  # the official script's --aff True
        flip=True,
        input_size=(384, 384),
    ),
)
