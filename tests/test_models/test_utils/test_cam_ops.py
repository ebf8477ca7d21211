import pytest
import torch
import torch.nn.functional as F

from acr_plugin.models.utils import (
    cam_from_patch_tokens,
    cams_to_seg_logits,
    global_pool,
    minmax_normalize,
    multi_scale_flip_cams,
)


def test_cam_from_patch_tokens_is_a_1x1_conv():
    torch.manual_seed(0)
    feats = torch.randn(2, 8, 3, 5)
    weight = torch.randn(4, 8)
    bias = torch.randn(4)
    expected = F.conv2d(feats, weight[:, :, None, None], bias)
    torch.testing.assert_close(cam_from_patch_tokens(feats, weight, bias), expected)


def test_global_pool_modes():
    cams = torch.arange(2 * 3 * 4 * 5, dtype=torch.float).view(2, 3, 4, 5)
    torch.testing.assert_close(global_pool(cams, 'max'), cams.amax((2, 3)))
    torch.testing.assert_close(global_pool(cams, 'avg'), cams.mean((2, 3)))
    top2 = global_pool(cams, 'topk', topk=0.1)  # 2 of 20 positions
    torch.testing.assert_close(top2, (cams.flatten(2)[..., -2:]).mean(-1))


def test_minmax_normalize_range_per_class():
    torch.manual_seed(0)
    cams = torch.randn(2, 3, 6, 6) * 5
    out = minmax_normalize(cams, eps=0.0)
    torch.testing.assert_close(out.flatten(2).amin(-1), torch.zeros(2, 3))
    torch.testing.assert_close(out.flatten(2).amax(-1), torch.ones(2, 3))


def test_cams_to_seg_logits_masks_absent_classes():
    cams = torch.ones(1, 3, 2, 2)
    labels = torch.tensor([[0.0, 1.0, 0.0]])
    logits = cams_to_seg_logits(cams, 0.4, labels)
    assert logits.shape == (1, 4, 2, 2)
    assert torch.all(logits[:, 0] == 0.4)
    assert torch.all(logits[:, 1] == 0) and torch.all(logits[:, 3] == 0)
    assert torch.all(logits.argmax(1) == 2)


def test_flip_tta_makes_cams_flip_equivariant():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def cam_fn(x):
        # deliberately not flip-equivariant on its own (asymmetric kernel)
        return conv(x)[..., ::2, ::2]

    x = torch.randn(2, 3, 16, 20)
    for merge in ('max', 'sum'):
        a = multi_scale_flip_cams(
            cam_fn, x, scales=(1.0, 0.5), flip=True, flip_merge=merge
        )
        b = multi_scale_flip_cams(
            cam_fn, x.flip(-1), scales=(1.0, 0.5), flip=True, flip_merge=merge
        )
        torch.testing.assert_close(a, b.flip(-1))
        assert a.shape == (2, 4, 16, 20) and torch.all(a >= 0)


def test_multi_scale_sums_scales_independently():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 8, 8)

    def cam_fn(inp):
        return inp[:, :2]

    both = multi_scale_flip_cams(cam_fn, x, scales=(1.0, 0.5), flip=False)
    one = multi_scale_flip_cams(cam_fn, x, scales=(1.0,), flip=False)
    half = F.relu(
        F.interpolate(
            F.interpolate(x[:, :2], size=(4, 4), mode='bilinear'),
            size=(8, 8),
            mode='bilinear',
        )
    )
    torch.testing.assert_close(both, one + half)


def test_multi_scale_reuses_the_callers_plain_cams():
    """Given cam_fn(inputs), the scale that keeps the input size runs only
    the mirrored input; the result equals the full computation."""
    torch.manual_seed(0)
    x = torch.randn(3, 3, 8, 12)
    weight = torch.randn(4, 3)
    seen = []

    def cam_fn(inp):  # per-sample and deterministic, like a ViT without dropout
        seen.append(inp.shape)
        return torch.einsum('bchw,kc->bkhw', inp[..., ::2, ::2], weight)

    full = multi_scale_flip_cams(cam_fn, x, scales=(1.0, 0.5, 1.5), flip=True)
    seen.clear()
    plain = cam_fn(x)
    seen.clear()
    reused = multi_scale_flip_cams(
        cam_fn, x, scales=(1.0, 0.5, 1.5), flip=True, plain_cams=plain
    )
    torch.testing.assert_close(reused, full, rtol=0, atol=0)
    assert [s[0] for s in seen] == [3, 6, 6]  # scale 1: the mirrored half only
    no_flip = multi_scale_flip_cams(cam_fn, x, scales=(1.0, 0.5), flip=False)
    seen.clear()
    out = multi_scale_flip_cams(
        cam_fn, x, scales=(1.0, 0.5), flip=False, plain_cams=plain
    )
    torch.testing.assert_close(out, no_flip, rtol=0, atol=0)
    assert [s[0] for s in seen] == [3]  # only the 0.5 scale runs


def _strided_patch_cams(weight: torch.Tensor, patch: int):
    """CAMs of a patch embedding with kernel = stride = ``patch``: it reads
    only whole patches and silently drops the trailing rows / columns."""

    def cam_fn(inp):
        kernel = weight[:, :, None, None].expand(-1, -1, patch, patch) / patch**2
        return F.conv2d(inp, kernel, stride=patch)

    return cam_fn


def test_floor_rounding_matches_a_flooring_patch_embedding():
    """rounding='floor': each scale is resized to int(s * h) x int(s * w) px
    and the CAM is what a flooring patch embedding makes of them (ToCo);
    'round' resizes to whole patches instead (another image)."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 80, 72, dtype=torch.float64)
    weight = torch.randn(4, 3, dtype=torch.float64)
    patch, scales = 16, (1.0, 0.5, 1.5)
    reference_fn = _strided_patch_cams(weight, patch)
    want = 0
    for s in scales:
        size = (int(s * 80), int(s * 72))  # 80x72, 40x36, 120x108 px
        xs = F.interpolate(x, size=size, mode='bilinear', align_corners=False)
        if size == (80, 72):
            xs = x
        cams = torch.cat([reference_fn(xs), reference_fn(xs.flip(-1))])
        cams = F.relu(F.interpolate(cams, (80, 72), mode='bilinear'))
        plain, mirrored = cams.chunk(2)
        want = want + torch.maximum(plain, mirrored.flip(-1))

    seen = []

    def cam_fn(inp):  # a backbone that needs whole patches
        assert inp.shape[-2] % patch == 0 and inp.shape[-1] % patch == 0
        seen.append(tuple(inp.shape[-2:]))
        return reference_fn(inp)

    got = multi_scale_flip_cams(
        cam_fn, x, scales=scales, size_divisor=patch, rounding='floor'
    )
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert seen == [(80, 64), (32, 32), (112, 96)]
    rounded = multi_scale_flip_cams(
        cam_fn, x, scales=scales, size_divisor=patch, rounding='round'
    )
    assert seen[3:] == [(80, 64), (32, 32), (128, 112)]  # resized, not cut
    assert not torch.allclose(rounded, want)


def test_rounding_errors():
    x = torch.randn(1, 3, 20, 20)
    with pytest.raises(ValueError, match='rounding must be one of'):
        multi_scale_flip_cams(lambda t: t, x, rounding='ceil')
    with pytest.raises(ValueError, match='holds no 16 px patch'):
        multi_scale_flip_cams(
            lambda t: t, x, scales=(0.5,), size_divisor=16, rounding='floor'
        )
