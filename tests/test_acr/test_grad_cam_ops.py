"""Tests for the pure Grad-CAM tensor ops in acr_plugin/acr/grad_cam_ops.py."""

import pytest
import torch

from acr_plugin.acr import (
    grad_cam_maps,
    grad_cam_maps_batched,
)

VARIANTS = ('grad', 'cam_grad', 'grad_s', 'cam_grad_s')


def test_ops_batched_matches_per_class_and_validates():
    torch.manual_seed(0)
    attns = [torch.rand(2, 3, 7, 7).softmax(-1) for _ in range(3)]
    grads = [torch.randn(4, 2, 3, 7, 7) for _ in range(3)]
    for variant in VARIANTS:
        for refine in (False, True):
            batched = grad_cam_maps_batched(
                attns, [None] + grads[1:], variant, -2, 3, 1, refine
            )
            assert batched.shape == (4, 2, 4)
            for k in range(4):
                single = grad_cam_maps(
                    attns, [None] + [g[k] for g in grads[1:]], variant, 1, 3, 1, refine
                )
                torch.testing.assert_close(batched[k], single)
    # a per-map row table equals the same int row everywhere
    rows = torch.full((4, 2), 2, dtype=torch.long)
    torch.testing.assert_close(
        grad_cam_maps_batched(attns, grads, 'cam_grad_s', 0, 3, rows),
        grad_cam_maps_batched(attns, grads, 'cam_grad_s', 0, 3, 2),
    )
    with pytest.raises(ValueError, match='variant'):
        grad_cam_maps(attns, grads, variant='gradcam')
    with pytest.raises(ValueError, match='gradients'):
        grad_cam_maps(attns, grads[:2])
    with pytest.raises(IndexError, match='start_layer'):
        grad_cam_maps(attns, [g[0] for g in grads], start_layer=3)
