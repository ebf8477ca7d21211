"""Bad inputs fail early with a message that names the culprit."""

import copy
import os.path as osp
import pickle

import cv2
import numpy as np
import pytest
import torch
from mmcv.transforms import LoadImageFromFile
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmseg.registry import DATASETS, HOOKS, MODELS, TRANSFORMS
from mmseg.structures import SegDataSample

from acr_plugin.datasets.transforms import (
    DeriveImageLabels,
    LoadImageLabels,
    WSSSLoadImageFromFile,
)
from acr_plugin.engine.hooks import NonFiniteLossHook
from acr_plugin.engine.hooks.non_finite_loss_hook import (
    describe_non_finite_loss,
    non_finite_losses,
)
from acr_plugin.models.backbones.checkpoint_loading import (
    load_checkpoint_weights_only,
)
from tests.synthetic_runs import tiny_synthetic_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ACR = osp.join(ROOT, 'configs/acr/acr_vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py')
VOC_BASE = osp.join(ROOT, 'configs/_base_/datasets/voc12aug_wsss.py')
COCO_BASE = osp.join(ROOT, 'configs/_base_/datasets/coco14_wsss.py')


def _write_voc(root, names, empty=()):
    """A tiny VOC layout: 16x16 images and masks (``empty``: background only)."""
    for sub in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        cv2.imwrite(str(root / 'JPEGImages' / f'{name}.jpg'), img)
        mask = np.zeros((16, 16), np.uint8)
        if name not in empty:
            mask[4:9, 4:9] = 1 + i % 20
        cv2.imwrite(str(root / 'SegmentationClass' / f'{name}.png'), mask)
    split = root / 'ImageSets' / 'Segmentation' / 'train.txt'
    split.write_text(''.join(f'{name}\n' for name in names))
    return root


def _voc_dataset(root, pipeline, split='train'):
    return DATASETS.build(
        dict(
            type='WSSSVOCDataset',
            data_root=str(root),
            data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
            ann_file=f'ImageSets/Segmentation/{split}.txt',
            pipeline=pipeline,
        )
    )


# --------------------------------------------------- missing root / split list
@pytest.mark.parametrize('dataset_type', ['WSSSVOCDataset', 'WSSSCOCODataset'])
def test_missing_data_root_and_split_list(tmp_path, dataset_type):
    with pytest.raises(FileNotFoundError, match=r'data root .*nowhere'):
        DATASETS.build(
            dict(
                type=dataset_type,
                data_root=str(tmp_path / 'nowhere'),
                data_prefix=dict(img_path='img'),
                ann_file='split.txt',
            )
        )
    (tmp_path / 'img').mkdir()
    with pytest.raises(FileNotFoundError, match=r'split list .*missing_split\.txt'):
        DATASETS.build(
            dict(
                type=dataset_type,
                data_root=str(tmp_path),
                data_prefix=dict(img_path='img'),
                ann_file='missing_split.txt',
            )
        )


# ------------------------------------------------------ unreadable / corrupt
def test_checked_loader_matches_mmcv_on_good_images(tmp_path):
    img = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = str(tmp_path / 'ok.png')
    cv2.imwrite(path, img)
    ours = TRANSFORMS.build(dict(type='WSSSLoadImageFromFile', to_float32=True))
    out = ours(dict(img_path=path))
    ref = LoadImageFromFile(to_float32=True)(dict(img_path=path))
    np.testing.assert_array_equal(out['img'], ref['img'])
    assert out['img'].dtype == np.float32
    assert out['img_shape'] == out['ori_shape'] == (5, 7)


def test_missing_empty_and_corrupt_images_are_named(tmp_path):
    load = WSSSLoadImageFromFile()
    missing = str(tmp_path / 'JPEGImages' / 'gone.jpg')
    with pytest.raises(FileNotFoundError, match=r'gone\.jpg does not exist'):
        load(dict(img_path=missing))
    empty = tmp_path / 'empty.jpg'
    empty.write_bytes(b'')
    with pytest.raises(OSError, match=r'empty\.jpg is empty'):
        load(dict(img_path=str(empty)))
    corrupt = tmp_path / 'corrupt.jpg'
    corrupt.write_bytes(b'<html>404 not found</html>')
    with pytest.raises(
        OSError, match=r'corrupt\.jpg \(26 bytes\) is unreadable or corrupt'
    ):
        load(dict(img_path=str(corrupt)))
    # a truncated JPEG (a download cut short) fails the same way
    good = tmp_path / 'good.jpg'
    cv2.imwrite(str(good), np.full((32, 32, 3), 127, np.uint8))
    truncated = tmp_path / 'truncated.jpg'
    truncated.write_bytes(good.read_bytes()[:20])
    with pytest.raises(OSError, match=r'truncated\.jpg .*corrupt'):
        load(dict(img_path=str(truncated)))
    with pytest.raises(KeyError, match='img_path'):
        load(dict())
    # ignore_empty keeps mmcv's semantics: skip the sample
    lenient = WSSSLoadImageFromFile(ignore_empty=True)
    assert lenient(dict(img_path=missing)) is None
    assert lenient(dict(img_path=str(corrupt))) is None


def test_corrupt_image_in_a_dataset_names_the_file(tmp_path):
    root = _write_voc(tmp_path, ['a', 'b'])
    (root / 'JPEGImages' / 'b.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really')
    cfg = Config.fromfile(VOC_BASE)
    dataset = _voc_dataset(root, copy.deepcopy(cfg.train_pipeline))
    assert dataset[0]['inputs'].shape[0] == 3
    with pytest.raises(OSError, match=r'JPEGImages/b\.jpg .*unreadable or corrupt'):
        dataset[1]


@pytest.mark.parametrize('path', [VOC_BASE, COCO_BASE])
def test_base_configs_use_the_checked_loader(path):
    cfg = Config.fromfile(path)
    for key in ('train_pipeline', 'train_pipeline_cls_labels', 'test_pipeline'):
        assert cfg[key][0]['type'] == 'WSSSLoadImageFromFile'
    # training pipelines refuse background-only images, evaluation accepts them
    assert cfg.train_pipeline[2]['allow_empty'] is False
    assert cfg.train_pipeline_cls_labels[1]['allow_empty'] is False
    assert cfg.test_pipeline[2].get('allow_empty', True) is True


# ---------------------------------------------------- no foreground label
def test_background_only_image_is_named(tmp_path):
    root = _write_voc(tmp_path, ['fg', 'bg_only'], empty=('bg_only',))
    cfg = Config.fromfile(VOC_BASE)
    train = _voc_dataset(root, copy.deepcopy(cfg.train_pipeline))
    assert train[0]['data_samples'].img_labels.sum() == 1
    with pytest.raises(ValueError, match=r'bg_only\.jpg has no foreground label'):
        train[1]
    # evaluation pipelines may hold such images
    test = _voc_dataset(root, copy.deepcopy(cfg.test_pipeline))
    assert test[1]['data_samples'].img_labels.sum() == 0


def test_derive_and_load_labels_allow_empty_option(tmp_path):
    seg = np.zeros((4, 4), np.uint8)
    seg[0, 0] = 255
    strict = DeriveImageLabels(num_classes=20, allow_empty=False)
    with pytest.raises(ValueError, match=r'x\.jpg has no foreground.*x\.png'):
        strict(dict(gt_seg_map=seg, img_path='x.jpg', seg_map_path='x.png'))
    assert not DeriveImageLabels(num_classes=20)(dict(gt_seg_map=seg))[
        'img_labels'
    ].any()
    label_file = tmp_path / 'labels.txt'
    label_file.write_text('with_cls 3\nno_cls\n')
    strict = LoadImageLabels(str(label_file), num_classes=20, allow_empty=False)
    assert strict(dict(img_path='d/with_cls.jpg'))['img_labels'][2] == 1
    with pytest.raises(ValueError, match=r'"no_cls".*no foreground label.*labels\.txt'):
        strict(dict(img_path='d/no_cls.jpg'))
    lenient = LoadImageLabels(str(label_file), num_classes=20)
    assert not lenient(dict(img_path='d/no_cls.jpg'))['img_labels'].any()


# ------------------------------------------- label file vs. image list
def test_label_file_that_disagrees_with_the_split_fails_at_build(tmp_path):
    names = [f'img_{i}' for i in range(9)]
    root = _write_voc(tmp_path, names)
    table = {name: np.eye(20, dtype=np.uint8)[1] for name in names[:2]}
    table['not_in_split'] = np.eye(20, dtype=np.uint8)[3]  # extra: fine
    np.save(root / 'cls_labels.npy', table)
    pipeline = [
        dict(type='WSSSLoadImageFromFile'),
        dict(
            type='LoadImageLabels',
            label_file=str(root / 'cls_labels.npy'),
            num_classes=20,
        ),
        dict(type='PackWSSSInputs'),
    ]
    with pytest.raises(ValueError) as info:
        _voc_dataset(root, pipeline)
    message = str(info.value)
    assert 'cls_labels.npy' in message and 'train.txt' in message
    assert '7 of its 9 images have no entry' in message
    assert '"img_2", "img_3", "img_4", "img_5", "img_6" and 2 more' in message
    # a complete label file builds; an empty entry fails when training wants
    # a class per image
    table.update({name: np.eye(20, dtype=np.uint8)[2] for name in names[2:]})
    table['img_8'] = np.zeros(20, np.uint8)
    np.save(root / 'cls_labels.npy', table)
    assert len(_voc_dataset(root, pipeline)) == 9
    pipeline[1]['allow_empty'] = False
    with pytest.raises(
        ValueError, match=r'1 images have no foreground label \("img_8"'
    ):
        _voc_dataset(root, pipeline)


# ---------------------------------------------------------- ACR misuse
def _labels(n):
    out = []
    for _ in range(n):
        sample = SegDataSample()
        sample.img_labels = torch.tensor([1.0, 0, 0, 0, 0, 0])
        sample.set_metainfo(dict(img_shape=(64, 64), ori_shape=(64, 64)))
        out.append(sample)
    return out


def test_acr_around_a_module_without_attention_names_it():
    cfg = Config.fromfile(ACR).model.to_dict()
    cfg['capture_module'] = 'backbone.vit.patch_embed'
    model = MODELS.build(cfg)
    with pytest.raises(ValueError, match=r'PatchEmbed has no attention module'):
        model.loss(torch.randn(1, 3, 64, 64), _labels(1))
    cfg['capture_module'] = 'backbone.no_such_part'
    with pytest.raises(AttributeError, match='no_such_part.*capture_module'):
        MODELS.build(cfg)


@pytest.mark.parametrize('layers', [[4], [0, -5]])
def test_acr_layers_beyond_the_depth_name_the_layer(layers):
    cfg = Config.fromfile(ACR).model.to_dict()
    cfg['capture'] = dict(layers=layers)
    model = MODELS.build(cfg)
    bad = layers[-1]
    with pytest.raises(IndexError, match=rf'layer {bad} is out of range.* 4 attention'):
        model.loss(torch.randn(1, 3, 64, 64), _labels(1))


# ------------------------------------------------------- non-finite loss
def test_non_finite_loss_message_names_keys():
    log_vars = dict(
        loss=torch.tensor(float('nan')),
        loss_cls=torch.tensor(0.7),
        loss_acr_aff=torch.tensor(float('nan')),
        loss_acr_cls=torch.tensor(float('inf')),
        acr_attn_entropy=torch.tensor(float('nan')),  # diagnostic, not summed
    )
    bad = non_finite_losses(log_vars)
    assert list(bad) == ['loss_acr_aff', 'loss_acr_cls']
    message = describe_non_finite_loss(
        log_vars, iteration=7, max_iters=10, rank=1, world_size=2, img_paths=['a.jpg']
    )
    assert 'iteration 7/10 on rank 1' in message
    assert 'loss_acr_aff=nan, loss_acr_cls=inf' in message
    assert 'loss_cls=0.7' in message and 'a.jpg' in message
    overflow = dict(loss=torch.tensor(float('inf')), loss_a=torch.tensor(3e38))
    assert 'overflowed' in describe_non_finite_loss(overflow, iteration=1)


class _Snapshot(Hook):
    """Copy the weights before a given iteration (0-based)."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.weights = None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.at:
            self.weights = copy.deepcopy(runner.model.state_dict())


@pytest.mark.slow
def test_non_finite_acr_term_stops_before_the_update(tmp_path):
    cfg = tiny_synthetic_cfg(ACR, str(tmp_path), iters=3, num_train=8, num_val=4)
    cfg.train_dataloader.batch_size = 4
    cfg.experiment_name = 'non_finite_loss'
    assert cfg.default_hooks.non_finite_loss.type == 'NonFiniteLossHook'
    runner = Runner.from_cfg(cfg)
    assert any(isinstance(hook, NonFiniteLossHook) for hook in runner.hooks)
    snapshot = _Snapshot(at=1)
    runner.register_hook(snapshot)
    acr_loss = runner.model.acr_loss
    forward_terms = acr_loss.forward_terms
    calls = []

    def poisoned(*args, **kwargs):
        terms = forward_terms(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # the second iteration
            terms['loss_acr_aff'] = terms['loss_acr_aff'] * float('nan')
        return terms

    acr_loss.forward_terms = poisoned
    with pytest.raises(FloatingPointError) as info:
        runner.train()
    message = str(info.value)
    assert 'iteration 2/3' in message and 'loss_acr_aff=nan' in message
    assert 'loss_cls=' in message  # the finite terms are listed too
    # no update was computed from the nan loss: weights and optimiser state
    # are those after iteration 1
    assert snapshot.weights is not None
    for name, value in runner.model.state_dict().items():
        assert torch.equal(value, snapshot.weights[name]), name
    steps = {
        int(state['step']) for state in runner.optim_wrapper.optimizer.state.values()
    }
    assert steps == {1}
    assert not osp.exists(tmp_path / 'iter_3.pth')


def test_hook_restores_parse_losses():
    model = MODELS.build(Config.fromfile(ACR).model.to_dict())

    class FakeRunner:
        iter = 0
        max_iters = 1

    FakeRunner.model = model
    hook = HOOKS.build(dict(type='NonFiniteLossHook'))
    hook.before_train(FakeRunner)
    hook.before_train(FakeRunner)  # a second train() does not stack wrappers
    wrapped = model.parse_losses
    assert wrapped.__wrapped__.__func__ is type(model).parse_losses
    loss, _ = model.parse_losses(dict(loss_a=torch.tensor(1.0)))
    assert loss == 1.0
    with pytest.raises(FloatingPointError, match='iteration 1/1: loss_a=inf'):
        model.parse_losses(dict(loss_a=torch.tensor(float('inf'))))
    hook.after_train(FakeRunner)
    assert 'parse_losses' not in model.__dict__


# ------------------------------------------------------ safe checkpoints
class _Payload:
    """An arbitrary class: unpickling it could run code."""


def test_checkpoints_load_weights_only(tmp_path):
    state = {'backbone.vit.cls_token': torch.randn(1, 1, 4)}
    plain = tmp_path / 'plain.pth'
    torch.save(dict(state_dict=state, meta=dict(iter=3, seed=0)), plain)
    loaded = load_checkpoint_weights_only(str(plain))
    assert torch.equal(
        loaded['state_dict']['backbone.vit.cls_token'], state['backbone.vit.cls_token']
    )
    # numpy values in meta (mmengine runner checkpoints) are allow-listed
    with_numpy = tmp_path / 'numpy.pth'
    torch.save(dict(state_dict=state, meta=dict(eta=np.float64(1.5))), with_numpy)
    assert load_checkpoint_weights_only(str(with_numpy))['meta']['eta'] == 1.5
    # runner checkpoints saved before WeightsOnlyCheckpointHook name
    # OneCycleLR's annealing function: allowed, it builds nothing
    from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler

    legacy = tmp_path / 'legacy.pth'
    anneal = OneCycleParamScheduler._annealing_cos
    torch.save(dict(state_dict=state, param_schedulers=[dict(f=anneal)]), legacy)
    assert load_checkpoint_weights_only(str(legacy))['param_schedulers'][0]['f'] is (
        anneal
    )
    # an arbitrary object is refused, naming the file and the type
    evil = tmp_path / 'evil.pth'
    torch.save(dict(state_dict=state, payload=_Payload()), evil)
    with pytest.raises(pickle.UnpicklingError, match=r'evil\.pth .*_Payload'):
        load_checkpoint_weights_only(str(evil))
    with pytest.raises(FileNotFoundError, match=r'absent\.pth'):
        load_checkpoint_weights_only(str(tmp_path / 'absent.pth'))


def test_safetensors_and_timm_vit_use_the_safe_loader(tmp_path):
    from safetensors.torch import save_file

    backbone = MODELS.build(
        dict(
            type='TimmViT',
            model_name='vit_tiny_patch16_224',
            img_size=32,
            model_kwargs=dict(patch_size=8, embed_dim=24, depth=1, num_heads=2),
        )
    )
    weights = {k: torch.randn_like(v) for k, v in backbone.vit.state_dict().items()}
    path = tmp_path / 'vit.safetensors'
    save_file(weights, str(path))
    assert set(load_checkpoint_weights_only(str(path))) == set(weights)
    report = backbone.load_pretrained(str(path))
    assert not report['missing']
    torch.testing.assert_close(backbone.vit.cls_token, weights['cls_token'])
    evil = tmp_path / 'evil.pth'
    torch.save(dict(state_dict=weights, payload=_Payload()), evil)
    with pytest.raises(pickle.UnpicklingError, match=r'evil\.pth'):
        backbone.load_pretrained(str(evil))
