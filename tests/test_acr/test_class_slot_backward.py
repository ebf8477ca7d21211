"""The class-slot backward of the Grad-CAM head
(acr_plugin/acr/class_slot_backward.py): batched and looped gradients
against torch.autograd.grad of hand-built scores."""

import pytest
import torch

from acr_plugin.acr.class_slot_backward import (
    attention_grads_batched,
    attention_grads_looped,
    class_rows_unreached,
)


def tiny_graph(seed=0):
    """Two attention maps ``(N, heads, T, T)``; logits read the class row of
    the first and the whole second map; a third map is unused."""
    gen = torch.Generator().manual_seed(seed)
    attns = [
        torch.rand(2, 2, 4, 4, generator=gen, dtype=torch.float64).requires_grad_()
        for _ in range(3)
    ]
    weight = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64)
    # logits (N, C=3): class row 0 of map 0 and the mean of map 1
    cls_row = attns[0][:, :, 0, :]  # (N, heads, T)
    logits = torch.einsum('nht,htc->nc', cls_row, weight)
    logits = logits + attns[1].square().mean((1, 2, 3))[:, None] * torch.arange(
        1.0, 4.0, dtype=torch.float64
    )
    return attns, logits


def one_hot_slots():
    # slot 0: class 2 for image 0, class 0 for image 1; slot 1: class 1, unused
    grad_outputs = torch.zeros(2, 2, 3, dtype=torch.float64)
    grad_outputs[0, 0, 2] = grad_outputs[0, 1, 0] = grad_outputs[1, 0, 1] = 1.0
    return grad_outputs


def test_batched_and_looped_equal_per_score_autograd():
    grad_outputs = one_hot_slots()
    attns, logits = tiny_graph()
    batched = attention_grads_batched(logits, attns, grad_outputs)
    attns2, logits2 = tiny_graph()
    looped = attention_grads_looped(logits2, attns2, grad_outputs)
    assert batched[2] is None and looped[2] is None
    for k in range(2):
        attns3, logits3 = tiny_graph()
        score = (logits3 * grad_outputs[k]).sum()
        expected = torch.autograd.grad(score, attns3[:2])
        for layer in range(2):
            assert batched[layer].shape == (2, 2, 2, 4, 4)
            torch.testing.assert_close(batched[layer][k], expected[layer])
            torch.testing.assert_close(looped[layer][k], expected[layer])
    # map 0 gets gradient on its class row only
    assert not batched[0][..., 1:, :].any() and batched[0][..., 0, :].any()


def test_looped_fills_slots_without_gradient_with_zeros():
    attns, logits = tiny_graph()
    grad_outputs = torch.zeros(2, 2, 3, dtype=torch.float64)
    grad_outputs[1, 0, 0] = 1.0  # slot 0 asks for nothing
    grads = attention_grads_looped(logits, attns, grad_outputs)
    assert not grads[0][0].any() and grads[0][1].any()


def test_class_rows_unreached_reasons():
    attns, logits = tiny_graph()
    grads = attention_grads_batched(logits, attns, one_hot_slots())
    assert class_rows_unreached(grads, 0, [0, 1, 2], 0) is None
    # a per-slot row table of zeros reads the same rows
    assert (
        class_rows_unreached(grads, torch.zeros(2, 2, dtype=torch.long), [0, 1, 2], 0)
        is None
    )
    # the last layer with gradient misses row 0: that layer decides
    off_row = grads[1].clone()
    off_row[..., 0, :] = 0
    reason = class_rows_unreached([grads[0], off_row, None], 0, [5, 6, 7], 5)
    assert reason == (
        'the class-token rows get no gradient at layer 6 (the last selected '
        'layer with any gradient)'
    )
    zero = [torch.zeros(2, 2, 2, 4, 4), None]
    assert class_rows_unreached(zero, 0, [3, 4], 3) == (
        'no attention layer from start_layer=3 on gets any gradient'
    )


@pytest.mark.parametrize('row', [1, 3])
def test_class_rows_unreached_per_slot_row_table(row):
    grad = torch.zeros(2, 2, 2, 4, 4)
    grad[1, 0, :, row, :] = 1.0  # only slot 1 of image 0 reaches row ``row``
    table = torch.zeros(2, 2, dtype=torch.long)
    table[1, 0] = row
    assert class_rows_unreached([grad], table, [0], 0) is None
    assert class_rows_unreached([grad], (row + 1) % 4, [0], 0) is not None
