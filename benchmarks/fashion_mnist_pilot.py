"""Fashion-MNIST WSSS pilot: does a plain ViT-CAM show partial activation?

The protocol is the synthetic ablation's (``benchmarks/synthetic_ablation.py``,
loaded from this folder and reused function by function) on the Fashion-MNIST
configs: the tiny hybrid ViT is pretrained on single Fashion-MNIST items of
the ``'pretrain'`` pool (the stand-in for ImageNet weights; ``--pretrain-iters``,
20,000 images, batch 64: its config's), then ViT-CAM is fine-tuned for
``--iters`` iterations (batch ``--batch``) on composed images of the
``'train'`` pool and evaluated on ``--num-val`` images of the ``'val'`` pool
with the patch CAM and the class-token-gradient CAM head. Reported (CAMMetric, percent):

- ``object_recall_at_fp0.10``: share of item pixels predicted with their
  class at the lowest CAM threshold whose background false-positive rate is
  <= 10 % (CAMMetric's ``body_recall_at_fp0.10``: Fashion-MNIST has no part
  annotation, every item pixel is "body");
- ``mIoU_best`` (best background threshold of the sweep), ``mIoU_at_thr``,
  ``object_fp_auc``, classification F1, attention entropy;
- the same metrics for the two trivial predictors of the synthetic ablation:
  all background, and the whole image labelled with the image's classes.

The classification mAP of the fine-tuned model's image logits on the same
images (``partial_activation.classification_mAP``) says whether the classifier
whose CAMs are judged has learned the classes at all.

Partial activation, per item of the validation images at that same
10 %-budget threshold (patch CAM): the item's recall, the share of items
recalled < 50 %, the recall in the top / middle / bottom third of the item's
bounding box, the share of the item whose own-class CAM reaches half of its
peak on the item, and where that peak lies (0 = top, 1 = bottom; both over
the items their CAM reaches at all: ``items_zero_cam`` counts the others), per
class and over all items; ``pixel_recall`` (pixel-weighted over items) equals
``object_recall_at_fp0.10`` up to threshold rounding. A picture (image,
ground truth, CAM of the labelled classes, prediction at the threshold) of the
first ``--pictures`` validation images is written to
``<work-dir>/partial_activation_<run>.png``.

Usage::

    python benchmarks/fashion_mnist_pilot.py                 # seed 0
    python benchmarks/fashion_mnist_pilot.py --seed 1 --iters 600

Runs are cached under ``--work-dir`` as in the synthetic ablation (pretraining
checkpoint, one JSON per fine-tuning run). The last line printed is one JSON
object.
"""

import argparse
import importlib.util
import json
import os.path as osp
import statistics
import time
from typing import Dict, List, Optional

import numpy as np
import torch
from mmengine.config import Config
from mmengine.runner import Runner, load_checkpoint
from mmseg.registry import MODELS
from PIL import Image

import acr_plugin  # noqa: F401  (registers components)
from acr_plugin.structures import IMG_LABELS, PRED_IMG_LOGITS

HERE = osp.dirname(osp.abspath(__file__))
#: the ablation's Fashion-MNIST ViT-CAM baseline: the pilot and
#: ``synthetic_ablation.py --benchmark fashion_mnist`` share its cached runs
VARIANT = 'fm_baseline'
FP_BUDGET = 0.10
THRESHOLDS = np.arange(100) / 100  # CAMMetric's default sweep


def load_protocol():
    """``benchmarks/synthetic_ablation.py`` as a module (it is a script)."""
    path = osp.join(HERE, 'synthetic_ablation.py')
    spec = importlib.util.spec_from_file_location('synthetic_ablation', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/fashion_mnist_ablation')
    parser.add_argument('--seed', type=int, default=0, help='fine-tuning seed')
    parser.add_argument('--iters', type=int, default=150, help='fine-tuning iterations')
    parser.add_argument('--batch', type=int, default=32, help='fine-tuning batch')
    parser.add_argument(
        '--pretrain-iters',
        type=int,
        default=2400,
        help="pretraining iterations (its config's)",
    )
    parser.add_argument(
        '--no-pretrain',
        action='store_true',
        help='random init instead of the pretrained backbone',
    )
    parser.add_argument('--num-train', type=int, default=4000)
    parser.add_argument('--num-val', type=int, default=300)
    parser.add_argument(
        '--data-root',
        default=None,
        help="folder of the Fashion-MNIST IDX files (default: the configs', "
        '/usr/share/datasets/fashion-mnist)',
    )
    parser.add_argument(
        '--no-grad-head',
        action='store_true',
        help='skip the class-token-gradient CAM head evaluation',
    )
    parser.add_argument(
        '--pictures', type=int, default=12, help='validation images in the picture'
    )
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch threads (1 avoids oversubscription on shared CPUs)',
    )
    return parser.parse_args()


def object_metrics(metrics: Dict) -> Dict:
    """CAMMetric keys for whole items: ``body_*`` -> ``object_*``, no ``head_*``."""
    out = {}
    for key, value in metrics.items():
        if key.startswith('head_'):
            continue  # no part annotation: NaN
        out[key.replace('body_', 'object_')] = value
    return out


# ------------------------------------------------------------------ diagnosis
def _mean(values: List[float]) -> Optional[float]:
    values = [v for v in values if v is not None and not np.isnan(v)]
    return round(100 * statistics.mean(values), 2) if values else None


def _item_stats(
    cams: np.ndarray, fg_on: np.ndarray, fg_arg: np.ndarray, mask: np.ndarray, cls: int
) -> Dict[str, float]:
    """Diagnostics of one item (``mask``) of class ``cls`` (0-based)."""
    hit = fg_on & (fg_arg == cls + 1)
    rows = np.flatnonzero(mask.any(1))
    top, height = rows[0], rows[-1] - rows[0] + 1
    ys, xs = np.nonzero(mask)
    third = np.minimum(3 * (ys - top) // height, 2)
    own = cams[cls + 1][mask]
    peak = int(np.argmax(own))
    dead = bool(own[peak] <= 0)  # no activation on the item: no peak
    return dict(
        pixels=int(mask.sum()),
        hits=int(hit[mask].sum()),
        recall=float(hit[mask].mean()),
        third_recall=[
            float(hit[ys[third == k], xs[third == k]].mean())
            if (third == k).any()
            else np.nan
            for k in range(3)
        ],
        zero_cam=float(dead),
        half_peak=np.nan if dead else float((own >= 0.5 * own[peak]).mean()),
        peak_y=np.nan if dead else float((ys[peak] - top + 0.5) / height),
    )


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over classes with positives of the average precision (percent)."""
    aps = []
    for c in range(labels.shape[1]):
        truth = labels[np.argsort(-scores[:, c], kind='stable'), c]
        if truth.sum() == 0:
            continue
        precision = np.cumsum(truth) / np.arange(1, len(truth) + 1)
        aps.append(float((precision * truth).sum() / truth.sum()))
    return round(100 * statistics.mean(aps), 2) if aps else float('nan')


def _colour(labels: np.ndarray, palette: List[List[int]]) -> np.ndarray:
    return np.asarray(palette, np.uint8)[labels]


def _heat(values: np.ndarray) -> np.ndarray:
    """A [0, 1] map as RGB: black -> red -> yellow -> white."""
    v = np.clip(values, 0, 1)[..., None]
    rgb = np.concatenate([3 * v, 3 * v - 1, 3 * v - 2], -1)
    return (255 * np.clip(rgb, 0, 1)).astype(np.uint8)


@torch.no_grad()
def diagnose(
    cfg: Config, ckpt: str, picture: str, num_pictures: int
) -> Dict[str, object]:
    """Per-item recall and CAM spread at the 10 %-budget threshold."""
    model = MODELS.build(cfg.model)
    load_checkpoint(model, ckpt, map_location='cpu', logger='silent')
    model.eval()
    loader = Runner.build_dataloader(cfg.val_dataloader)
    dataset = loader.dataset
    palette = dataset.metainfo['palette']
    bg_hist = np.zeros(len(THRESHOLDS) + 1, np.int64)
    kept = []  # (sample index, cams, gt) of every validation image
    scores, labels = [], []
    for batch in loader:
        data = model.data_preprocessor(batch, False)
        for pred in model.predict(data['inputs'], data['data_samples']):
            cams = pred.seg_logits.data.float().numpy()  # (C + 1, H, W)
            gt = pred.gt_sem_seg.data[0].numpy()
            index = int(pred.img_path.rsplit('/', 1)[1])
            fg_max = cams[1:].max(0)
            bins = np.searchsorted(THRESHOLDS, fg_max[gt == 0], side='left')
            bg_hist += np.bincount(bins, minlength=len(bg_hist))
            kept.append((index, cams, gt))
            scores.append(pred.get(PRED_IMG_LOGITS).float().numpy())
            labels.append(pred.get(IMG_LABELS).float().numpy())
    # bg FP at threshold k: background pixels with fg_max > THRESHOLDS[k]
    bg_fp = bg_hist[::-1].cumsum()[::-1][1:] / max(bg_hist.sum(), 1)
    k = int(np.flatnonzero(bg_fp <= FP_BUDGET)[0]) if (bg_fp <= FP_BUDGET).any() else -1
    thr = float(THRESHOLDS[k]) if k >= 0 else 1.0

    per_class: Dict[int, List[dict]] = {c: [] for c in range(10)}
    tiles = []
    for number, (index, cams, gt) in enumerate(kept):
        sample = dataset.render(index)
        fg_on = cams[1:].max(0) > thr
        fg_arg = cams[1:].argmax(0) + 1
        instance = sample['gt_instance_map']
        for item, cls in enumerate(sample['item_classes'], 1):
            mask = instance == item
            per_class[int(cls)].append(_item_stats(cams, fg_on, fg_arg, mask, cls))
        if number < num_pictures:
            pred = np.where(fg_on, fg_arg, 0)
            tiles.append(
                np.concatenate(
                    [
                        sample['img'][..., ::-1],
                        _colour(gt, palette),
                        _heat(cams[1:].max(0)),
                        _colour(pred, palette),
                    ],
                    1,
                )
            )
    if tiles:
        grid = np.concatenate(tiles, 0)
        h, w = grid.shape[:2]
        Image.fromarray(grid).resize((3 * w, 3 * h), Image.NEAREST).save(picture)

    def summary(items: List[dict]) -> Dict[str, object]:
        pixels = sum(i['pixels'] for i in items)
        return dict(
            items=len(items),
            pixel_recall=(
                round(100 * sum(i['hits'] for i in items) / pixels, 2)
                if pixels
                else None
            ),
            item_recall=_mean([i['recall'] for i in items]),
            items_recall_below_50=_mean([float(i['recall'] < 0.5) for i in items]),
            recall_top_third=_mean([i['third_recall'][0] for i in items]),
            recall_middle_third=_mean([i['third_recall'][1] for i in items]),
            recall_bottom_third=_mean([i['third_recall'][2] for i in items]),
            items_zero_cam=_mean([i['zero_cam'] for i in items]),
            area_above_half_peak=_mean([i['half_peak'] for i in items]),
            peak_y=_mean([i['peak_y'] for i in items]),
        )

    names = dataset.metainfo['classes'][1:]
    everything = [i for items in per_class.values() for i in items]
    return dict(
        classification_mAP=average_precision(np.stack(scores), np.stack(labels)),
        fp_budget=FP_BUDGET,
        threshold=thr,
        bg_fp_at_threshold=round(100 * float(bg_fp[k]), 2) if k >= 0 else 0.0,
        all_items=summary(everything),
        per_class={names[c]: summary(items) for c, items in per_class.items()},
        picture=picture,
    )


# ----------------------------------------------------------------------- main
def print_table(cam: Dict, trivial: Dict, partial: Dict) -> None:
    cols = ['mIoU_best', 'mIoU_at_thr', 'object_recall_at_fp0.10', 'object_fp_auc']
    print('| predictor | ' + ' | '.join(cols) + ' |')
    print('|' + '---|' * (len(cols) + 1))
    rows = {f'ViT-CAM / {k}': v for k, v in cam.items()}
    rows.update({f'trivial: {k}': v for k, v in trivial.items()})
    for name, res in rows.items():
        cells = [f'{res[c]:.2f}' if c in res else '-' for c in cols]
        print(f'| {name} | ' + ' | '.join(cells) + ' |')
    keys = list(partial['all_items'])
    print(f'\npartial activation at threshold {partial["threshold"]:.2f} (patch CAM)')
    print('| class | ' + ' | '.join(keys) + ' |')
    print('|' + '---|' * (len(keys) + 1))
    rows = dict(partial['per_class'], all=partial['all_items'])
    for name, res in rows.items():
        cells = ['-' if res[k] is None else f'{res[k]}' for k in keys]
        print(f'| {name} | ' + ' | '.join(cells) + ' |')


def main() -> None:
    args = parse_args()
    protocol = load_protocol()
    protocol.setup(args.threads)
    start = time.perf_counter()
    run_args = argparse.Namespace(
        **vars(args),
        benchmark='fashion_mnist',
        seeds=[args.seed],
        alpha=None,
        grad_head=[] if args.no_grad_head else [VARIANT],
    )
    options = protocol.data_root_options(args.data_root)
    bench = protocol.BENCHMARKS['fashion_mnist']
    ckpt = None
    if not args.no_pretrain:
        ckpt = protocol.pretrain(run_args, bench['pretrain'], options)
    result = protocol.run_variant(VARIANT, args.seed, run_args, ckpt, None, options)
    trivial = protocol.trivial_baselines(run_args, bench['trivial'], options)
    run_name = f'{VARIANT}_s{args.seed}{protocol.settings_tag(run_args, False)}'
    finetuned = osp.join(args.work_dir, 'runs', run_name, f'iter_{args.iters}.pth')
    cfg = protocol.prepare_cfg(
        bench['trivial'], '', run_args, args.seed, args.iters, options
    )
    picture = osp.join(args.work_dir, f'partial_activation_{run_name}.png')
    partial = diagnose(cfg, finetuned, picture, args.pictures)

    cam = {loc: object_metrics(res) for loc, res in result.items()}
    trivial = {name: object_metrics(res) for name, res in trivial.items()}
    print_table(cam, trivial, partial)
    report = dict(
        benchmark='fashion_mnist',
        seed=args.seed,
        iters=args.iters,
        batch=args.batch,
        pretrained=not args.no_pretrain,
        pretrain_iters=None if args.no_pretrain else args.pretrain_iters,
        num_train=args.num_train,
        num_val=args.num_val,
        cam=cam,
        trivial=trivial,
        partial_activation=partial,
        wall_time_s=round(time.perf_counter() - start, 1),
        torch_threads=torch.get_num_threads(),
    )
    protocol.write_json(osp.join(args.work_dir, f'pilot_{run_name}.json'), report)
    print(json.dumps(report))


if __name__ == '__main__':
    main()
