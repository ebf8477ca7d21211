"""Model and split builders of the pseudo-label APIs (``acr_plugin.apis.builders``)."""

import os.path as osp

import pytest
import torch

from acr_plugin.apis import build_model, build_split_dataset
from tests.synthetic_runs import tiny_synthetic_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ACR = osp.join(ROOT, 'configs/acr/acr_vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py')


def _cfg(work_dir):
    cfg = tiny_synthetic_cfg(ACR, str(work_dir), num_val=2)
    cfg.test_dataloader.dataset.img_size = 32
    cfg.model.model.backbone.img_size = 32
    return cfg


def test_model_is_in_eval_mode_with_the_checkpoint(tmp_path):
    cfg = _cfg(tmp_path)
    torch.manual_seed(0)
    model = build_model(cfg, device='cpu')
    assert not model.training
    state = {k: torch.rand_like(v) for k, v in model.state_dict().items()}
    ckpt = str(tmp_path / 'model.pth')
    torch.save(dict(state_dict=state), ckpt)
    loaded = build_model(cfg, ckpt, device='cpu')
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key
    torch.save(dict(state_dict={}), ckpt)  # strict: missing keys fail
    with pytest.raises(RuntimeError):
        build_model(cfg, ckpt, device='cpu')


def test_split_dataset_with_another_loaders_pipeline(tmp_path):
    cfg = _cfg(tmp_path)
    cfg.train_dataloader.dataset.num_samples = 3
    cfg.train_dataloader.dataset.img_size = 32
    own = build_split_dataset(cfg, 'train_dataloader')
    swapped = build_split_dataset(cfg, 'train_dataloader', 'test_dataloader')
    assert len(own) == len(swapped) == 3
    test_pipeline = cfg.test_dataloader.dataset.pipeline
    assert len(swapped.pipeline.transforms) == len(test_pipeline)
    assert len(own.pipeline.transforms) == len(cfg.train_dataloader.dataset.pipeline)
    with pytest.raises(KeyError, match='no_such_loader'):
        build_split_dataset(cfg, 'no_such_loader')
    with pytest.raises(KeyError, match='no_such_loader'):
        build_split_dataset(cfg, 'train_dataloader', 'no_such_loader')
