# ACR on MCTformer-V2, MS COCO 2014: as the VOC config with alpha = 100
# (Sun et al., arXiv 2308.04321) and 80 class tokens (num_prefix_tokens=80); MCTformer's own
# localisation (see the VOC config for the gradient-head alternative).
_base_ = ['../mctformer/mctformer-v2_deit-s16_4xb16-60e_coco14-224x224.py']

model = dict(
    _delete_=True,
    type='ACRSegmentor',
    model={{_base_.model}},
    acr_loss=dict(
        type='AllPairsConsistencyLoss',
        loss_weight=100.0,
        num_prefix_tokens=80,
        distance='l1',
        cls_weight=1.0,
        aff_weight=1.0,
    ),
    view=dict(type='flip'),
    capture=dict(layers=None),
)
