"""Synthetic ablation of ACR that can tell the mechanism apart.

Every run starts from the same backbone pretrained on a *different* synthetic
classification task (the stand-in for ImageNet weights), then fine-tunes for
the same number of iterations. Variants (``--variants``), each one config
file (the ablations are ``configs/acr/acr-<ablation>_*`` and
``configs/acr/uniform-attn_*``; ``VARIANTS`` maps the names to the files):

- ``baseline``: ViT-CAM, one view.
- ``two_view``: compute-matched control: two views (flip), the model's own
  losses on both, no consistency term (alpha = 0).
- ``uniform_attn``: ViT-CAM with every attention map forced to uniform (the
  state the official loss can reach trivially).
- ``acr_flip``: ACR, official formulation (L1, class rows + affinities, all
  layers, no stop-gradient), flip view.
- ``acr_entcap``: ACR + an attention-entropy cap (uniform attention pays a
  penalty, so it cannot satisfy the loss trivially).
- ``acr_stopgrad``: ACR with a stop-gradient on view 2.
- ``acr_rescale``: ACR with a rescaled second view (token resampling R A R^T).
- ``toco_*`` / ``mct_*``: the same protocol for the ToCo-style single-stage
  model and the MCTformer-V2-style multi-class-token model (their synthetic
  configs): ``_baseline``, ``_two_view`` (compute-matched, alpha = 0),
  ``_uniform_attn`` and ``_acr`` (their ACR configs: ToCo with the CAM term,
  MCTformer with C class-token rows; ``mct1_*``: MCTformer-V1, baseline,
  two-view control and ACR). Paired differences are taken against
  the baseline of the same model and seed. ToCo's iteration schedule (seg
  loss after 10 % of the run) is scaled to ``--iters``; ToCo also reports
  its decoder's mIoU (``seg_mIoU``), its CAM columns are its patch CAM.
- ``fm_*`` (``--benchmark fashion_mnist``): ViT-CAM on the Fashion-MNIST
  benchmark of real item pixels (docs/fashion_mnist.md), pretrained on its own
  twin: ``fm_baseline``, ``fm_two_view`` (compute-matched), ``fm_uniform_attn``
  and ``fm_acr`` (official ACR, alpha 10; ``--alpha 125`` for the published
  weight), and the same four rows for ToCo (``fm_toco_*``) and MCTformer-V2
  (``fm_mct_*``, 10 class tokens, evaluated with its own maps and the
  gradient head) on the same backbone. Its items have no part annotation:
  ``body_*`` is the whole item.

Each trained model is evaluated with its patch CAM and, for the variants in
``--grad-head``, with the class-token-gradient CAM head. Reported per run:
best-threshold CAM mIoU, mIoU at the configured threshold, head/body recall,
background FP, body (and head) recall at a 10 % background-FP budget, area
under the body-recall / bg-FP curve, classification F1 of the token and patch
heads, per-layer normalised attention entropy, wall time. Then mean +/- std
over seeds and paired differences against the baseline of the same seed, and
for every run with an ACR loss the paired difference to the compute-matched
two-view control of its model with a verdict (``helps`` / ``hurts`` beyond 2
standard deviations of the paired differences, else ``no effect``). Two
trivial predictors (all background; whole image = image labels) are scored by
the same metric.

Usage::

    python benchmarks/synthetic_ablation.py                     # full ablation
    python benchmarks/synthetic_ablation.py --variants baseline --seeds 0 \
        --iters 600                                             # ViT-CAM only
    python benchmarks/synthetic_ablation.py --variants toco_baseline \
        toco_two_view toco_uniform_attn toco_acr                # ToCo rows
    python benchmarks/synthetic_ablation.py --benchmark fashion_mnist  # fm_* rows

Runs are cached under ``--work-dir`` (default ``work_dirs/<benchmark>_ablation``;
one JSON per run), so an interrupted ablation resumes where it stopped; a
cached run or pretraining checkpoint whose config (or pretrained start) has
changed since is trained again. A run's file name carries every setting
that differs from the defaults (``--iters``, ``--batch``, ``--pretrain-iters``,
``--no-pretrain``, ``--num-train``, ``--num-val``, and ``--alpha`` for the
variants with an ACR loss), so runs of other settings are never mixed up;
e.g. an alpha sweep of MCTformer + ACR against the cached baselines::

    python benchmarks/synthetic_ablation.py --variants mct_baseline mct_acr \
        --alpha 3

The last line printed is one JSON object.
"""

import argparse
import hashlib
import json
import math
import os
import os.path as osp
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from typing import Dict, Optional

import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import Runner
from mmseg.evaluation import IoUMetric
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules

import acr_plugin  # noqa: F401  (registers components)
from acr_plugin.acr import UniformAttention
from acr_plugin.acr.attention.attention_capture import AttentionCapture
from acr_plugin.acr.attention.attention_ops import attention_entropy
from acr_plugin.evaluation import CAMMetric
from acr_plugin.evaluation.multilabel_f1_metric import multilabel_f1_counts
from acr_plugin.hosts.toco.toco import CAM_SEG_LOGITS
from acr_plugin.structures import stack_img_labels

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PRETRAIN_CFG = (
    'configs/vit_cam/vit-cls_tiny-p8_1xb64-1200it_synthetic-pretrain-64x64.py'
)
VIT_CAM_CFG = 'configs/vit_cam/vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py'
ACR_CFG = 'configs/acr/acr_vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py'

TOCO_CFG = 'configs/toco/toco_tiny-p8_1xb32-600it_synthetic-64x64.py'
ACR_TOCO_CFG = 'configs/acr/acr_toco_tiny-p8_1xb32-600it_synthetic-64x64.py'
MCT_CFG = 'configs/mctformer/mctformer-v2_tiny-p8_1xb64-600it_synthetic-64x64.py'
ACR_MCT_CFG = 'configs/acr/acr_mctformer-v2_tiny-p8_1xb64-600it_synthetic-64x64.py'
MCT1_CFG = 'configs/mctformer/mctformer-v1_tiny-p8_1xb64-600it_synthetic-64x64.py'
ACR_MCT1_CFG = 'configs/acr/acr_mctformer-v1_tiny-p8_1xb64-600it_synthetic-64x64.py'

#: the Fashion-MNIST benchmark (docs/fashion_mnist.md): its own pretraining twin
FM = '_tiny-r-p8_1xb64-600it_fashion-mnist-64x64.py'
FM_TOCO = '_tiny-r-p8_1xb32-600it_fashion-mnist-64x64.py'
FM_PRETRAIN_CFG = (
    'configs/vit_cam/vit-cls_tiny-r-p8_1xb64-2400it_fashion-mnist-pretrain-64x64.py'
)
FM_VIT_CAM_CFG = f'configs/vit_cam/vit-cam{FM}'
#: benchmark -> its pretraining config and the config whose validation split
#: the trivial predictors are scored on
BENCHMARKS = dict(
    synthetic=dict(pretrain=PRETRAIN_CFG, trivial=VIT_CAM_CFG),
    fashion_mnist=dict(pretrain=FM_PRETRAIN_CFG, trivial=FM_VIT_CAM_CFG),
)


def ablation_cfg(model: str, batch: int = 64) -> str:
    """The ablation config ``configs/acr/<model>_tiny-p8_1xb<batch>-600it_...``."""
    return f'configs/acr/{model}_tiny-p8_1xb{batch}-600it_synthetic-64x64.py'


MCT_GRAD_HEAD = dict(prefix_row='class')
#: ``config`` is the file a run trains (the ablations are config files under
#: ``configs/acr/``); ``family`` names the model: paired differences are taken
#: against the ``baseline`` variant of the same family and seed
VARIANTS: Dict[str, dict] = {
    'baseline': dict(config=VIT_CAM_CFG, family='vit_cam', baseline=True),
    'two_view': dict(config=ablation_cfg('acr-alpha0_vit-cam'), control=True),
    'uniform_attn': dict(config=ablation_cfg('uniform-attn_vit-cam')),
    'acr_flip': dict(config=ACR_CFG),
    'acr_entcap': dict(config=ablation_cfg('acr-entcap_vit-cam')),
    'acr_stopgrad': dict(config=ablation_cfg('acr-stopgrad_vit-cam')),
    'acr_rescale': dict(config=ablation_cfg('acr-rescale_vit-cam')),
    'toco_baseline': dict(config=TOCO_CFG, family='toco', baseline=True),
    'toco_two_view': dict(
        config=ablation_cfg('acr-alpha0_toco', 32), family='toco', control=True
    ),
    'toco_uniform_attn': dict(
        config=ablation_cfg('uniform-attn_toco', 32), family='toco'
    ),
    'toco_acr': dict(config=ACR_TOCO_CFG, family='toco'),
    'mct_baseline': dict(
        config=MCT_CFG, family='mctformer', baseline=True, grad_head=MCT_GRAD_HEAD
    ),
    'mct_two_view': dict(
        config=ablation_cfg('acr-alpha0_mctformer-v2'),
        family='mctformer',
        control=True,
        grad_head=MCT_GRAD_HEAD,
    ),
    'mct_uniform_attn': dict(
        config=ablation_cfg('uniform-attn_mctformer-v2'), family='mctformer'
    ),
    'mct_acr': dict(config=ACR_MCT_CFG, family='mctformer', grad_head=MCT_GRAD_HEAD),
    'mct1_baseline': dict(config=MCT1_CFG, family='mctformer_v1', baseline=True),
    'mct1_two_view': dict(
        config=ablation_cfg('acr-alpha0_mctformer-v1'),
        family='mctformer_v1',
        control=True,
    ),
    'mct1_acr': dict(config=ACR_MCT1_CFG, family='mctformer_v1'),
}


def fashion_mnist_family(
    prefix: str, family: str, baseline: str, model: str, suffix: str, **extra
) -> Dict[str, dict]:
    """The four Fashion-MNIST rows of one host: ``<prefix>baseline`` (its
    config ``configs/<baseline><suffix>``), ``<prefix>two_view`` (the
    compute-matched control), ``<prefix>uniform_attn`` and ``<prefix>acr``
    (``configs/acr/{acr-alpha0,uniform-attn,acr}_<model><suffix>``)."""
    common = dict(family=family, benchmark='fashion_mnist', **extra)
    return {
        f'{prefix}baseline': dict(
            config=f'configs/{baseline}{suffix}', baseline=True, **common
        ),
        f'{prefix}two_view': dict(
            config=f'configs/acr/acr-alpha0_{model}{suffix}', control=True, **common
        ),
        f'{prefix}uniform_attn': dict(
            config=f'configs/acr/uniform-attn_{model}{suffix}', **common
        ),
        f'{prefix}acr': dict(config=f'configs/acr/acr_{model}{suffix}', **common),
    }


VARIANTS.update(
    fashion_mnist_family('fm_', 'fm_vit_cam', 'vit_cam/vit-cam', 'vit-cam', FM)
)
VARIANTS.update(
    fashion_mnist_family('fm_toco_', 'fm_toco', 'toco/toco', 'toco', FM_TOCO)
)
VARIANTS.update(
    fashion_mnist_family(
        'fm_mct_',
        'fm_mctformer',
        'mctformer/mctformer-v2',
        'mctformer-v2',
        FM,
        grad_head=MCT_GRAD_HEAD,
    )
)
for _spec in VARIANTS.values():
    _spec.setdefault('family', 'vit_cam')
    _spec.setdefault('benchmark', 'synthetic')
DEFAULT_VARIANTS = [
    'baseline',
    'two_view',
    'uniform_attn',
    'acr_flip',
    'acr_entcap',
    'acr_stopgrad',
    'acr_rescale',
    'toco_baseline',
    'toco_two_view',
    'toco_uniform_attn',
    'toco_acr',
    'mct_baseline',
    'mct_two_view',
    'mct_uniform_attn',
    'mct_acr',
    'mct1_baseline',
    'mct1_two_view',
    'mct1_acr',
]
DEFAULT_FM_VARIANTS = [
    'fm_baseline',
    'fm_two_view',
    'fm_uniform_attn',
    'fm_acr',
    'fm_toco_baseline',
    'fm_toco_two_view',
    'fm_toco_uniform_attn',
    'fm_toco_acr',
    'fm_mct_baseline',
    'fm_mct_two_view',
    'fm_mct_uniform_attn',
    'fm_mct_acr',
]
#: variants also evaluated with the gradient head unless --grad-head is given
DEFAULT_GRAD_HEAD = dict(
    synthetic=[
        'baseline',
        'acr_flip',
        'two_view',
        'mct_baseline',
        'mct_two_view',
        'mct_acr',
    ],
    fashion_mnist=[v for v in DEFAULT_FM_VARIANTS if 'toco' not in v],
)
KEY_METRICS = [
    'mIoU_best',
    'mIoU_at_thr',
    'body_recall_at_fp0.10',
    'body_fp_auc',
    'head_recall_at_fp0.10',
    'head_recall',
    'body_recall',
    'bg_fp',
    'f1_token',
    'f1_patch',
    'seg_mIoU',
    'attn_entropy_mean',
]


#: defaults of the settings that change a run's result (its cache key)
RUN_DEFAULTS = dict(
    iters=150, batch=32, pretrain_iters=600, num_train=4000, num_val=300
)
#: pretraining iterations per benchmark (synthetic: the protocol's 600;
#: Fashion-MNIST: its pretraining config's 2,400, chosen on the twin's
#: validation accuracy, docs/fashion_mnist.md)
PRETRAIN_ITERS = dict(synthetic=600, fashion_mnist=2400)


def run_defaults(benchmark: str = 'synthetic') -> dict:
    """:data:`RUN_DEFAULTS` of ``benchmark``."""
    return dict(RUN_DEFAULTS, pretrain_iters=PRETRAIN_ITERS[benchmark])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--benchmark',
        default='synthetic',
        choices=sorted(BENCHMARKS),
        help='synthetic (embedded) or fashion_mnist (docs/fashion_mnist.md)',
    )
    parser.add_argument(
        '--work-dir', default=None, help='default: work_dirs/<benchmark>_ablation'
    )
    parser.add_argument(
        '--variants',
        nargs='+',
        default=None,
        choices=sorted(VARIANTS),
        help="default: every variant of the benchmark ('fm_*' for fashion_mnist)",
    )
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument(
        '--iters',
        type=int,
        default=RUN_DEFAULTS['iters'],
        help='fine-tuning iterations per run',
    )
    parser.add_argument(
        '--batch', type=int, default=RUN_DEFAULTS['batch'], help='fine-tuning batch'
    )
    parser.add_argument(
        '--pretrain-iters',
        type=int,
        default=None,
        help='default: ' + ', '.join(f'{k} {v}' for k, v in PRETRAIN_ITERS.items()),
    )
    parser.add_argument(
        '--no-pretrain',
        action='store_true',
        help='random init instead of the pretrained backbone',
    )
    parser.add_argument(
        '--alpha', type=float, default=None, help='override the ACR loss weight'
    )
    parser.add_argument(
        '--grad-head',
        nargs='*',
        default=None,
        help='variants also evaluated with the gradient head (default: '
        + '; '.join(f'{k}: {" ".join(v)}' for k, v in DEFAULT_GRAD_HEAD.items())
        + ')',
    )
    parser.add_argument(
        '--data-root',
        default=None,
        help='fashion_mnist: folder of the Fashion-MNIST IDX files (default: '
        "the configs', /usr/share/datasets/fashion-mnist)",
    )
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch threads (1 avoids oversubscription on shared CPUs)',
    )
    parser.add_argument('--num-train', type=int, default=RUN_DEFAULTS['num_train'])
    parser.add_argument('--num-val', type=int, default=RUN_DEFAULTS['num_val'])
    args = parser.parse_args()
    if args.work_dir is None:
        args.work_dir = f'work_dirs/{args.benchmark}_ablation'
    if args.pretrain_iters is None:
        args.pretrain_iters = PRETRAIN_ITERS[args.benchmark]
    if args.variants is None:
        args.variants = (
            DEFAULT_FM_VARIANTS
            if args.benchmark == 'fashion_mnist'
            else DEFAULT_VARIANTS
        )
    if args.grad_head is None:
        args.grad_head = DEFAULT_GRAD_HEAD[args.benchmark]
    foreign = [v for v in args.variants if VARIANTS[v]['benchmark'] != args.benchmark]
    if foreign:
        parser.error(
            f'--variants {" ".join(foreign)} belong to another benchmark than '
            f'--benchmark {args.benchmark} (whose pretrained backbone they would use)'
        )
    if args.data_root is not None and args.benchmark != 'fashion_mnist':
        parser.error('--data-root is for --benchmark fashion_mnist')
    return args


def data_root_options(data_root: Optional[str]) -> Optional[dict]:
    """``--cfg-options``-style keys pointing every split at ``data_root``."""
    if data_root is None:
        return None
    return {
        f'{key}.dataset.data_root': data_root
        for key in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    }


def config_digest(path: str, cfg_options: Optional[dict] = None, **extra) -> str:
    """Short hash of the config at ``path`` (after ``cfg_options``) and
    ``extra``: a cached run or checkpoint is reused only while it matches."""
    cfg = Config.fromfile(osp.join(ROOT, path))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    text = json.dumps([cfg.to_dict(), extra], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def write_json(path: str, obj) -> None:
    """Atomic JSON write."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=osp.dirname(path), suffix='.tmp')
    with os.fdopen(fd, 'w') as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def prepare_cfg(
    path: str,
    work_dir: str,
    args,
    seed: int,
    iters: int,
    cfg_options: Optional[dict] = None,
) -> Config:
    """The config at ``path`` set up for one run of this protocol.

    ``cfg_options`` (``--cfg-options``-style keys, e.g.
    ``{'train_dataloader.dataset.data_root': ...}``) is merged first.
    """
    cfg = Config.fromfile(osp.join(ROOT, path))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=seed)
    cfg.log_level = 'INFO'
    cfg.visualizer.name = f'vis_{osp.basename(work_dir)}_{seed}_{time.time()}'
    cache = osp.join(args.work_dir, 'cache')
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[key]
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.dataset.cache_dir = cache
    cfg.train_dataloader.dataset.num_samples = args.num_train
    cfg.train_dataloader.batch_size = args.batch
    cfg.val_dataloader.dataset.num_samples = args.num_val
    cfg_max_iters = cfg.train_cfg.max_iters
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters + 1  # evaluated by this script
    for sched in cfg.param_scheduler:
        if sched.get('type') == 'OneCycleLR':
            sched.total_steps = iters
    # iteration schedules (ToCo's seg-loss warm-up) keep their share of the run
    for hook in cfg.get('custom_hooks', []):
        if hook.get('type') == 'TrainPhaseHook':
            total = cfg_max_iters
            previous = -1
            for phase in hook.phases:
                begin = int(round(phase.begin * iters / total)) if phase.begin else 0
                phase.begin = previous = max(begin, previous + 1)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', by_epoch=False, interval=iters, max_keep_ckpts=1
    )
    cfg.default_hooks.logger.interval = 100
    cfg.default_hooks.visualization = dict(type='CAMVisualizationHook')
    return cfg


def pretrain_checkpoint(
    args, config: str = PRETRAIN_CFG, cfg_options: Optional[dict] = None
) -> str:
    """Where :func:`pretrain` keeps the checkpoint of ``config``: under the
    config's name and digest, so a changed config is trained again."""
    stem = osp.splitext(osp.basename(config))[0]
    tag = config_digest(config, cfg_options)
    work = osp.join(args.work_dir, 'pretrain', f'{stem}_{tag}')
    return osp.join(work, f'iter_{args.pretrain_iters}.pth')


def pretrain(
    args, config: str = PRETRAIN_CFG, cfg_options: Optional[dict] = None
) -> str:
    """Pretrain the backbone with ``config`` (cached under the config's name
    and digest, so a changed config is retrained); its checkpoint's path.

    The number of images, batch and validation images are the config's.
    """
    ckpt = pretrain_checkpoint(args, config, cfg_options)
    if osp.isfile(ckpt):
        return ckpt
    work = osp.dirname(ckpt)
    cfg = prepare_cfg(config, work, args, 0, args.pretrain_iters, cfg_options)
    source = Config.fromfile(osp.join(ROOT, config))
    if cfg_options:
        source.merge_from_dict(cfg_options)
    for key in ('train_dataloader', 'val_dataloader'):
        cfg[key].dataset.num_samples = source[key].dataset.num_samples
        cfg[key].batch_size = source[key].batch_size
    runner = Runner.from_cfg(cfg)
    runner.train()
    return ckpt


def inner_model(model):
    return model.model if hasattr(model, 'acr_loss') else model


#: image-level logits of each model family -> F1 key
F1_KEYS = dict(token_logits='f1_token', patch_logits='f1_patch', logits='f1_patch')


@torch.no_grad()
def evaluate(model, dataloader, grad_head=None) -> Dict[str, float]:
    """CAM metrics, per-head F1, decoder mIoU (ToCo) and per-layer attention
    entropy on a split."""
    wsss = inner_model(model)
    wsss.eval()
    metric = CAMMetric(fp_budget=0.10)
    metric.dataset_meta = dataloader.dataset.metainfo
    seg_metric = None
    if hasattr(wsss, 'decode_head'):
        seg_metric = IoUMetric(iou_metrics=['mIoU'])
        seg_metric.dataset_meta = dataloader.dataset.metainfo
    f1_counts: Dict[str, torch.Tensor] = {}
    entropy_sum = None
    num_images = 0
    for batch in dataloader:
        data = model.data_preprocessor(batch, False)
        inputs, samples = data['inputs'], data['data_samples']
        labels = stack_img_labels(samples)
        with AttentionCapture(wsss.backbone) as cap:
            outputs = wsss.forward_outputs(inputs)
            attn = cap.pop()
        ent = torch.stack([attention_entropy(a).sum() for a in attn])
        entropy_sum = ent if entropy_sum is None else entropy_sum + ent
        num_images += inputs.shape[0]
        for head, key in F1_KEYS.items():
            if head in outputs:
                counts = multilabel_f1_counts(outputs[head], labels)
                f1_counts[key] = f1_counts.get(key, 0) + counts
        if grad_head is None:
            preds = wsss.predict(inputs, samples)
        else:
            preds = grad_head.predict(wsss, inputs, samples)
        if seg_metric is not None and grad_head is None:
            seg_metric.process(batch, [p.to_dict() for p in preds])
            for p in preds:  # the CAM prediction, in the CAMMetric layout
                p.seg_logits = p.get(CAM_SEG_LOGITS)
        metric.process(batch, preds)
    results = metric.compute_metrics(metric.results)
    if seg_metric is not None and grad_head is None:
        results['seg_mIoU'] = float(
            seg_metric.compute_metrics(seg_metric.results)['mIoU']
        )
    for key, counts in f1_counts.items():
        tp, fp, fn = counts.double().sum(0)
        results[key] = round(100 * (2 * tp / (2 * tp + fp + fn)).item(), 2)
    entropy = (entropy_sum / num_images).tolist()
    results['attn_entropy_per_layer'] = [round(e, 4) for e in entropy]
    results['attn_entropy_mean'] = round(sum(entropy) / len(entropy), 4)
    return results


def settings_tag(args, has_acr_loss: bool) -> str:
    """File-name suffix naming the settings that differ from the defaults."""
    defaults = run_defaults(getattr(args, 'benchmark', 'synthetic'))
    parts = [
        f'{key.replace("_", "")}{getattr(args, key)}'
        for key, default in defaults.items()
        if getattr(args, key) != default
    ]
    if args.no_pretrain:
        parts.append('scratch')
    if has_acr_loss and args.alpha is not None:
        parts.append(f'alpha{args.alpha:g}')
    return ''.join(f'_{part}' for part in parts)


def uses_uniform_attention(cfg: Config) -> bool:
    """Whether ``cfg`` trains with ``UniformAttentionHook`` (a control run)."""
    hooks = cfg.get('custom_hooks') or []
    return any(hook.get('type') == 'UniformAttentionHook' for hook in hooks)


def run_variant(
    name: str,
    seed: int,
    args,
    ckpt,
    spec: Optional[dict] = None,
    cfg_options: Optional[dict] = None,
) -> Dict[str, dict]:
    """Train and evaluate one run (cached): variant ``name`` (its ``spec``,
    default ``VARIANTS[name]``) with ``seed``."""
    spec = VARIANTS[name] if spec is None else spec
    cfg = prepare_cfg(spec['config'], '', args, seed, args.iters, cfg_options)
    uniform = uses_uniform_attention(cfg)
    has_acr_loss = bool(cfg.model.get('acr_loss'))
    if args.alpha is not None and has_acr_loss:
        cfg.model.acr_loss.loss_weight = args.alpha
    run_name = f'{name}_s{seed}{settings_tag(args, has_acr_loss)}'
    out_path = osp.join(args.work_dir, 'runs', f'{run_name}.json')
    digest = config_digest(
        spec['config'],
        cfg_options,
        alpha=args.alpha if has_acr_loss else None,
        pretrained=ckpt,
    )
    cached = None
    if osp.isfile(out_path):
        with open(out_path) as f:
            cached = json.load(f)
        if cached.pop('config_digest', None) != digest:
            print(
                f'warning: {out_path} was made with another config or pretrained '
                'checkpoint: training it again',
                file=sys.stderr,
            )
            cached = None
    if cached is not None:
        if name in args.grad_head and 'grad' not in cached:
            print(
                f'warning: {out_path} was run without --grad-head {name}; delete '
                'it to add the gradient-head evaluation',
                file=sys.stderr,
            )
        return cached
    cfg.work_dir = osp.join(args.work_dir, 'runs', run_name)
    cfg.visualizer.name = f'vis_{run_name}_{time.time()}'
    backbone = (
        cfg.model.model.backbone
        if cfg.model.type == 'ACRSegmentor'
        else cfg.model.backbone
    )
    if ckpt is not None:
        backbone.init_cfg = dict(type='Pretrained', checkpoint=ckpt)
    runner = Runner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    train_time = time.perf_counter() - start
    model = runner.model
    loader = runner.build_dataloader(cfg.val_dataloader)
    result = {}
    head = None
    if name in args.grad_head:
        head_cfg = dict(
            type='ClsTokenGradCAMHead', variant='grad', start_layer=-2, flip=True
        )
        head_cfg.update(spec.get('grad_head', {}))
        head = MODELS.build(head_cfg)
    # a uniform-attention control is evaluated as it was trained: uniform
    with UniformAttention(inner_model(model).backbone) if uniform else nullcontext():
        result['patch'] = evaluate(model, loader)
        if head is not None:
            result['grad'] = evaluate(model, loader, grad_head=head)
    for res in result.values():
        res['train_time_s'] = round(train_time, 1)
    write_json(out_path, dict(result, config_digest=digest))
    return result


def trivial_baselines(
    args, config: str = VIT_CAM_CFG, cfg_options: Optional[dict] = None
) -> Dict[str, dict]:
    """All-background and whole-image-is-every-labelled-class predictors on
    the validation split of ``config``."""
    work_dir = osp.join(args.work_dir, 'trivial')
    cfg = prepare_cfg(config, work_dir, args, 0, 1, cfg_options)
    loader = Runner.build_dataloader(cfg.val_dataloader)
    out = {}
    for name in ('all_background', 'whole_image_labels'):
        metric = CAMMetric(fp_budget=0.10, bg_thr=0.5)
        metric.dataset_meta = loader.dataset.metainfo
        for batch in loader:
            preds = []
            for sample in batch['data_samples']:
                h, w = sample.gt_sem_seg.shape
                labels = sample.img_labels.float()
                cams = torch.zeros(len(labels), h, w)
                if name == 'whole_image_labels':
                    # every labelled class scores 1 everywhere: argmax picks
                    # the lowest labelled class id at every pixel
                    cams += labels[:, None, None]
                bg = torch.full((1, h, w), 0.5)
                preds.append(
                    dict(
                        seg_logits=dict(data=torch.cat([bg, cams])),
                        gt_sem_seg=dict(data=sample.gt_sem_seg.data),
                        gt_part_map=dict(data=sample.gt_part_map.data),
                    )
                )
            metric.process(batch, preds)
        out[name] = metric.compute_metrics(metric.results)
    return out


def family_member(variant: str, role: str) -> Optional[str]:
    """The variant of ``variant``'s model family with ``role`` (``'baseline'``
    or ``'control'``: the compute-matched two-view run), if any."""
    family = VARIANTS[variant]['family']
    return next(
        (
            name
            for name, spec in VARIANTS.items()
            if spec['family'] == family and spec.get(role)
        ),
        None,
    )


def has_acr_loss(variant: str) -> bool:
    """Whether ``variant``'s config trains with an ACR consistency loss."""
    cfg = Config.fromfile(osp.join(ROOT, VARIANTS[variant]['config']))
    return bool(cfg.model.get('acr_loss'))


#: metrics a verdict is given on (when the run reports them)
VERDICT_METRICS = ['mIoU_best', 'body_recall_at_fp0.10', 'seg_mIoU']


def verdict(mean: float, std: float) -> str:
    """``helps`` / ``hurts`` when the paired mean is beyond 2 standard
    deviations of the paired differences, else ``no effect``."""
    if mean > 2 * std:
        return 'helps'
    if mean < -2 * std:
        return 'hurts'
    return 'no effect'


def _reported(result: dict, key: str) -> bool:
    """Whether a run reports ``key`` as a number (NaN: not measurable, e.g.
    head recall on Fashion-MNIST, which has no part annotation)."""
    return key in result and not math.isnan(result[key])


def paired(runs: Dict[int, dict], other: Dict[int, dict], key: str) -> list:
    """Per-seed differences ``runs - other`` of ``key`` over common seeds."""
    return [
        runs[s][key] - other[s][key]
        for s in sorted(runs)
        if s in other and _reported(runs[s], key) and _reported(other[s], key)
    ]


def verdicts(results) -> Dict[str, dict]:
    """ACR against the compute-matched control of its family, paired per
    seed, for every run with an ACR loss: mean, std and verdict per metric."""
    out = {}
    for (variant, loc), runs in results.items():
        control = family_member(variant, 'control')
        if control is None or not has_acr_loss(variant):
            continue
        other = results.get((control, loc))
        if other is None:
            continue
        row = {}
        for key in VERDICT_METRICS:
            diffs = paired(runs, other, key)
            if len(diffs) < 2:
                continue
            mean, std = statistics.mean(diffs), statistics.stdev(diffs)
            row[key] = dict(
                mean=mean, std=std, values=diffs, verdict=verdict(mean, std)
            )
        if row:
            out[f'{variant}/{loc}'] = dict(row, control=control)
    return out


def summarise(results, args) -> dict:
    summary = {}
    for (variant, loc), runs in results.items():
        row = {}
        for key in KEY_METRICS:
            values = [r[key] for r in runs.values() if _reported(r, key)]
            if values:
                row[key] = dict(
                    mean=statistics.mean(values),
                    std=statistics.stdev(values) if len(values) > 1 else 0.0,
                    values=values,
                )
            base_name = family_member(variant, 'baseline')
            base = results.get((base_name, loc))
            if values and base is not None and variant != base_name:
                diffs = paired(runs, base, key)
                if diffs:
                    row[key]['paired_diff_mean'] = statistics.mean(diffs)
                    row[key]['paired_diff_std'] = (
                        statistics.stdev(diffs) if len(diffs) > 1 else 0.0
                    )
        layers = [r['attn_entropy_per_layer'] for r in runs.values()]
        row['attn_entropy_per_layer'] = [
            round(statistics.mean(col), 4) for col in zip(*layers)
        ]
        row['train_time_s'] = statistics.mean(r['train_time_s'] for r in runs.values())
        summary[f'{variant}/{loc}'] = row
    return summary


def print_table(summary, trivial) -> None:
    cols = [
        'mIoU_best',
        'body_recall_at_fp0.10',
        'body_fp_auc',
        'head_recall_at_fp0.10',
        'f1_token',
        'f1_patch',
        'seg_mIoU',
        'attn_entropy_mean',
    ]
    print('| run / localisation | ' + ' | '.join(cols) + ' | entropy per layer |')
    print('|' + '---|' * (len(cols) + 2))
    for name, row in summary.items():
        cells = []
        for col in cols:
            if col not in row:
                cells.append('-')
                continue
            stats = row[col]
            cell = (
                f'{stats["mean"]:.2f} +/- {stats["std"]:.2f}'
                if col != 'attn_entropy_mean'
                else f'{stats["mean"]:.3f}'
            )
            if 'paired_diff_mean' in stats and col != 'attn_entropy_mean':
                cell += (
                    f' ({stats["paired_diff_mean"]:+.2f} +/- '
                    f'{stats["paired_diff_std"]:.2f})'
                )
            cells.append(cell)
        layers = ', '.join(f'{e:.2f}' for e in row['attn_entropy_per_layer'])
        print(f'| {name} | ' + ' | '.join(cells) + f' | {layers} |')
    for name, res in trivial.items():
        cells = [f'{res[c]:.2f}' if c in res else '-' for c in cols]
        print(f'| trivial: {name} | ' + ' | '.join(cells) + ' | - |')


def print_verdicts(table: Dict[str, dict]) -> None:
    """ACR - compute-matched control, paired per seed (see :func:`verdicts`)."""
    if not table:
        return
    heads = ' | '.join(f'ACR - control: {k}' for k in VERDICT_METRICS)
    print(f'\n| run / localisation | {heads} |')
    print('|' + '---|' * (len(VERDICT_METRICS) + 1))
    for name, row in table.items():
        cells = [
            f'{row[k]["mean"]:+.2f} +/- {row[k]["std"]:.2f} ({row[k]["verdict"]})'
            if k in row
            else '-'
            for k in VERDICT_METRICS
        ]
        print(f'| {name} vs {row["control"]} | ' + ' | '.join(cells) + ' |')


def setup(threads: int) -> None:
    """Process set-up of a protocol run: registries, torch threads, logging."""
    # mmseg's registries as default scope even when every run is cached (no
    # Runner is built before the trivial baselines then)
    register_all_modules(init_default_scope=True)
    torch.set_num_threads(threads)
    MMLogger.get_instance('mmengine', log_level='WARNING')


def main() -> None:
    args = parse_args()
    setup(args.threads)
    start = time.perf_counter()
    bench = BENCHMARKS[args.benchmark]
    options = data_root_options(args.data_root)
    ckpt = None if args.no_pretrain else pretrain(args, bench['pretrain'], options)
    results: Dict[tuple, Dict[int, dict]] = {}
    for seed in args.seeds:
        for variant in args.variants:
            t0 = time.perf_counter()
            out = run_variant(variant, seed, args, ckpt, cfg_options=options)
            for loc, res in out.items():
                results.setdefault((variant, loc), {})[seed] = res
            print(
                f'[{variant} seed {seed}] '
                f'patch mIoU_best {out["patch"]["mIoU_best"]:.2f} '
                f'body@fp0.10 {out["patch"]["body_recall_at_fp0.10"]:.2f} '
                f'entropy {out["patch"]["attn_entropy_mean"]:.3f} '
                f'({time.perf_counter() - t0:.0f} s)',
                flush=True,
            )
    trivial = trivial_baselines(args, bench['trivial'], options)
    summary = summarise(results, args)
    print_table(summary, trivial)
    against_control = verdicts(results)
    print_verdicts(against_control)
    report = dict(
        benchmark=args.benchmark,
        summary=summary,
        verdicts=against_control,
        trivial=trivial,
        seeds=args.seeds,
        iters=args.iters,
        alpha=args.alpha,
        pretrained=not args.no_pretrain,
        wall_time_s=round(time.perf_counter() - start, 1),
        torch_threads=torch.get_num_threads(),
    )
    write_json(osp.join(args.work_dir, 'summary.json'), report)
    print(json.dumps(report))


if __name__ == '__main__':
    main()
