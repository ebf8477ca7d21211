"""The host contract: protocols, the mmseg ViT layout and the shipped hosts."""

import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS
from torch import nn

from acr_plugin.models.backbones import TimmViT
from acr_plugin.models.host_contract import (
    ACRHost,
    CAMLossHost,
    GradCAMHost,
    MMSegViTLayout,
    ViTBackbone,
    ViTHost,
    protocol_members,
    require_members,
    vit_layout,
)

TINY = dict(patch_size=8, embed_dim=32, depth=2, num_heads=2)
#: a small mmseg VisionTransformer (patch 8, width 32, one class token)
MMSEG_VIT = dict(type='VisionTransformer', img_size=32, patch_size=8, embed_dims=32)
MMSEG_VIT.update(num_layers=1, num_heads=2, output_cls_token=True, final_norm=False)
HOST_CONFIGS = (
    'configs/vit_cam/vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py',
    'configs/toco/toco_tiny-p8_1xb32-600it_synthetic-64x64.py',
    'configs/mctformer/mctformer-v2_tiny-p8_1xb64-600it_synthetic-64x64.py',
)


def test_protocol_members_include_the_base_protocols():
    assert protocol_members(ViTHost) == [
        'captured_vit',
        'patch_size',
        'num_prefix_tokens',
        'token_grid',
    ]
    assert protocol_members(GradCAMHost) == protocol_members(ViTHost) + ['logits']
    members = protocol_members(CAMLossHost)
    assert members[:4] == protocol_members(ViTHost)
    assert set(members[4:]) == {'align_corners', 'loss', 'predict', 'loss_with_cams'}
    assert set(protocol_members(ViTBackbone)) == {
        'embed_dim',
        'patch_size',
        'num_prefix_tokens',
        'grid_size',
    }


def test_require_members_names_the_member_the_class_and_the_protocol():
    class Half(nn.Module):
        captured_vit = None
        patch_size = 8

    with pytest.raises(TypeError, match='Tool: Half .* ViTHost .*num_prefix_tokens'):
        require_members(Half(), ViTHost, 'Tool')
    with pytest.raises(TypeError, match='missing .*token_grid, extra_fn'):
        require_members(Half(), ViTHost, 'Tool', extra=['extra_fn'])


def test_timm_vit_implements_the_backbone_protocol():
    vit = TimmViT('vit_tiny_patch16_224', img_size=32, model_kwargs=TINY)
    assert isinstance(vit, ViTBackbone) and vit_layout(vit) is vit
    ((patch_map, prefix),) = vit(torch.rand(1, 3, 40, 24))
    assert tuple(patch_map.shape[-2:]) == vit.grid_size(40, 24) == (5, 3)
    assert prefix.shape[1] == vit.num_prefix_tokens == 1


@pytest.mark.parametrize('size', [(32, 32), (30, 44), (41, 17)])
def test_mmseg_layout_matches_the_real_token_grid(size):
    vit = MODELS.build(MMSEG_VIT)
    layout = vit_layout(vit)
    assert isinstance(layout, MMSegViTLayout) and isinstance(layout, ViTBackbone)
    ((patch_map, cls_token),) = vit(torch.rand(1, 3, *size))
    assert tuple(patch_map.shape[-2:]) == layout.grid_size(*size)
    assert layout.embed_dim == cls_token.shape[-1] == 32
    assert layout.patch_size == 8 and layout.num_prefix_tokens == 1


def test_other_backbones_are_refused_by_name():
    with pytest.raises(TypeError, match='Conv2d .*ViTBackbone.*embed_dim'):
        vit_layout(nn.Conv2d(3, 8, 3))


@pytest.mark.parametrize('path', HOST_CONFIGS)
def test_shipped_hosts_implement_the_contract(path):
    model = MODELS.build(Config.fromfile(path).model)
    for protocol in (ViTHost, GradCAMHost, ACRHost, CAMLossHost):
        assert isinstance(model, protocol)
        require_members(model, protocol, 'test')
    assert model.captured_vit is model.backbone
    assert model.patch_size == 8
    assert model.num_prefix_tokens == model.backbone.num_prefix_tokens
    assert model.token_grid(64, 48) == (8, 6)
