import pytest
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

from acr_plugin.acr import AttentionCapture
from tests.samples import make_samples

NUM_FG = 3
BACKBONE = dict(
    type='MultiClassTokenViT',
    model_name='vit_tiny_patch16_224',
    num_class_tokens=NUM_FG,
    img_size=32,
    model_kwargs=dict(patch_size=8, embed_dim=32, depth=3, num_heads=2),
)


def build_model(seed=0, distinct_tokens=True, **kwargs):
    torch.manual_seed(seed)
    cfg = dict(
        type='MCTformer',
        num_classes=NUM_FG + 1,
        backbone=BACKBONE,
        attn_layers=2,
        data_preprocessor=dict(
            type='SegDataPreProcessor', mean=[0, 0, 0], std=[1, 1, 1]
        ),
    )
    cfg.update(kwargs)
    model = MODELS.build(cfg)
    if distinct_tokens:  # as after training: the class tokens differ
        with torch.no_grad():
            model.backbone.vit.cls_token.normal_()
            model.backbone.vit.pos_embed.normal_(std=0.5)
            for block in model.backbone.blocks:  # peaky, not uniform, attention
                block.attn.qkv.weight.mul_(4.0)
    return model


def mlsm(logits, labels):
    """Multilabel soft margin by hand."""
    p = torch.sigmoid(logits)
    return -(labels * torch.log(p) + (1 - labels) * torch.log(1 - p)).mean()


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_losses_are_mlsm_of_the_token_and_patch_logits(version):
    model = build_model(version=version)
    x = torch.randn(2, 3, 32, 32)
    labels = torch.tensor([[1.0, 0, 0], [0, 1, 1]])
    losses = model.loss(x, make_samples(labels.tolist()))
    ((patch_map, tokens),) = model.backbone(x)
    expected = {'loss_cls': mlsm(tokens.mean(-1), labels)}
    if version == 'v2':
        cams = F.conv2d(
            patch_map, model.patch_head.weight, model.patch_head.bias, padding=1
        )
        expected['loss_cls_patch'] = mlsm(cams.mean((2, 3)), labels)
    else:
        assert model.patch_head is None
    assert set(losses) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(losses[key], value)
    sum(losses.values()).backward()
    assert model.backbone.vit.cls_token.grad.abs().sum() > 0


def reference_maps(model, x, attn_layers, refine, version):
    """MCT maps from AttentionCapture probabilities, with explicit loops."""
    with torch.no_grad(), AttentionCapture(model.backbone, mode='probs') as cap:
        ((patch_map, _),) = model.backbone(x)
        probs = cap.pop()
    batch, _, h, w = patch_map.shape
    n = h * w
    avg = [p.mean(1) for p in probs]  # (B, T, T) per layer
    maps = torch.zeros(batch, NUM_FG, n)
    for layer in avg[-attn_layers:]:
        for c in range(NUM_FG):
            maps[:, c] += layer[:, c, NUM_FG:]
    if version == 'v2':
        with torch.no_grad():
            cam = model.patch_head(patch_map).flatten(2).clamp(min=0)
        maps = maps * cam
    if refine:
        affinity = sum(layer[:, NUM_FG:, NUM_FG:] for layer in avg)
        maps = torch.stack(
            [
                torch.stack([affinity[b] @ maps[b, c] for c in range(NUM_FG)])
                for b in range(batch)
            ]
        )
    return maps.view(batch, NUM_FG, h, w)


@pytest.mark.parametrize(
    'version,refine,attn_layers', [('v2', True, 2), ('v1', False, 1), ('v1', True, 3)]
)
def test_maps_match_an_attention_capture_reference(version, refine, attn_layers):
    model = build_model(version=version, refine=refine, attn_layers=attn_layers)
    model.eval()
    x = torch.randn(2, 3, 32, 40)
    with torch.no_grad():
        maps, logits = model.mct_maps(x)
    assert maps.shape == (2, NUM_FG, 4, 5)
    expected = reference_maps(model, x, attn_layers, refine, version)
    torch.testing.assert_close(maps, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits, model.logits(x))


def test_predict_is_the_normalised_flip_sum_of_the_maps():
    model = build_model()
    model.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        result = model.predict(x, make_samples([[1, 0, 1]]))[0]
        maps, _ = model.mct_maps(x)
        maps_flip, _ = model.mct_maps(x.flip(-1))
    up = F.interpolate(maps, size=(32, 32), mode='bilinear', align_corners=False)
    up_flip = F.interpolate(maps_flip, size=(32, 32), mode='bilinear')
    total = up + up_flip.flip(-1)
    low = total.amin(dim=(2, 3), keepdim=True)
    high = total.amax(dim=(2, 3), keepdim=True)
    cams = (total - low) / (high - low + 1e-8)
    logits = result.seg_logits.data
    assert logits.shape == (NUM_FG + 1, 32, 32)
    assert torch.all(logits[0] == 0.5)
    assert torch.all(logits[2] == 0)  # class absent from the labels
    torch.testing.assert_close(logits[[1, 3]], cams[0, [0, 2]], rtol=1e-4, atol=1e-5)
    assert set(result.pred_sem_seg.data.unique().tolist()) <= {0, 1, 3}
    torch.testing.assert_close(result.pred_img_logits, model.logits(x)[0])


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_flip_tta_prediction_is_flip_equivariant(version):
    model = build_model(version=version)
    model.eval()
    x = torch.randn(2, 3, 32, 40)
    labels = [[1, 1, 0], [0, 1, 1]]
    with torch.no_grad():
        plain = model.predict(x, make_samples(labels, size=(32, 40)))
        flipped = model.predict(x.flip(-1), make_samples(labels, size=(32, 40)))
    for a, b in zip(plain, flipped):
        torch.testing.assert_close(
            a.seg_logits.data, b.seg_logits.data.flip(-1), rtol=1e-4, atol=1e-5
        )


def test_permuting_the_class_tokens_permutes_logits_and_maps():
    model = build_model(version='v2')
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        maps, logits = model.mct_maps(x)
    perm = torch.tensor([2, 0, 1])
    with torch.no_grad():
        vit = model.backbone.vit
        vit.cls_token.copy_(vit.cls_token[:, perm])
        vit.pos_embed[:, :NUM_FG] = vit.pos_embed[:, perm].clone()
        model.patch_head.weight.copy_(model.patch_head.weight[perm])
        model.patch_head.bias.copy_(model.patch_head.bias[perm])
        maps_p, logits_p = model.mct_maps(x)
    torch.testing.assert_close(logits_p, logits[:, perm], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(maps_p, maps[:, perm], rtol=1e-5, atol=1e-6)


def test_class_token_ordering_is_class_ordering():
    """Token c drives logit c only: perturbing token 1 changes logit 1 most."""
    model = build_model(version='v1')
    model.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        base = model.logits(x)
        model.backbone.vit.cls_token[:, 1] += 3.0
        changed = model.logits(x)
    delta = (changed - base).abs()[0]
    assert delta.argmax() == 1


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_loss_with_cams(version):
    model = build_model(version=version)
    x = torch.randn(2, 3, 32, 32)
    samples = make_samples([[1, 0, 0], [0, 1, 1]])
    losses, cams = model.loss_with_cams(x, samples)
    assert set(losses) == set(model.loss(x, samples))
    assert cams.shape == (2, NUM_FG, 4, 4) and cams.requires_grad
    if version == 'v2':
        torch.testing.assert_close(cams, model.forward_outputs(x)['cams'])
    else:  # class-to-patch attention of the last attn_layers blocks
        expected = reference_maps(model, x, model.attn_layers, False, 'v1')
        torch.testing.assert_close(cams, expected, rtol=1e-5, atol=1e-6)
    cams.sum().backward()
    assert model.backbone.vit.blocks[-1].attn.qkv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_acr_wrapper_and_gradient_head(version):
    cfg = dict(
        type='ACRSegmentor',
        model=dict(
            type='MCTformer',
            num_classes=NUM_FG + 1,
            version=version,
            attn_layers=2,
            backbone=BACKBONE,
        ),
        acr_loss=dict(
            type='AllPairsConsistencyLoss', num_prefix_tokens=NUM_FG, cam_weight=1.0
        ),
        predictor=dict(type='ClsTokenGradCAMHead', prefix_row='class', start_layer=-2),
    )
    model = MODELS.build(cfg)
    x = torch.randn(2, 3, 32, 32)
    samples = make_samples([[1, 0, 0], [0, 1, 1]])
    losses = model.loss(x, samples)
    for key in (
        'loss_cls',
        'loss_cls_v2',
        'loss_acr_cls',
        'loss_acr_aff',
        'loss_acr_cam',
    ):
        assert torch.isfinite(losses[key])
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    model.eval()
    results = model.predict(x, samples)
    assert results[1].seg_logits.data.shape == (NUM_FG + 1, 32, 32)
    assert torch.all(results[0].seg_logits.data[2:] == 0)


def test_modes_and_encode_decode():
    model = build_model()
    model.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert model(x, mode='tensor').shape == (1, NUM_FG)
        seg = model.encode_decode(x, [dict()])
    assert seg.shape == (1, NUM_FG + 1, 32, 32)
    assert seg[:, 1:].amax() <= 1 + 1e-6


def test_bad_configs_raise():
    with pytest.raises(ValueError, match='num_class_tokens=5'):
        build_model(num_classes=6)
    with pytest.raises(ValueError, match='version'):
        build_model(version='v3')
    with pytest.raises(ValueError, match='attn_layers'):
        build_model(attn_layers=4)
    with pytest.raises(ValueError, match='background'):
        build_model(num_classes=1)


def test_test_cfg_refuses_unknown_keys():
    with pytest.raises(
        ValueError, match=r'MCTformer test_cfg: unknown key\(s\) scale; '
    ):
        build_model(test_cfg=dict(scale=(1.0,)))
