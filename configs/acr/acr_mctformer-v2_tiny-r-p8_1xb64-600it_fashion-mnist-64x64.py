# ACR on MCTformer-V2 of the Fashion-MNIST benchmark, by config inheritance alone: the
# baseline model config is wrapped unchanged; flipped second view, class-row
# (A[0:10, 10:]) + affinity (A[10:, 10:]) terms, L1, all 4 blocks. alpha = 10, as
# the synthetic ViT-CAM ACR (the VOC alpha of 125 is for ViT-B's attention
# scale). Localisation: MCTformer's own maps.
_base_ = ['../mctformer/mctformer-v2_tiny-r-p8_1xb64-600it_fashion-mnist-64x64.py']

model = dict(
    _delete_=True,
    type='ACRSegmentor',
    model={{_base_.model}},
    acr_loss=dict(
        type='AllPairsConsistencyLoss',
        loss_weight=10.0,
        num_prefix_tokens=10,
        distance='l1',
        cls_weight=1.0,
        aff_weight=1.0,
    ),
    view=dict(type='flip'),
    capture=dict(layers=None),  # mode follows the loss: (q, k) for the efficient route
)
