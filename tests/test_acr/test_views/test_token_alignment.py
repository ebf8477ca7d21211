"""Token alignment between two views: constructors and aligning."""

import pytest
import torch
import torch.nn.functional as F

from acr_plugin.acr.views.token_alignment import (
    TokenAlignment,
    align_attention,
    align_maps,
    align_patch_tokens,
    compose_alignments,
    crop_alignment,
    flip_alignment,
    rescale_alignment,
)

GRIDS = [(3, 3), (2, 5), (4, 3)]


def patch_embed(images: torch.Tensor, patch: int, symmetric: bool) -> torch.Tensor:
    """Tokens ``(B, N, D)`` of a stride = kernel = patch conv."""
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(6, images.shape[1], patch, patch, generator=gen)
    weight = weight.to(images.dtype)
    if symmetric:  # a left-right symmetric kernel commutes with hflip
        weight = weight + weight.flip(-1)
    return F.conv2d(images, weight, stride=patch).flatten(2).transpose(1, 2)


def toy_attention(tokens: torch.Tensor, num_prefix: int) -> torch.Tensor:
    """Position-free attention: softmax of token dot products, prefix tokens
    are permutation-invariant summaries (mean, max) of the patch tokens."""
    summaries = [tokens.mean(1, keepdim=True), tokens.amax(1, keepdim=True)]
    summaries += [tokens.square().mean(1, keepdim=True)]
    x = torch.cat(summaries[:num_prefix] + [tokens], dim=1)
    return torch.softmax(x @ x.transpose(1, 2) / x.shape[-1], dim=-1)


@pytest.mark.parametrize('grid', GRIDS)
def test_flip_perm_equals_grid_flip(grid):
    h, w = grid
    ali = flip_alignment(h, w)
    x = torch.randn(2, h, w)
    expected = x.flip(-1).reshape(2, -1)
    torch.testing.assert_close(align_patch_tokens(x.reshape(2, -1), ali), expected)
    # explicit pi(r * w + c) = r * w + (w - 1 - c)
    for r in range(h):
        for c in range(w):
            assert ali.perm[r * w + c] == r * w + (w - 1 - c)


@pytest.mark.parametrize('grid', GRIDS)
@pytest.mark.parametrize('num_prefix', [1, 3])
def test_flip_tokens_and_attention_round_trip(grid, num_prefix):
    patch = 4
    h, w = grid
    # float64: the conv sums a flipped patch in another order
    images = torch.randn(2, 3, h * patch, w * patch, dtype=torch.float64)
    ali = flip_alignment(h, w)
    tokens = patch_embed(images, patch, symmetric=True)
    tokens_flipped = patch_embed(images.flip(-1), patch, symmetric=True)
    torch.testing.assert_close(align_patch_tokens(tokens_flipped, ali, dim=1), tokens)
    attn = toy_attention(tokens, num_prefix)
    attn_flipped = toy_attention(tokens_flipped, num_prefix)
    assert not torch.allclose(attn, attn_flipped)
    torch.testing.assert_close(
        align_attention(attn_flipped, ali, num_prefix), attn, atol=1e-6, rtol=0
    )
    # with a head dimension, and through the dense matrix path
    heads = torch.stack([attn_flipped, attn_flipped.square()], dim=1)
    dense = TokenAlignment(ali.grid1, ali.grid2, matrix=ali.as_matrix(torch.float64))
    expected = torch.stack([attn, attn.square()], dim=1)
    torch.testing.assert_close(align_attention(heads, ali, num_prefix), expected)
    torch.testing.assert_close(
        align_attention(heads, dense, num_prefix), expected, atol=1e-6, rtol=0
    )


def test_crop_alignment_tokens_and_attention():
    patch, (h1, w1), (h2, w2), (dy, dx) = 4, (4, 5), (2, 3), (1, 2)
    images = torch.randn(
        2, 3, h1 * patch, w1 * patch, generator=torch.Generator().manual_seed(0)
    )
    crop = images[..., dy * patch : (dy + h2) * patch, dx * patch : (dx + w2) * patch]
    ali = crop_alignment((h1, w1), (h2, w2), (dy, dx))
    expected_valid = torch.zeros(h1, w1, dtype=torch.bool)
    expected_valid[dy : dy + h2, dx : dx + w2] = True
    assert torch.equal(ali.valid, expected_valid.flatten())

    tokens = patch_embed(images, patch, symmetric=False)  # no symmetry needed
    tokens_crop = patch_embed(crop, patch, symmetric=False)
    aligned = align_patch_tokens(tokens_crop, ali, dim=1)
    torch.testing.assert_close(aligned[:, ali.valid], tokens[:, ali.valid])
    assert torch.all(aligned[:, ~ali.valid] == 0)

    # attention without prefix: the crop's softmax is the full one restricted
    # to the window's keys and renormalised
    attn = toy_attention(tokens, 0)
    attn_crop = toy_attention(tokens_crop, 0)
    got = align_attention(attn_crop, ali, num_prefix=0)
    v = ali.valid
    ref = attn[:, v][:, :, v]
    ref = ref / ref.sum(-1, keepdim=True)
    torch.testing.assert_close(got[:, v][:, :, v], ref, atol=1e-5, rtol=0)
    assert torch.all(got[:, ~v] == 0) and torch.all(got[:, :, ~v] == 0)


def test_crop_alignment_negative_offset_is_a_padded_view():
    ali = crop_alignment((2, 2), (3, 3), (-1, -1))
    # view-1 token (r, c) sits at view-2 token (r + 1, c + 1)
    assert ali.perm.tolist() == [4, 5, 7, 8]
    assert ali.valid.all()


def test_rescale_scale_one_is_identity():
    ali = rescale_alignment((3, 4), (3, 4))
    torch.testing.assert_close(ali.matrix, torch.eye(12))
    nearest = rescale_alignment((3, 4), (3, 4), mode='nearest')
    assert torch.equal(nearest.perm, torch.arange(12))


@pytest.mark.parametrize('grid1', [(2, 3), (3, 3)])
def test_rescale_by_two_averages_blocks(grid1):
    grid2 = (2 * grid1[0], 2 * grid1[1])
    ali = rescale_alignment(grid1, grid2)
    x2 = torch.randn(2, 5, *grid2)
    torch.testing.assert_close(align_maps(x2, ali), F.avg_pool2d(x2, 2))


@pytest.mark.parametrize(
    'grid1, grid2',
    [((3, 4), (5, 7)), ((4, 4), (2, 2)), ((5, 3), (3, 6)), ((2, 2), (1, 1))],
)
def test_rescale_matches_bilinear_interpolation(grid1, grid2):
    ali = rescale_alignment(grid1, grid2)
    x2 = torch.randn(2, 3, *grid2, dtype=torch.float64)
    expected = F.interpolate(x2, size=grid1, mode='bilinear', align_corners=False)
    got = align_maps(x2.float(), ali).double()
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(ali.matrix.sum(1), torch.ones(ali.num_tokens1))


def test_rescale_odd_integer_upscale_is_nearest_mapping():
    grid1, grid2 = (2, 3), (6, 9)
    bilinear = rescale_alignment(grid1, grid2)
    nearest = rescale_alignment(grid1, grid2, mode='nearest')
    # every view-1 centre lands exactly on the centre of a 3x3 block
    torch.testing.assert_close(bilinear.matrix, nearest.as_matrix())
    idx = torch.arange(54, dtype=torch.float32).view(1, 1, *grid2)
    ref = F.interpolate(idx, size=grid1, mode='nearest-exact').flatten().long()
    assert torch.equal(nearest.perm, ref)


@pytest.mark.parametrize('grid1, grid2', [((3, 5), (4, 7)), ((4, 4), (2, 3))])
def test_rescale_nearest_matches_interpolate(grid1, grid2):
    idx = torch.arange(grid2[0] * grid2[1], dtype=torch.float32).view(1, 1, *grid2)
    ref = F.interpolate(idx, size=grid1, mode='nearest-exact').flatten().long()
    assert torch.equal(rescale_alignment(grid1, grid2, mode='nearest').perm, ref)


def test_align_attention_matrix_block_structure():
    p, ali = 2, rescale_alignment((2, 2), (3, 3))
    a = torch.rand(2, 3, p + 9, p + 9)
    out = align_attention(a, ali, p)
    r = ali.matrix
    assert out.shape == (2, 3, p + 4, p + 4)
    torch.testing.assert_close(out[..., :p, :p], a[..., :p, :p])
    torch.testing.assert_close(out[..., :p, p:], a[..., :p, p:] @ r.T)
    torch.testing.assert_close(out[..., p:, :p], r @ a[..., p:, :p])
    torch.testing.assert_close(out[..., p:, p:], r @ a[..., p:, p:] @ r.T)


def test_compose_alignments():
    ali = compose_alignments(flip_alignment(2, 3), flip_alignment(2, 3))
    assert torch.equal(ali.perm, torch.arange(6))
    assert ali.valid is None
    # crop then flip == one alignment built by hand
    crop = crop_alignment((3, 4), (2, 3), (1, 0))
    both = compose_alignments(crop, flip_alignment(2, 3))
    x3 = torch.randn(2, 6)
    x2 = align_patch_tokens(x3, flip_alignment(2, 3))
    torch.testing.assert_close(
        align_patch_tokens(x3, both), align_patch_tokens(x2, crop)
    )
    assert torch.equal(both.valid, crop.valid)
    # mixed perm / matrix
    # (view-1 tokens whose bilinear support reaches the cropped-away row or
    # column 3 of the 4x4 view 2 are invalid)
    rescale = rescale_alignment((2, 2), (4, 4))
    mixed = compose_alignments(rescale, crop_alignment((4, 4), (3, 3), (0, 0)))
    assert mixed.matrix is not None
    assert mixed.valid.tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match='compose'):
        compose_alignments(flip_alignment(2, 3), flip_alignment(3, 2))


def test_token_alignment_validation():
    with pytest.raises(ValueError, match='exactly one'):
        TokenAlignment((2, 2), (2, 2))
    with pytest.raises(ValueError, match='perm'):
        TokenAlignment((2, 2), (2, 2), perm=torch.arange(3))
    with pytest.raises(ValueError, match=r'\[0, 4\)'):
        TokenAlignment((2, 2), (2, 2), perm=torch.tensor([0, 1, 2, 4]))
    with pytest.raises(ValueError, match='matrix'):
        TokenAlignment((2, 2), (2, 3), matrix=torch.zeros(4, 4))
    with pytest.raises(ValueError, match='valid'):
        TokenAlignment((2, 2), (2, 2), perm=torch.arange(4), valid=torch.ones(4))
    ali = flip_alignment(2, 2)
    with pytest.raises(ValueError, match='must end with'):
        align_attention(torch.rand(1, 6, 6), ali, num_prefix=1)
    with pytest.raises(ValueError, match='align_maps'):
        align_maps(torch.rand(1, 2, 3, 2), ali)
    with pytest.raises(ValueError, match='tokens'):
        align_patch_tokens(torch.rand(2, 5), ali)
