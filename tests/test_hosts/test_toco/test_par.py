"""Tests of PixelAdaptiveRefinement (ToCo's PAR)."""

import itertools
import math

import numpy as np
import pytest
import torch

from acr_plugin.hosts.toco import PixelAdaptiveRefinement
from acr_plugin.hosts.toco.par import (
    gather_neighbors,
    neighbor_index,
    neighbor_offsets,
    par_affinity,
    propagate,
)


def _naive_par(images, masks, dilations, num_iter, w1, w2, renormalise=False):
    """Per-pixel numpy loop written from the description of ToCo's PAR, with
    neighbour sets built independently of the module.

    For each pixel and each of the 8 neighbours at each dilation (replicate
    padding): the image-similarity weight is a softmax over the neighbours of
    ``-mean_c (|I_ic - I_jc| / (std_ic + 1e-8) / w1) ** 2`` (``std_ic``: the
    unbiased std of channel ``c`` over the neighbours), the position weight a
    softmax of ``-(dist_j / (std(dist) + 1e-8) / w1) ** 2``; the weight of a
    neighbour is ``rgb + w2 * pos`` (sum ``1 + w2``, ToCo's raw scale), or
    that divided by ``1 + w2`` with ``renormalise``. Each of the ``num_iter``
    steps replaces every pixel by the weighted sum of its neighbours.
    """
    images = np.asarray(images, dtype=np.float64)
    masks = np.asarray(masks, dtype=np.float64)
    batch, _, height, width = images.shape
    # neighbours as (dilation, angle) pairs, in a different order from the module
    offsets = []
    for d in dilations:
        for angle in range(8):
            theta = angle * math.pi / 4
            offsets.append((round(math.sin(theta)) * d, round(math.cos(theta)) * d))
    dist = np.array([math.hypot(dy, dx) for dy, dx in offsets])
    pos = -((dist / (dist.std(ddof=1) + 1e-8) / w1) ** 2)
    pos = np.exp(pos - pos.max())
    pos /= pos.sum()

    def clip(v, n):
        return min(max(v, 0), n - 1)

    weights = np.zeros((batch, height, width, len(offsets)))
    coords = np.zeros((height, width, len(offsets), 2), dtype=int)
    for b, y, x in itertools.product(range(batch), range(height), range(width)):
        nbr = [(clip(y + dy, height), clip(x + dx, width)) for dy, dx in offsets]
        vals = np.stack([images[b, :, ny, nx] for ny, nx in nbr], axis=1)  # (3, N)
        sigma = vals.std(axis=1, ddof=1)
        centre = images[b, :, y, x]
        kappa = np.array(
            [
                -np.mean((np.abs(centre - vals[:, j]) / (sigma + 1e-8) / w1) ** 2)
                for j in range(len(nbr))
            ]
        )
        rgb = np.exp(kappa - kappa.max())
        rgb /= rgb.sum()
        weights[b, y, x] = rgb + w2 * pos
        if renormalise:
            weights[b, y, x] /= 1 + w2
        coords[y, x] = nbr
    for _ in range(num_iter):
        new = np.zeros_like(masks)
        for b, y, x in itertools.product(range(batch), range(height), range(width)):
            for j, (ny, nx) in enumerate(coords[y, x]):
                new[b, :, y, x] += weights[b, y, x, j] * masks[b, :, ny, nx]
        masks = new
    return masks, weights


def _inputs(seed=0, shape=(2, 3, 7, 9), planes=4, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(shape, generator=gen, dtype=dtype)
    masks = torch.rand(shape[0], planes, *shape[2:], generator=gen, dtype=dtype)
    return images, masks


def test_matches_naive_per_pixel_loop():
    images, masks = _inputs()
    par = PixelAdaptiveRefinement(dilations=(1, 2), num_iter=3)
    out = par(images, masks)
    expected, _ = _naive_par(images, masks, (1, 2), 3, 0.3, 0.01)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-9, atol=1e-12)


def test_affinity_matches_naive_and_rows_sum_to_one_plus_w2():
    images, _ = _inputs(seed=1)
    par = PixelAdaptiveRefinement(dilations=(1, 2, 4), w1=0.5, w2=0.1)
    affinity = par.affinity(images)
    assert affinity.shape == (2, 24, 7, 9)
    # ToCo's weights are not renormalised: softmax + w2 * softmax
    torch.testing.assert_close(
        affinity.sum(dim=1), torch.full((2, 7, 9), 1.1, dtype=torch.float64)
    )
    assert (affinity > 0).all()
    # same weights as the naive loop up to the neighbour order
    _, naive = _naive_par(images, images[:, :1], (1, 2, 4), 0, 0.5, 0.1)
    ours = affinity.permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(np.sort(ours, -1), np.sort(naive, -1), rtol=1e-9)


def test_default_configuration_matches_naive_on_tiny_image():
    """ToCo's defaults (dilations 1..24, 10 steps, w1 0.3, w2 0.01) in float64:
    the module returns the raw values of the loop (weights summing to 1.01),
    i.e. 1.01 ** 10 times the renormalised refinement."""
    images, masks = _inputs(seed=2, shape=(1, 3, 5, 6), planes=2)
    out = PixelAdaptiveRefinement()(images, masks)
    expected, _ = _naive_par(images, masks, (1, 2, 4, 8, 12, 24), 10, 0.3, 0.01)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-14)
    renormalised, _ = _naive_par(
        images, masks, (1, 2, 4, 8, 12, 24), 10, 0.3, 0.01, renormalise=True
    )
    np.testing.assert_allclose(out.numpy(), 1.01**10 * renormalised, rtol=1e-12)


@pytest.mark.parametrize('seed', range(3))
def test_argmax_equals_the_renormalised_refinements(seed):
    """The (1 + w2) ** num_iter factor is common to all planes: the per-pixel
    arg-max (all that refine_cams_with_par uses) is the renormalised one's."""
    images, masks = _inputs(seed=10 + seed, shape=(2, 3, 6, 7), planes=5)
    par = PixelAdaptiveRefinement(dilations=(1, 2, 4), num_iter=10, w2=0.01)
    out = par(images, masks)
    renormalised, _ = _naive_par(images, masks, (1, 2, 4), 10, 0.3, 0.01, True)
    np.testing.assert_array_equal(
        out.argmax(dim=1).numpy(), renormalised.argmax(axis=1)
    )
    # the same holds for the module's own float32 path
    out32 = par(images.float(), masks.float())
    torch.testing.assert_close(out32.double(), out, rtol=1e-5, atol=1e-7)


def test_constant_image_and_constant_mask():
    par = PixelAdaptiveRefinement(dilations=(1, 3), num_iter=4)
    images = torch.full((1, 3, 8, 8), 0.4, dtype=torch.float64)
    # flat colours: uniform colour kernel, only the position kernel varies
    dist = torch.tensor([1.0, 2**0.5, 3.0, 18**0.5], dtype=torch.float64)
    kappa = -((dist / (dist.repeat_interleave(4).std() + 1e-8) / 0.3) ** 2)
    pos = torch.exp(kappa) / (4 * torch.exp(kappa).sum())
    # one weight per distance: d=1 straight, d=1 diagonal, d=3 straight, ...
    expected = 1 / 16 + 0.01 * pos
    affinity = par.affinity(images)[0, :, 3, 5]
    straight = torch.tensor([1, 3, 4, 6])  # (-d, 0), (0, -d), (0, d), (d, 0)
    diagonal = torch.tensor([0, 2, 5, 7])
    for k, d_index in enumerate((0, 8)):
        torch.testing.assert_close(
            affinity[d_index + straight], expected[2 * k].expand(4)
        )
        torch.testing.assert_close(
            affinity[d_index + diagonal], expected[2 * k + 1].expand(4)
        )
    full = par.affinity(images)
    torch.testing.assert_close(full, full[:, :, :1, :1].expand_as(full))
    # a constant mask stays constant up to ToCo's (1 + w2) per step, on a
    # flat and on a random image
    mask = torch.full((1, 2, 8, 8), 0.37, dtype=torch.float64)
    torch.testing.assert_close(par(images, mask), mask * 1.01**4)
    torch.testing.assert_close(par(torch.rand_like(images), mask), mask * 1.01**4)


def test_output_within_input_range_and_smooths():
    images, masks = _inputs(seed=3, shape=(2, 3, 12, 10), planes=3)
    out = PixelAdaptiveRefinement(dilations=(1, 2, 4), num_iter=5)(images, masks)
    out = out / 1.01**5  # ToCo's scale: (1 + w2) per step
    low = masks.amin(dim=(2, 3), keepdim=True)
    high = masks.amax(dim=(2, 3), keepdim=True)
    assert (out >= low - 1e-12).all() and (out <= high + 1e-12).all()
    assert out.std() < masks.std()


def test_invariant_to_affine_normalisation():
    images, masks = _inputs(seed=4)
    par = PixelAdaptiveRefinement(dilations=(1, 2), num_iter=2)
    mean = torch.tensor([123.7, 116.3, 103.5], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([58.4, 57.1, 57.4], dtype=torch.float64).view(1, 3, 1, 1)
    normalised = (images * 255 - mean) / std
    torch.testing.assert_close(par(normalised, masks), par(images, masks))


def test_edges_block_propagation():
    """A colour edge keeps most of the mass on its side."""
    images = torch.zeros(1, 3, 6, 12)
    images[..., 6:] = 1.0
    images = images + 0.01 * torch.rand(
        1, 3, 6, 12, generator=torch.Generator().manual_seed(0)
    )
    mask = torch.zeros(1, 1, 6, 12)
    mask[..., :6] = 1.0
    out = PixelAdaptiveRefinement(dilations=(1, 2), num_iter=10)(images, mask)
    out = out / 1.01**10  # ToCo's scale: (1 + w2) per step
    assert out[..., :6].min() > 0.9 and out[..., 6:].max() < 0.1


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_dtype_and_device_preserved(dtype):
    images, masks = _inputs(dtype=dtype)
    out = PixelAdaptiveRefinement(dilations=(1, 2), num_iter=2)(images, masks)
    assert out.dtype == dtype and out.device == masks.device
    assert out.shape == masks.shape
    # float64 masks refined with float32 images keep their dtype
    out = PixelAdaptiveRefinement(num_iter=1)(images.float(), masks.double())
    assert out.dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_gpu_matches_cpu():
    images, masks = _inputs(dtype=torch.float32)
    par = PixelAdaptiveRefinement()
    out = par(images.cuda(), masks.cuda())
    assert out.is_cuda
    torch.testing.assert_close(out.cpu(), par(images, masks), rtol=1e-4, atol=1e-5)


def test_no_parameters_and_repr():
    par = PixelAdaptiveRefinement()
    assert list(par.parameters()) == []
    assert 'dilations=(1, 2, 4, 8, 12, 24)' in repr(par)
    assert len(par.offsets) == 48


def test_gather_neighbors_replicate_padding():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    out = gather_neighbors(x, [(-1, 0), (0, 2)])
    torch.testing.assert_close(out[0, 0, 0, 0], x[0, 0, 0])  # row above clamps
    torch.testing.assert_close(out[0, 0, 1, :, 2], x[0, 0, :, 3])
    assert neighbor_offsets([1])[:3] == [(-1, -1), (-1, 0), (-1, 1)]


def test_bad_inputs():
    par = PixelAdaptiveRefinement(dilations=(1,))
    with pytest.raises(ValueError, match='share batch size'):
        par(torch.rand(1, 3, 4, 4), torch.rand(1, 2, 4, 5))
    with pytest.raises(ValueError, match='4-D'):
        par(torch.rand(3, 4, 4), torch.rand(1, 2, 4, 4))
    with pytest.raises(TypeError, match='float'):
        par(torch.rand(1, 3, 4, 4), torch.ones(1, 2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match='positive'):
        PixelAdaptiveRefinement(dilations=(0, 1))
    with pytest.raises(ValueError, match='empty'):
        PixelAdaptiveRefinement(dilations=())


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('shape', [(3, 3, 6, 11), (1, 3, 2, 2), (2, 3, 9, 5)])
def test_sparse_propagation_equals_the_shifted_map_loop(dtype, shape):
    """The CPU CSR product sums the same terms in the same order as the loop
    over shifted maps (dilations beyond the image clamp to its border)."""
    images, masks = _inputs(seed=7, shape=shape, planes=5, dtype=dtype)
    offsets = neighbor_offsets((1, 2, 4, 8))
    affinity = par_affinity(images, (1, 2, 4, 8))
    loop = propagate(masks, affinity, offsets, num_iter=6, sparse=False)
    csr = propagate(masks, affinity, offsets, num_iter=6, sparse=True)
    assert csr.dtype == dtype and csr.shape == masks.shape and csr.is_contiguous()
    torch.testing.assert_close(csr, loop, rtol=1e-6, atol=1e-7)
    # no iteration: the maps themselves
    assert torch.equal(propagate(masks, affinity, offsets, 0, sparse=True), masks)


def test_propagation_route_and_gradients():
    images, masks = _inputs(seed=8, dtype=torch.float32)
    par = PixelAdaptiveRefinement(dilations=(1, 2), num_iter=3)
    with torch.no_grad():
        fast = par(images, masks)  # CPU, float32, no grad: CSR product
    affinity = par.affinity(images)
    torch.testing.assert_close(
        fast, propagate(masks, affinity, par.offsets, 3, sparse=False)
    )
    # with autograd the loop runs (differentiable in the maps)
    masks.requires_grad_(True)
    par(images, masks).sum().backward()
    assert masks.grad is not None and torch.isfinite(masks.grad).all()
    # half precision keeps the loop
    out = par(images, masks.detach().bfloat16())
    assert out.dtype == torch.bfloat16


def test_neighbor_index_matches_gather_neighbors():
    x = torch.arange(35.0).view(1, 1, 5, 7)
    offsets = neighbor_offsets((1, 3))
    index = neighbor_index(5, 7, offsets)  # (H * W, N)
    gathered = gather_neighbors(x, offsets)[0, 0]  # (N, H, W)
    assert index.shape == (35, len(offsets))
    assert torch.equal(x.flatten()[index].t().reshape(gathered.shape), gathered)
