"""Tests of ToCo's pseudo-label, roi and crop-sampling operations."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from acr_plugin.hosts.toco import (
    PixelAdaptiveRefinement,
    ignore_band_labels,
    refine_cams_with_par,
    roi_map,
    sample_local_crops,
    token_band_labels,
)


def _cams(batch=2, classes=4, height=10, width=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, classes, height, width, generator=gen, dtype=torch.float64)


# ----------------------------------------------------------- ignore band
def test_ignore_band_labels_matches_pixel_loop():
    cams = _cams()
    out = ignore_band_labels(cams, high=0.7, low=0.25, ignore_index=254)
    assert out.dtype == torch.long and out.shape == (2, 10, 12)
    arr = cams.numpy()
    for b in range(2):
        for y in range(10):
            for x in range(12):
                m = arr[b, :, y, x].max()
                k = int(arr[b, :, y, x].argmax()) + 1
                expected = k if m > 0.7 else (0 if m <= 0.25 else 254)
                assert out[b, y, x] == expected


def test_ignore_band_labels_boundaries():
    cams = torch.tensor([0.25, 0.7, 0.71, 0.2]).view(1, 1, 1, 4)
    cams = torch.cat([torch.zeros_like(cams), cams], dim=1)  # class 2 wins
    assert ignore_band_labels(cams, 0.7, 0.25)[0, 0].tolist() == [0, 255, 2, 0]
    with pytest.raises(ValueError, match='low'):
        ignore_band_labels(cams, 0.2, 0.5)


# --------------------------------------------------------- PAR pseudo label
def _fuse_reference(label_high, label_low, ignore_index):
    out = np.full(label_high.shape, ignore_index)
    out[(label_high == 0) & (label_low == 0)] = 0
    out[label_high > 0] = label_high[label_high > 0]
    return out


def test_refine_with_identity_par_matches_pixel_reference():
    cams = _cams(classes=3)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    cams[:, 1] += 5  # absent in image 0: must never win there
    out = refine_cams_with_par(
        lambda images, maps: maps,
        torch.rand(2, 3, 10, 12),
        cams,
        labels,
        high=0.7,
        low=0.25,
        down_scale=1.0,
        ignore_index=254,
    )
    arr, lab = cams.numpy(), labels.numpy()
    for b in range(2):
        keys = np.flatnonzero(lab[b])
        for y in range(10):
            for x in range(12):
                scores = arr[b, keys, y, x]
                top = keys[scores.argmax()] + 1
                high = top if scores.max() > 0.7 else 0
                low = top if scores.max() > 0.25 else 0
                expected = high if high else (0 if low == 0 else 254)
                assert out[b, y, x] == expected
    assert not (out[0] == 2).any()


def test_refine_with_par_equals_separate_refinements():
    """Independent reference: per image, valid classes only, softmax over
    [bg, valid classes] at the PAR scale, two PAR calls."""
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(3, 3, 16, 20, generator=gen)
    cams = torch.rand(3, 5, 16, 20, generator=gen)
    cams = cams * torch.linspace(0, 1.2, 20).clamp(max=1)  # dark left side
    labels = torch.tensor(
        [[1.0, 0, 0, 1, 0], [0, 0, 1, 0, 0], [0, 1, 1, 1, 1]], dtype=torch.float32
    )
    par = PixelAdaptiveRefinement(dilations=(1, 2, 4), num_iter=5)
    out = refine_cams_with_par(par, images, cams, labels, high=0.7, low=0.25)

    expected = []
    for b in range(3):
        keys = labels[b].nonzero()[:, 0]
        small_img = F.interpolate(images[b : b + 1], size=(8, 10), mode='bilinear')
        argmaxes = []
        for bg in (0.7, 0.25):
            maps = torch.cat([torch.full((1, 1, 16, 20), bg), cams[b : b + 1, keys]], 1)
            maps = F.interpolate(maps, size=(8, 10), mode='bilinear').softmax(dim=1)
            maps = F.interpolate(par(small_img, maps), size=(16, 20), mode='bilinear')
            index = maps.argmax(dim=1)[0]
            argmaxes.append(torch.where(index > 0, keys[index - 1] + 1, 0).numpy())
        expected.append(_fuse_reference(*argmaxes, ignore_index=255))
    np.testing.assert_array_equal(out.numpy(), np.stack(expected))
    assert out.dtype == torch.long and out.shape == (3, 16, 20)
    # the band exists and both foreground and background are produced
    assert {0, 255} <= set(out.unique().tolist())
    assert ((out > 0) & (out < 255)).any()


def test_refine_breaks_ties_by_the_first_class_like_argmax():
    """Equal scores: the first present class wins (argmax's rule), absent
    classes never do, wherever the planes tie exactly."""
    cams = torch.full((2, 4, 6, 5), 0.9)
    cams[1, :, :, :2] = 0.1  # image 1, left: every map below both levels
    labels = torch.tensor([[0.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 1.0]])
    out = refine_cams_with_par(
        lambda images, maps: maps,
        torch.rand(2, 3, 6, 5),
        cams,
        labels,
        0.7,
        0.25,
        down_scale=1.0,
    )
    probs = torch.cat([torch.full((2, 1, 6, 5), 0.7), cams], 1).softmax(1)
    expected = torch.cat([probs[:, :1], probs[:, 1:] * labels[:, :, None, None]], 1)
    assert torch.equal(out[0], torch.full((6, 5), 2))  # class index 1, not 2 or 3
    assert torch.equal(out[1, :, 2:], torch.full((6, 3), 1))
    assert torch.equal(out[:, :, 2:], expected.argmax(dim=1)[:, :, 2:])
    assert torch.equal(out[1, :, :2], torch.zeros(6, 2, dtype=torch.long))


def test_refine_without_foreground_label_is_background():
    cams = _cams(batch=2, classes=3)
    labels = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    par = PixelAdaptiveRefinement(dilations=(1, 2), num_iter=2)
    out = refine_cams_with_par(par, torch.rand(2, 3, 10, 12), cams, labels, 0.7, 0.25)
    assert (out[0] == 0).all()
    assert set(out[1].unique().tolist()) <= {0, 2, 255}


def test_refine_runs_without_gradients_and_checks_shapes():
    cams = _cams(classes=3).requires_grad_()
    labels = torch.ones(2, 3)
    par = PixelAdaptiveRefinement(dilations=(1,), num_iter=1)
    out = refine_cams_with_par(par, torch.rand(2, 3, 10, 12), cams, labels, 0.7, 0.25)
    assert not out.requires_grad
    with pytest.raises(ValueError, match='img_labels'):
        refine_cams_with_par(
            par, torch.rand(2, 3, 10, 12), cams, labels[:, :2], 0.7, 0.2
        )
    with pytest.raises(ValueError, match='images'):
        refine_cams_with_par(par, torch.rand(2, 3, 8, 12), cams, labels, 0.7, 0.2)
    with pytest.raises(ValueError, match='down_scale'):
        refine_cams_with_par(
            par, torch.rand(2, 3, 10, 12), cams, labels, 0.7, 0.2, down_scale=0
        )


# ---------------------------------------------------------------- roi map
def test_roi_map_matches_definition():
    cams = _cams()
    roi = roi_map(cams, low=0.3, high=0.8)
    peak = cams.numpy().max(axis=1)
    expected = np.where(peak <= 0.3, 0, np.where(peak >= 0.8, 2, 1))
    np.testing.assert_array_equal(roi.numpy(), expected)
    assert roi.dtype == torch.long
    edge = torch.tensor([0.25, 0.7]).view(1, 1, 1, 2)
    assert roi_map(edge)[0, 0].tolist() == [0, 2]


# ------------------------------------------------------------ local crops
def _crop_inputs(seed=0, batch=2, height=40, width=48):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, height, width, generator=gen)
    roi = torch.randint(0, 3, (batch, height, width), generator=gen)
    roi[:, 10:30, 10:30] = 2  # a certain-foreground block
    return images, roi


def test_sample_local_crops_contract():
    images, roi = _crop_inputs()
    gen = torch.Generator().manual_seed(3)
    crops, positive, boxes = sample_local_crops(
        images, roi, num_crops=6, crop_size=16, neg_thr=0.9, generator=gen
    )
    assert crops.shape == (2, 6, 3, 16, 16)
    assert positive.shape == (2, 6) and positive.dtype == torch.bool
    assert boxes.shape == (2, 6, 4) and boxes.dtype == torch.long
    for b in range(2):
        centres = set()
        for n in range(6):
            y0, x0, y1, x1 = boxes[b, n].tolist()
            assert y0 >= 0 and y1 <= 40 and x0 >= 0 and x1 <= 48
            assert y1 - y0 == 16 and x1 - x0 == 16
            torch.testing.assert_close(crops[b, n], images[b, :, y0:y1, x0:x1])
            cy, cx = y0 + 8, x0 + 8
            assert roi[b, cy, cx] <= 1
            assert 8 <= cy < 32 and 8 <= cx < 40  # rows/cols in [margin, size - margin)
            mean_roi = roi[b, y0:y1, x0:x1].double().sum() / 256
            assert bool(positive[b, n]) == bool(mean_roi > 0.9)
            centres.add((cy, cx))
        assert len(centres) == 6  # no repeats


def _centres(boxes, crop_size):
    return {
        (y0 + crop_size // 2, x0 + crop_size // 2) for y0, x0, _, _ in boxes.tolist()
    }


def test_sample_local_crops_interior_excludes_size_minus_margin():
    # candidates: 4 interior pixels plus the whole row and column at size -
    # margin (outside [margin, size - margin)): with 4 crops, every interior
    # candidate is drawn exactly once (no replacement), the border never
    images = torch.rand(1, 3, 32, 32)
    roi = torch.full((1, 32, 32), 2, dtype=torch.long)
    interior = [(8, 8), (8, 23), (23, 8), (15, 20)]
    for y, x in interior:
        roi[0, y, x] = 1
    roi[0, 24, :] = 0
    roi[0, :, 24] = 0
    for seed in range(10):
        gen = torch.Generator().manual_seed(seed)
        _, _, boxes = sample_local_crops(
            images, roi, num_crops=4, crop_size=16, generator=gen
        )
        assert _centres(boxes[0], 16) == set(interior)


def test_sample_local_crops_too_few_candidates_use_every_interior_pixel():
    images = torch.rand(1, 3, 20, 20)
    roi = torch.full((1, 20, 20), 2, dtype=torch.long)
    roi[0, 9, 11] = 1  # one candidate for 5 crops: all interior pixels count
    seen = set()
    for seed in range(20):
        gen = torch.Generator().manual_seed(seed)
        _, positive, boxes = sample_local_crops(
            images, roi, num_crops=5, crop_size=8, generator=gen
        )
        centres = _centres(boxes[0], 8)
        assert len(centres) == 5  # without replacement
        assert all(4 <= y < 16 and 4 <= x < 16 for y, x in centres)
        assert positive.all()
        seen |= centres
    assert len(seen) > 50  # drawn from the 12 x 12 interior, not the candidate
    roi[:] = 2  # no candidate at all: the same
    _, _, boxes = sample_local_crops(images, roi, num_crops=5, crop_size=8)
    assert len(_centres(boxes[0], 8)) == 5


def test_sample_local_crops_positive_and_negative():
    images = torch.rand(1, 3, 32, 32)
    roi = torch.zeros(1, 32, 32, dtype=torch.long)
    _, positive, _ = sample_local_crops(images, roi, num_crops=4, crop_size=8)
    assert not positive.any()  # all background: negative
    roi[:] = 1
    _, positive, _ = sample_local_crops(images, roi, num_crops=4, crop_size=8)
    assert positive.all()  # mean roi 1 > 0.2


def test_sample_local_crops_reproducible():
    images, roi = _crop_inputs(seed=1)
    runs = [
        sample_local_crops(
            images, roi, crop_size=12, generator=torch.Generator().manual_seed(7)
        )
        for _ in range(2)
    ]
    for first, second in zip(*runs):
        torch.testing.assert_close(first, second)
    other = sample_local_crops(
        images, roi, crop_size=12, generator=torch.Generator().manual_seed(8)
    )
    assert not torch.equal(runs[0][2], other[2])


def test_sample_local_crops_pads_small_images():
    images = torch.rand(2, 3, 10, 14) + 1.0  # strictly positive pixels
    roi = torch.ones(2, 10, 14, dtype=torch.long)
    crops, _, boxes = sample_local_crops(images, roi, num_crops=3, crop_size=16)
    assert crops.shape == (2, 3, 3, 16, 16)
    # padded to 16 x 16: no interior pixel in [8, 8); the closed range [8, 8]
    # holds the one centre (8, 8), drawn with replacement: the whole image
    assert (boxes == torch.tensor([0, 0, 16, 16])).all()
    torch.testing.assert_close(crops[:, 0, :, :10, :14], images)
    assert (crops[:, :, :, 10:] == 0).all() and (crops[..., 14:] == 0).all()
    # one pixel larger than the crop: 1 interior pixel, 4 in the closed range
    _, _, boxes = sample_local_crops(
        torch.rand(1, 3, 17, 17), torch.ones(1, 17, 17, dtype=torch.long), 8, 16
    )
    assert _centres(boxes[0], 16) <= {(8, 8), (8, 9), (9, 8), (9, 9)}


def test_sample_local_crops_small_margin_keeps_boxes_inside():
    images, roi = _crop_inputs(seed=2)
    roi[:] = 1
    for seed in range(5):
        _, _, boxes = sample_local_crops(
            images,
            roi,
            num_crops=8,
            crop_size=16,
            margin=0,
            generator=torch.Generator().manual_seed(seed),
        )
        assert (boxes[..., :2] >= 0).all()
        assert (boxes[..., 2] <= 40).all() and (boxes[..., 3] <= 48).all()


def test_sample_local_crops_bad_inputs():
    images, roi = _crop_inputs()
    with pytest.raises(ValueError, match='roi must match'):
        sample_local_crops(images, roi[:, :-1])
    with pytest.raises(ValueError, match='margin 30 leaves no valid centre'):
        sample_local_crops(images, roi, crop_size=8, margin=30)


# ------------------------------------------------------------ token labels
def _bilinear_at(plane: np.ndarray, y: float, x: float) -> float:
    """Bilinear value of ``plane`` at continuous pixel coordinates (pixel
    centres at integers, clamped at the border)."""
    height, width = plane.shape
    y, x = min(max(y, 0.0), height - 1.0), min(max(x, 0.0), width - 1.0)
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
    dy, dx = y - y0, x - x0
    top = plane[y0, x0] * (1 - dx) + plane[y0, x1] * dx
    bottom = plane[y1, x0] * (1 - dx) + plane[y1, x1] * dx
    return top * (1 - dy) + bottom * dy


def _smooth_cams(seed=0, batch=2, classes=3, height=32, width=48):
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, classes, 4, 6, generator=gen, dtype=torch.float64)
    return F.interpolate(coarse, (height, width), mode='bilinear', align_corners=True)


def test_token_band_labels_resize_to_the_grid_first():
    cams = _smooth_cams()
    high, low = 0.7, 0.25
    out = token_band_labels(cams, (4, 6), high, low, ignore_index=255)
    assert out.shape == (2, 4, 6) and out.dtype == torch.long
    arr = cams.numpy()
    for b in range(2):
        for i in range(4):
            for j in range(6):
                # patch centre of token (i, j) in pixel coordinates (8 px patches)
                y, x = (i + 0.5) * 8 - 0.5, (j + 0.5) * 8 - 0.5
                values = [_bilinear_at(arr[b, c], y, x) for c in range(3)]
                best = max(values)
                want = int(np.argmax(values)) + 1 if best > high else 255
                want = 0 if best <= low else want
                assert out[b, i, j] == want, (b, i, j)
    # thresholding the pixels first and sub-sampling gives other labels
    pixels = ignore_band_labels(cams, high, low)
    assert not torch.equal(out, pixels[:, ::8, ::8])


def test_token_band_labels_ignore_padding_tokens():
    cams = _smooth_cams(seed=1)
    valid = torch.ones(2, 32, 48, dtype=torch.bool)
    valid[0, :, 42:] = False  # token column 5 has its centre (col 44) in padding
    valid[1, 20:, :] = False  # token rows 3 (centre 28) padded; row 2 (centre 20) too
    out = token_band_labels(cams, (4, 6), 0.7, 0.25, ignore_index=255, valid=valid)
    plain = token_band_labels(cams, (4, 6), 0.7, 0.25, ignore_index=255)
    assert (out[0, :, 5] == 255).all() and torch.equal(out[0, :, :5], plain[0, :, :5])
    assert (out[1, 2:] == 255).all() and torch.equal(out[1, :2], plain[1, :2])
    with pytest.raises(ValueError, match='valid must be'):
        token_band_labels(cams, (4, 6), 0.7, 0.25, valid=valid[:, :16])
