"""The registered ViTAttentionCapture wrapper."""

import pytest
import torch
from mmseg.registry import MODELS

from acr_plugin.acr.attention.vit_attention_capture import ViTAttentionCapture
from tests.test_acr.test_attention.attention_models import (
    MMSEG_VIT,
    build_timm,
    no_hooks_left,
)


def test_registered_wrapper_from_config():
    torch.manual_seed(0)
    wrapper = MODELS.build(
        dict(type='ViTAttentionCapture', model=MMSEG_VIT, layers=[-1], detach=True)
    )
    assert isinstance(wrapper, ViTAttentionCapture)
    wrapper.init_weights()
    wrapper.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = wrapper.model(x)
    out, attentions = wrapper(x)
    torch.testing.assert_close(out[-1][0], expected[-1][0], rtol=0, atol=1e-6)
    assert len(attentions) == 1 and attentions[0].shape == (2, 2, 17, 17)
    assert not attentions[0].requires_grad
    assert no_hooks_left(wrapper)
    # a built module is accepted too; qk mode returns (q, k) pairs
    timm_model, x = build_timm('vit')
    wrapper = ViTAttentionCapture(timm_model, mode='qk')
    _, attentions = wrapper(x)
    assert len(attentions) == 3 and len(attentions[0]) == 2
    with pytest.raises(IndexError, match='VisionTransformer'):
        ViTAttentionCapture(timm_model, layers=[5])
