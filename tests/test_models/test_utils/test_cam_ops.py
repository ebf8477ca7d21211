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
