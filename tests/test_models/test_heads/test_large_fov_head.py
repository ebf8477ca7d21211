"""LargeFOVHead (acr_plugin/models/heads/large_fov_head.py) against a
hand-built stack of dilated convolutions."""

import pytest
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

from acr_plugin.models.heads import LargeFOVHead


def build(**kwargs):
    cfg = dict(type='LargeFOVHead', in_channels=6, channels=5, num_classes=3)
    cfg.update(kwargs)
    return MODELS.build(cfg)


@pytest.mark.parametrize('num_convs,dilation', [(2, 5), (1, 2), (3, 1)])
def test_forward_equals_manual_dilated_conv_stack(num_convs, dilation):
    torch.manual_seed(0)
    head = build(num_convs=num_convs, dilation=dilation).eval()
    assert isinstance(head, LargeFOVHead)
    x = torch.randn(2, 6, 9, 11)
    out = head([x])
    ref = x
    for conv in head.convs:
        weight = conv.conv.weight
        assert weight.shape[-2:] == (3, 3) and conv.conv.bias is None
        ref = F.relu(F.conv2d(ref, weight, padding=dilation, dilation=dilation))
    ref = F.conv2d(ref, head.conv_seg.weight)
    assert head.conv_seg.bias is None
    assert out.shape == (2, 3, 9, 11)
    torch.testing.assert_close(out, ref)


def test_bias_option_and_no_dropout_by_default():
    head = build(bias=True)
    assert head.conv_seg.bias is not None
    assert all(conv.conv.bias is not None for conv in head.convs)
    assert head.dropout is None
    assert len(head.convs) == 2 and head.convs[0].conv.dilation == (5, 5)
    assert head.convs[0].conv.in_channels == 6 and head.convs[1].conv.in_channels == 5


def test_num_convs_must_be_positive():
    with pytest.raises(ValueError, match='num_convs must be >= 1, got 0'):
        build(num_convs=0)
