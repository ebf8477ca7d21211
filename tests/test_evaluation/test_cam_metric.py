"""CAMMetric against a per-threshold numpy reference of the sweep."""

import math
import pickle

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from mmengine.structures import PixelData
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS
from mmseg.structures import SegDataSample

from acr_plugin.evaluation import (
    CAMMetric,
)
from tests.cam_sweep_reference import (
    GRID,
    IGNORE,
    NUM_CLASSES,
    SIZES,
    make_images,
    reference,
)

CLASSES = ('background', 'cat', 'dog', 'car', 'boat')


# --------------------------------------------------------------------- data
def to_sample(cams, gt, part=None, bg_thr=0.45):
    """A SegDataSample as a WSSS model's predict() writes it."""
    cams_t = torch.from_numpy(cams)
    plane = torch.full((1, *cams.shape[1:]), bg_thr, dtype=torch.float32)
    seg_logits = torch.cat([plane, cams_t])
    sample = SegDataSample()
    sample.seg_logits = PixelData(data=seg_logits)
    sample.pred_sem_seg = PixelData(data=seg_logits.argmax(0, keepdim=True))
    sample.gt_sem_seg = PixelData(data=torch.from_numpy(gt)[None].long())
    if part is not None:
        sample.gt_part_map = PixelData(
            data=torch.from_numpy(part.astype(np.uint8))[None]
        )
    return sample


def run_metric(images, bg_thr=0.45, batch=2, **kwargs):
    metric = CAMMetric(**kwargs)
    metric.dataset_meta = dict(classes=CLASSES)
    samples = [to_sample(*img, bg_thr=bg_thr) for img in images]
    for i in range(0, len(samples), batch):
        metric.process({}, [s.to_dict() for s in samples[i : i + batch]])
    assert len(metric.results) == 1
    return metric.evaluate(len(samples))


def pct(x):
    return round(float(x) * 100, 2)


# ------------------------------------------------------------- metric tests
def test_metric_registered_and_built_from_config():
    metric = METRICS.build(dict(type='CAMMetric', fp_budget=0.2))
    assert isinstance(metric, CAMMetric) and metric.thresholds.numel() == 100


def test_metric_matches_reference_and_iou_metric():
    images = make_images(1)
    metrics = run_metric(images, bg_thr=0.45)
    ref = reference(images, GRID)

    best = int(np.nanargmax(ref['miou']))
    assert metrics['mIoU_best'] == pct(ref['miou'][best])
    assert metrics['best_thr'] == pytest.approx(GRID[best])
    k = GRID.index(0.45)
    assert metrics['mIoU_at_thr'] == pct(ref['miou'][k])
    assert metrics['bg_fp'] == pct(ref['rates'][k, 0])
    assert metrics['body_recall'] == pct(ref['rates'][k, 1])
    assert metrics['head_recall'] == pct(ref['rates'][k, 2])

    iou_metric = IoUMetric(ignore_index=IGNORE)
    iou_metric.dataset_meta = dict(classes=CLASSES)
    iou_metric.process({}, [to_sample(*img, bg_thr=0.45).to_dict() for img in images])
    assert metrics['mIoU_at_thr'] == iou_metric.evaluate(len(images))['mIoU']
    assert not [key for key in metrics if 'loss' in key]


def test_configured_threshold_off_the_grid_and_given_explicitly():
    images = make_images(2)
    iou_metric = IoUMetric(ignore_index=IGNORE)
    iou_metric.dataset_meta = dict(classes=CLASSES)
    iou_metric.process({}, [to_sample(*img, bg_thr=0.455).to_dict() for img in images])
    expected = iou_metric.evaluate(len(images))['mIoU']
    read = run_metric(images, bg_thr=0.455)
    assert read['mIoU_at_thr'] == expected
    # an explicit bg_thr wins over channel 0
    metric = CAMMetric(bg_thr=0.455)
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, [to_sample(*img, bg_thr=0.9).to_dict() for img in images])
    given = metric.evaluate(len(images))
    assert given['mIoU_at_thr'] == expected
    # the inserted threshold is not part of the sweep
    ref = reference(images, GRID)
    assert read['mIoU_best'] == pct(np.nanmax(ref['miou']))
    assert read['best_thr'] in GRID


def test_fp_budget_selection_and_auc():
    images = make_images(3)
    ref = reference(images, GRID)
    fp, body, head = ref['rates'].T
    budget = float(np.round(np.median(fp), 2))  # a budget that binds
    metrics = run_metric(images, fp_budget=budget)
    key = f'{budget:.2f}'
    expected_body = max(r for r, f in zip(body, fp) if f <= budget)
    expected_head = max(r for r, f in zip(head, fp) if f <= budget)
    assert metrics[f'body_recall_at_fp{key}'] == pct(expected_body)
    assert metrics[f'head_recall_at_fp{key}'] == pct(expected_head)
    # AUC: points from the strictest threshold down, (0, 0) and (1, recall@-inf)
    all_rates = reference(images, [-1.0])['rates'][0]
    for name, recall, r_all in (
        ('body', body, all_rates[1]),
        ('head', head, all_rates[2]),
    ):
        xs = [0.0, *fp[::-1], 1.0]
        ys = [0.0, *recall[::-1], r_all]
        area = sum(
            (xs[i + 1] - xs[i]) * (ys[i] + ys[i + 1]) / 2 for i in range(len(xs) - 1)
        )
        assert metrics[f'{name}_fp_auc'] == pct(area)
    # default budget key; no admissible threshold -> 0 (predict nothing)
    assert 'body_recall_at_fp0.10' in run_metric(images)
    strict = max((r for r, f in zip(body, fp) if f <= 0.0), default=0.0)
    assert run_metric(images, fp_budget=0.0)['body_recall_at_fp0.00'] == pct(strict)


def test_perfect_cam_scores_100():
    rng = np.random.default_rng(4)
    images = []
    for h, w in SIZES[:3]:
        gt = rng.integers(0, NUM_CLASSES, size=(h, w))
        part = np.where(gt > 0, rng.integers(1, 3, size=(h, w)), 0)
        cams = np.stack([(gt == c) for c in range(1, NUM_CLASSES)]).astype(np.float32)
        gt[rng.random((h, w)) < 0.1] = IGNORE
        cams[:, gt == IGNORE] = rng.random((NUM_CLASSES - 1, int((gt == IGNORE).sum())))
        images.append((cams, gt, part))
    metrics = run_metric(images, bg_thr=0.5)
    for key in (
        'mIoU_at_thr',
        'mIoU_best',
        'head_recall',
        'body_recall',
        'body_recall_at_fp0.10',
        'head_recall_at_fp0.10',
        'body_fp_auc',
        'head_fp_auc',
    ):
        assert metrics[key] == 100.0, key
    assert metrics['bg_fp'] == 0.0 and metrics['best_thr'] == 0.0


def test_no_part_maps_no_part_keys_and_prefix():
    images = [(c, g, None) for c, g, _ in make_images(5)]
    metrics = run_metric(images, prefix='cam')
    assert set(metrics) == {'cam/mIoU_at_thr', 'cam/mIoU_best', 'cam/best_thr'}


def test_single_accumulator_and_repeated_evaluation():
    images = make_images(6)
    metric = CAMMetric()
    metric.dataset_meta = dict(classes=CLASSES)
    samples = [to_sample(*img) for img in images]
    for _ in range(4):  # 20 process calls, one element
        for s in samples:
            metric.process({}, [s])  # SegDataSample accepted too
    assert len(metric.results) == 1
    repeated = metric.evaluate(len(samples) * 4)
    assert metric.results == []
    once = run_metric(images)
    assert repeated == once  # same rates, counts x4
    assert run_metric(images) == once  # a second round starts fresh


def test_padding_of_the_last_round_is_dropped():
    """Emulate DefaultSampler on 2 ranks: 5 samples, rank 1 repeats sample 0."""
    images = make_images(7)
    samples = [to_sample(*img).to_dict() for img in images]
    states = []
    for rank, indices in ((0, [0, 2, 4]), (1, [1, 3, 0])):
        metric = CAMMetric()
        metric.dataset_meta = dict(classes=CLASSES)
        metric.process({}, [samples[i] for i in indices])
        state = metric.results[0]
        state['rank'], state['world_size'] = rank, 2
        states.append(state)
    metric._eval_size = len(samples)
    assert metric.compute_metrics(states) == run_metric(images)


def test_clear_errors():
    cams, gt, part = make_images(8)[0]
    metric = CAMMetric()
    metric.dataset_meta = dict(classes=CLASSES)
    sample = to_sample(cams, gt, part).to_dict()
    no_logits = {k: v for k, v in sample.items() if k != 'seg_logits'}
    with pytest.raises(KeyError, match='seg_logits'):
        metric.process({}, [no_logits])
    no_gt = {k: v for k, v in sample.items() if k != 'gt_sem_seg'}
    with pytest.raises(KeyError, match='gt_sem_seg'):
        metric.process({}, [no_gt])
    bad_plane = to_sample(cams, gt, part)
    bad_plane.seg_logits.data[0, 0, 1] = 0.9
    with pytest.raises(ValueError, match='channel 0'):
        CAMMetric().process({}, [bad_plane.to_dict()])
    metric.dataset_meta = dict(classes=CLASSES[:3])
    with pytest.raises(ValueError, match='dataset_meta'):
        metric.process({}, [sample])
    with pytest.raises(ValueError, match='fp_budget'):
        CAMMetric(fp_budget=1.5)
    with pytest.raises(ValueError, match='no data sample'):
        CAMMetric().compute_metrics([])


# -------------------------------------------------------- distributed (gloo)
def _dist_worker(rank, world_size, init_file, out_file, collect_dir):
    import torch.distributed as dist
    from mmengine.dataset import DefaultSampler

    dist.init_process_group(
        'gloo', init_method=f'file://{init_file}', rank=rank, world_size=world_size
    )
    try:
        images = make_images(9)
        samples = [to_sample(*img).to_dict() for img in images]
        sampler = DefaultSampler(list(range(len(samples))), shuffle=False)
        results = {}
        for device in ('cpu', 'gpu'):  # file-based and all_gather collection
            metric = CAMMetric(
                collect_device=device,
                collect_dir=collect_dir if device == 'cpu' else None,
            )
            metric.dataset_meta = dict(classes=CLASSES)
            for i in sampler:
                metric.process({}, [samples[i]])
            results[device] = metric.evaluate(len(samples))
        if rank == 0:
            with open(out_file, 'wb') as f:
                pickle.dump(results, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_matches_single_process(tmp_path):
    out_file = tmp_path / 'metrics.pkl'
    mp.spawn(
        _dist_worker,
        args=(2, str(tmp_path / 'init'), str(out_file), str(tmp_path / 'collect')),
        nprocs=2,
        join=True,
    )
    with open(out_file, 'rb') as f:
        results = pickle.load(f)
    expected = run_metric(make_images(9))  # 5 images: rank 1 gets 1 padding
    for device, metrics in results.items():
        assert metrics.keys() == expected.keys(), device
        for key, value in expected.items():
            assert metrics[key] == value or (
                math.isnan(value) and math.isnan(metrics[key])
            )
