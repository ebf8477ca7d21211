"""ToCo losses (PTC, CTC, balanced CE, dense energy) vs naive loop references."""

import math

import pytest
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

from acr_plugin.hosts.toco import (
    DenseEnergyFunction,
    bg_fg_balanced_cross_entropy,
    class_token_contrast,
    dense_energy,
    patch_token_contrast,
)
from acr_plugin.hosts.toco import dense_energy_loss as dense_energy_module

IGNORE = 255


def gen(seed):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------- PTC
def ptc_reference(tokens, labels, ignore=IGNORE):
    """Loops over ordered pairs of tokens of the same image (python floats)."""
    b, d, h, w = tokens.shape
    t, lab = tokens.double().tolist(), labels.tolist()
    pos = neg = 0.0
    n_pos = n_neg = 0
    for n in range(b):
        cells = [(r, c) for r in range(h) for c in range(w)]
        for i, (ri, ci) in enumerate(cells):
            for j, (rj, cj) in enumerate(cells):
                li, lj = lab[n][ri][ci], lab[n][rj][cj]
                if i == j or li == ignore or lj == ignore:
                    continue
                fi = [t[n][k][ri][ci] for k in range(d)]
                fj = [t[n][k][rj][cj] for k in range(d)]
                dot = sum(x * y for x, y in zip(fi, fj))
                norm = math.sqrt(sum(x * x for x in fi) * sum(y * y for y in fj))
                s = abs(dot / norm)
                if li == lj:
                    pos, n_pos = pos + s, n_pos + 1
                else:
                    neg, n_neg = neg + s, n_neg + 1
    return 0.5 * (1 - pos / (n_pos + 1)) + 0.5 * neg / (n_neg + 1)


def test_ptc_matches_loop_reference():
    tokens = torch.randn(2, 5, 3, 4, generator=gen(0), dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 3, 4), generator=gen(1))
    labels[0, 0, :2] = IGNORE
    labels[1, 2, 3] = IGNORE
    value = patch_token_contrast(tokens, labels)
    assert abs(value.item() - ptc_reference(tokens, labels)) < 1e-12


def test_ptc_edge_cases():
    tokens = torch.randn(2, 4, 2, 3, generator=gen(2), dtype=torch.float64)
    tokens.requires_grad_(True)
    # all ignored: 0.5, finite, zero gradient
    ignored = torch.full((2, 2, 3), IGNORE)
    value = patch_token_contrast(tokens, ignored)
    value.backward()
    assert value.item() == 0.5
    assert torch.equal(tokens.grad, torch.zeros_like(tokens))
    # one label everywhere: no negative pair
    same = torch.ones(2, 2, 3, dtype=torch.long)
    assert (
        abs(patch_token_contrast(tokens, same).item() - ptc_reference(tokens, same))
        < 1e-12
    )
    # all labels distinct within each image: no positive pair
    distinct = torch.arange(6).reshape(1, 2, 3).repeat(2, 1, 1)
    value = patch_token_contrast(tokens, distinct)
    assert abs(value.item() - ptc_reference(tokens, distinct)) < 1e-12
    assert value.item() >= 0.5
    # identical tokens with one label: perfect positives -> 0.5 * (1 - n / (n + 1))
    flat = torch.ones(1, 3, 2, 2, dtype=torch.float64)
    n = 4 * 3
    expected = 0.5 * (1 - n / (n + 1))
    assert (
        abs(
            patch_token_contrast(flat, torch.zeros(1, 2, 2, dtype=torch.long))
            - expected
        )
        < 1e-12
    )


def test_ptc_invariances_and_gradient():
    tokens = torch.randn(1, 4, 3, 3, generator=gen(3), dtype=torch.float64)
    labels = torch.randint(0, 2, (1, 3, 3), generator=gen(4))
    base = patch_token_contrast(tokens, labels)
    # per-token positive scale and sign flips do not change |cos|
    scale = torch.rand(1, 1, 3, 3, generator=gen(5), dtype=torch.float64) + 0.5
    sign = torch.where(torch.rand(1, 1, 3, 3, generator=gen(6)) > 0.5, 1.0, -1.0)
    torch.testing.assert_close(
        patch_token_contrast(tokens * scale * sign, labels), base
    )
    leaf = tokens.clone().requires_grad_(True)
    patch_token_contrast(leaf, labels).backward()
    assert leaf.grad.abs().sum() > 0


def test_ptc_module_weight_and_errors():
    loss = MODELS.build(dict(type='PatchTokenContrastLoss'))
    assert loss.loss_name == 'loss_ptc' and loss.loss_weight == 0.2
    tokens = torch.randn(1, 3, 2, 2, generator=gen(7))
    labels = torch.tensor([[[0, 1], [1, IGNORE]]])
    raw = patch_token_contrast(tokens, labels)
    torch.testing.assert_close(loss(tokens, labels), 0.2 * raw)
    loss.loss_weight = 3.0  # a hook changes it at run time
    torch.testing.assert_close(loss(tokens, labels), 3.0 * raw)
    with pytest.raises(ValueError, match='loss_'):
        MODELS.build(dict(type='PatchTokenContrastLoss', loss_name='ptc'))
    with pytest.raises(ValueError, match='tokens'):
        loss(tokens[0], labels)
    with pytest.raises(ValueError, match='labels'):
        loss(tokens, labels[:, :1])
    with pytest.raises(ValueError, match='labels'):
        loss(tokens, labels.float())


# --------------------------------------------------------------------- CTC
def ctc_reference(student, teacher, positive, temperature, eps=1e-4):
    """Per image, per teacher view, per student loops on python floats: the raw
    dot products of ToCo."""
    s_all, t_all, p_all = student.tolist(), teacher.tolist(), positive.tolist()
    total = 0.0
    for s_img, t_img, p_img in zip(s_all, t_all, p_all):
        loss = 0.0
        for t in t_img:
            e = [
                math.exp(sum(a * b for a, b in zip(t, s)) / temperature) for s in s_img
            ]
            neg = sum(ek for ek, p in zip(e, p_img) if not p)
            for ek, p in zip(e, p_img):
                if p:
                    loss += -math.log(ek / (ek + neg + eps))
            loss += -math.log(1 / (1 + neg + eps))
        total += loss / (2 * (sum(p_img) + eps))
    return total / len(s_all)


def _ctc_students(seed=10, batch=3, num_local=5, width=6):
    """Students as ToCo lays them out: 2 global views (always positive)
    followed by the local crops."""
    student = torch.randn(batch, 2 + num_local, width, generator=gen(seed))
    local = torch.randint(0, 2, (batch, num_local), generator=gen(seed + 1)).bool()
    local[0] = False  # an image with only negative crops
    positive = torch.cat([torch.ones(batch, 2, dtype=torch.bool), local], dim=1)
    return student.double(), positive


@pytest.mark.parametrize('temperature', [0.5, 1.0])
def test_ctc_matches_loop_reference(temperature):
    student, positive = _ctc_students()
    teacher = torch.randn(3, 2, 6, generator=gen(11), dtype=torch.float64)
    value = class_token_contrast(student, teacher, positive, temperature)
    ref = ctc_reference(student, teacher, positive, temperature)
    assert abs(value.item() - ref) < 1e-12 * max(1.0, abs(ref))


def test_ctc_raw_dot_products_not_cosine():
    student, positive = _ctc_students(seed=20)
    teacher = torch.randn(3, 2, 6, generator=gen(21), dtype=torch.float64)
    raw = class_token_contrast(student, teacher, positive, 0.5)
    # rescaling rows changes the loss: the outputs are not normalised
    scaled = class_token_contrast(3 * student, 0.1 * teacher, positive, 0.5)
    assert abs(scaled.item() - raw.item()) > 1e-3
    built = MODELS.build(dict(type='ClassTokenContrastLoss', loss_weight=1.0))
    torch.testing.assert_close(built(student, teacher, positive), raw)


def test_ctc_edge_cases():
    student = torch.randn(2, 4, 5, generator=gen(12), dtype=torch.float64)
    teacher = torch.randn(2, 2, 5, generator=gen(13), dtype=torch.float64)
    all_pos = torch.ones(2, 4, dtype=torch.bool)  # no negatives
    value = class_token_contrast(student, teacher, all_pos, 0.5)
    assert abs(value.item() - ctc_reference(student, teacher, all_pos, 0.5)) < 1e-12
    # an image without any positive student is an impossible input for ToCo
    # (its global views are positives): an error, not a 1 / eps blow-up
    some_pos = all_pos.clone()
    some_pos[1] = False
    with pytest.raises(ValueError, match=r'positive student.*\[1\]'):
        class_token_contrast(student, teacher, some_pos, 0.5)


def test_ctc_gradient_reaches_student_only():
    student = torch.randn(2, 3, 4, generator=gen(14), requires_grad=True)
    teacher = torch.randn(2, 2, 4, generator=gen(15), requires_grad=True)
    positive = torch.tensor([[1, 0, 1], [1, 1, 0]], dtype=torch.bool)
    loss = MODELS.build(dict(type='ClassTokenContrastLoss'))
    loss(student, teacher, positive).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_ctc_module_weight_and_errors():
    loss = MODELS.build(dict(type='ClassTokenContrastLoss', temperature=1.0))
    assert loss.loss_name == 'loss_ctc' and loss.loss_weight == 0.5
    student = torch.randn(2, 3, 4, generator=gen(16))
    teacher = torch.randn(2, 2, 4, generator=gen(17))
    positive = torch.tensor([[1, 0, 1], [1, 1, 0]], dtype=torch.bool)
    raw = class_token_contrast(student, teacher, positive, 1.0)
    torch.testing.assert_close(loss(student, teacher, positive), 0.5 * raw)
    loss.loss_weight = 2.0
    torch.testing.assert_close(loss(student, teacher, positive), 2.0 * raw)
    with pytest.raises(ValueError, match='loss_'):
        MODELS.build(dict(type='ClassTokenContrastLoss', loss_name='ctc'))
    with pytest.raises(ValueError, match='temperature'):
        MODELS.build(dict(type='ClassTokenContrastLoss', temperature=0.0))
    with pytest.raises(ValueError, match='student'):
        loss(student[0], teacher, positive)
    with pytest.raises(ValueError, match='teacher'):
        loss(student, teacher[..., :3], positive)
    with pytest.raises(ValueError, match='positive'):
        loss(student, teacher, positive[:, :2])
    with pytest.raises(ValueError, match='positive'):
        loss(student, teacher, positive.long())


# ------------------------------------------------------- balanced CE (seg)
def ce_reference(logits, labels, ignore=IGNORE):
    """Per-pixel log-softmax with python loops."""
    lg, lab = logits.double().tolist(), labels.tolist()
    k = len(lg[0])
    bg, fg = [], []
    for b in range(len(lab)):
        for r in range(len(lab[b])):
            for c in range(len(lab[b][r])):
                y = lab[b][r][c]
                if y == ignore:
                    continue
                z = [lg[b][q][r][c] for q in range(k)]
                m = max(z)
                ce = m + math.log(sum(math.exp(v - m) for v in z)) - z[y]
                (bg if y == 0 else fg).append(ce)
    mean = lambda v: sum(v) / len(v) if v else 0.0  # noqa: E731
    return 0.5 * mean(bg) + 0.5 * mean(fg)


def test_ce_matches_loop_reference():
    logits = torch.randn(2, 4, 3, 5, generator=gen(20), dtype=torch.float64)
    labels = torch.randint(0, 4, (2, 3, 5), generator=gen(21))
    labels[0, 1] = IGNORE
    value = bg_fg_balanced_cross_entropy(logits, labels)
    assert abs(value.item() - ce_reference(logits, labels)) < 1e-12


def test_ce_resizes_logits_to_the_labels():
    logits = torch.randn(1, 3, 2, 3, generator=gen(22), dtype=torch.float64)
    labels = torch.randint(0, 3, (1, 4, 6), generator=gen(23))
    big = F.interpolate(logits, size=(4, 6), mode='bilinear', align_corners=False)
    value = bg_fg_balanced_cross_entropy(logits, labels)
    assert abs(value.item() - ce_reference(big, labels)) < 1e-12


def test_ce_edge_cases():
    logits = torch.randn(1, 3, 2, 2, generator=gen(24), dtype=torch.float64)
    logits.requires_grad_(True)
    only_bg = torch.zeros(1, 2, 2, dtype=torch.long)
    only_fg = torch.tensor([[[1, 2], [2, IGNORE]]])
    for labels in (only_bg, only_fg):
        value = bg_fg_balanced_cross_entropy(logits, labels)
        assert abs(value.item() - ce_reference(logits, labels)) < 1e-12
    ignored = torch.full((1, 2, 2), IGNORE)
    value = bg_fg_balanced_cross_entropy(logits, ignored)
    value.backward()
    assert value.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    # logits at ignored pixels do not matter
    changed = logits.detach().clone()
    changed[0, :, 1, 1] += 5.0
    torch.testing.assert_close(
        bg_fg_balanced_cross_entropy(changed, only_fg),
        bg_fg_balanced_cross_entropy(logits.detach(), only_fg),
    )


def test_ce_module_weight_and_errors():
    loss = MODELS.build(dict(type='BgFgBalancedCELoss'))
    assert loss.loss_name == 'loss_seg' and loss.loss_weight == 0.1
    logits = torch.randn(1, 3, 2, 2, generator=gen(25), requires_grad=True)
    labels = torch.tensor([[[0, 1], [2, IGNORE]]])
    raw = bg_fg_balanced_cross_entropy(logits, labels)
    torch.testing.assert_close(loss(logits, labels), 0.1 * raw)
    loss.loss_weight = 1.0
    loss(logits, labels).backward()
    assert logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match='loss_'):
        MODELS.build(dict(type='BgFgBalancedCELoss', loss_name='seg'))
    # the decode-head call: weight=None, ignore_index=head.ignore_index
    other = torch.tensor([[[0, 1], [2, 7]]])
    torch.testing.assert_close(
        loss(logits, other, weight=None, ignore_index=7), loss(logits, labels)
    )
    with pytest.raises(ValueError, match='weight'):
        loss(logits, labels, weight=torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match='logits'):
        loss(logits[0], labels)
    with pytest.raises(ValueError, match='labels'):
        loss(logits, labels[0])
    with pytest.raises(ValueError, match='labels'):
        loss(logits, labels.float())
    with pytest.raises(ValueError, match='outside'):
        loss(logits, torch.tensor([[[0, 3], [1, 1]]]))


# ------------------------------------------------------------ dense energy
def energy_reference(probs, images, sigma_rgb, sigma_xy, roi=None, gate=None):
    """Full N x N kernel from python loops; energy by autograd-able einsum
    (``gate`` (B, H, W) weights pixel i's row, as a constant)."""
    b, k, h, w = probs.shape
    energies = []
    for n in range(b):
        img = images[n].double().tolist()
        keep = [
            (r, c)
            for r in range(h)
            for c in range(w)
            if roi is None or bool(roi[n, r, c])
        ]
        kernel = torch.zeros(len(keep), len(keep), dtype=torch.float64)
        for i, (ri, ci) in enumerate(keep):
            for j, (rj, cj) in enumerate(keep):
                if i == j:
                    continue
                dxy = (ri - rj) ** 2 + (ci - cj) ** 2
                drgb = sum((img[q][ri][ci] - img[q][rj][cj]) ** 2 for q in range(3))
                kernel[i, j] = math.exp(
                    -dxy / (2 * sigma_xy**2) - drgb / (2 * sigma_rgb**2)
                )
        rows = torch.tensor([r for r, _ in keep], dtype=torch.long)
        cols = torch.tensor([c for _, c in keep], dtype=torch.long)
        s = probs[n][:, rows, cols].T  # (M, K)
        g = torch.ones(len(keep), dtype=torch.float64)
        if gate is not None:
            g = gate[n][rows, cols].detach().double()
        energies.append(torch.einsum('ij,i,ik,jk->', kernel, g, s, 1 - s))
    return torch.stack(energies).mean()


def random_probs(b, k, h, w, seed, requires_grad=True):
    logits = torch.randn(b, k, h, w, generator=gen(seed), dtype=torch.float64)
    return logits.softmax(dim=1).detach().requires_grad_(requires_grad)


def random_images(b, h, w, seed):
    return torch.rand(b, 3, h, w, generator=gen(seed), dtype=torch.float64) * 255


def assert_rel(a, b, rel=1e-9):
    scale = b.abs().max().clamp(min=1e-300)
    assert ((a - b).abs().max() / scale).item() <= rel


@pytest.mark.parametrize('chunk_size', [5, 11, 42, 4096])
@pytest.mark.parametrize('use_roi', [False, True])
def test_dense_energy_matches_full_kernel(chunk_size, use_roi):
    probs = random_probs(2, 3, 6, 7, seed=30)
    images = random_images(2, 6, 7, seed=31)
    roi = None
    if use_roi:
        roi = torch.ones(2, 6, 7, dtype=torch.bool)
        roi[0, 4:] = False  # padded rows
        roi[1, :, 5:] = False  # padded columns
    value = dense_energy(probs, images, 15.0, 3.0, roi, chunk_size=chunk_size)
    (grad,) = torch.autograd.grad(value, probs)
    ref = energy_reference(probs, images, 15.0, 3.0, roi)
    (ref_grad,) = torch.autograd.grad(ref, probs)
    assert_rel(value.detach(), ref.detach())
    assert_rel(grad, ref_grad)
    if use_roi:
        assert torch.equal(grad[0, :, 4:], torch.zeros_like(grad[0, :, 4:]))
        assert torch.equal(grad[1, :, :, 5:], torch.zeros_like(grad[1, :, :, 5:]))


@pytest.mark.parametrize('use_roi', [False, True])
def test_gated_dense_energy_matches_full_kernel(use_roi):
    probs = random_probs(2, 3, 5, 6, seed=50)
    images = random_images(2, 5, 6, seed=51)
    gate = torch.rand(2, 5, 6, generator=gen(52), dtype=torch.float64)
    roi = None
    if use_roi:
        roi = torch.ones(2, 5, 6, dtype=torch.bool)
        roi[1, 3:] = False
    value = dense_energy(probs, images, 15.0, 3.0, roi, chunk_size=7, gate=gate)
    (grad,) = torch.autograd.grad(value, probs)
    ref = energy_reference(probs, images, 15.0, 3.0, roi, gate)
    (ref_grad,) = torch.autograd.grad(ref, probs)
    assert_rel(value.detach(), ref.detach())
    assert_rel(grad, ref_grad)
    # a gate of ones is the ungated energy
    ones = dense_energy(probs, images, 15.0, 3.0, roi, gate=torch.ones_like(gate))
    assert_rel(ones.detach(), dense_energy(probs, images, 15.0, 3.0, roi).detach())
    feats = torch.randn(5, 4, generator=gen(53), dtype=torch.float64)
    s = torch.rand(5, 3, generator=gen(54), dtype=torch.float64, requires_grad=True)
    g = torch.rand(5, generator=gen(55), dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda x: DenseEnergyFunction.apply(x, feats, 2, g), (s,)
    )


def test_uncertainty_gate_of_the_loss_module():
    """gate='uncertainty': g = 1 - max_k S_k (held constant), 1 where the
    ignore mask is set; the mask is resized with the image."""
    loss = MODELS.build(
        dict(type='DenseEnergyLoss', sigma_xy=3.0, gate='uncertainty', loss_weight=1.0)
    )
    logits = torch.randn(2, 3, 4, 5, generator=gen(56), dtype=torch.float64)
    logits.requires_grad_(True)
    images = random_images(2, 8, 10, seed=57)
    ignore = torch.zeros(2, 8, 10, dtype=torch.bool)
    ignore[0, :3] = True  # rows 0-2: nearest x0.5 keeps rows 0 and 2
    ignore[1, :, 5] = True  # an odd column: dropped by the resize
    value = loss(logits, images, ignore=ignore)
    small = F.interpolate(images, size=(4, 5), mode='bilinear', align_corners=False)
    probs = logits.softmax(dim=1)
    gate = 1 - probs.detach().amax(dim=1)
    gate[ignore[:, ::2, ::2]] = 1.0
    ref = energy_reference(probs, small, 15.0, 1.5, gate=gate)
    assert_rel(value.detach(), 1e-7 * ref.detach())
    (grad,) = torch.autograd.grad(value, logits)
    (ref_grad,) = torch.autograd.grad(1e-7 * ref, logits)
    assert_rel(grad, ref_grad, rel=1e-8)
    with pytest.raises(ValueError, match='gate'):
        MODELS.build(dict(type='DenseEnergyLoss', gate='entropy'))
    with pytest.raises(ValueError, match='ignore'):
        loss(logits, images, ignore=ignore[:, :4])


def test_dense_energy_roi_ignores_outside_pixels():
    probs = random_probs(1, 2, 4, 5, seed=32, requires_grad=False)
    images = random_images(1, 4, 5, seed=33)
    roi = torch.rand(1, 4, 5, generator=gen(34)) > 0.4
    base = dense_energy(probs, images, 10.0, 2.0, roi)
    probs2, images2 = probs.clone(), images.clone()
    probs2[..., ~roi[0]] = torch.tensor([1.0, 0.0], dtype=torch.float64)[:, None]
    images2[..., ~roi[0]] = 0.0
    torch.testing.assert_close(dense_energy(probs2, images2, 10.0, 2.0, roi), base)
    empty = torch.zeros(1, 4, 5, dtype=torch.bool)
    assert dense_energy(probs, images, 10.0, 2.0, empty).item() == 0.0


def test_dense_energy_gradcheck():
    probs = torch.rand(1, 2, 3, 3, generator=gen(35), dtype=torch.float64)
    probs.requires_grad_(True)
    images = random_images(1, 3, 3, seed=36)
    assert torch.autograd.gradcheck(
        lambda p: dense_energy(p, images, 40.0, 2.0, chunk_size=4), (probs,)
    )
    feats = torch.randn(5, 4, generator=gen(37), dtype=torch.float64)
    s = torch.rand(5, 3, generator=gen(38), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x: DenseEnergyFunction.apply(x, feats, 2), (s,)
    )


def test_dense_energy_known_values_and_float32():
    # hard, agreeing labels: zero energy; uniform probs: (K-1)/K * sum W
    images = random_images(1, 3, 4, seed=39)
    hard = torch.zeros(1, 2, 3, 4, dtype=torch.float64)
    hard[:, 0] = 1.0
    assert dense_energy(hard, images, 15.0, 5.0).item() == 0.0
    uniform = torch.full((1, 4, 3, 4), 0.25, dtype=torch.float64)
    # E(uniform over K) = (1 - 1/K) * sum_{i != j} W_ij; K = 2 gives sum W
    halves = torch.full((1, 2, 3, 4), 0.5, dtype=torch.float64)
    sum_w = energy_reference(halves, images, 15.0, 5.0) / 0.5
    value = dense_energy(uniform, images, 15.0, 5.0)
    assert_rel(value, 0.75 * sum_w)
    probs = random_probs(1, 3, 5, 6, seed=40, requires_grad=False)
    img = random_images(1, 5, 6, seed=41)
    full = dense_energy(probs, img, 15.0, 4.0, chunk_size=7)
    single = dense_energy(probs.float(), img.float(), 15.0, 4.0, chunk_size=7)
    assert single.dtype == torch.float32
    assert abs(single.item() - full.item()) <= 1e-5 * full.item()
    half = dense_energy(probs.bfloat16(), img.float(), 15.0, 4.0)
    assert half.dtype == torch.float32 and torch.isfinite(half)


def test_dense_energy_loss_module():
    loss = MODELS.build(dict(type='DenseEnergyLoss', sigma_xy=3.0, chunk_size=9))
    assert loss.loss_name == 'loss_reg' and loss.loss_weight == 0.05
    logits = torch.randn(2, 3, 4, 5, generator=gen(42), dtype=torch.float64)
    logits.requires_grad_(True)
    images = random_images(2, 8, 10, seed=43)
    roi = torch.ones(2, 8, 10, dtype=torch.bool)
    roi[1, 6:] = False
    value = loss(logits, images, roi)
    small = F.interpolate(images, size=(4, 5), mode='bilinear', align_corners=False)
    # sigma_xy is in full-resolution pixels: 3.0 -> 1.5 at scale 0.5
    ref = energy_reference(logits.softmax(dim=1), small, 15.0, 1.5, roi[:, ::2, ::2])
    assert_rel(value.detach(), 0.05 * 1e-7 * ref.detach())
    value.backward()
    assert logits.grad.abs().sum() > 0
    # loss_weight is read at call time; logits are resized to the image scale
    loss.loss_weight = 1.0
    loss.scale_factor = 1.0
    big = F.interpolate(logits.detach(), size=(8, 10), mode='bilinear')
    ref = energy_reference(big.softmax(dim=1), images, 15.0, 3.0)
    assert_rel(loss(logits.detach(), images), 1e-7 * ref)


def test_dense_energy_errors():
    probs = random_probs(1, 2, 3, 3, seed=44, requires_grad=False)
    images = random_images(1, 3, 3, seed=45)
    with pytest.raises(ValueError, match='probs'):
        dense_energy(probs[0], images, 15.0, 100.0)
    with pytest.raises(ValueError, match='images'):
        dense_energy(probs, images[..., :2], 15.0, 100.0)
    with pytest.raises(ValueError, match='roi'):
        dense_energy(probs, images, 15.0, 100.0, torch.ones(1, 3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match='roi'):
        dense_energy(probs, images, 15.0, 100.0, torch.ones(1, 3, 3))
    with pytest.raises(ValueError, match='chunk_size'):
        dense_energy(probs, images, 15.0, 100.0, chunk_size=0)
    loss = MODELS.build(dict(type='DenseEnergyLoss'))
    with pytest.raises(ValueError, match='images'):
        loss(probs, images[:, :2])
    with pytest.raises(ValueError, match='seg_logits'):
        loss(probs[0], images)
    with pytest.raises(ValueError, match='roi'):
        loss(probs, images, torch.ones(1, 2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match='loss_'):
        MODELS.build(dict(type='DenseEnergyLoss', loss_name='reg'))


@pytest.mark.parametrize('use_roi', [False, True])
def test_float32_gram_kernel_agrees_with_the_difference_kernel(use_roi, monkeypatch):
    """Small float32 CPU kernels come from a float64 Gram product: within
    float32 rounding of the coordinate-difference kernel, and as close to the
    float64 reference."""
    probs = random_probs(3, 4, 9, 10, seed=60)
    images = random_images(3, 9, 10, seed=61)
    gate = torch.rand(3, 9, 10, generator=gen(62), dtype=torch.float64)
    roi = None
    if use_roi:
        roi = torch.rand(3, 9, 10, generator=gen(63)) > 0.3
    ref = dense_energy(probs, images, 15.0, 4.0, roi, chunk_size=7, gate=gate)
    (ref_grad,) = torch.autograd.grad(ref, probs)
    single = probs.detach().float().requires_grad_(True)

    def run():
        value = dense_energy(
            single, images.float(), 15.0, 4.0, roi, chunk_size=7, gate=gate.float()
        )
        return value, torch.autograd.grad(value, single)[0]

    calls = []
    original = dense_energy_module._gram_operands
    monkeypatch.setattr(
        dense_energy_module,
        '_gram_operands',
        lambda feats: calls.append(feats.shape) or original(feats),
    )
    gram, gram_grad = run()
    assert calls  # the Gram route ran
    monkeypatch.setattr(dense_energy_module, 'GRAM_MAX_ENTRIES', 0)
    calls.clear()
    diff, diff_grad = run()
    assert not calls  # too large for the Gram route: coordinate differences
    for value, grad in ((gram, gram_grad), (diff, diff_grad)):
        assert value.dtype == torch.float32
        assert_rel(value.double(), ref.detach(), rel=1e-6)
        assert_rel(grad.double(), ref_grad, rel=1e-5)
    assert_rel(gram, diff, rel=1e-6)
    assert_rel(gram_grad, diff_grad, rel=1e-5)
