import pytest
import torch

from acr_plugin.hosts.mctformer import (
    class_to_patch_maps,
    class_token_logits,
    patch_affinity,
    patch_affinity_refine,
)


def random_attention(batch, heads, tokens, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, heads, tokens, tokens, generator=gen).softmax(-1)


def loop_class_maps(attns, num_cls, h, w):
    """Reference: explicit loops over images, classes, patches, layers, heads."""
    batch = attns[0].shape[0]
    out = torch.zeros(batch, num_cls, h, w, dtype=torch.float64)
    for b in range(batch):
        for c in range(num_cls):
            for p in range(h * w):
                value = 0.0
                for attn in attns:
                    heads = attn.shape[1]
                    value += (
                        sum(float(attn[b, k, c, num_cls + p]) for k in range(heads))
                        / heads
                    )
                out[b, c, p // w, p % w] = value
    return out


def test_class_to_patch_maps_matches_loops():
    num_cls, h, w = 3, 2, 3
    attns = [random_attention(2, 4, num_cls + h * w, seed=s) for s in range(2)]
    maps = class_to_patch_maps(attns, num_cls, (h, w))
    assert maps.shape == (2, num_cls, h, w)
    torch.testing.assert_close(maps.double(), loop_class_maps(attns, num_cls, h, w))
    # head-averaged (B, T, T) inputs give the same maps
    averaged = [a.mean(1) for a in attns]
    torch.testing.assert_close(class_to_patch_maps(averaged, num_cls, (h, w)), maps)


def test_patch_affinity_refine_matches_loops():
    num_cls, h, w = 2, 2, 2
    n = h * w
    attns = [random_attention(1, 3, num_cls + n, seed=s) for s in range(3)]
    gen = torch.Generator().manual_seed(5)
    maps = torch.rand(1, num_cls, h, w, generator=gen)
    refined = patch_affinity_refine(maps, attns, num_cls)
    expected = torch.zeros(1, num_cls, n)
    for c in range(num_cls):
        for i in range(n):
            for j in range(n):
                p_ij = sum(a[0, :, num_cls + i, num_cls + j].mean() for a in attns)
                expected[0, c, i] += p_ij * maps[0, c, j // w, j % w]
    torch.testing.assert_close(refined, expected.view(1, num_cls, h, w))


def test_patch_affinity_ignores_class_tokens():
    num_cls, n = 2, 4
    attn = random_attention(1, 2, num_cls + n)
    changed = attn.clone()
    changed[:, :, :num_cls] = 0.5  # class rows
    changed[:, :, :, :num_cls] = 0.5  # class columns
    torch.testing.assert_close(
        patch_affinity([attn], num_cls), patch_affinity([changed], num_cls)
    )
    assert patch_affinity([attn, attn], num_cls).shape == (1, n, n)


def test_class_token_logits_is_the_embedding_mean():
    tokens = torch.arange(12.0).view(1, 2, 6)
    torch.testing.assert_close(class_token_logits(tokens), torch.tensor([[2.5, 8.5]]))
    with pytest.raises(ValueError, match='class_token_logits'):
        class_token_logits(torch.zeros(2, 6))


def test_bad_inputs_raise():
    attn = random_attention(1, 2, 7)
    with pytest.raises(ValueError, match='class_to_patch_maps'):
        class_to_patch_maps([attn], 3, (2, 3))  # 3 + 6 != 7
    with pytest.raises(ValueError, match='no attention'):
        class_to_patch_maps([], 3, (2, 2))
    with pytest.raises(ValueError, match='patch_affinity_refine'):
        patch_affinity_refine(torch.zeros(1, 3, 2, 3), [attn], 3)
    with pytest.raises(ValueError, match='heads'):
        patch_affinity([torch.zeros(7, 7)], 3)
