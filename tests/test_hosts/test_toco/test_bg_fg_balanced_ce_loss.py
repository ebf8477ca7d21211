"""BgFgBalancedCELoss and bg_fg_balanced_cross_entropy vs a naive loop reference."""

import math

import pytest
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

from acr_plugin.hosts.toco import bg_fg_balanced_cross_entropy
from tests.samples import gen

IGNORE = 255


# ------------------------------------------------------- balanced CE (seg)
def ce_reference(logits, labels, ignore=IGNORE):
    """Per-pixel log-softmax with python loops."""
    lg, lab = logits.double().tolist(), labels.tolist()
    k = len(lg[0])
    bg, fg = [], []
    for b in range(len(lab)):
        for r in range(len(lab[b])):
            for c in range(len(lab[b][r])):
                y = lab[b][r][c]
                if y == ignore:
                    continue
                z = [lg[b][q][r][c] for q in range(k)]
                m = max(z)
                ce = m + math.log(sum(math.exp(v - m) for v in z)) - z[y]
                (bg if y == 0 else fg).append(ce)
    mean = lambda v: sum(v) / len(v) if v else 0.0  # noqa: E731
    return 0.5 * mean(bg) + 0.5 * mean(fg)


def test_ce_matches_loop_reference():
    logits = torch.randn(2, 4, 3, 5, generator=gen(20), dtype=torch.float64)
    labels = torch.randint(0, 4, (2, 3, 5), generator=gen(21))
    labels[0, 1] = IGNORE
    value = bg_fg_balanced_cross_entropy(logits, labels)
    assert abs(value.item() - ce_reference(logits, labels)) < 1e-12


def test_ce_resizes_logits_to_the_labels():
    logits = torch.randn(1, 3, 2, 3, generator=gen(22), dtype=torch.float64)
    labels = torch.randint(0, 3, (1, 4, 6), generator=gen(23))
    big = F.interpolate(logits, size=(4, 6), mode='bilinear', align_corners=False)
    value = bg_fg_balanced_cross_entropy(logits, labels)
    assert abs(value.item() - ce_reference(big, labels)) < 1e-12


def test_ce_edge_cases():
    logits = torch.randn(1, 3, 2, 2, generator=gen(24), dtype=torch.float64)
    logits.requires_grad_(True)
    only_bg = torch.zeros(1, 2, 2, dtype=torch.long)
    only_fg = torch.tensor([[[1, 2], [2, IGNORE]]])
    for labels in (only_bg, only_fg):
        value = bg_fg_balanced_cross_entropy(logits, labels)
        assert abs(value.item() - ce_reference(logits, labels)) < 1e-12
    ignored = torch.full((1, 2, 2), IGNORE)
    value = bg_fg_balanced_cross_entropy(logits, ignored)
    value.backward()
    assert value.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    # logits at ignored pixels do not matter
    changed = logits.detach().clone()
    changed[0, :, 1, 1] += 5.0
    torch.testing.assert_close(
        bg_fg_balanced_cross_entropy(changed, only_fg),
        bg_fg_balanced_cross_entropy(logits.detach(), only_fg),
    )


def test_ce_module_weight_and_errors():
    loss = MODELS.build(dict(type='BgFgBalancedCELoss'))
    assert loss.loss_name == 'loss_seg' and loss.loss_weight == 0.1
    logits = torch.randn(1, 3, 2, 2, generator=gen(25), requires_grad=True)
    labels = torch.tensor([[[0, 1], [2, IGNORE]]])
    raw = bg_fg_balanced_cross_entropy(logits, labels)
    torch.testing.assert_close(loss(logits, labels), 0.1 * raw)
    loss.loss_weight = 1.0
    loss(logits, labels).backward()
    assert logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match='loss_'):
        MODELS.build(dict(type='BgFgBalancedCELoss', loss_name='seg'))
    # the decode-head call: weight=None, ignore_index=head.ignore_index
    other = torch.tensor([[[0, 1], [2, 7]]])
    torch.testing.assert_close(
        loss(logits, other, weight=None, ignore_index=7), loss(logits, labels)
    )
    with pytest.raises(ValueError, match='weight'):
        loss(logits, labels, weight=torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match='logits'):
        loss(logits[0], labels)
    with pytest.raises(ValueError, match='labels'):
        loss(logits, labels[0])
    with pytest.raises(ValueError, match='labels'):
        loss(logits, labels.float())
    with pytest.raises(ValueError, match='outside'):
        loss(logits, torch.tensor([[[0, 3], [1, 1]]]))
