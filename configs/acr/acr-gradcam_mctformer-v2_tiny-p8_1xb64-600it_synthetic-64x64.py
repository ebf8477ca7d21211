# The synthetic ACR MCTformer twin localising with the class-token-gradient
# head instead of MCTformer's maps (same training): MCTformer.logits() are the
# class tokens' logits, and prefix_row='class' reads row c (class token c)
# when explaining class c.
_base_ = ['./acr_mctformer-v2_tiny-p8_1xb64-600it_synthetic-64x64.py']

model = dict(
    predictor=dict(
        type='ClsTokenGradCAMHead',
        variant='grad',
        start_layer=-2,
        refine=False,
        flip=True,
        prefix_row='class',
    ),
)
