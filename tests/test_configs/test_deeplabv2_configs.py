"""DeepLab-V2 second-stage configs: the paper's recipe (Chen et al., TPAMI
2017, ResNet-101) where the configs claim it, and a trainable model whose every
trainable parameter gets a gradient (DDP with find_unused_parameters=False)."""

import glob
import logging
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'second_stage', 'deeplabv2_*.py')))
VOC = osp.join(
    ROOT, 'configs/second_stage/deeplabv2_r101-d8_1xb10-20k_voc12aug-pseudo-321x321.py'
)
#: (dataset, classes with background, iterations)
EXPECTED = dict(
    voc12aug=('WSSSVOCDataset', 21, 20000), coco14=('WSSSCOCODataset', 81, 100000)
)


def dataset_key(path):
    (key,) = [k for k in EXPECTED if f'_{k}-' in osp.basename(path)]
    return key


def test_both_datasets_have_a_config():
    assert sorted(dataset_key(p) for p in CONFIGS) == sorted(EXPECTED)


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_recipe(path):
    cfg = Config.fromfile(path)
    dataset, num_classes, iters = EXPECTED[dataset_key(path)]
    backbone, head = cfg.model.backbone, cfg.model.decode_head
    # plain ResNet-101 (7x7 stem), output stride 8, every conv4_x / conv5_x
    # block dilated (as the released model), frozen batch norm
    assert backbone.type == 'ResNet' and backbone.depth == 101
    assert tuple(backbone.strides) == (1, 2, 1, 1)
    assert tuple(backbone.dilations) == (1, 1, 2, 4)
    assert backbone.contract_dilation is False
    assert backbone.norm_cfg.requires_grad is False and backbone.norm_eval is True
    assert backbone.init_cfg.type == 'Pretrained'
    # ASPP-L on the 2048-channel conv5_x features
    assert head.type == 'DeepLabV2Head' and head.in_channels == 2048
    assert head.in_index == 3 and tuple(head.dilations) == (6, 12, 18, 24)
    assert head.num_classes == num_classes
    assert 'auxiliary_head' not in cfg.model
    # SGD, poly 0.9 from 2.5e-4 to 0, 321 crops (batch 10: the name's 1xb10,
    # checked for every config in test_configs_build.py)
    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.type == 'SGD' and optimizer.lr == 2.5e-4
    assert optimizer.momentum == 0.9 and optimizer.weight_decay == 5e-4
    ((poly),) = cfg.param_scheduler
    assert poly.type == 'PolyLR' and poly.power == 0.9 and poly.eta_min == 0
    assert poly.end == iters == cfg.train_cfg.max_iters
    assert tuple(cfg.crop_size) == (321, 321)
    assert tuple(cfg.model.data_preprocessor.size) == (321, 321)
    (crop,) = [t for t in cfg.train_pipeline if t.type == 'RandomCrop']
    assert tuple(crop.crop_size) == (321, 321) and 'cat_max_ratio' not in crop
    (resize,) = [t for t in cfg.train_pipeline if t.type == 'RandomResize']
    assert tuple(resize.ratio_range) == (0.5, 1.5)
    # whole images at their own size at test time
    assert [t.type for t in cfg.test_pipeline] == [
        'LoadImageFromFile',
        'LoadAnnotations',
        'PackSegInputs',
    ]
    assert cfg.model.test_cfg.mode == 'whole'
    assert cfg.train_dataloader.dataset.type == dataset
    assert cfg.val_dataloader.dataset.type == dataset
    assert cfg.model_wrapper_cfg.find_unused_parameters is False


@pytest.fixture(scope='module')
def voc_model():
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.ERROR)  # init_weights logs every parameter
    try:
        cfg = Config.fromfile(VOC)
        model_cfg = cfg.model.to_dict()
        model_cfg['backbone']['init_cfg'] = None  # no download in tests
        # random init: mmseg's zero-initialised last BN of each block would
        # stay zero (frozen), so no gradient would pass the residual branches
        model_cfg['backbone']['zero_init_residual'] = False
        model = MODELS.build(model_cfg)
        model.init_weights()
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
    finally:
        logger.setLevel(level)
    return model, optim


def test_learning_rates_of_the_papers_solver(voc_model):
    """Classifier weights 10x, classifier biases 20x without weight decay,
    the backbone's convs 1x; batch-norm parameters frozen."""
    model, optim = voc_model
    by_param = {}
    for group in optim.optimizer.param_groups:
        for p in group['params']:
            by_param[id(p)] = (group['lr'], group['weight_decay'])
    for name, p in model.named_parameters():
        if not p.requires_grad:  # frozen: not optimised at all
            assert id(p) not in by_param, name
            assert '.bn' in name or 'downsample.1' in name, name
            continue
        lr, decay = by_param[id(p)]
        if name.startswith('decode_head.conv_seg.') and name.endswith('.bias'):
            assert (lr, decay) == (pytest.approx(5e-3), 0.0), name
        elif name.startswith('decode_head.'):
            assert (lr, decay) == (pytest.approx(2.5e-3), 5e-4), name
        else:
            assert name.startswith('backbone.') and p.dim() == 4, name
            assert (lr, decay) == (pytest.approx(2.5e-4), 5e-4), name
    head = [n for n, _ in model.named_parameters() if n.startswith('decode_head.')]
    assert len(head) == 8  # four branches, weight and bias each


def test_one_training_step_reaches_every_trainable_parameter(voc_model):
    model, _ = voc_model
    model.train()
    assert not model.backbone.bn1.training  # norm_eval: ImageNet statistics kept
    stats = model.backbone.bn1.running_mean.clone()
    model.zero_grad()
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(1, 3, 64, 64, generator=gen)
    label = torch.randint(0, 21, (1, 64, 64), generator=gen)
    label[:, :8] = 255
    sample = SegDataSample(gt_sem_seg=PixelData(data=label))
    sample.set_metainfo(dict(img_shape=(64, 64), pad_shape=(64, 64)))
    losses = model.loss(inputs, [sample])
    assert set(losses) == {'decode.loss_ce', 'decode.acc_seg'}
    losses['decode.loss_ce'].backward()
    missing = [
        name
        for name, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert missing == []
    torch.testing.assert_close(model.backbone.bn1.running_mean, stats)
