# The synthetic ACR twin localising with the class-token-gradient CAM head
# instead of the patch CAM (same training; prediction through the head).
_base_ = ['./acr_vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py']

model = dict(
    predictor=dict(type='ClsTokenGradCAMHead', variant='grad', start_layer=-2,
                   refine=False, flip=True),
)
