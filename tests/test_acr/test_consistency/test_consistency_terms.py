"""The pure ACR terms in acr_plugin/acr/consistency/consistency_terms.py
against per-element loops written out here."""

import math

import pytest
import torch

from acr_plugin.acr.consistency.consistency_terms import (
    affinity_term,
    cam_term,
    class_row_term,
    elementwise_distance,
    normalize_cams,
    patch_row_entropy,
    symmetric_kl_rows,
)


def softmax_attention(*shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.softmax(2 * torch.randn(*shape, generator=gen), dim=-1).double()


def scalar_distance(a, b, distance, beta):
    d = abs(a - b)
    if distance == 'l1':
        return d
    if distance == 'l2':
        return d * d
    return 0.5 * d * d / beta if d < beta else d - 0.5 * beta


@pytest.mark.parametrize('distance', ['l1', 'l2', 'smooth_l1'])
def test_elementwise_distance_per_element(distance):
    x = torch.tensor([0.0, 0.3, -1.0, 2.0], dtype=torch.float64)
    y = torch.tensor([0.05, 0.3, 1.0, -0.5], dtype=torch.float64)
    got = elementwise_distance(x, y, distance, beta=0.1)
    expected = [scalar_distance(a, b, distance, 0.1) for a, b in zip(x, y)]
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))
    with pytest.raises(ValueError, match='unknown element-wise distance'):
        elementwise_distance(x, y, 'kl')


def test_symmetric_kl_rows_renormalises_over_the_mask():
    p = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.1, 0.3]], dtype=torch.float64)
    q = torch.tensor([[0.4, 0.4, 0.2], [0.1, 0.8, 0.1]], dtype=torch.float64)
    mask = torch.tensor([True, False, True])
    expected = []
    for row_p, row_q in zip(p, q):
        a = [row_p[0].item(), row_p[2].item()]
        b = [row_q[0].item(), row_q[2].item()]
        a = [v / sum(a) for v in a]
        b = [v / sum(b) for v in b]
        kl_ab = sum(u * math.log(u / v) for u, v in zip(a, b))
        kl_ba = sum(v * math.log(v / u) for u, v in zip(a, b))
        expected.append(0.5 * (kl_ab + kl_ba))
    got = symmetric_kl_rows(p, q, mask)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))
    assert torch.all(symmetric_kl_rows(p, p) == 0)


@pytest.mark.parametrize('distance', ['l1', 'smooth_l1'])
def test_class_row_and_affinity_terms_match_loops(distance):
    b, heads, prefix, n, beta = 2, 2, 2, 5, 0.05
    attn1 = softmax_attention(b, heads, prefix + n, prefix + n, seed=1)
    attn2 = softmax_attention(b, heads, prefix + n, prefix + n, seed=2)
    valid = torch.tensor([True, False, True, True, False])
    keep = [k for k in range(n) if valid[k]]
    for s in range(b):
        cls_vals = [
            scalar_distance(
                attn1[s, h, p, prefix + k].item(),
                attn2[s, h, p, prefix + k].item(),
                distance,
                beta,
            )
            for h in range(heads)
            for p in range(prefix)
            for k in keep
        ]
        aff_vals = [
            scalar_distance(
                attn1[s, h, prefix + i, prefix + k].item(),
                attn2[s, h, prefix + i, prefix + k].item(),
                distance,
                beta,
            )
            for h in range(heads)
            for i in keep
            for k in keep
        ]
        got_cls = class_row_term(attn1, attn2, prefix, valid, distance, beta)[s]
        got_aff = affinity_term(attn1, attn2, prefix, valid, distance, beta)[s]
        assert got_cls.item() == pytest.approx(sum(cls_vals) / len(cls_vals))
        assert got_aff.item() == pytest.approx(sum(aff_vals) / len(aff_vals))


def test_kl_terms_average_rows():
    prefix, n = 1, 4
    attn1 = softmax_attention(3, prefix + n, prefix + n, seed=3)
    attn2 = softmax_attention(3, prefix + n, prefix + n, seed=4)
    cols = torch.ones(n, dtype=torch.bool)
    cls_rows = symmetric_kl_rows(attn1[:, :1, 1:], attn2[:, :1, 1:], cols)
    aff_rows = symmetric_kl_rows(attn1[:, 1:, 1:], attn2[:, 1:, 1:], cols)
    torch.testing.assert_close(
        class_row_term(attn1, attn2, distance='kl'), cls_rows.mean(1)
    )
    torch.testing.assert_close(
        affinity_term(attn1, attn2, distance='kl'), aff_rows.mean(1)
    )


def test_attention_terms_refuse_bad_input():
    attn = softmax_attention(1, 4, 4)
    with pytest.raises(ValueError, match='differ in shape'):
        affinity_term(attn, softmax_attention(1, 5, 5))
    with pytest.raises(ValueError, match='at least one prefix token'):
        class_row_term(attn, attn, num_prefix=0)
    with pytest.raises(ValueError, match='no patch tokens'):
        affinity_term(attn, attn, num_prefix=4)
    with pytest.raises(ValueError, match='one entry per patch token'):
        affinity_term(attn, attn, valid=torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match='do not overlap'):
        class_row_term(attn, attn, valid=torch.zeros(3, dtype=torch.bool))


def test_normalize_cams_and_cam_term():
    cams = torch.tensor([[[[-1.0, 2.0], [0.5, 4.0]]]], dtype=torch.float64)
    expected = torch.tensor([[[[0.0, 2.0], [0.5, 4.0]]]], dtype=torch.float64) / (
        4.0 + 1e-5
    )
    torch.testing.assert_close(normalize_cams(cams), expected)
    other = torch.zeros_like(cams)
    valid = torch.tensor([False, True, True, False])
    # |2 - 0| and |0.5 - 0| over the two valid positions
    assert cam_term(cams, other, valid).item() == pytest.approx(1.25)
    assert cam_term(cams, other, distance='l2').item() == pytest.approx(
        (1 + 4 + 0.25 + 16) / 4
    )
    with pytest.raises(ValueError, match='CAMs must both be'):
        cam_term(cams, other[0])


def test_patch_row_entropy_matches_loop():
    heads, prefix, tokens = 2, 1, 5
    attn = softmax_attention(2, heads, tokens, tokens, seed=5)
    for s in range(2):
        ents = [
            -sum(v * math.log(v) for v in attn[s, h, i].tolist()) / math.log(tokens)
            for h in range(heads)
            for i in range(prefix, tokens)
        ]
        got = patch_row_entropy(attn, prefix)[s].item()
        assert got == pytest.approx(sum(ents) / len(ents))
    uniform = torch.full((1, tokens, tokens), 1.0 / tokens)
    assert patch_row_entropy(uniform).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match='too few tokens'):
        patch_row_entropy(uniform, num_prefix=tokens)
