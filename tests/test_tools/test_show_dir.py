"""tools/test.py --show-dir: one CAM picture per test image."""

import os
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config

from acr_plugin.apis import build_model
from tests.scripts import ROOT, load_script

VIT_CAM = osp.join(
    ROOT, 'configs/vit_cam/vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py'
)
NUM = 18  # more than CAMVisualizationHook's default max_images (16)
OPTIONS = [
    f'test_dataloader.dataset.num_samples={NUM}',
    'test_dataloader.dataset.img_size=32',
    'test_dataloader.batch_size=6',
    'test_dataloader.num_workers=0',
    'test_dataloader.persistent_workers=False',
    'model.backbone.img_size=32',
    'log_level=WARNING',
]


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    cfg = Config.fromfile(VIT_CAM)
    cfg.model.backbone.img_size = 32
    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp('ckpt') / 'model.pth')
    torch.save(dict(state_dict=build_model(cfg, device='cpu').state_dict()), path)
    return path


def _test_tool(tmp_path, monkeypatch, checkpoint, name, extra=()):
    show_dir = tmp_path / 'vis'
    argv = [
        'tools/test.py',
        VIT_CAM,
        checkpoint,
        '--work-dir',
        str(tmp_path / 'work'),
        '--show-dir',
        str(show_dir),
        '--cfg-options',
        *OPTIONS,
        f'experiment_name={name}',
        f'visualizer.name={name}',
        *extra,
    ]
    monkeypatch.setattr(sys, 'argv', argv)
    load_script('tools/test.py').main()
    return sorted(os.listdir(show_dir / 'vis_data' / 'vis_image'))


@pytest.mark.slow
def test_show_dir_saves_one_picture_per_test_image(tmp_path, monkeypatch, checkpoint):
    names = _test_tool(tmp_path, monkeypatch, checkpoint, 'show_all')
    assert len(names) == NUM
    indices = sorted(int(name.split('_')[1]) for name in names)
    assert indices == list(range(NUM))


@pytest.mark.slow
def test_show_dir_keeps_a_configured_limit(tmp_path, monkeypatch, checkpoint):
    names = _test_tool(
        tmp_path,
        monkeypatch,
        checkpoint,
        'show_four',
        ['default_hooks.visualization.max_images=4'],
    )
    assert len(names) == 4
