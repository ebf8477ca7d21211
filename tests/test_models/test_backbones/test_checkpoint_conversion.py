"""Tests for the checkpoint key conversion and position-embedding resize in
acr_plugin/models/backbones/checkpoint_conversion.py."""

import pytest
import torch

from acr_plugin.models.backbones.checkpoint_conversion import (
    convert_mmseg_vit_to_timm,
    find_backbone_prefix,
    is_mmseg_vit_layout,
    resize_pos_embed,
    select_backbone_state,
    split_head_keys,
    unwrap_checkpoint,
)
from tests.pos_embed_reference import reference_resize


def test_unwrap_and_select_backbone():
    weight = torch.ones(2)
    ckpt = {
        'meta': {'epoch': 3},
        'state_dict': {
            'backbone.vit.blocks.0.norm1.weight': weight,
            'decode_head.conv.weight': weight,
        },
    }
    state = unwrap_checkpoint(ckpt)
    assert set(state) == {
        'backbone.vit.blocks.0.norm1.weight',
        'decode_head.conv.weight',
    }
    assert select_backbone_state(state) == {'blocks.0.norm1.weight': weight}
    assert unwrap_checkpoint({'model': {'module': {'a': weight}}}) == {'a': weight}
    assert find_backbone_prefix(['model.backbone.x', 'backbone.y']) == 'backbone.'
    assert find_backbone_prefix(['model.backbone.x']) == 'model.backbone.'
    # a timm hybrid's CNN is not a model backbone
    assert find_backbone_prefix(['patch_embed.backbone.stem.weight']) is None
    assert select_backbone_state({'module.backbone.cls_token': weight}) == {
        'cls_token': weight
    }
    with pytest.raises(TypeError):
        unwrap_checkpoint([weight])


def test_convert_mmseg_keys_and_heads():
    names = [
        'patch_embed.projection.weight',
        'layers.0.ln1.weight',
        'layers.11.attn.attn.in_proj_weight',
        'layers.1.attn.attn.in_proj_bias',
        'layers.2.attn.attn.out_proj.bias',
        'layers.0.ln2.bias',
        'layers.3.ffn.layers.0.0.weight',
        'layers.3.ffn.layers.1.bias',
        'ln1.weight',
        'cls_token',
        'pos_embed',
    ]
    state = {name: torch.zeros(1) for name in names}
    assert is_mmseg_vit_layout(state)
    assert list(convert_mmseg_vit_to_timm(state)) == [
        'patch_embed.proj.weight',
        'blocks.0.norm1.weight',
        'blocks.11.attn.qkv.weight',
        'blocks.1.attn.qkv.bias',
        'blocks.2.attn.proj.bias',
        'blocks.0.norm2.bias',
        'blocks.3.mlp.fc1.weight',
        'blocks.3.mlp.fc2.bias',
        'norm.weight',
        'cls_token',
        'pos_embed',
    ]
    assert not is_mmseg_vit_layout({'blocks.0.norm1.weight': 0})
    kept, dropped = split_head_keys(
        {'head.weight': 0, 'fc_norm.bias': 0, 'norm.weight': 0}
    )
    assert list(kept) == ['norm.weight']
    assert sorted(dropped) == ['fc_norm.bias', 'head.weight']


def test_resize_pos_embed_function():
    pos = torch.randn(1, 2 + 9, 4)
    out = resize_pos_embed(pos, (5, 2), num_prefix_tokens=2)
    torch.testing.assert_close(
        out, reference_resize(pos, (3, 3), (5, 2), 2), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(out[:, :2], pos[:, :2], atol=0, rtol=0)
    with pytest.raises(ValueError, match='not a square grid'):
        resize_pos_embed(torch.randn(1, 1 + 6, 4), (3, 3), 1)
    same = resize_pos_embed(torch.randn(1, 1 + 6, 4), (2, 3), 1, (2, 3))
    assert same.shape == (1, 7, 4)
