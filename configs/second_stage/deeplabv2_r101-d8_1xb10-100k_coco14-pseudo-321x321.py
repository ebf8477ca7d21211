# Second stage on MS COCO 2014 as the WSSS papers (ACR, MCTformer, ...):
# DeepLab-V2 R101 (configs/_base_/models/deeplabv2_r101-d8.py) trained on pseudo
# labels of train2014 (ImageSets/train.txt), validated on val2014 with the real
# masks (40,137 images: validation only at the end).
#
# The paper's recipe (Chen et al., "DeepLab: Semantic Image Segmentation with
# Deep Convolutional Nets, Atrous Convolution, and Fully Connected CRFs", TPAMI
# 2017, ResNet-101 model, as in the VOC config): SGD momentum 0.9, weight decay
# 5e-4, "poly" lr 2.5e-4 x (1 - iter/max_iter)^0.9, batch 10, 321x321 crops,
# random scaling 0.5-1.5 and flipping, classifier weights at 10x the base lr and
# its biases at 20x without weight decay, batch norm frozen.
# Ours: the paper trains no COCO 2014 segmentation model of its own (it only
# pretrains on COCO for VOC), so the schedule length is our choice: 100k
# iterations (5x VOC's 20k for ~8x the images, the length public DeepLab-V2
# ports use on COCO-Stuff 164k). Also ours, as the VOC config: one GPU x 10
# images, torchvision ImageNet weights (COCO-pretrained weights would leak
# COCO's masks into COCO's own weakly-supervised result), scaling relative to
# COCO's 640-pixel long side, loss on upsampled logits, no MSC training, no
# test-time CRF or TTA.
#
# Pseudo labels into data_root/PseudoLabels/train2014:
#   python tools/generate_pseudo_labels.py WSSS_CONFIG CKPT \
#       --out-dir data/coco2014/PseudoLabels/train2014 --bg-thr 0.45 --crf
# Another folder: --cfg-options train_dataloader.dataset.data_prefix.seg_map_path=DIR
#   python tools/train.py THIS_CONFIG
_base_ = [
    '../_base_/models/deeplabv2_r101-d8.py',
    '../_base_/default_runtime.py',
]
dataset_type = 'WSSSCOCODataset'
data_root = 'data/coco2014'
pseudo_label_dir = 'PseudoLabels/train2014'
crop_size = (321, 321)
num_classes = 81
max_iters = 100000

data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=num_classes),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    # COCO images are at most 640 pixels: scale (640, 640) x ratio is the
    # paper's random rescaling of the image by 0.5-1.5
    dict(
        type='RandomResize', scale=(640, 640), ratio_range=(0.5, 1.5), keep_ratio=True
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
        data_prefix=dict(img_path='train2014', seg_map_path=pseudo_label_dir),
        ann_file='ImageSets/train.txt',
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
        data_prefix=dict(img_path='val2014', seg_map_path='SegmentationClass/val2014'),
        ann_file='ImageSets/val.txt',
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

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
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
env_cfg = dict(dist_cfg=dict(backend='nccl'))
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=False)
default_hooks = dict(
    checkpoint=dict(interval=10000, max_keep_ckpts=3),
    visualization=dict(type='SegVisualizationHook'),
)
auto_scale_lr = dict(enable=False, base_batch_size=10)  # 1 GPU x 10 (--auto-scale-lr)
