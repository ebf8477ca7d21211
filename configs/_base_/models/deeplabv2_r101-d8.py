# DeepLab-V2 (Chen et al., "DeepLab: Semantic Image Segmentation with Deep
# Convolutional Nets, Atrous Convolution, and Fully Connected CRFs", TPAMI 2017):
# ResNet-101 dilated to output stride 8 + the ASPP-L classifier (acr_plugin's
# DeepLabV2Head: four 3x3 convs 2048 -> classes at dilations 6/12/18/24, summed).
#
# As the paper: plain ResNet-101 (7x7 stem, mmseg `ResNet`), conv4_x at dilation 2
# and conv5_x at dilation 4 in EVERY block (contract_dilation=False, as the
# released DeepLab-V2 model), batch norm frozen (ImageNet statistics and affine
# parameters, never updated), head init normal std 0.01 / bias 0.
# Ours: PyTorch-style bottlenecks (stride in the 3x3 conv) and RGB mean/std input
# normalisation, because the weights are torchvision's ImageNet ResNet-101
# (torchvision://resnet101, downloaded by mmengine on first use; point
# `checkpoint` at a local file on offline machines). The paper's Caffe model is
# Caffe-style (stride in the 1x1 conv) with BGR mean subtraction, and its VOC
# runs start from an MS-COCO-pretrained DeepLab; to use such weights, convert
# them to mmseg key names and set `checkpoint` (and style='caffe').
norm_cfg = dict(type='BN', requires_grad=False)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='ResNet',
        depth=101,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1),
        norm_cfg=norm_cfg,
        norm_eval=True,
        style='pytorch',
        contract_dilation=False,
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101'),
    ),
    decode_head=dict(
        type='DeepLabV2Head',
        in_channels=2048,
        in_index=3,
        dilations=(6, 12, 18, 24),
        num_classes=21,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
    ),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'),
)
