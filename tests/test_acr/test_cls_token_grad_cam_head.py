import copy

import pytest
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import nn

from acr_plugin.acr import (
    AttentionCapture,
    ClsTokenGradCAMHead,
)
from acr_plugin.acr import cls_token_grad_cam_head as head_module
from acr_plugin.models.backbones import TimmViT
from tests.samples import make_samples

VARIANTS = ('grad', 'cam_grad', 'grad_s', 'cam_grad_s')
TIMM_VIT = dict(
    type='TimmViT',
    model_name='vit_tiny_patch16_224',
    img_size=32,
    model_kwargs=dict(patch_size=8, embed_dim=32, depth=3, num_heads=2),
)
MMSEG_VIT = dict(
    type='VisionTransformer',
    img_size=(32, 32),
    patch_size=8,
    embed_dims=32,
    num_layers=3,
    num_heads=2,
    mlp_ratio=2,
    out_indices=(2,),
    final_norm=False,
    with_cls_token=True,
    output_cls_token=True,
    interpolate_mode='bicubic',
)


def build_vit_cam(backbone=TIMM_VIT, seed=0, **kwargs):
    torch.manual_seed(seed)
    cfg = dict(type='ViTCAM', num_classes=4, backbone=backbone)
    cfg.update(kwargs)
    return MODELS.build(cfg)


# --------------------------------------------------------------- reference
def reference_cams(
    model,
    inputs,
    class_sets,
    variant='grad',
    start_layer=-2,
    refine=False,
    flip=True,
    eps=1e-6,
    input_size=None,
    prefix_row=0,
    patch=8,
):
    """One fresh single-image forward per (image, class, view), `retain_grad`
    on the captured attention, `.backward()` on one logit, explicit loops over
    layers and heads."""
    model = copy.deepcopy(model).eval()
    batch, _, height, width = inputs.shape
    num_classes = None
    views = inputs
    if input_size is not None:
        views = F.interpolate(inputs, size=input_size, mode='bilinear')
    out = None
    for b in range(batch):
        for c in class_sets[b]:
            total = torch.zeros(height, width, dtype=inputs.dtype)
            for flipped in [False, True] if flip else [False]:
                image = views[b : b + 1]
                if flipped:
                    image = torch.flip(image, dims=[3])
                with AttentionCapture(model.backbone) as capture:
                    logits = model.logits(image)
                    attns = capture.pop()
                for attn in attns:
                    attn.retain_grad()
                model.zero_grad()
                logits[0, c].backward()
                if num_classes is None:
                    num_classes = logits.shape[1]
                    out = torch.zeros(batch, num_classes, height, width).to(inputs)
                gh, gw = image.shape[2] // patch, image.shape[3] // patch
                num_tokens = attns[0].shape[-1]
                prefix = num_tokens - gh * gw
                row = c if prefix_row == 'class' else prefix_row
                depth = len(attns)
                first = start_layer % depth
                heads = attns[0].shape[1]
                score = torch.zeros(gh * gw, dtype=inputs.dtype)
                for layer in range(first, depth):
                    probs = attns[layer][0].detach()
                    grad = attns[layer].grad[0]
                    pos_grad = torch.zeros(gh * gw, dtype=inputs.dtype)
                    pos_cam = torch.zeros(gh * gw, dtype=inputs.dtype)
                    for h in range(heads):
                        g_row = grad[h, row, prefix:]
                        a_row = probs[h, row, prefix:]
                        pos_grad += torch.where(g_row > 0, g_row, 0.0) / heads
                        prod = g_row * a_row
                        pos_cam += torch.where(prod > 0, prod, 0.0) / heads
                    if variant == 'grad':
                        score += pos_grad
                    elif variant == 'cam_grad':
                        score += pos_cam
                    elif variant == 'grad_s':
                        score += pos_grad**2
                    else:
                        score += pos_cam * pos_grad
                score = torch.where(score > 0, score, 0.0)
                if refine:
                    affinity = torch.zeros(gh * gw, gh * gw, dtype=inputs.dtype)
                    for layer in range(depth):
                        probs = attns[layer][0].detach()
                        for h in range(heads):
                            affinity += probs[h, prefix:, prefix:] / heads
                    score = affinity @ score
                grid = score.reshape(1, 1, gh, gw)
                up = F.interpolate(
                    grid, size=(height, width), mode='bilinear', align_corners=True
                )[0, 0]
                if flipped:
                    up = torch.flip(up, dims=[1])
                total = total + up
            low, high = total.min(), total.max()
            out[b, c] = (total - low) / (high - low + eps)
    return out


# --------------------------------------------------------------- head
@pytest.mark.parametrize('variant', VARIANTS)
@pytest.mark.parametrize('refine', [False, True])
def test_matches_independent_reference(variant, refine):
    model = build_vit_cam().double()
    x = torch.randn(2, 3, 32, 40, dtype=torch.float64)
    sets = [[0, 2], [1]]
    head = ClsTokenGradCAMHead(variant=variant, refine=refine, eps=1e-12)
    cams = head.compute_cams(model, x, sets)
    expected = reference_cams(model, x, sets, variant, -2, refine, eps=1e-12)
    assert cams.shape == (2, 3, 32, 40)
    torch.testing.assert_close(cams, expected, rtol=1e-6, atol=1e-8)
    assert cams[0, 0].max() > 0.99 and cams[1, 1].max() > 0.99


def test_reference_with_input_size_start_layer_and_default_eps():
    model = build_vit_cam().double()
    x = torch.randn(2, 3, 30, 44, dtype=torch.float64)
    sets = [[2], [0, 1, 2]]
    head = ClsTokenGradCAMHead(
        variant='cam_grad_s', start_layer=0, input_size=(24, 40), refine=True
    )
    cams = head.compute_cams(model, x, torch.tensor([[0, 0, 1], [1, 1, 1]]))
    expected = reference_cams(
        model, x, sets, 'cam_grad_s', 0, True, input_size=(24, 40)
    )
    assert cams.shape == (2, 3, 30, 44)
    torch.testing.assert_close(cams, expected, rtol=1e-6, atol=1e-8)


def test_batched_equals_per_class_loop():
    model = build_vit_cam(seed=1)
    x = torch.randn(3, 3, 32, 32)
    sets = [[0, 1, 2], [1], []]
    for variant in ('grad', 'cam_grad_s'):
        batched = ClsTokenGradCAMHead(variant=variant, refine=True, eps=1e-12)
        loop = ClsTokenGradCAMHead(
            variant=variant, refine=True, eps=1e-12, batched=False
        )
        out_batched = batched.compute_cams(model, x, sets)
        out_loop = loop.compute_cams(model, x, sets)
        assert not batched._vmap_failed
        torch.testing.assert_close(out_batched, out_loop, rtol=0, atol=1e-6)
        assert out_batched[2].abs().sum() == 0  # no class: all zero
        assert out_batched[1, [0, 2]].abs().sum() == 0


def test_vmap_failure_falls_back_to_the_loop(monkeypatch):
    model = build_vit_cam()
    x = torch.randn(2, 3, 32, 32)
    expected = ClsTokenGradCAMHead(batched=False).compute_cams(model, x, [[0], [1]])
    logged = []

    def broken(*args, **kwargs):
        raise RuntimeError('no batching rule')

    head = ClsTokenGradCAMHead()
    monkeypatch.setattr(head, '_grads_batched', broken)
    monkeypatch.setattr(
        head_module, 'print_log', lambda msg, **kwargs: logged.append(msg)
    )
    out = head.compute_cams(model, x, [[0], [1]])
    torch.testing.assert_close(out, expected)
    assert head._vmap_failed and len(logged) == 1 and 'per-class loop' in logged[0]


def test_no_grad_untouched_params_and_restored_modes():
    model = build_vit_cam(test_cfg=dict(bg_thr=0.3))
    model.train()
    model.backbone.vit.blocks[0].eval()
    flags = {name: m.training for name, m in model.named_modules()}
    fused = [b.attn.fused_attn for b in model.backbone.vit.blocks]
    x = torch.randn(2, 3, 32, 32)
    samples = make_samples([[1, 0, 1], [0, 0, 0]], (32, 32))
    head = MODELS.build(dict(type='ClsTokenGradCAMHead', flip=False))
    with torch.no_grad():
        results = head.predict(model, x, samples)
        assert not torch.is_grad_enabled()
    assert all(p.grad is None for p in model.parameters())
    assert {name: m.training for name, m in model.named_modules()} == flags
    assert [b.attn.fused_attn for b in model.backbone.vit.blocks] == fused

    # outputs: (C + 1, H, W), background = bg_thr, absent classes zero
    seg = torch.stack([r.seg_logits.data for r in results])
    assert seg.shape == (2, 4, 32, 32)
    assert (seg[:, 0] == 0.3).all()
    assert seg[0, 2].abs().sum() == 0 and seg[0, [1, 3]].amax() > 0.99
    assert seg[1, 1:].abs().sum() == 0  # no label: all background
    assert (results[1].pred_sem_seg.data == 0).all()
    assert results[0].pred_sem_seg.data.shape == (1, 32, 32)
    model.eval()
    with torch.no_grad():
        logits = model.logits(x)
    for result, row in zip(results, logits):
        torch.testing.assert_close(result.pred_img_logits, row)
    with pytest.raises(KeyError, match='img_labels'):
        head.predict(model, x, None)
    with torch.inference_mode(), pytest.raises(RuntimeError, match='inference'):
        head.compute_cams(model, x, [[0], [1]])


def test_use_labels_false_explains_predicted_classes():
    model = build_vit_cam(test_cfg=dict(use_labels=False, bg_thr=0.2))
    x = torch.randn(2, 3, 32, 32)
    head = ClsTokenGradCAMHead()
    with torch.no_grad():
        model.token_classifier.bias.copy_(torch.tensor([10.0, -10.0, 10.0]))
    results = head.predict(model, x, make_samples([[0, 1, 0]] * 2, (32, 32)))
    seg = torch.stack([r.seg_logits.data for r in results])
    torch.testing.assert_close(seg[:, 1:], head.compute_cams(model, x, [[0, 2]] * 2))
    assert seg[:, 2].abs().sum() == 0 and seg[:, 1].amax() > 0.99
    # nothing predicted: all-background maps, without labels in the samples
    with torch.no_grad():
        model.token_classifier.bias.fill_(-10.0)
    results = head.predict(model, x, None)
    for result in results:
        assert result.seg_logits.data[1:].abs().sum() == 0
        assert (result.pred_sem_seg.data == 0).all()


def test_flip_tta_makes_maps_flip_equivariant():
    model = build_vit_cam(seed=2).double()
    x = torch.randn(2, 3, 32, 48, dtype=torch.float64)
    head = ClsTokenGradCAMHead(variant='cam_grad', refine=True)
    plain = head.compute_cams(model, x, [[0, 1], [2]])
    mirrored = head.compute_cams(model, x.flip(-1), [[0, 1], [2]])
    torch.testing.assert_close(mirrored, plain.flip(-1), rtol=1e-9, atol=1e-12)


def test_patch_logits_model_raises():
    # logits from max-pooled patch scores: the class token never reaches them
    model = build_vit_cam(
        token_head=False, patch_head=dict(pool='max'), cam_source='patch'
    )
    x = torch.randn(2, 3, 32, 32)
    for start_layer in (-1, -2):
        head = ClsTokenGradCAMHead(start_layer=start_layer)
        with pytest.raises(ValueError, match='ViTCAM.*class token'):
            head.compute_cams(model, x, [[0], [1]])
    # a classifier on block 1 of 3: the last block gets no gradient at all
    early = dict(TIMM_VIT, out_indices=(1,))
    model = build_vit_cam(backbone=early)
    with pytest.raises(ValueError, match='no attention layer'):
        ClsTokenGradCAMHead(start_layer=-1).compute_cams(model, x, [[0], [1]])
    cams = ClsTokenGradCAMHead(start_layer=-3).compute_cams(model, x, [[0], [1]])
    assert cams[0, 0].max() > 0.5


def test_mmseg_vision_transformer_backbone():
    model = build_vit_cam(backbone=MMSEG_VIT).double()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    sets = [[1], [0, 2]]
    head = ClsTokenGradCAMHead(variant='grad_s', refine=True, eps=1e-12)
    cams = head.compute_cams(model, x, sets)
    expected = reference_cams(model, x, sets, 'grad_s', -2, True, eps=1e-12)
    torch.testing.assert_close(cams, expected, rtol=1e-6, atol=1e-8)
    loop = ClsTokenGradCAMHead(variant='grad_s', refine=True, eps=1e-12, batched=False)
    torch.testing.assert_close(loop.compute_cams(model, x, sets), cams)
    assert not head._vmap_failed


class BareMultiTokenModel(nn.Module):
    """MCTformer-like toy without the host contract: one prefix token per
    class, logit = its mean."""

    def __init__(self, num_classes=3):
        super().__init__()
        kwargs = dict(TIMM_VIT['model_kwargs'], reg_tokens=num_classes - 1)
        self.backbone = TimmViT(
            'vit_tiny_patch16_224', img_size=32, model_kwargs=kwargs
        )
        self.num_classes = num_classes

    def logits(self, x):
        ((_, prefix),) = self.backbone(x)
        return prefix[:, : self.num_classes].mean(dim=-1) * 10


class MultiClassTokenViT(BareMultiTokenModel):
    """The toy with the host contract (``GradCAMHost``) written out by hand."""

    @property
    def captured_vit(self):
        return self.backbone

    @property
    def patch_size(self):
        return self.backbone.patch_size

    @property
    def num_prefix_tokens(self):
        return self.backbone.num_prefix_tokens

    def token_grid(self, height, width):
        return self.backbone.grid_size(height, width)


def test_a_model_without_the_host_contract_is_refused_by_name():
    x = torch.randn(1, 3, 32, 32)
    head = ClsTokenGradCAMHead(prefix_row='class')
    with pytest.raises(
        TypeError, match='BareMultiTokenModel .*GradCAMHost.*captured_vit'
    ):
        head.compute_cams(BareMultiTokenModel(), x, [[0]])
    with pytest.raises(TypeError, match='BareMultiTokenModel .*token_grid'):
        head.check_model(BareMultiTokenModel())
    head.check_model(MultiClassTokenViT())
    # a grid that does not fit the captured tokens is reported, not guessed
    model = MultiClassTokenViT()
    model.token_grid = lambda h, w: (h // 4, w // 4)
    with pytest.raises(ValueError, match='16x16 input on 3 prefix .*4x4 grid.*7 tok'):
        head.compute_cams(model, torch.randn(1, 3, 16, 16), [[0]])


def test_prefix_row_class_reads_one_token_per_class():
    torch.manual_seed(0)
    model = MultiClassTokenViT().double()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    sets = [[0, 2], [1, 2]]
    head = ClsTokenGradCAMHead(prefix_row='class', variant='cam_grad', eps=1e-12)
    cams = head.compute_cams(model, x, sets)
    expected = reference_cams(
        model, x, sets, 'cam_grad', -2, False, eps=1e-12, prefix_row='class'
    )
    torch.testing.assert_close(cams, expected, rtol=1e-6, atol=1e-8)
    row0 = ClsTokenGradCAMHead(variant='cam_grad', eps=1e-12).compute_cams(
        model, x, sets
    )
    assert not torch.allclose(row0[0, 2], cams[0, 2])
    with pytest.raises(ValueError, match='prefix tokens'):
        ClsTokenGradCAMHead(prefix_row='class').compute_cams(
            build_vit_cam(), x.float(), sets
        )


def test_bad_arguments():
    with pytest.raises(ValueError, match='variant'):
        ClsTokenGradCAMHead(variant='gradcam')
    with pytest.raises(ValueError, match='prefix_row'):
        ClsTokenGradCAMHead(prefix_row='all')
    model = build_vit_cam()
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(AttributeError, match='neck'):
        ClsTokenGradCAMHead(capture_module='neck').compute_cams(model, x, [[0]])
    with pytest.raises(IndexError, match='start_layer'):
        ClsTokenGradCAMHead(start_layer=3).compute_cams(model, x, [[0]])
    with pytest.raises(ValueError, match='out of range'):
        ClsTokenGradCAMHead().compute_cams(model, x, [[3]])
