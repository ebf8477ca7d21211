# Second stage on PASCAL VOC 2012 as the WSSS papers (ACR, MCTformer, ...):
# DeepLab-V2 R101 (configs/_base_/models/deeplabv2_r101-d8.py) trained on pseudo
# labels of train_aug (10,582 images), validated on val (1,449) with the real
# masks.
#
# The paper's VOC recipe (Chen et al., "DeepLab: Semantic Image Segmentation with
# Deep Convolutional Nets, Atrous Convolution, and Fully Connected CRFs", TPAMI
# 2017, ResNet-101 model): SGD momentum 0.9, weight decay 5e-4, "poly" lr
# 2.5e-4 x (1 - iter/max_iter)^0.9 for 20k iterations, batch 10, 321x321 crops,
# random scaling 0.5-1.5 and flipping, classifier weights at 10x the base lr
# and its biases at 20x without weight decay, batch norm frozen; evaluation on
# the whole image at its original size.
# Ours: one GPU x 10 images (the papers' total batch; frozen BN needs no SyncBN,
# so 2 GPUs x 5 train the same), torchvision ImageNet weights (see the model
# base), scaling relative to VOC's 500-pixel long side, loss on the logits
# upsampled to the label size (mmseg; Caffe subsampled the labels), no
# multi-scale-input (MSC) training, no test-time CRF or multi-scale/flip TTA.
#
# Pseudo labels (see configs/second_stage/README.md):
#   python tools/generate_pseudo_labels.py WSSS_CONFIG CKPT \
#       --out-dir data/VOCdevkit/VOC2012/PseudoLabels --bg-thr auto --crf \
#       --thr-split-cfg-key train_cam_dataloader
# Another folder: --cfg-options train_dataloader.dataset.data_prefix.seg_map_path=DIR
#   python tools/train.py THIS_CONFIG
_base_ = [
    '../_base_/models/deeplabv2_r101-d8.py',
    '../_base_/default_runtime.py',
]
dataset_type = 'WSSSVOCDataset'
data_root = 'data/VOCdevkit/VOC2012'
pseudo_label_dir = 'PseudoLabels'
crop_size = (321, 321)
num_classes = 21
max_iters = 20000

# batches are padded to the crop (0 after normalisation: the mean colour, as
# Caffe's mean padding; 255 in the labels)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=num_classes),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    # VOC images are at most 500 pixels: scale (500, 500) x ratio is the
    # paper's random rescaling of the image by 0.5-1.5
    dict(
        type='RandomResize', scale=(500, 500), ratio_range=(0.5, 1.5), keep_ratio=True
    ),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=10,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='JPEGImages', seg_map_path=pseudo_label_dir),
        ann_file='ImageSets/Segmentation/trainaug.txt',
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file='ImageSets/Segmentation/val.txt',
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

# the classifier (decode_head.conv_seg.<i>, one conv per dilation) at 10x,
# its biases at 20x without decay; backbone convs at 1x (BN is frozen)
head_bias = dict(lr_mult=20.0, decay_mult=0.0)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=2.5e-4, momentum=0.9, weight_decay=5e-4),
    clip_grad=None,
    paramwise_cfg=dict(
        custom_keys={
            'decode_head': dict(lr_mult=10.0),
            'decode_head.conv_seg.0.bias': head_bias,
            'decode_head.conv_seg.1.bias': head_bias,
            'decode_head.conv_seg.2.bias': head_bias,
            'decode_head.conv_seg.3.bias': head_bias,
        }
    ),
)
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=max_iters, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=2000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
env_cfg = dict(dist_cfg=dict(backend='nccl'))
# every trainable parameter gets a gradient (BN is frozen, the ASPP branches
# are the classifier): DDP need not search for unused ones
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=False)
default_hooks = dict(
    checkpoint=dict(interval=2000, max_keep_ckpts=3),
    visualization=dict(type='SegVisualizationHook'),
)
auto_scale_lr = dict(enable=False, base_batch_size=10)  # 1 GPU x 10 (--auto-scale-lr)
