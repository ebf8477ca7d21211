# ACR on the synthetic MCTformer-V1 twin, by config inheritance alone (as
# acr_mctformer-v2_tiny-p8_...: flip view, alpha 10, L1, 6 class-token rows +
# affinities, all 4 blocks). Localisation: V1's own maps.
_base_ = ['../mctformer/mctformer-v1_tiny-p8_1xb64-600it_synthetic-64x64.py']

model = dict(
    _delete_=True,
    type='ACRSegmentor',
    model={{_base_.model}},
    acr_loss=dict(
        type='AllPairsConsistencyLoss',
        loss_weight=10.0,
        num_prefix_tokens=6,
        distance='l1',
        cls_weight=1.0,
        aff_weight=1.0,
    ),
    view=dict(type='flip'),
    capture=dict(layers=None),
)
