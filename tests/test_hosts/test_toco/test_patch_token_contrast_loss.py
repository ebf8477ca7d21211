"""PatchTokenContrastLoss and patch_token_contrast vs a naive loop reference."""

import math

import pytest
import torch
from mmseg.registry import MODELS

from acr_plugin.hosts.toco import patch_token_contrast
from tests.samples import gen

IGNORE = 255


# --------------------------------------------------------------------- PTC
def ptc_reference(tokens, labels, ignore=IGNORE):
    """Loops over ordered pairs of tokens of the same image (python floats)."""
    b, d, h, w = tokens.shape
    t, lab = tokens.double().tolist(), labels.tolist()
    pos = neg = 0.0
    n_pos = n_neg = 0
    for n in range(b):
        cells = [(r, c) for r in range(h) for c in range(w)]
        for i, (ri, ci) in enumerate(cells):
            for j, (rj, cj) in enumerate(cells):
                li, lj = lab[n][ri][ci], lab[n][rj][cj]
                if i == j or li == ignore or lj == ignore:
                    continue
                fi = [t[n][k][ri][ci] for k in range(d)]
                fj = [t[n][k][rj][cj] for k in range(d)]
                dot = sum(x * y for x, y in zip(fi, fj))
                norm = math.sqrt(sum(x * x for x in fi) * sum(y * y for y in fj))
                s = abs(dot / norm)
                if li == lj:
                    pos, n_pos = pos + s, n_pos + 1
                else:
                    neg, n_neg = neg + s, n_neg + 1
    return 0.5 * (1 - pos / (n_pos + 1)) + 0.5 * neg / (n_neg + 1)


def test_ptc_matches_loop_reference():
    tokens = torch.randn(2, 5, 3, 4, generator=gen(0), dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 3, 4), generator=gen(1))
    labels[0, 0, :2] = IGNORE
    labels[1, 2, 3] = IGNORE
    value = patch_token_contrast(tokens, labels)
    assert abs(value.item() - ptc_reference(tokens, labels)) < 1e-12


def test_ptc_edge_cases():
    tokens = torch.randn(2, 4, 2, 3, generator=gen(2), dtype=torch.float64)
    tokens.requires_grad_(True)
    # all ignored: 0.5, finite, zero gradient
    ignored = torch.full((2, 2, 3), IGNORE)
    value = patch_token_contrast(tokens, ignored)
    value.backward()
    assert value.item() == 0.5
    assert torch.equal(tokens.grad, torch.zeros_like(tokens))
    # one label everywhere: no negative pair
    same = torch.ones(2, 2, 3, dtype=torch.long)
    assert (
        abs(patch_token_contrast(tokens, same).item() - ptc_reference(tokens, same))
        < 1e-12
    )
    # all labels distinct within each image: no positive pair
    distinct = torch.arange(6).reshape(1, 2, 3).repeat(2, 1, 1)
    value = patch_token_contrast(tokens, distinct)
    assert abs(value.item() - ptc_reference(tokens, distinct)) < 1e-12
    assert value.item() >= 0.5
    # identical tokens with one label: perfect positives -> 0.5 * (1 - n / (n + 1))
    flat = torch.ones(1, 3, 2, 2, dtype=torch.float64)
    n = 4 * 3
    expected = 0.5 * (1 - n / (n + 1))
    assert (
        abs(
            patch_token_contrast(flat, torch.zeros(1, 2, 2, dtype=torch.long))
            - expected
        )
        < 1e-12
    )


def test_ptc_invariances_and_gradient():
    tokens = torch.randn(1, 4, 3, 3, generator=gen(3), dtype=torch.float64)
    labels = torch.randint(0, 2, (1, 3, 3), generator=gen(4))
    base = patch_token_contrast(tokens, labels)
    # per-token positive scale and sign flips do not change |cos|
    scale = torch.rand(1, 1, 3, 3, generator=gen(5), dtype=torch.float64) + 0.5
    sign = torch.where(torch.rand(1, 1, 3, 3, generator=gen(6)) > 0.5, 1.0, -1.0)
    torch.testing.assert_close(
        patch_token_contrast(tokens * scale * sign, labels), base
    )
    leaf = tokens.clone().requires_grad_(True)
    patch_token_contrast(leaf, labels).backward()
    assert leaf.grad.abs().sum() > 0


def test_ptc_module_weight_and_errors():
    loss = MODELS.build(dict(type='PatchTokenContrastLoss'))
    assert loss.loss_name == 'loss_ptc' and loss.loss_weight == 0.2
    tokens = torch.randn(1, 3, 2, 2, generator=gen(7))
    labels = torch.tensor([[[0, 1], [1, IGNORE]]])
    raw = patch_token_contrast(tokens, labels)
    torch.testing.assert_close(loss(tokens, labels), 0.2 * raw)
    loss.loss_weight = 3.0  # a hook changes it at run time
    torch.testing.assert_close(loss(tokens, labels), 3.0 * raw)
    with pytest.raises(ValueError, match='loss_'):
        MODELS.build(dict(type='PatchTokenContrastLoss', loss_name='ptc'))
    with pytest.raises(ValueError, match='tokens'):
        loss(tokens[0], labels)
    with pytest.raises(ValueError, match='labels'):
        loss(tokens, labels[:, :1])
    with pytest.raises(ValueError, match='labels'):
        loss(tokens, labels.float())
