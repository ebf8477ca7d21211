import pytest
import torch
from mmseg.registry import MODELS

from acr_plugin.acr import AttentionCapture, probs_from_qk
from acr_plugin.hosts.mctformer import MultiClassTokenViT
from acr_plugin.hosts.mctformer.multi_class_token_vit import (
    expand_class_token_state,
    replicate_class_token,
)
from acr_plugin.models.backbones import TimmViT

TINY = dict(patch_size=8, embed_dim=32, depth=2, num_heads=2)


def build(num_class_tokens=3, img_size=32, **kwargs):
    cfg = dict(
        type='MultiClassTokenViT',
        model_name='vit_tiny_patch16_224',
        num_class_tokens=num_class_tokens,
        img_size=img_size,
        model_kwargs=dict(TINY),
    )
    cfg.update(kwargs)
    return MODELS.build(cfg)


def single_token_vit(img_size=32):
    torch.manual_seed(1)
    vit = TimmViT('vit_tiny_patch16_224', img_size=img_size, model_kwargs=dict(TINY))
    with torch.no_grad():  # distinctive values (timm starts the token near 0)
        vit.vit.cls_token.normal_()
        vit.vit.pos_embed.normal_()
    return vit


def test_class_tokens_replicate_the_cls_token_and_its_position():
    torch.manual_seed(0)
    vit = build(num_class_tokens=3)
    assert vit.num_prefix_tokens == 3
    assert vit.cls_tokens.shape == (1, 3, 32)
    assert vit.vit.pos_embed.shape == (1, 3 + 16, 32)
    cls_pos = vit.vit.pos_embed[:, :3]
    for c in range(1, 3):
        torch.testing.assert_close(vit.cls_tokens[:, c], vit.cls_tokens[:, 0])
        torch.testing.assert_close(cls_pos[:, c], cls_pos[:, 0])
    # class tokens first, on any (non-square) grid
    ((patch_map, prefix),) = vit(torch.randn(2, 3, 32, 48))
    assert patch_map.shape == (2, 32, 4, 6)
    assert prefix.shape == (2, 3, 32)


def test_forward_equals_a_manual_embedding():
    """Class tokens + their position, then patches + the resampled grid part."""
    torch.manual_seed(0)
    vit = build(num_class_tokens=2)
    with torch.no_grad():
        vit.vit.cls_token.normal_()
        vit.vit.pos_embed.normal_()
    vit.eval()
    x = torch.randn(1, 3, 32, 48)
    inner = vit.vit
    patches = torch.nn.functional.conv2d(
        x, inner.patch_embed.proj.weight, inner.patch_embed.proj.bias, stride=8
    )  # (1, D, 4, 6)
    grid_pos = inner.pos_embed[:, 2:].reshape(1, 4, 4, 32).permute(0, 3, 1, 2)
    grid_pos = torch.nn.functional.interpolate(
        grid_pos, size=(4, 6), mode='bicubic', align_corners=False, antialias=True
    )
    patches = (patches + grid_pos).flatten(2).transpose(1, 2)
    classes = inner.cls_token + inner.pos_embed[:, :2]
    tokens = torch.cat([classes, patches], dim=1)
    for block in inner.blocks:
        tokens = block(tokens)
    ((patch_map, prefix),) = vit(x)
    torch.testing.assert_close(prefix, tokens[:, :2])
    torch.testing.assert_close(
        patch_map, tokens[:, 2:].transpose(1, 2).reshape(1, 32, 4, 6)
    )


def test_single_token_checkpoint_is_replicated_after_loading(tmp_path):
    source = single_token_vit(img_size=32)
    state = {f'backbone.vit.{k}': v for k, v in source.vit.state_dict().items()}
    path = tmp_path / 'single.pth'
    torch.save(dict(state_dict=state, meta=dict()), path)

    # loaded into a model built for a larger grid: the patch part is resampled
    vit = build(num_class_tokens=4, img_size=48, init_cfg=None, pretrained=str(path))
    vit.init_weights()
    cls = source.vit.cls_token[:, 0]
    pos = source.vit.pos_embed
    for c in range(4):
        torch.testing.assert_close(vit.cls_tokens[:, c], cls)
        torch.testing.assert_close(vit.vit.pos_embed[:, c], pos[:, 0])
    assert vit.vit.pos_embed.shape == (1, 4 + 36, 32)
    torch.testing.assert_close(
        vit.vit.blocks[1].attn.qkv.weight, source.vit.blocks[1].attn.qkv.weight
    )

    # same grid: the patch entries are taken as they are
    same = build(
        num_class_tokens=2, init_cfg=dict(type='Pretrained', checkpoint=str(path))
    )
    same.init_weights()
    torch.testing.assert_close(same.vit.pos_embed[:, 2:], pos[:, 1:])


def test_multi_token_checkpoint_loads_as_it_is(tmp_path):
    torch.manual_seed(0)
    trained = build(num_class_tokens=3)
    with torch.no_grad():
        trained.vit.cls_token.normal_()  # distinct tokens, as after training
        trained.vit.pos_embed.normal_()
    path = tmp_path / 'mct.pth'
    torch.save(
        dict(state_dict={f'backbone.{k}': v for k, v in trained.state_dict().items()}),
        path,
    )
    vit = build(num_class_tokens=3, pretrained=str(path))
    vit.init_weights()
    torch.testing.assert_close(vit.cls_tokens, trained.cls_tokens)
    torch.testing.assert_close(vit.vit.pos_embed, trained.vit.pos_embed)

    wrong = build(num_class_tokens=5, pretrained=str(path))
    with pytest.raises(ValueError, match='3 class tokens.*loads 1'):
        wrong.init_weights()


def test_state_helpers():
    cls = torch.randn(1, 1, 4)
    pos = torch.randn(1, 1 + 2 + 9, 4)  # class + 2 register entries + 3x3 grid
    state = dict(cls_token=cls, reg_token=torch.zeros(1, 2, 4), pos_embed=pos)
    out = expand_class_token_state(state, 3)
    assert 'reg_token' not in out and 'reg_token' in state  # input unchanged
    assert out['cls_token'].shape == (1, 3, 4)
    torch.testing.assert_close(out['pos_embed'][:, 3:], pos[:, 3:])
    torch.testing.assert_close(out['pos_embed'][:, :3], pos[:, :1].expand(1, 3, 4))
    # no_embed_class checkpoints: the position embedding is left alone
    tokens, same = replicate_class_token(cls, pos[:, 3:], 2, num_pos_prefix=0)
    assert tokens.shape == (1, 2, 4) and same is not None
    torch.testing.assert_close(same, pos[:, 3:])
    with pytest.raises(ValueError, match='one class token'):
        replicate_class_token(torch.zeros(1, 2, 4), None, 3)


def test_attention_capture_sees_class_tokens():
    torch.manual_seed(0)
    vit = build(num_class_tokens=3)
    x = torch.randn(2, 3, 32, 40)
    with AttentionCapture(vit, mode='probs') as capture:
        vit(x)
        probs = capture.pop()
    with AttentionCapture(vit, mode='qk') as capture:
        vit(x)
        qk = capture.pop()
    assert len(probs) == len(qk) == 2
    for p, (q, k) in zip(probs, qk):
        assert p.shape == (2, 2, 3 + 20, 3 + 20)
        torch.testing.assert_close(probs_from_qk(q, k), p, rtol=1e-5, atol=1e-6)
    assert vit.blocks[0].attn.fused_attn == capture.sites[0].module.fused_attn


def test_freezing_covers_the_replicated_parameters():
    vit = build(freeze_pos_embed=True)
    assert not vit.vit.pos_embed.requires_grad and vit.vit.cls_token.requires_grad


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match='num_class_tokens'):
        MultiClassTokenViT('vit_tiny_patch16_224', 0, model_kwargs=dict(TINY))
    with pytest.raises(ValueError, match='register tokens'):
        build(model_kwargs=dict(TINY, reg_tokens=2))
    with pytest.raises(ValueError, match='class_token=False'):
        build(model_kwargs=dict(TINY, class_token=False, global_pool='avg'))
