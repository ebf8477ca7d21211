"""CAMMetric and its sweep maths against a per-threshold numpy reference."""

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
    confusion_from_sweep,
    default_thresholds,
    iou_from_confusion,
    part_rates_from_sweep,
    recall_fp_auc,
    sweep_histogram,
    threshold_bins,
)

NUM_CLASSES = 5  # background + 4
CLASSES = ('background', 'cat', 'dog', 'car', 'boat')
IGNORE = 255
SIZES = [(9, 13), (16, 11), (7, 7), (12, 20), (10, 10)]
GRID = [k / 100 for k in range(100)]


# --------------------------------------------------------------------- data
def make_images(seed=0, sizes=SIZES):
    """Random (cams, gt, part) numpy triples with exact ties on the 0.01 grid."""
    rng = np.random.default_rng(seed)
    images = []
    for h, w in sizes:
        gt = rng.integers(0, NUM_CLASSES, size=(h, w))
        part = np.where(gt > 0, rng.integers(1, 3, size=(h, w)), 0)
        part[rng.random((h, w)) < 0.05] = 0  # a few foreground pixels w/o part
        cams = rng.random((NUM_CLASSES - 1, h, w))
        for c in range(1, NUM_CLASSES):  # correlate with the gt
            cams[c - 1][gt == c] += rng.random() * 0.8
        cams /= cams.max(axis=(1, 2), keepdims=True)
        cams[rng.integers(0, NUM_CLASSES - 1)] = 0.0  # an absent class
        cams = (np.round(cams * 100) / 100).astype(np.float32)  # grid ties
        gt[rng.random((h, w)) < 0.1] = IGNORE
        images.append((cams, gt, part))
    return images


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


# ---------------------------------------------------------------- reference
def reference(images, thresholds):
    """Explicit argmax over [t, cams] per threshold, counts with np.add.at."""
    n = NUM_CLASSES
    conf = np.zeros((len(thresholds), n, n), np.int64)
    hits = np.zeros((len(thresholds), 3), np.int64)  # bg fp, body hit, head hit
    totals = np.zeros(3, np.int64)
    for _cams, gt, part in images:
        valid = gt != IGNORE
        totals += [
            np.sum(valid & (gt == 0)),
            np.sum(valid & (gt > 0) & (part == 1)),
            np.sum(valid & (gt > 0) & (part == 2)),
        ]
    for k, t in enumerate(thresholds):
        for cams, gt, part in images:
            plane = np.full((1, *gt.shape), np.float32(t), np.float32)
            pred = np.concatenate([plane, cams]).argmax(0)
            valid = gt != IGNORE
            np.add.at(conf[k], (gt[valid], pred[valid]), 1)
            hits[k, 0] += np.sum(valid & (gt == 0) & (pred > 0))
            for j, p in ((1, 1), (2, 2)):
                region = valid & (gt > 0) & (part == p)
                hits[k, j] += np.sum(pred[region] == gt[region])
    iou = np.full((len(thresholds), n), np.nan)
    for k in range(len(thresholds)):
        for c in range(n):
            inter = conf[k, c, c]
            union = conf[k, c, :].sum() + conf[k, :, c].sum() - inter
            if union > 0:
                iou[k, c] = inter / union
    with np.errstate(invalid='ignore'):
        miou = np.nanmean(iou, axis=1)
    rates = hits / totals  # columns: bg fp, body recall, head recall
    return dict(conf=conf, iou=iou, miou=miou, rates=rates)


def pct(x):
    return round(float(x) * 100, 2)


# --------------------------------------------------------- functional tests
def test_sweep_matches_reference_at_every_threshold():
    images = make_images(0)
    thresholds = default_thresholds()
    assert thresholds.numel() == 100 and thresholds[-1] == 0.99
    joint = part = 0
    for cams, gt, pmap in images:
        j, p = sweep_histogram(
            torch.from_numpy(cams),
            torch.from_numpy(gt),
            thresholds,
            NUM_CLASSES,
            part_map=torch.from_numpy(pmap),
        )
        assert j.shape == (101, NUM_CLASSES, NUM_CLASSES) and p.shape == (101, 3, 2)
        joint, part = joint + j, part + p
    ref = reference(images, GRID)
    conf = confusion_from_sweep(joint)
    np.testing.assert_array_equal(conf.numpy(), ref['conf'])
    np.testing.assert_allclose(iou_from_confusion(conf).numpy(), ref['iou'])
    rates = part_rates_from_sweep(part)
    np.testing.assert_allclose(rates['bg_fp'].numpy(), ref['rates'][:, 0])
    np.testing.assert_allclose(rates['body_recall'].numpy(), ref['rates'][:, 1])
    np.testing.assert_allclose(rates['head_recall'].numpy(), ref['rates'][:, 2])
    # threshold -inf: every pixel foreground with its argmax class
    ref_all = reference(images, [-1.0])['rates'][0]
    assert float(rates['body_recall_all']) == pytest.approx(ref_all[1])
    assert float(rates['head_recall_all']) == pytest.approx(ref_all[2])


def test_threshold_bins_ties_go_to_background():
    thr = torch.tensor([0.0, 0.25, 0.5], dtype=torch.float64)
    values = torch.tensor([0.0, 0.1, 0.25, 0.3, 0.5, 1.0])
    assert threshold_bins(values, thr).tolist() == [0, 1, 1, 2, 2, 3]
    # rounded to the CAM precision first: 0.45 in half precision ties with 0.45
    half = torch.tensor([0.45], dtype=torch.float16)
    assert threshold_bins(half, torch.tensor([0.45], dtype=torch.float64)).item() == 0
    with pytest.raises(ValueError, match='sorted'):
        threshold_bins(values, torch.tensor([0.5, 0.1]))


def test_sweep_histogram_rejects_bad_shapes():
    cams = torch.rand(NUM_CLASSES - 1, 4, 5)
    with pytest.raises(ValueError, match='gt has shape'):
        sweep_histogram(cams, torch.zeros(4, 4).long(), default_thresholds(), 5)
    with pytest.raises(ValueError, match='foreground CAM channels'):
        sweep_histogram(cams, torch.zeros(4, 5).long(), default_thresholds(), 7)
    with pytest.raises(ValueError, match='gt labels'):
        sweep_histogram(cams, torch.full((4, 5), 9), default_thresholds(), 5)


def test_recall_fp_auc_definition():
    # ascending thresholds: fp (0.5, 0.2, 0.0), recall (0.9, 0.6, 0.3)
    recall = torch.tensor([0.9, 0.6, 0.3], dtype=torch.float64)
    fp = torch.tensor([0.5, 0.2, 0.0], dtype=torch.float64)
    xs = [0.0, 0.0, 0.2, 0.5, 1.0]
    ys = [0.0, 0.3, 0.6, 0.9, 0.95]
    expected = sum(
        (xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2 for i in range(len(xs) - 1)
    )
    got = recall_fp_auc(recall, fp, torch.tensor(0.95, dtype=torch.float64))
    assert got == pytest.approx(expected)


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
