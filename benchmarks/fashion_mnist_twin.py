"""Fashion-MNIST pretraining twin: which backbone learns the classes?

The Fashion-MNIST benchmark's backbone (the stand-in for ImageNet weights) is
chosen on one number only: the top-1 accuracy of the pretraining twin
(single items of the ``'pretrain'`` pool, 10 classes) on single items of the
held-out ``'val'`` pool. Never on a CAM number, so the benchmark is not tuned
toward a WSSS result. Each candidate trains the pretraining config
(``configs/vit_cam/vit-cls_tiny-r-p8_1xb64-2400it_fashion-mnist-pretrain-64x64.py``)
through mmengine's Runner, as ``benchmarks/synthetic_ablation.py`` pretrains,
with its own backbone, number of training images and length:

- ``vit_p8_600it_6k``: the synthetic twin's plain tiny ViT (patch 8, 96-d,
  4 blocks), 600 iterations on 6,000 images (the synthetic protocol);
- ``hybrid_600it_6k``: the same ViT behind timm's ResNet-v2 stem (the
  config's model), same schedule;
- ``vit_p8_2400it_20k`` / ``hybrid_2400it_20k``: 2,400 iterations on the
  whole pool (20,000 images); ``hybrid_2400it_20k`` is the config as shipped,
  i.e. the benchmark's own pretraining: it is taken from (or trained into)
  the ablation's cache (``--ablation-work-dir``), so the checkpoint judged
  here is the one every Fashion-MNIST run starts from.

Batch 64, AdamW with the one-cycle schedule of the config (scaled to the
length), seed 0, validated on the config's 500 ``'val'`` items. Reported:
top-1 accuracy of the token head (argmax of the 10 logits), the
multi-label F1 of the config's evaluator (sigmoid > 0.5) and the training
time. Runs are cached under ``--work-dir`` (one JSON per candidate).

Usage::

    python benchmarks/fashion_mnist_twin.py
    python benchmarks/fashion_mnist_twin.py --candidates hybrid_600it_6k

The last line printed is one JSON object.
"""

import argparse
import importlib.util
import json
import os.path as osp
import time
from typing import Dict

import torch
from mmengine.config import Config
from mmengine.runner import Runner, load_checkpoint
from mmseg.registry import MODELS

from acr_plugin.evaluation.multilabel_f1_metric import multilabel_f1_counts
from acr_plugin.structures import stack_img_labels

HERE = osp.dirname(osp.abspath(__file__))
PLAIN_VIT = {
    'model.backbone.model_name': 'vit_tiny_patch16_224',
    'model.backbone.model_kwargs.patch_size': 8,
}
#: name -> (cfg options, iterations, training images)
CANDIDATES: Dict[str, tuple] = {
    'vit_p8_600it_6k': (PLAIN_VIT, 600, 6000),
    'hybrid_600it_6k': ({}, 600, 6000),
    'vit_p8_2400it_20k': (PLAIN_VIT, 2400, 20000),
    'hybrid_2400it_20k': ({}, 2400, 20000),
}


def load_protocol():
    """``benchmarks/synthetic_ablation.py`` as a module (it is a script)."""
    path = osp.join(HERE, 'synthetic_ablation.py')
    spec = importlib.util.spec_from_file_location('synthetic_ablation', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/fashion_mnist_twin')
    parser.add_argument(
        '--candidates', nargs='+', default=list(CANDIDATES), choices=list(CANDIDATES)
    )
    parser.add_argument(
        '--iters', type=int, default=None, help="override every candidate's length"
    )
    parser.add_argument(
        '--data-root',
        default=None,
        help="folder of the Fashion-MNIST IDX files (default: the configs')",
    )
    parser.add_argument(
        '--ablation-work-dir',
        default='work_dirs/fashion_mnist_ablation',
        help="synthetic_ablation.py --benchmark fashion_mnist's work dir (its "
        'pretraining checkpoint is the shipped candidate)',
    )
    parser.add_argument('--threads', type=int, default=1, help='torch threads')
    return parser.parse_args()


@torch.no_grad()
def twin_accuracy(model, loader) -> Dict[str, float]:
    """Top-1 accuracy and multi-label F1 (percent) of the image logits."""
    model.eval()
    correct = total = 0
    counts = 0
    for batch in loader:
        data = model.data_preprocessor(batch, False)
        labels = stack_img_labels(data['data_samples'])
        logits = model.logits(data['inputs'])
        correct += int((logits.argmax(1) == labels.argmax(1)).sum())
        total += len(labels)
        counts = counts + multilabel_f1_counts(logits, labels)
    tp, fp, fn = counts.double().sum(0)
    return dict(
        top1=round(100 * correct / total, 2),
        f1=round(100 * (2 * tp / (2 * tp + fp + fn)).item(), 2),
    )


def is_shipped(cand_options: dict, iters: int, num_samples: int, protocol) -> bool:
    """Whether a candidate is the pretraining config as shipped."""
    cfg = Config.fromfile(osp.join(protocol.ROOT, protocol.FM_PRETRAIN_CFG))
    return not cand_options and (iters, num_samples) == (
        cfg.train_cfg.max_iters,
        cfg.train_dataloader.dataset.num_samples,
    )


def shipped_candidate(args, protocol, options) -> dict:
    """The benchmark's own pretraining checkpoint (the ablation's cache),
    trained there first if missing, validated here."""
    config = protocol.FM_PRETRAIN_CFG
    shipped = Config.fromfile(osp.join(protocol.ROOT, config))
    run_args = argparse.Namespace(
        work_dir=args.ablation_work_dir,
        pretrain_iters=shipped.train_cfg.max_iters,
        num_train=shipped.train_dataloader.dataset.num_samples,
        batch=shipped.train_dataloader.batch_size,
        num_val=shipped.val_dataloader.dataset.num_samples,
    )
    cached = osp.isfile(protocol.pretrain_checkpoint(run_args, config, options))
    start = time.perf_counter()
    ckpt = protocol.pretrain(run_args, config, options)
    train_time = time.perf_counter() - start
    cfg = protocol.prepare_cfg(
        config, '', run_args, 0, run_args.pretrain_iters, options
    )
    model = MODELS.build(cfg.model)
    load_checkpoint(model, ckpt, map_location='cpu', logger='silent')
    result = twin_accuracy(model, Runner.build_dataloader(cfg.val_dataloader))
    result.update(checkpoint=ckpt)
    if not cached:
        result.update(train_time_s=round(train_time, 1))
    return result


def run_candidate(name: str, args, protocol, options) -> dict:
    """Train and validate one candidate (cached)."""
    cand_options, iters, num_samples = CANDIDATES[name]
    if args.iters is None and is_shipped(cand_options, iters, num_samples, protocol):
        return dict(
            shipped_candidate(args, protocol, options),
            iters=iters,
            num_train=num_samples,
        )
    iters = args.iters or iters
    out_path = osp.join(args.work_dir, f'{name}_iters{iters}.json')
    merged = dict(options or {}, **cand_options)
    digest = protocol.config_digest(protocol.FM_PRETRAIN_CFG, merged, iters=iters)
    if osp.isfile(out_path):
        with open(out_path) as f:
            cached = json.load(f)
        if cached.get('config_digest') == digest:
            return cached
    work = osp.join(args.work_dir, f'{name}_iters{iters}')
    run_args = argparse.Namespace(
        work_dir=args.work_dir, num_train=num_samples, batch=64, num_val=500
    )
    cfg = protocol.prepare_cfg(
        protocol.FM_PRETRAIN_CFG, work, run_args, 0, iters, merged
    )
    runner = Runner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    result = dict(
        twin_accuracy(runner.model, runner.build_dataloader(cfg.val_dataloader)),
        iters=iters,
        num_train=num_samples,
        train_time_s=round(time.perf_counter() - start, 1),
        config_digest=digest,
    )
    protocol.write_json(out_path, result)
    return result


def _train_time(res: dict) -> str:
    seconds = res.get('train_time_s')
    return 'earlier run (cached checkpoint)' if seconds is None else f'{seconds:.0f} s'


def main() -> None:
    args = parse_args()
    protocol = load_protocol()
    protocol.setup(args.threads)
    options = protocol.data_root_options(args.data_root)
    results = {}
    for name in args.candidates:
        results[name] = run_candidate(name, args, protocol, options)
        res = results[name]
        print(
            f'[{name}] top-1 {res["top1"]:.2f} F1 {res["f1"]:.2f} '
            f'(training: {_train_time(res)})',
            flush=True,
        )
    print('| candidate | iterations | training images | top-1 | F1 | training |')
    print('|---|---|---|---|---|---|')
    for name, res in results.items():
        print(
            f'| {name} | {res["iters"]} | {res["num_train"]} | {res["top1"]:.2f} '
            f'| {res["f1"]:.2f} | {_train_time(res)} |'
        )
    report = dict(candidates=results, torch_threads=torch.get_num_threads())
    print(json.dumps(report))


if __name__ == '__main__':
    main()
