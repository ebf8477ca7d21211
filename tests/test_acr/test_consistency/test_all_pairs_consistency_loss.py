"""AllPairsConsistencyLoss: the official formula, its options, and the
efficient route against the naive one (terms, gradients, end to end)."""

import math

import pytest
import timm
import torch
from mmengine.config import Config
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from acr_plugin.acr.attention.attention_capture import AttentionCapture
from acr_plugin.acr.attention.attention_ops import probs_from_qk
from acr_plugin.acr.consistency.all_pairs_consistency_loss import (
    AllPairsConsistencyLoss,
)
from acr_plugin.acr.consistency.chunked_consistency import chunked_consistency_terms
from acr_plugin.acr.views.token_alignment import (
    TokenAlignment,
    align_attention,
    crop_alignment,
    flip_alignment,
)
from tests.test_acr.test_consistency.chunked_reference import (
    assert_rel_close,
    qk_records,
)

ACR_CFG = 'configs/acr/acr_vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py'


def build(**kwargs):
    return MODELS.build(dict(type='AllPairsConsistencyLoss', **kwargs))


def random_attention(layers, b, heads, n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.softmax(3 * torch.randn(b, heads, n, n, generator=gen), dim=-1)
        for _ in range(layers)
    ]


def flip_map(h, w):
    """pi(k) written out per token: row r, column c -> column w - 1 - c."""
    return {r * w + c: r * w + (w - 1 - c) for r in range(h) for c in range(w)}


def crop_map(grid1, grid2, offset):
    (h1, w1), (h2, w2), (dy, dx) = grid1, grid2, offset
    out = {}
    for r in range(h1):
        for c in range(w1):
            if 0 <= r - dy < h2 and 0 <= c - dx < w2:
                out[r * w1 + c] = (r - dy) * w2 + (c - dx)
    return out


def loop_reference(attn1, attn2, mapping, p, per_head=False):
    """ACR class-row and affinity L1 terms with explicit python loops.

    ``mapping`` sends a view-1 patch index to its view-2 index; patches
    missing from it have no counterpart and are skipped.
    """
    cls_sum = cls_n = aff_sum = aff_n = 0.0
    for l1, l2 in zip(attn1, attn2):
        a1, a2 = l1.double().tolist(), l2.double().tolist()
        heads = len(a1[0])
        for b in range(len(a1)):
            # per head: compare each head; else average heads first
            groups = [[h] for h in range(heads)] if per_head else [range(heads)]
            for group in groups:

                def avg(a, i, j, group=group, b=b):
                    return sum(a[b][h][i][j] for h in group) / len(group)

                for q in range(p):
                    for k, k2 in mapping.items():
                        cls_sum += abs(avg(a1, q, p + k) - avg(a2, q, p + k2))
                        cls_n += 1
                for i, i2 in mapping.items():
                    for k, k2 in mapping.items():
                        aff_sum += abs(avg(a1, p + i, p + k) - avg(a2, p + i2, p + k2))
                        aff_n += 1
    return cls_sum / cls_n, aff_sum / aff_n


@pytest.mark.parametrize('p', [1, 3])
@pytest.mark.parametrize('grid', [(3, 3), (2, 3)])
def test_matches_loop_reference_flip(p, grid):
    h, w = grid
    attn1 = random_attention(2, 2, 2, p + h * w, seed=1)
    attn2 = random_attention(2, 2, 2, p + h * w, seed=2)
    loss = build(num_prefix_tokens=p, loss_weight=125.0)
    terms = loss.forward_terms(attn1, attn2, flip_alignment(h, w))
    ref_cls, ref_aff = loop_reference(attn1, attn2, flip_map(h, w), p)
    assert set(terms) == {'loss_acr_cls', 'loss_acr_aff'}
    assert abs(terms['loss_acr_cls'].item() - 125 * ref_cls) < 1e-6 * 125
    assert abs(terms['loss_acr_aff'].item() - 125 * ref_aff) < 1e-6 * 125
    total = loss(attn1, attn2, flip_alignment(h, w))
    torch.testing.assert_close(total, terms['loss_acr_cls'] + terms['loss_acr_aff'])


def test_per_head_distance_matches_loop_reference():
    attn1 = random_attention(2, 2, 3, 1 + 6, seed=3)
    attn2 = random_attention(2, 2, 3, 1 + 6, seed=4)
    terms = build(head_average=False).forward_terms(attn1, attn2, flip_alignment(2, 3))
    ref_cls, ref_aff = loop_reference(attn1, attn2, flip_map(2, 3), 1, True)
    assert abs(terms['loss_acr_cls'].item() - ref_cls) < 1e-6
    assert abs(terms['loss_acr_aff'].item() - ref_aff) < 1e-6
    averaged = build().forward_terms(attn1, attn2, flip_alignment(2, 3))
    assert averaged['loss_acr_aff'] < terms['loss_acr_aff']


@pytest.mark.parametrize('p', [1, 2])
def test_valid_mask_of_a_crop_matches_loop_reference(p):
    grid1, grid2, offset = (3, 4), (2, 3), (1, 1)
    attn1 = random_attention(2, 2, 2, p + 12, seed=5)
    attn2 = random_attention(2, 2, 2, p + 6, seed=6)
    alignment = crop_alignment(grid1, grid2, offset)
    terms = build(num_prefix_tokens=p).forward_terms(attn1, attn2, alignment)
    ref_cls, ref_aff = loop_reference(attn1, attn2, crop_map(grid1, grid2, offset), p)
    assert abs(terms['loss_acr_cls'].item() - ref_cls) < 1e-6
    assert abs(terms['loss_acr_aff'].item() - ref_aff) < 1e-6
    # tokens outside the crop do not matter
    for a in attn1:
        a[..., p:, p:][..., ~alignment.valid, :] += 1.0
        a[..., p:][..., ~alignment.valid] += 1.0
    again = build(num_prefix_tokens=p).forward_terms(attn1, attn2, alignment)
    torch.testing.assert_close(again, terms)


@pytest.mark.parametrize('p', [1, 3])
def test_excluded_entries_do_not_matter(p):
    attn1 = random_attention(2, 2, 2, p + 6, seed=7)
    attn2 = random_attention(2, 2, 2, p + 6, seed=8)
    loss = build(num_prefix_tokens=p)
    before = loss(attn1, attn2, flip_alignment(2, 3))
    gen = torch.Generator().manual_seed(0)
    for attn in (attn1, attn2):
        for a in attn:
            a[..., :p, :p] += torch.rand(a[..., :p, :p].shape, generator=gen)
            a[..., p:, :p] += torch.rand(a[..., p:, :p].shape, generator=gen)
    after = loss(attn1, attn2, flip_alignment(2, 3))
    torch.testing.assert_close(after, before, atol=0, rtol=0)


def test_zero_for_a_flip_consistent_pair():
    attn1 = random_attention(3, 2, 2, 1 + 12, seed=9)
    ali = flip_alignment(3, 4)
    attn2 = [align_attention(a, ali, 1) for a in attn1]  # the flip is an involution
    assert build(loss_weight=100.0)(attn1, attn2, ali).item() == 0.0


def test_uniform_attention_and_entropy_cap():
    n = 1 + 9
    uniform = [torch.full((2, 2, n, n), 1.0 / n) for _ in range(2)]
    ali = flip_alignment(3, 3)
    assert build()(uniform, uniform, ali).item() == 0.0
    loss = build(entropy_cap=0.6, entropy_weight=2.0, loss_weight=10.0)
    terms = loss.forward_terms(uniform, uniform, ali)
    assert terms['loss_acr_cls'].item() == 0.0
    assert abs(terms['loss_acr_entropy'].item() - 10 * 2 * (1 - 0.6)) < 1e-5
    # one-hot (sharp) attention sits below any cap
    sharp = [torch.eye(n).expand(2, 2, n, n).contiguous() for _ in range(2)]
    assert loss.forward_terms(sharp, sharp, ali)['loss_acr_entropy'].item() == 0.0


def test_entropy_term_matches_direct_formula():
    p, cap = 1, 0.7
    attn1 = random_attention(2, 3, 2, p + 6, seed=10)
    attn2 = random_attention(2, 3, 2, p + 6, seed=11)
    loss = build(entropy_cap=cap, cls_weight=0.0, aff_weight=0.0, reduction='none')
    got = loss(attn1, attn2, flip_alignment(2, 3))

    def view_entropy(attn):
        ent = [
            torch.special.entr(a[:, :, p:, :]).sum(-1).mean((1, 2)) / math.log(p + 6)
            for a in attn
        ]
        return sum(ent) / len(ent)

    expected = 0.5 * (
        torch.clamp(view_entropy(attn1) - cap, min=0)
        + torch.clamp(view_entropy(attn2) - cap, min=0)
    )
    assert got.shape == (3,)
    torch.testing.assert_close(got, expected)


def test_stop_grad():
    ali = flip_alignment(2, 3)
    for stop, zero_view in ((None, None), ('view1', 0), ('view2', 1)):
        logits = [
            torch.randn(2, 2, 7, 7, requires_grad=True),
            torch.randn(2, 2, 7, 7, requires_grad=True),
        ]
        attn = [[torch.softmax(x, -1)] for x in logits]
        build(stop_grad=stop, entropy_cap=0.1)(attn[0], attn[1], ali).backward()
        for view, x in enumerate(logits):
            if view == zero_view:
                assert x.grad is None or torch.all(x.grad == 0)
            else:
                assert x.grad is not None and x.grad.abs().sum() > 0


def flip_gather(attn, h, w, p):
    idx = [*range(p)] + [p + v for v in flip_map(h, w).values()]
    idx = torch.tensor(idx)
    return attn[..., idx, :][..., :, idx]


@pytest.mark.parametrize('distance', ['l2', 'smooth_l1', 'kl'])
def test_distances_match_direct_formulas(distance):
    p, h, w, beta = 2, 2, 3, 0.05
    attn1 = random_attention(2, 2, 2, p + 6, seed=12)
    attn2 = random_attention(2, 2, 2, p + 6, seed=13)
    loss = build(num_prefix_tokens=p, distance=distance, beta=beta)
    terms = loss.forward_terms(attn1, attn2, flip_alignment(h, w))
    cls_vals, aff_vals = [], []
    for a1, a2 in zip(attn1, attn2):
        a1, a2 = a1.mean(1), flip_gather(a2.mean(1), h, w, p)
        for rows1, rows2, store in (
            (a1[:, :p, p:], a2[:, :p, p:], cls_vals),
            (a1[:, p:, p:], a2[:, p:, p:], aff_vals),
        ):
            d = rows1 - rows2
            if distance == 'l2':
                store.append((d * d).mean())
            elif distance == 'smooth_l1':
                huber = torch.where(
                    d.abs() < beta, 0.5 * d * d / beta, d.abs() - beta / 2
                )
                store.append(huber.mean())
            else:
                pr = rows1 / rows1.sum(-1, keepdim=True)
                qr = rows2 / rows2.sum(-1, keepdim=True)
                kl_pq = (pr * (pr / qr).log()).sum(-1)
                kl_qp = (qr * (qr / pr).log()).sum(-1)
                store.append(((kl_pq + kl_qp) / 2).mean())
    torch.testing.assert_close(terms['loss_acr_cls'], torch.stack(cls_vals).mean())
    torch.testing.assert_close(terms['loss_acr_aff'], torch.stack(aff_vals).mean())


def test_cam_term_matches_reference():
    gen = torch.Generator().manual_seed(14)
    cams1 = torch.randn(2, 4, 3, 5, generator=gen)
    cams2 = torch.randn(2, 4, 3, 5, generator=gen)
    attn = random_attention(1, 2, 2, 1 + 15)
    loss = build(cam_weight=3.0, loss_weight=2.0)
    terms = loss.forward_terms(attn, attn, flip_alignment(3, 5), cams1, cams2)
    assert set(terms) == {'loss_acr_cls', 'loss_acr_aff', 'loss_acr_cam'}

    total = 0.0
    for b in range(2):
        for c in range(4):
            m1, m2 = cams1[b, c], cams2[b, c]
            m1 = m1.clamp(min=0) / (m1.max().clamp(min=0) + 1e-5)
            m2 = m2.clamp(min=0) / (m2.max().clamp(min=0) + 1e-5)
            total += (m1 - m2.flip(-1)).abs().mean().item()
    expected = 2.0 * 3.0 * total / 8
    assert abs(terms['loss_acr_cam'].item() - expected) < 1e-5


def test_cam_term_uses_valid_mask():
    cams1 = torch.rand(1, 2, 3, 4)
    cams1[..., 1, 1] = 2.0  # inside the crop: the maximum of both views
    cams2 = cams1[..., 1:3, 1:4].clone()  # the crop, exactly consistent
    cams1[..., 0, :] = 1.5  # outside the crop (row 0, column 0): ignored
    alignment = crop_alignment((3, 4), (2, 3), (1, 1))
    loss = build(cls_weight=0.0, aff_weight=0.0, cam_weight=1.0)
    attn1, attn2 = random_attention(1, 1, 1, 13), random_attention(1, 1, 1, 7)
    assert loss(attn1, attn2, alignment, cams1, cams2).item() == 0.0


def test_matrix_alignment_equals_perm_alignment():
    attn1 = random_attention(2, 2, 2, 1 + 6, seed=15)
    attn2 = random_attention(2, 2, 2, 1 + 6, seed=16)
    perm = flip_alignment(2, 3)
    dense = TokenAlignment((2, 3), (2, 3), matrix=perm.as_matrix())
    loss = build(distance='kl')
    torch.testing.assert_close(loss(attn1, attn2, dense), loss(attn1, attn2, perm))


def test_layer_selection_and_reduction():
    attn1 = random_attention(3, 4, 2, 1 + 6, seed=17)
    attn2 = random_attention(3, 4, 2, 1 + 6, seed=18)
    ali = flip_alignment(2, 3)
    picked = build(layers=[-1])(attn1, attn2, ali)
    torch.testing.assert_close(picked, build()(attn1[2:], attn2[2:], ali))
    per_sample = build(reduction='none')(attn1, attn2, ali)
    assert per_sample.shape == (4,)
    torch.testing.assert_close(per_sample.mean(), build()(attn1, attn2, ali))
    total = build()(attn1, attn2, ali, reduction_override='sum')
    torch.testing.assert_close(total, per_sample.sum())
    # head-averaged (B, N, N) records are accepted too
    flat1, flat2 = [a.mean(1) for a in attn1], [a.mean(1) for a in attn2]
    torch.testing.assert_close(build()(flat1, flat2, ali), build()(attn1, attn2, ali))


def test_build_and_names():
    loss = build()
    assert loss.loss_name == 'loss_acr'
    assert loss.enabled_terms == ['cls', 'aff']
    custom = build(loss_name='loss_consistency', entropy_cap=0.5)
    attn = random_attention(1, 1, 1, 5)
    terms = custom.forward_terms(attn, attn, flip_alignment(2, 2))
    assert set(terms) == {
        'loss_consistency_cls',
        'loss_consistency_aff',
        'loss_consistency_entropy',
    }


def test_clear_errors():
    ali = flip_alignment(2, 3)
    attn = random_attention(2, 1, 2, 7)
    with pytest.raises(ValueError, match='unknown distance'):
        build(distance='cosine')
    with pytest.raises(ValueError, match='stop_grad'):
        build(stop_grad='both')
    with pytest.raises(ValueError, match='entropy_cap'):
        build(entropy_cap=1.5)
    with pytest.raises(ValueError, match='loss_'):
        build(loss_name='acr')
    with pytest.raises(ValueError, match='every term'):
        build(cls_weight=0.0, aff_weight=0.0)
    with pytest.raises(ValueError, match='prefix'):
        build(num_prefix_tokens=0)
    with pytest.raises(ValueError, match='view 1 has 2 attention maps, view 2 has 1'):
        build()(attn, attn[:1], ali)
    with pytest.raises(ValueError, match=r'expected \(B, \[H,\] 7, 7\)'):
        build()(attn, random_attention(2, 1, 2, 8), ali)
    with pytest.raises(ValueError, match='head dims differ'):
        build()(attn, random_attention(2, 1, 3, 7), ali)
    with pytest.raises(IndexError, match='layer index 5'):
        build(layers=[5])(attn, attn, ali)
    with pytest.raises(ValueError, match='needs cams1 and cams2'):
        build(cam_weight=1.0)(attn, attn, ali)
    with pytest.raises(ValueError, match='cams2'):
        build(cam_weight=1.0)(
            attn, attn, ali, torch.rand(1, 2, 2, 3), torch.rand(1, 2, 3, 2)
        )


# ---------------------------------------------------------- efficient route
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
