"""Discovery of attention modules in timm and mmseg ViTs."""

import pytest
import torch.nn as nn

from acr_plugin.acr.attention.attention_capture import AttentionCapture
from acr_plugin.acr.attention.attention_sites import find_attention_modules
from tests.test_acr.test_attention.attention_models import (
    build_mmseg,
    build_timm,
)


def test_find_attention_modules_timm_and_mmseg():
    model, _ = build_timm('vit')
    sites = find_attention_modules(model)
    assert [s.name for s in sites] == [f'blocks.{i}.attn' for i in range(3)]
    assert {s.kind for s in sites} == {'timm'}
    mm_model, _ = build_mmseg()
    sites = find_attention_modules(mm_model)
    assert [s.name for s in sites] == [
        f'backbone.layers.{i}.attn.attn' for i in range(2)
    ]
    assert all(isinstance(s.module, nn.MultiheadAttention) for s in sites)
    assert {s.kind for s in sites} == {'torch_mha'}


def test_no_attention_raises_value_error():
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    with pytest.raises(ValueError, match='Sequential'):
        AttentionCapture(cnn)
    with pytest.raises(ValueError, match='Sequential'):
        find_attention_modules(cnn)
