"""Checkpoints across configs through tools/train.py (end to end).

Adopting ACR from a trained baseline (``load_from`` of the baseline's
checkpoint in the ACR config) starts ACR from the baseline's weights; a
checkpoint of another model, given by ``load_from`` or found by ``--resume``,
stops the run with an error naming both instead of training past it.
"""

import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch
from mmengine.runner import Runner

from tests.checkpoints import load_runner_checkpoint
from tests.synthetic_runs import tiny_synthetic_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SYNTHETIC = '1xb64-600it_synthetic-64x64.py'
VIT_CAM = f'configs/vit_cam/vit-cam_tiny-p8_{SYNTHETIC}'
ACR = f'configs/acr/acr_vit-cam_tiny-p8_{SYNTHETIC}'
MCTFORMER = f'configs/mctformer/mctformer-v2_tiny-p8_{SYNTHETIC}'
# one training iteration on 4 images, no validation
TINY = [
    'train_dataloader.dataset.num_samples=4',
    'train_dataloader.batch_size=2',
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'val_dataloader=None',
    'val_cfg=None',
    'val_evaluator=None',
    'train_cfg.max_iters=1',
    'default_hooks.checkpoint.interval=1',
]


def _load(path: str) -> dict:
    return load_runner_checkpoint(path)['state_dict']


def _train(config: str, work_dir, *options: str, resume: bool = False):
    cmd = [sys.executable, 'tools/train.py', config, '--work-dir', str(work_dir)]
    cmd += ['--resume'] if resume else []
    cmd += ['--cfg-options', *TINY, *options]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


@pytest.fixture(scope='module')
def baseline_work_dir(tmp_path_factory):
    """A ViT-CAM work dir after one iteration: iter_1.pth, last_checkpoint."""
    work_dir = tmp_path_factory.mktemp('vit_cam')
    cfg = tiny_synthetic_cfg(osp.join(ROOT, VIT_CAM), str(work_dir), iters=1)
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
        cfg[key] = None
    cfg.experiment_name = 'checkpoint_adoption_baseline'
    Runner.from_cfg(cfg).train()
    assert osp.isfile(work_dir / 'iter_1.pth')
    return work_dir


@pytest.mark.slow
def test_load_from_a_baseline_checkpoint_starts_acr_from_its_weights(
    baseline_work_dir, tmp_path
):
    ckpt = str(baseline_work_dir / 'iter_1.pth')
    out = _train(
        ACR,
        tmp_path,
        f'load_from={ckpt}',
        'randomness.seed=1',  # an initialisation unlike the baseline's
        # lr 0: the weights ACR saves after its step are those it started from
        'param_scheduler=None',
        'optim_wrapper.optimizer.lr=0.0',
        'optim_wrapper.optimizer.weight_decay=0.0',
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'the checkpoint is of the model it wraps' in out.stdout + out.stderr
    baseline, acr = _load(ckpt), _load(str(tmp_path / 'iter_1.pth'))
    assert set(acr) == {'model.' + key for key in baseline}
    for key, value in baseline.items():
        assert torch.equal(acr['model.' + key], value), key


@pytest.mark.slow
@pytest.mark.parametrize('route', ['resume', 'load_from'])
def test_a_checkpoint_of_another_model_stops_the_run(
    route, baseline_work_dir, tmp_path
):
    """An MCTformer run given the ViT-CAM checkpoint exits non-zero with the
    model's error (the resume used to fail on the optimizer state, load_from
    to train from scratch)."""
    ckpt = str(baseline_work_dir / 'iter_1.pth')
    work_dir = tmp_path / 'mctformer'
    if route == 'resume':
        shutil.copytree(baseline_work_dir, work_dir)
        ckpt = (work_dir / 'last_checkpoint').read_text().strip()  # what resumes
        out = _train(MCTFORMER, work_dir, resume=True)
    else:
        out = _train(MCTFORMER, work_dir, f'load_from={ckpt}')
    assert out.returncode != 0
    assert 'CheckpointMismatchError' in out.stderr
    assert f'The checkpoint "{ckpt}" does not fit the model MCTformer' in out.stderr
    assert 'token_classifier.weight' in out.stderr  # a ViT-CAM key
    assert "optimizer's group" not in out.stderr
    assert not osp.exists(work_dir / 'iter_2.pth')
