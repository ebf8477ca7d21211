"""Test helper: random CAM / ground-truth / part-map images and a
per-threshold numpy reference of the CAM threshold sweep, shared by the
CAMMetric and sweep-maths tests."""

import numpy as np

NUM_CLASSES = 5  # background + 4
IGNORE = 255
SIZES = [(9, 13), (16, 11), (7, 7), (12, 20), (10, 10)]
GRID = [k / 100 for k in range(100)]


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
