"""The memory-efficient ACR route equals the naive one (loss and gradients)."""

import math

import pytest
import timm
import torch
from mmengine.config import Config
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from acr_plugin.acr import (
    AllPairsConsistencyLoss,
    affinity_term,
    chunked_consistency_terms,
    class_row_term,
    patch_row_entropy,
    qk_attention_entropy,
    qk_patch_row_entropy,
)
from acr_plugin.acr.attention_capture import (
    AttentionCapture,
    attention_entropy,
    probs_from_qk,
)
from acr_plugin.acr.view_alignment import (
    TokenAlignment,
    align_attention,
    compose_alignments,
    crop_alignment,
    flip_alignment,
    rescale_alignment,
)

ACR_CFG = 'configs/acr/acr_vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py'

ALIGNMENTS = {
    'flip_square': lambda: flip_alignment(3, 3),
    'flip_non_square': lambda: flip_alignment(3, 5),
    'crop': lambda: crop_alignment((3, 4), (2, 3), (1, 0)),
    'crop_then_flip': lambda: compose_alignments(
        crop_alignment((4, 4), (3, 3), (0, 1)), flip_alignment(3, 3)
    ),
    'rescale_up_bilinear': lambda: rescale_alignment((3, 4), (4, 6)),
    'rescale_down_bilinear': lambda: rescale_alignment((4, 3), (3, 2)),
    'rescale_nearest_repeats': lambda: rescale_alignment((3, 4), (2, 3), 'nearest'),
    'rescale_nearest_subset': lambda: rescale_alignment((2, 3), (4, 5), 'nearest'),
    'rescale_then_crop': lambda: compose_alignments(
        rescale_alignment((3, 4), (4, 5)), crop_alignment((4, 5), (3, 4), (1, 1))
    ),
}


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    """Tiny tensors: extra threads only add synchronisation on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def qk_records(alignment, p, batch=2, heads=3, dim=4, seed=0, dtype=torch.float64):
    """Random (q, k) of both views with a spread of attention sharpness."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for n in (alignment.num_tokens1, alignment.num_tokens2):
        for scale in (1.5, 1.0):
            x = scale * torch.randn(batch, heads, p + n, dim, generator=gen)
            out.append(x.to(dtype).requires_grad_())
    return out  # q1, k1, q2, k2


def naive_terms(q1, k1, q2, k2, alignment, p, head_average=True, **kwargs):
    """The official formula on materialised probabilities."""
    a1, a2 = probs_from_qk(q1, k1), probs_from_qk(q2, k2)
    if head_average:
        a1, a2 = a1.mean(1), a2.mean(1)
    a2 = align_attention(a2, alignment, p)
    valid = alignment.valid
    return (
        class_row_term(a1, a2, p, valid, **kwargs),
        affinity_term(a1, a2, p, valid, **kwargs),
    )


def assert_rel_close(actual, expected, rel=1e-5):
    scale = expected.abs().max().clamp_min(1e-30)
    err = (actual - expected).abs().max() / scale
    assert err <= rel, f'relative error {err:.3g} > {rel}'


def compare(inputs, alignment, p, chunk_size, grad_mode='recompute', **kwargs):
    weights = torch.tensor([1.0, -2.0], dtype=inputs[0].dtype)
    cls, aff = chunked_consistency_terms(
        *inputs,
        alignment,
        p,
        chunk_size=chunk_size,
        grad_mode=grad_mode,
        grad_weights=(1.0, 3.0),
        **kwargs,
    )
    ref_cls, ref_aff = naive_terms(*inputs, alignment, p, **kwargs)
    assert_rel_close(cls, ref_cls)
    assert_rel_close(aff, ref_aff)
    # distinct per-sample and per-term output gradients
    grads = torch.autograd.grad((weights * cls + 3 * weights * aff).sum(), inputs)
    refs = torch.autograd.grad(
        (weights * ref_cls + 3 * weights * ref_aff).sum(), inputs
    )
    for grad, ref in zip(grads, refs):
        assert_rel_close(grad, ref)


@pytest.mark.parametrize('kind', sorted(ALIGNMENTS))
@pytest.mark.parametrize('p', [1, 3])
def test_equals_naive_route_for_every_alignment(kind, p):
    alignment = ALIGNMENTS[kind]()
    inputs = qk_records(alignment, p, seed=p)
    # 5 divides neither P + N nor the valid count of any grid above
    compare(inputs, alignment, p, chunk_size=5)


@pytest.mark.parametrize('distance', ['l1', 'l2', 'smooth_l1', 'kl'])
@pytest.mark.parametrize('head_average', [True, False])
def test_equals_naive_route_for_every_distance(distance, head_average):
    for kind in ('crop', 'rescale_up_bilinear'):
        alignment = ALIGNMENTS[kind]()
        inputs = qk_records(alignment, 2, seed=7)
        compare(
            inputs,
            alignment,
            2,
            chunk_size=4,
            head_average=head_average,
            distance=distance,
            beta=0.02,
        )


@pytest.mark.parametrize(
    'kind', ['flip_non_square', 'crop_then_flip', 'rescale_then_crop']
)
@pytest.mark.parametrize('head_average', [True, False])
def test_stored_gradients_equal_naive_route(kind, head_average):
    alignment = ALIGNMENTS[kind]()
    inputs = qk_records(alignment, 2, seed=4)
    compare(inputs, alignment, 2, 5, grad_mode='store', head_average=head_average)


def test_stored_gradients_are_used_only_when_valid(monkeypatch):
    from acr_plugin.acr import efficient_consistency as module

    passes = []
    run_chunks = module._run_chunks

    def counting(*args, **kwargs):
        passes.append(kwargs.get('values', True))
        return run_chunks(*args, **kwargs)

    monkeypatch.setattr(module, '_run_chunks', counting)
    alignment = flip_alignment(3, 4)
    inputs = qk_records(alignment, 1, seed=6)
    ref = naive_terms(*inputs, alignment, 1)
    ref_grads = torch.autograd.grad((2 * ref[0] + 6 * ref[1]).sum(), inputs)
    for weights, expected_passes in (((1.0, 3.0), 1), ((1.0, 1.0), 2)):
        passes.clear()
        cls, aff = chunked_consistency_terms(
            *inputs, alignment, 1, grad_mode='store', grad_weights=weights
        )
        grads = torch.autograd.grad((2 * cls + 6 * aff).sum(), inputs)
        assert len(passes) == expected_passes
        for grad, expected in zip(grads, ref_grads):
            assert_rel_close(grad, expected)
    # no gradient wanted: no gradient work in forward
    passes.clear()
    with torch.no_grad():
        chunked_consistency_terms(*inputs, alignment, 1, grad_mode='store')
    assert passes == [True]


@pytest.mark.parametrize('chunk_size', [1, 7, 1000])
def test_chunk_size_does_not_change_the_result(chunk_size):
    alignment = flip_alignment(4, 5)
    inputs = qk_records(alignment, 1, seed=3)
    compare(inputs, alignment, 1, chunk_size=chunk_size)


def test_float32_matches_naive_route():
    alignment = flip_alignment(4, 4)
    inputs = qk_records(alignment, 1, batch=3, heads=4, dim=8, dtype=torch.float32)
    cls, aff = chunked_consistency_terms(*inputs, alignment, 1, chunk_size=6)
    ref_cls, ref_aff = naive_terms(*inputs, alignment, 1)
    assert_rel_close(cls, ref_cls)
    assert_rel_close(aff, ref_aff)
    assert cls.dtype == torch.float32


def test_single_term_and_stop_gradient():
    alignment = crop_alignment((3, 3), (2, 3), (1, 0))
    q1, k1, q2, k2 = qk_records(alignment, 2, seed=5)
    cls, aff = chunked_consistency_terms(
        q1, k1, q2.detach(), k2.detach(), alignment, 2, terms=('aff',)
    )
    assert cls is None
    ref = naive_terms(q1, k1, q2.detach(), k2.detach(), alignment, 2)[1]
    assert_rel_close(aff, ref)
    grads = torch.autograd.grad(aff.sum(), (q1, k1))
    refs = torch.autograd.grad(ref.sum(), (q1, k1))
    for grad, expected in zip(grads, refs):
        assert_rel_close(grad, expected)


GRADCHECK_ALIGNMENTS = {
    'flip': lambda: flip_alignment(2, 3),
    'rescale_then_crop': lambda: compose_alignments(
        rescale_alignment((2, 3), (3, 3)), crop_alignment((3, 3), (2, 2), (1, 0))
    ),
}


@pytest.mark.parametrize(
    'kind, distance, p', [('flip', 'l1', 2), ('rescale_then_crop', 'l2', 1)]
)
def test_gradcheck(kind, distance, p):
    alignment = GRADCHECK_ALIGNMENTS[kind]()
    inputs = qk_records(alignment, p, batch=1, heads=2, dim=2, seed=11)

    def fn(q1, k1, q2, k2):
        cls, aff = chunked_consistency_terms(
            q1, k1, q2, k2, alignment, p, distance=distance, chunk_size=3
        )
        return cls + 2 * aff

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)


def test_no_attention_sized_tensor_is_saved_for_backward():
    alignment = flip_alignment(6, 6)
    q1, k1, q2, k2 = qk_records(alignment, 1, batch=2, heads=2, dim=4)
    record_numel = q1.numel()
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        cls, aff = chunked_consistency_terms(q1, k1, q2, k2, alignment, 1, chunk_size=8)
    assert saved and max(saved) <= record_numel
    # the naive route keeps (B, H, N, N) probabilities
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        naive_terms(q1, k1, q2, k2, alignment, 1)
    assert max(saved) >= 2 * 2 * 37 * 37


def test_low_precision_records():
    alignment = flip_alignment(3, 3)
    q1, k1, q2, k2 = qk_records(alignment, 1, dtype=torch.bfloat16)
    cls, aff = chunked_consistency_terms(q1, k1, q2, k2, alignment, 1)
    assert cls.dtype == torch.bfloat16
    (cls + aff).sum().backward()
    assert q1.grad.dtype == torch.bfloat16 and torch.isfinite(q1.grad.float()).all()
    ref = naive_terms(*(t.detach().double() for t in (q1, k1, q2, k2)), alignment, 1)
    torch.testing.assert_close(aff.double(), ref[1], rtol=2e-2, atol=1e-4)


def test_entropy_helpers_match_probability_versions():
    alignment = flip_alignment(3, 4)
    q, k = qk_records(alignment, 2, seed=2)[:2]
    probs = probs_from_qk(q, k)
    got = qk_patch_row_entropy(q, k, 2, chunk_size=5)
    ref = patch_row_entropy(probs, 2)
    assert_rel_close(got, ref)
    for grad, expected in zip(
        torch.autograd.grad(got.sum(), (q, k)), torch.autograd.grad(ref.sum(), (q, k))
    ):
        assert_rel_close(grad, expected)
    with torch.no_grad():
        exact = attention_entropy(probs)
        assert_rel_close(qk_attention_entropy(q, k, chunk_size=4), exact)
        assert_rel_close(qk_attention_entropy(q, k, max_rows=100), exact)
        estimate = qk_attention_entropy(q, k, max_rows=5)
    assert estimate.shape == (2,) and (estimate - exact).abs().max() < 0.1


def build_loss(**kwargs):
    return MODELS.build(dict(type='AllPairsConsistencyLoss', **kwargs))


@pytest.mark.parametrize(
    'options',
    [
        dict(),
        dict(num_prefix_tokens=3, head_average=False, distance='l2'),
        dict(distance='kl', layers=[-1], reduction='none'),
        dict(entropy_cap=0.5, entropy_weight=2.0, stop_grad='view2'),
        dict(stop_grad='view1', loss_weight=125.0, reduction='sum'),
        dict(grad_mode='store', cls_weight=0.5, aff_weight=2.0, loss_weight=9.0),
    ],
)
def test_loss_module_routes_agree(options):
    p = options.get('num_prefix_tokens', 1)
    alignment = crop_alignment((3, 4), (3, 3), (0, 1))
    layers = [qk_records(alignment, p, seed=s) for s in range(2)]
    rec1 = [(q1, k1) for q1, k1, _, _ in layers]
    rec2 = [(q2, k2) for _, _, q2, k2 in layers]
    leaves = [t for layer in layers for t in layer]
    efficient = build_loss(route='efficient', chunk_size=5, **options)
    options.pop('grad_mode', None)
    naive = build_loss(route='naive', **options)
    assert efficient.capture_mode == 'qk' and naive.capture_mode == 'probs'
    terms = efficient.forward_terms(rec1, rec2, alignment)
    refs = naive.forward_terms(rec1, rec2, alignment)
    assert set(terms) == set(refs)
    for key in refs:
        assert_rel_close(terms[key], refs[key])
    total, ref_total = sum(terms.values()).sum(), sum(refs.values()).sum()
    grads = torch.autograd.grad(total, leaves, allow_unused=True)
    ref_grads = torch.autograd.grad(ref_total, leaves, allow_unused=True)
    for grad, ref in zip(grads, ref_grads):
        if ref is None or not ref.any():
            assert grad is None or not grad.any()
        else:
            assert_rel_close(grad, ref)
    # probability records take the naive formula whatever the route
    probs1 = [probs_from_qk(*r) for r in rec1]
    probs2 = [probs_from_qk(*r) for r in rec2]
    for key, value in efficient.forward_terms(probs1, probs2, alignment).items():
        assert_rel_close(value, refs[key])


def test_efficient_is_the_default_route_and_errors_are_clear():
    loss = AllPairsConsistencyLoss()
    assert loss.route == 'efficient' and loss.capture_mode == 'qk'
    with pytest.raises(ValueError, match='route'):
        build_loss(route='flash')
    with pytest.raises(ValueError, match='chunk_size'):
        build_loss(chunk_size=0)
    with pytest.raises(ValueError, match='grad_mode'):
        build_loss(grad_mode='cache')
    alignment = flip_alignment(2, 3)
    q1, k1, q2, k2 = qk_records(alignment, 1)
    with pytest.raises(ValueError, match=r'view-2 \(q, k\) record of layer 0'):
        loss.forward_terms([(q1, k1)], [(q2[:, :, :-1], k2[:, :, :-1])], alignment)
    with pytest.raises(ValueError, match='head dims differ'):
        loss.forward_terms([(q1, k1)], [(q2[:, :2], k2[:, :2])], alignment)
    with pytest.raises(ValueError, match='non-empty subset'):
        chunked_consistency_terms(q1, k1, q2, k2, alignment, terms=('rows',))
    with pytest.raises(ValueError, match='chunk_size'):
        chunked_consistency_terms(q1, k1, q2, k2, alignment, chunk_size=0)
    with pytest.raises(ValueError, match='unknown distance'):
        chunked_consistency_terms(q1, k1, q2, k2, alignment, distance='cosine')
    empty = TokenAlignment(
        (2, 3), (2, 3), perm=torch.arange(6), valid=torch.zeros(6, dtype=torch.bool)
    )
    with pytest.raises(ValueError, match='no patch token'):
        chunked_consistency_terms(q1, k1, q2, k2, empty)


# ---------------------------------------------------------- end to end
def samples(labels, size=(64, 64)):
    out = []
    for row in labels:
        sample = SegDataSample()
        sample.img_labels = torch.tensor(row, dtype=torch.float64)
        sample.set_metainfo(dict(img_shape=size, ori_shape=size))
        out.append(sample)
    return out


def build_segmentor(route, mode, view, **loss_options):
    cfg = Config.fromfile(ACR_CFG).model.to_dict()
    cfg['acr_loss'].update(route=route, chunk_size=13, **loss_options)
    cfg['capture'] = dict(layers=None, mode=mode)
    cfg['view'] = view
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model.double()


@pytest.mark.parametrize(
    'view, grad_mode',
    [
        (dict(type='flip'), 'recompute'),
        (dict(type='crop', max_offset=2), 'recompute'),
        (dict(type='rescale'), 'recompute'),
        (dict(type='flip'), 'store'),
    ],
    ids=['flip', 'crop', 'rescale', 'flip_store'],
)
def test_segmentor_gradients_equal_naive_route(view, grad_mode):
    efficient = build_segmentor('efficient', None, view, grad_mode=grad_mode)
    naive = build_segmentor('naive', 'probs', view)
    assert efficient.capture_cfg['mode'] == 'qk'
    assert naive.capture_cfg['mode'] == 'probs'
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    data = samples([[1, 0, 0, 0, 0, 1], [0, 1, 0, 0, 0, 0]])
    results = []
    for model in (efficient, naive):
        torch.manual_seed(1)  # the same random view for both
        losses = model.loss(x, data)
        acr = losses['loss_acr_cls'] + losses['loss_acr_aff']
        params = [p for p in model.parameters() if p.requires_grad]
        grads = torch.autograd.grad(acr, params, allow_unused=True)
        results.append((losses, grads))
    (losses, grads), (ref_losses, ref_grads) = results
    for key in ('loss_acr_cls', 'loss_acr_aff', 'loss_cls', 'loss_cls_v2'):
        assert_rel_close(losses[key], ref_losses[key])
    # the entropy diagnostic is exact for short sequences (65 tokens)
    assert_rel_close(losses['acr_attn_entropy'], ref_losses['acr_attn_entropy'])
    checked = 0
    for grad, ref in zip(grads, ref_grads):
        if ref is None:
            assert grad is None
            continue
        assert_rel_close(grad, ref)
        checked += 1
    assert checked > 10
    # the efficient route left the fused kernel on
    assert all(blk.attn.fused_attn for blk in efficient.model.backbone.vit.blocks)


def test_mmseg_vision_transformer_qk_capture():
    torch.manual_seed(0)
    vit = MODELS.build(
        dict(
            type='VisionTransformer',
            img_size=(32, 48),
            patch_size=8,
            embed_dims=16,
            num_layers=2,
            num_heads=2,
            mlp_ratio=2,
            with_cls_token=True,
            final_norm=True,
        )
    ).double()
    x = torch.randn(2, 3, 32, 48, dtype=torch.float64)
    alignment = flip_alignment(4, 6)
    params = [p for p in vit.parameters() if p.requires_grad]
    values = []
    for mode, route in (('qk', 'efficient'), ('probs', 'naive')):
        loss = build_loss(route=route, chunk_size=7)
        with AttentionCapture(vit, mode=mode) as capture:
            vit(x)
            attn1 = capture.pop()
            vit(x.flip(-1) + 0.1)
            attn2 = capture.pop()
        assert isinstance(attn1[0], tuple) == (mode == 'qk')
        value = loss(attn1, attn2, alignment)
        grads = torch.autograd.grad(value, params, allow_unused=True)
        values.append((value, grads))
    (value, grads), (ref, ref_grads) = values
    assert_rel_close(value, ref)
    assert ref > 0
    used = [(g, e) for g, e in zip(grads, ref_grads) if e is not None]
    assert len(used) > 5
    for grad, expected in used:
        assert_rel_close(grad, expected)


def test_timm_vit_directly_with_qk_capture():
    torch.manual_seed(0)
    vit = timm.create_model(
        'vit_tiny_patch16_224',
        pretrained=False,
        num_classes=0,
        img_size=(32, 40),
        patch_size=8,
        embed_dim=24,
        depth=2,
        num_heads=3,
        reg_tokens=2,
    ).double()
    x = torch.randn(1, 3, 32, 40, dtype=torch.float64)
    p = vit.num_prefix_tokens
    assert p == 3
    with AttentionCapture(vit, mode='qk') as capture:
        vit(x)
        attn1 = capture.pop()
        vit(x.flip(-1))
        attn2 = capture.pop()
    loss = build_loss(num_prefix_tokens=p)
    value = loss(attn1, attn2, flip_alignment(4, 5))
    ref = build_loss(num_prefix_tokens=p, route='naive')(
        attn1, attn2, flip_alignment(4, 5)
    )
    assert_rel_close(value, ref)
    assert math.isfinite(value.item()) and value > 0
