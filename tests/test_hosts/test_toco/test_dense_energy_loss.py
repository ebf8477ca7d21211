"""DenseEnergyLoss and dense_energy (ToCo's CRF loss) vs a full-kernel reference."""

import math

import pytest
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

from acr_plugin.hosts.toco import (
    DenseEnergyFunction,
    dense_energy,
)
from acr_plugin.hosts.toco import dense_energy_loss as dense_energy_module
from tests.samples import gen


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
