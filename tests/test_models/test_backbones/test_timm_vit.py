"""Tests for the timm ViT backbone wrapper and its pretrained-weight loading."""

import functools
import math

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmseg.registry import MODELS

from acr_plugin.models.backbones import TimmViT
from tests.pos_embed_reference import reference_resize

TINY = dict(patch_size=8, embed_dim=32, depth=3, num_heads=2)


def tiny_vit(img_size=32, model_kwargs=None, **kwargs) -> TimmViT:
    return TimmViT(
        'vit_tiny_patch16_224',
        img_size=img_size,
        model_kwargs=dict(TINY, **(model_kwargs or {})),
        **kwargs,
    )


def randomise_(module: nn.Module, seed: int = 0) -> None:
    """Overwrite every parameter with N(0, 0.3) noise (LN weights around 1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=gen) * 0.3
            is_norm_weight = (
                param.dim() == 1
                and 'weight' in name
                and ('norm' in name or 'ln' in name)
            )
            param.copy_(noise + 1 if is_norm_weight else noise)


# --------------------------------------------------------------- references
def reference_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A timm ``Block`` (no layer scale, eval mode) written with plain ops."""
    attn = block.attn
    heads = attn.num_heads
    b, n, d = x.shape
    y = F.layer_norm(x, (d,), block.norm1.weight, block.norm1.bias, block.norm1.eps)
    qkv = y @ attn.qkv.weight.T + attn.qkv.bias
    q, k, v = qkv.reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), -1)
    y = (probs @ v).transpose(1, 2).reshape(b, n, d)
    x = x + y @ attn.proj.weight.T + attn.proj.bias
    y = F.layer_norm(x, (d,), block.norm2.weight, block.norm2.bias, block.norm2.eps)
    y = F.gelu(y @ block.mlp.fc1.weight.T + block.mlp.fc1.bias)
    return x + y @ block.mlp.fc2.weight.T + block.mlp.fc2.bias


def reference_forward(vit: nn.Module, x: torch.Tensor, pos_embed: torch.Tensor):
    """Plain ViT forward with an explicit position embedding.

    Returns every block's tokens ``(B, 1 + N, D)`` and the grid.
    """
    proj = vit.patch_embed.proj
    patches = F.conv2d(x, proj.weight, proj.bias, stride=proj.stride)
    gh, gw = patches.shape[-2:]
    tokens = patches.flatten(2).transpose(1, 2)
    cls = vit.cls_token.expand(x.shape[0], -1, -1)
    tokens = torch.cat([cls, tokens], dim=1) + pos_embed
    outs = []
    for block in vit.blocks:
        tokens = reference_block(block, tokens)
        outs.append(tokens)
    return outs, (gh, gw)


# ------------------------------------------------------------------- shapes
@pytest.mark.parametrize('hw', [(32, 32), (64, 96), (40, 24)])
def test_shapes_square_and_non_square(hw):
    model = tiny_vit(out_indices=(0, -1)).eval()
    outs = model(torch.rand(2, 3, *hw))
    gh, gw = hw[0] // 8, hw[1] // 8
    assert model.grid_size(*hw) == (gh, gw)
    assert len(outs) == 2
    for patch_map, prefix in outs:
        assert patch_map.shape == (2, 32, gh, gw)
        assert prefix.shape == (2, 1, 32)


@pytest.mark.parametrize(
    'class_token,reg_tokens,expected',
    [
        (True, 0, 1),
        (True, 2, 3),
        (False, 0, 0),
    ],
)
def test_prefix_tokens(class_token, reg_tokens, expected):
    model = tiny_vit(
        model_kwargs=dict(
            class_token=class_token,
            reg_tokens=reg_tokens,
            global_pool='token' if class_token else 'avg',
        )
    )
    assert model.num_prefix_tokens == expected
    ((patch_map, prefix),) = model(torch.rand(1, 3, 64, 96))
    assert patch_map.shape == (1, 32, 8, 12)
    assert prefix.shape == (1, expected, 32)


def test_properties_and_registry():
    model = MODELS.build(
        dict(
            type='TimmViT',
            model_name='vit_tiny_patch16_224',
            img_size=32,
            model_kwargs=TINY,
            out_indices=(1, -1),
        )
    )
    assert isinstance(model, TimmViT)
    assert model.patch_size == 8
    assert model.embed_dim == 32
    assert model.num_layers == 3
    assert model.blocks is model.vit.blocks
    assert model.out_indices == (1, 2)
    # attention is left exactly as timm builds it
    reference = timm.create_model(
        'vit_tiny_patch16_224', num_classes=0, img_size=32, **TINY
    )
    assert [b.attn.fused_attn for b in model.blocks] == [
        b.attn.fused_attn for b in reference.blocks
    ]


def test_bad_arguments():
    with pytest.raises(IndexError, match='out index 3'):
        tiny_vit(out_indices=(3,))
    with pytest.raises(ValueError, match='out_norm has 1 flags'):
        tiny_vit(out_indices=(0, 1), out_norm=(True,))
    with pytest.raises(ValueError, match='repeat'):
        tiny_vit(out_indices=(2, -1))
    with pytest.raises(ValueError, match='img_size'):
        tiny_vit(model_kwargs=dict(img_size=64))
    with pytest.raises(ValueError, match='not both'):
        tiny_vit(
            pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='a.pth')
        )
    with pytest.raises(ValueError, match='patch_drop'):
        tiny_vit(model_kwargs=dict(patch_drop_rate=0.5))


# --------------------------------------------------------------- numerics
def test_matches_timm_forward_intermediates():
    model = tiny_vit(out_indices=(0, -1), out_norm=(False, True)).eval()
    randomise_(model)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        outs = model(x)
        raw = model.vit.forward_intermediates(
            x, indices=[0, 2], return_prefix_tokens=True, intermediates_only=True
        )
        normed = model.vit.forward_intermediates(
            x,
            indices=[0, 2],
            return_prefix_tokens=True,
            norm=True,
            intermediates_only=True,
        )
    torch.testing.assert_close(outs[0][0], raw[0][0], atol=1e-6, rtol=0)
    torch.testing.assert_close(outs[0][1], raw[0][1], atol=1e-6, rtol=0)
    torch.testing.assert_close(outs[1][0], normed[1][0], atol=1e-6, rtol=0)
    torch.testing.assert_close(outs[1][1], normed[1][1], atol=1e-6, rtol=0)
    # out_norm really changes the output
    assert not torch.allclose(outs[1][0], raw[1][0])


def test_matches_manual_reference_at_build_size():
    model = tiny_vit(out_indices=(0, 1, 2)).eval()
    randomise_(model)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        outs = model(x)
        ref, (gh, gw) = reference_forward(model.vit, x, model.vit.pos_embed)
    for (patch_map, prefix), tokens in zip(outs, ref):
        expected = tokens[:, 1:].transpose(1, 2).reshape(2, 32, gh, gw)
        torch.testing.assert_close(patch_map, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(prefix, tokens[:, :1], atol=1e-5, rtol=1e-5)


def test_dynamic_pos_embed_is_bicubic_resize_of_grid():
    model = tiny_vit().eval()  # built for 32x32 -> 4x4 grid
    randomise_(model, seed=1)
    x = torch.rand(1, 3, 48, 80)  # 6x10 grid
    pos = reference_resize(model.vit.pos_embed.detach(), (4, 4), (6, 10))
    with torch.no_grad():
        ((patch_map, prefix),) = model(x)
        ref, (gh, gw) = reference_forward(model.vit, x, pos)
    assert (gh, gw) == (6, 10)
    expected = ref[-1][:, 1:].transpose(1, 2).reshape(1, 32, 6, 10)
    torch.testing.assert_close(patch_map, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(prefix, ref[-1][:, :1], atol=1e-4, rtol=1e-4)


def test_tiny_hybrid_true_grid():
    model = TimmViT(
        'vit_tiny_r_s16_p8_224',
        img_size=64,
        model_kwargs=dict(embed_dim=32, depth=2, num_heads=2),
    ).eval()
    assert model.patch_size == 32
    for hw in [(64, 64), (64, 96), (100, 70), (130, 40)]:
        ((patch_map, prefix),) = model(torch.rand(1, 3, *hw))
        assert patch_map.shape[2:] == model.grid_size(*hw), hw
        assert prefix.shape == (1, 1, 32)


# ----------------------------------------------------------------- freezing
def test_freeze_pos_embed():
    model = tiny_vit(freeze_pos_embed=True)
    assert not model.vit.pos_embed.requires_grad
    ((patch_map, prefix),) = model(torch.rand(1, 3, 32, 48))
    (patch_map.sum() + prefix.sum()).backward()
    assert model.vit.pos_embed.grad is None
    assert model.vit.cls_token.grad is not None
    assert model.vit.patch_embed.proj.weight.grad is not None


# -------------------------------------------------------- pretrained loading
def assert_same_vit(model: TimmViT, state: dict) -> None:
    own = model.vit.state_dict()
    for key, value in state.items():
        torch.testing.assert_close(own[key], value, atol=0, rtol=0)


def test_load_timm_layout(tmp_path):
    source = timm.create_model(
        'vit_tiny_patch16_224', num_classes=5, img_size=32, **TINY
    )
    randomise_(source, seed=2)
    path = tmp_path / 'timm.pth'
    torch.save(source.state_dict(), path)
    model = tiny_vit(init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    expected = {
        k: v for k, v in source.state_dict().items() if not k.startswith('head.')
    }
    assert_same_vit(model, expected)
    report = model.load_pretrained(str(path))
    assert not report['missing'] and not report['unexpected']


def test_load_mmseg_vision_transformer_layout(tmp_path):
    mmseg_vit = MODELS.build(
        dict(
            type='VisionTransformer',
            img_size=32,
            patch_size=8,
            embed_dims=32,
            num_layers=3,
            num_heads=2,
            mlp_ratio=4,
            qkv_bias=True,
            patch_bias=True,
            final_norm=True,
            with_cls_token=True,
            output_cls_token=True,
            interpolate_mode='bicubic',
        )
    )
    randomise_(mmseg_vit, seed=3)
    mmseg_vit.eval()  # returns None: do not chain
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ((mm_patch, mm_cls),) = mmseg_vit(x)

    direct = tmp_path / 'mmseg_vit.pth'
    torch.save(mmseg_vit.state_dict(), direct)
    segmentor = tmp_path / 'mmseg_segmentor.pth'
    torch.save(
        {
            'state_dict': {
                f'backbone.{k}': v for k, v in mmseg_vit.state_dict().items()
            },
            'meta': {},
        },
        segmentor,
    )
    for path in (direct, segmentor):
        model = tiny_vit(
            model_kwargs=dict(norm_layer=functools.partial(nn.LayerNorm, eps=1e-5)),
            out_norm=True,
            pretrained=str(path),
        )
        model.init_weights()
        model.eval()
        with torch.no_grad():
            ((patch_map, prefix),) = model(x)
        torch.testing.assert_close(patch_map, mm_patch, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(prefix[:, 0], mm_cls, atol=1e-5, rtol=1e-5)


def test_load_runner_checkpoint_of_our_segmentor(tmp_path):
    source = tiny_vit().eval()
    randomise_(source, seed=4)
    state = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    state['decode_head.conv_seg.weight'] = torch.zeros(3, 32, 1, 1)
    path = tmp_path / 'iter_100.pth'
    torch.save({'meta': {'iter': 100}, 'state_dict': state, 'message_hub': {}}, path)

    # the usual mmengine route: a parent module's init_weights reaches ours
    class Parent(BaseModule):
        def __init__(self):
            super().__init__()
            self.backbone = tiny_vit(
                init_cfg=dict(type='Pretrained', checkpoint=str(path))
            )

    parent = Parent()
    parent.init_weights()
    model = parent.backbone.eval()
    assert_same_vit(model, source.vit.state_dict())
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0][0], source(x)[0][0], atol=0, rtol=0)


def test_load_at_other_img_size_resizes_pos_embed(tmp_path):
    source = tiny_vit(img_size=32)  # 4x4 grid
    randomise_(source, seed=5)
    path = tmp_path / 'small.pth'
    torch.save(
        {'state_dict': {f'backbone.{k}': v for k, v in source.state_dict().items()}},
        path,
    )
    model = tiny_vit(img_size=(48, 64), pretrained=str(path))  # 6x8 grid
    model.init_weights()
    expected = reference_resize(source.vit.pos_embed.detach(), (4, 4), (6, 8))
    assert model.vit.pos_embed.shape == (1, 1 + 48, 32)
    torch.testing.assert_close(
        model.vit.pos_embed.detach(), expected, atol=1e-5, rtol=0
    )
    rest = {k: v for k, v in source.vit.state_dict().items() if k != 'pos_embed'}
    assert_same_vit(model, rest)


def test_init_weights_without_checkpoint_keeps_weights():
    model = tiny_vit()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.init_weights()
    assert_same_vit(model, {k[len('vit.') :]: v for k, v in before.items()})
    # non-Pretrained init cfgs still go through mmengine's initialisers
    model = tiny_vit(init_cfg=dict(type='Constant', layer='LayerNorm', val=2.0))
    model.init_weights()
    assert torch.all(model.vit.norm.weight == 2)
    assert torch.all(model.blocks[0].norm1.weight == 2)


def test_no_matching_keys_is_a_clear_error(tmp_path):
    path = tmp_path / 'unrelated.pth'
    torch.save({'state_dict': {'encoder.conv1.weight': torch.zeros(3)}}, path)
    model = tiny_vit(pretrained=str(path))
    with pytest.raises(ValueError, match='unrelated.pth'):
        model.init_weights()


def test_bad_pos_embed_error_names_file(tmp_path):
    path = tmp_path / 'odd_grid.pth'
    torch.save({'pos_embed': torch.zeros(1, 1 + 6, 32)}, path)
    model = tiny_vit(pretrained=str(path))
    with pytest.raises(ValueError, match='odd_grid.pth.*not a square'):
        model.init_weights()


def test_hybrid_timm_layout_loads(tmp_path):
    kwargs = dict(embed_dim=32, depth=2, num_heads=2)
    source = timm.create_model(
        'vit_tiny_r_s16_p8_224', num_classes=4, img_size=64, **kwargs
    )
    randomise_(source, seed=6)
    path = tmp_path / 'hybrid.pth'
    torch.save(source.state_dict(), path)
    model = TimmViT('vit_tiny_r_s16_p8_224', img_size=64, model_kwargs=kwargs)
    report = model.load_pretrained(str(path))
    assert not report['missing'] and not report['unexpected']
    assert any(k.startswith('patch_embed.backbone.') for k in report['loaded'])


# ------------------------------------------------------------ full sizes
@pytest.mark.slow
@pytest.mark.filterwarnings('ignore:Mapping deprecated model name')
@pytest.mark.parametrize(
    'name,img_size,dim',
    [
        ('vit_base_patch16_224', 224, 768),
        ('deit_small_patch16_224', 224, 384),
        ('vit_base_resnet50_384', 384, 768),
    ],
)
def test_full_size_models(name, img_size, dim):
    model = TimmViT(name, img_size=img_size, out_indices=(-3, -1)).eval()
    assert model.num_layers == 12 and model.embed_dim == dim
    assert model.patch_size == 16 and model.num_prefix_tokens == 1
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 96))
    for patch_map, prefix in outs:
        assert patch_map.shape == (1, dim, 4, 6)
        assert prefix.shape == (1, 1, dim)
