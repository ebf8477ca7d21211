"""Token correspondence between two views of an image batch.

ACR compares the self-attention of two views of the same images (made by
``view_maker``). The official pair is a horizontal flip, whose token
correspondence is a permutation; a rescaled view needs a resampling matrix.
Both are described by :class:`TokenAlignment`, which maps quantities indexed by
view-2 patch tokens onto view-1 patch tokens:

* ``perm`` (LongTensor ``(N1,)``): view-1 token ``i`` corresponds to view-2
  token ``perm[i]``; aligned ``x1[i] = x2[perm[i]]``.
* ``matrix`` R (float ``(N1, N2)``): aligned ``x1 = R @ x2`` (each row holds the
  resampling weights of the view-2 tokens around view-1 token ``i``).
* ``valid`` (bool ``(N1,)``, optional): view-1 tokens that have a counterpart in
  view 2. Aligned values at invalid tokens are set to zero; consumers must
  mask them (``AllPairsConsistencyLoss`` does).

Patch tokens are numbered row-major on their ``(h, w)`` grid. Everything here is
a pure function of its inputs (randomness only through an optional
``torch.Generator``).
"""

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

Grid = Tuple[int, int]


def _check_grid(grid: Sequence[int], name: str) -> Grid:
    if len(grid) != 2 or any(int(s) < 1 for s in grid):
        raise ValueError(f'{name} must be (h, w) with positive sizes, got {grid}')
    return int(grid[0]), int(grid[1])


@dataclass
class TokenAlignment:
    """Correspondence of view-2 patch tokens to view-1 patch tokens.

    Exactly one of ``perm`` and ``matrix`` is given.

    Args:
        grid1 (tuple[int, int]): View-1 token grid ``(h1, w1)``.
        grid2 (tuple[int, int]): View-2 token grid ``(h2, w2)``.
        perm (Tensor, optional): LongTensor ``(N1,)`` of view-2 indices in
            ``[0, N2)``; entries of invalid tokens are placeholders. Defaults
            to None.
        matrix (Tensor, optional): Float ``(N1, N2)`` resampling weights.
            Defaults to None.
        valid (Tensor, optional): Bool ``(N1,)``; None means every view-1
            token has a counterpart. Defaults to None.
    """

    grid1: Grid
    grid2: Grid
    perm: Optional[Tensor] = None
    matrix: Optional[Tensor] = None
    valid: Optional[Tensor] = None

    def __post_init__(self) -> None:
        self.grid1 = _check_grid(self.grid1, 'TokenAlignment.grid1')
        self.grid2 = _check_grid(self.grid2, 'TokenAlignment.grid2')
        n1, n2 = self.num_tokens1, self.num_tokens2
        if (self.perm is None) == (self.matrix is None):
            raise ValueError('TokenAlignment needs exactly one of perm and matrix')
        if self.perm is not None:
            if self.perm.shape != (n1,) or self.perm.dtype != torch.long:
                raise ValueError(
                    f'TokenAlignment.perm must be a LongTensor of shape ({n1},) '
                    f'for grid1 {self.grid1}, got {self.perm.dtype} '
                    f'{tuple(self.perm.shape)}'
                )
            if n1 and (self.perm.min() < 0 or self.perm.max() >= n2):
                raise ValueError(
                    f'TokenAlignment.perm values must lie in [0, {n2}) '
                    f'(grid2 {self.grid2})'
                )
        if self.matrix is not None and self.matrix.shape != (n1, n2):
            raise ValueError(
                f'TokenAlignment.matrix must have shape ({n1}, {n2}) for grids '
                f'{self.grid1} and {self.grid2}, got {tuple(self.matrix.shape)}'
            )
        if self.valid is not None and (
            self.valid.shape != (n1,) or self.valid.dtype != torch.bool
        ):
            raise ValueError(
                f'TokenAlignment.valid must be a bool tensor of shape ({n1},), '
                f'got {self.valid.dtype} {tuple(self.valid.shape)}'
            )

    @property
    def num_tokens1(self) -> int:
        """Number of view-1 patch tokens ``h1 * w1``."""
        return self.grid1[0] * self.grid1[1]

    @property
    def num_tokens2(self) -> int:
        """Number of view-2 patch tokens ``h2 * w2``."""
        return self.grid2[0] * self.grid2[1]

    def valid_mask(self, device: Optional[torch.device] = None) -> Tensor:
        """``valid`` as a bool tensor ``(N1,)`` (all True when None)."""
        if self.valid is None:
            return torch.ones(self.num_tokens1, dtype=torch.bool, device=device)
        return self.valid.to(device) if device is not None else self.valid

    def as_matrix(
        self,
        dtype: torch.dtype = torch.float32,
        device: Optional[torch.device] = None,
    ) -> Tensor:
        """Dense resampling matrix ``(N1, N2)`` (one-hot rows for a perm)."""
        if self.matrix is not None:
            return self.matrix.to(device=device, dtype=dtype)
        perm = self.perm.to(device)
        out = torch.zeros(
            self.num_tokens1, self.num_tokens2, dtype=dtype, device=perm.device
        )
        out[torch.arange(self.num_tokens1, device=perm.device), perm] = 1.0
        return out

    def to(self, device: torch.device) -> 'TokenAlignment':
        """A copy whose tensors live on ``device``."""

        def move(t: Optional[Tensor]) -> Optional[Tensor]:
            return None if t is None else t.to(device)

        return TokenAlignment(
            self.grid1,
            self.grid2,
            perm=move(self.perm),
            matrix=move(self.matrix),
            valid=move(self.valid),
        )


# --------------------------------------------------------------- constructors
def flip_alignment(h: int, w: int) -> TokenAlignment:
    """Horizontal flip: ``pi(r * w + c) = r * w + (w - 1 - c)``.

    Args:
        h (int): Token rows of both views.
        w (int): Token columns of both views.
    """
    h, w = _check_grid((h, w), 'grid')
    perm = torch.arange(h * w).view(h, w).flip(1).reshape(-1)
    return TokenAlignment((h, w), (h, w), perm=perm)


def crop_alignment(grid1: Grid, grid2: Grid, offset: Tuple[int, int]) -> TokenAlignment:
    """View 2 = a token-aligned window of view 1 whose top-left token is ``offset``.

    View-1 token ``(r, c)`` corresponds to view-2 token ``(r - dy, c - dx)``;
    view-1 tokens outside the window are marked invalid (their ``perm`` entry
    is the placeholder 0). Negative offsets or a ``grid2`` reaching beyond
    ``grid1`` describe a padded (shifted) view 2: its extra tokens simply have
    no view-1 counterpart.

    Args:
        grid1 (tuple[int, int]): View-1 token grid ``(h1, w1)``.
        grid2 (tuple[int, int]): View-2 token grid ``(h2, w2)``.
        offset (tuple[int, int]): ``(dy, dx)`` in tokens: view-1 position of
            view-2 token ``(0, 0)``.
    """
    (h1, w1), (h2, w2) = _check_grid(grid1, 'grid1'), _check_grid(grid2, 'grid2')
    dy, dx = int(offset[0]), int(offset[1])
    rows = torch.arange(h1).view(h1, 1) - dy
    cols = torch.arange(w1).view(1, w1) - dx
    valid = (rows >= 0) & (rows < h2) & (cols >= 0) & (cols < w2)
    perm = torch.where(valid, rows * w2 + cols, 0)
    return TokenAlignment(
        (h1, w1), (h2, w2), perm=perm.reshape(-1), valid=valid.reshape(-1)
    )


def _bilinear_weights_1d(n_out: int, n_in: int) -> Tensor:
    """``(n_out, n_in)`` 1-D linear-interpolation weights, align_corners=False.

    Output cell ``j`` (centre ``(j + 0.5) / n_out`` in normalised coordinates)
    samples the input at ``s = (j + 0.5) * n_in / n_out - 0.5``, clamped to
    ``[0, n_in - 1]``, i.e. the half-pixel convention of
    ``F.interpolate(mode='bilinear', align_corners=False)``.
    """
    src = (torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5
    src = src.clamp(0, n_in - 1)
    low = src.floor().long()
    high = (low + 1).clamp(max=n_in - 1)
    frac = src - low
    out = torch.zeros(n_out, n_in, dtype=torch.float64)
    idx = torch.arange(n_out)
    out.index_put_((idx, low), 1 - frac, accumulate=True)
    out.index_put_((idx, high), frac, accumulate=True)
    return out


def _nearest_index_1d(n_out: int, n_in: int) -> Tensor:
    """Nearest input cell of each output cell centre ("nearest-exact")."""
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out)).floor()
    return src.long().clamp(max=n_in - 1)


def rescale_alignment(
    grid1: Grid, grid2: Grid, mode: str = 'bilinear'
) -> TokenAlignment:
    """View 2 = view 1 resized (whole image) so that its token grid is ``grid2``.

    Tokens are matched by their centres in normalised image coordinates:
    view-1 token ``(r, c)`` sits at ``((r + 0.5) / h1, (c + 0.5) / w1)``, which
    is the continuous view-2 token position ``(r + 0.5) * h2 / h1 - 0.5`` (and
    likewise for columns). ``'bilinear'`` weights the (up to) four surrounding
    view-2 tokens, clamping at the borders - exactly
    ``F.interpolate(x2, size=grid1, mode='bilinear', align_corners=False)`` on
    the view-2 token map. ``'nearest'`` takes the view-2 token containing that
    centre (``mode='nearest-exact'``) and returns a ``perm``.

    Args:
        grid1 (tuple[int, int]): View-1 token grid ``(h1, w1)``.
        grid2 (tuple[int, int]): View-2 token grid ``(h2, w2)``.
        mode (str): ``'bilinear'`` (a ``matrix``) or ``'nearest'`` (a
            ``perm``). Defaults to ``'bilinear'``.
    """
    (h1, w1), (h2, w2) = _check_grid(grid1, 'grid1'), _check_grid(grid2, 'grid2')
    if mode == 'bilinear':
        wy = _bilinear_weights_1d(h1, h2)
        wx = _bilinear_weights_1d(w1, w2)
        matrix = torch.einsum('ay,bx->abyx', wy, wx).reshape(h1 * w1, h2 * w2)
        return TokenAlignment((h1, w1), (h2, w2), matrix=matrix.float())
    if mode == 'nearest':
        iy = _nearest_index_1d(h1, h2)
        ix = _nearest_index_1d(w1, w2)
        perm = (iy.view(h1, 1) * w2 + ix.view(1, w1)).reshape(-1)
        return TokenAlignment((h1, w1), (h2, w2), perm=perm)
    raise ValueError(f'rescale_alignment mode must be bilinear or nearest: {mode}')


def compose_alignments(a12: TokenAlignment, a23: TokenAlignment) -> TokenAlignment:
    """Alignment of view 3 to view 1 from view 2 -> 1 and view 3 -> 2.

    A view-1 token is valid when it is valid in ``a12`` and draws no weight
    from a view-2 token that is invalid in ``a23``.

    Args:
        a12 (TokenAlignment): Aligns view-2 tokens to view 1.
        a23 (TokenAlignment): Aligns view-3 tokens to view 2.
    """
    if a12.grid2 != a23.grid1:
        raise ValueError(
            f'cannot compose alignments: view-2 grid {a12.grid2} of the first '
            f'differs from {a23.grid1} of the second'
        )
    if a12.perm is not None and a23.perm is not None:
        perm = a23.perm.to(a12.perm.device)[a12.perm]
        valid = a12.valid_mask(perm.device) & a23.valid_mask(perm.device)[a12.perm]
        if bool(valid.all()):
            valid = None
        return TokenAlignment(a12.grid1, a23.grid2, perm=perm, valid=valid)
    dtype = (a12.matrix if a12.matrix is not None else a23.matrix).dtype
    r12 = a12.as_matrix(dtype)
    r23 = a23.as_matrix(dtype, r12.device)
    invalid2 = (~a23.valid_mask(r12.device)).to(dtype)
    valid = a12.valid_mask(r12.device) & ((r12 != 0).to(dtype) @ invalid2 == 0)
    if bool(valid.all()):
        valid = None
    return TokenAlignment(a12.grid1, a23.grid2, matrix=r12 @ r23, valid=valid)


# ------------------------------------------------------------------ aligning
def align_patch_tokens(x2: Tensor, alignment: TokenAlignment, dim: int = -1) -> Tensor:
    """Re-index view-2 patch quantities onto view-1 patch tokens.

    Args:
        x2 (Tensor): Any tensor with ``N2`` entries along ``dim``.
        alignment (TokenAlignment): View-2 -> view-1 correspondence.
        dim (int): The token dimension. Defaults to -1.

    Returns:
        Tensor: ``x2`` with ``N1`` entries along ``dim``; zero at invalid
        view-1 tokens.
    """
    if x2.shape[dim] != alignment.num_tokens2:
        raise ValueError(
            f'align_patch_tokens: dim {dim} of x2 {tuple(x2.shape)} must have '
            f'{alignment.num_tokens2} tokens (grid2 {alignment.grid2})'
        )
    moved = x2.movedim(dim, -1)
    if alignment.perm is not None:
        out = moved.index_select(-1, alignment.perm.to(x2.device))
    else:
        out = moved @ alignment.as_matrix(x2.dtype, x2.device).T
    if alignment.valid is not None:
        out = out * alignment.valid.to(x2.device)
    return out.movedim(-1, dim)


def align_attention(
    attn2: Tensor, alignment: TokenAlignment, num_prefix: int = 1
) -> Tensor:
    """Align a view-2 attention map to view-1 token order.

    Prefix (class) rows and columns keep their place; patch rows *and*
    columns are re-indexed. With ``M = blockdiag(I_P, R)`` the result is
    ``M A2 M^T``: patch block ``R A R^T``, class rows ``A[:P, patch] R^T``,
    patch->prefix column ``R A[patch, :P]``, prefix block unchanged. A perm
    does the same by gathering. Rows and columns of invalid view-1 tokens are
    zero.

    Args:
        attn2 (Tensor): ``(B, [H,] P + N2, P + N2)`` view-2 attention.
        alignment (TokenAlignment): View-2 -> view-1 correspondence.
        num_prefix (int): Number of prefix tokens P. Defaults to 1.

    Returns:
        Tensor: ``(B, [H,] P + N1, P + N1)``.
    """
    p = int(num_prefix)
    n2 = p + alignment.num_tokens2
    if attn2.dim() < 2 or attn2.shape[-1] != n2 or attn2.shape[-2] != n2:
        raise ValueError(
            f'align_attention: attention {tuple(attn2.shape)} must end with '
            f'({n2}, {n2}) = {p} prefix + {alignment.num_tokens2} patch tokens '
            f'(grid2 {alignment.grid2})'
        )
    device = attn2.device
    if alignment.perm is not None:
        idx = torch.cat([torch.arange(p, device=device), p + alignment.perm.to(device)])
        out = attn2.index_select(-2, idx).index_select(-1, idx)
    else:
        r = alignment.as_matrix(attn2.dtype, device)
        n1 = p + alignment.num_tokens1
        m = attn2.new_zeros(n1, n2)
        m[:p, :p] = torch.eye(p, dtype=attn2.dtype, device=device)
        m[p:, p:] = r
        out = m @ attn2 @ m.T
    if alignment.valid is not None:
        keep = torch.cat(
            [torch.ones(p, dtype=torch.bool, device=device), alignment.valid.to(device)]
        ).to(out.dtype)
        out = out * keep[:, None] * keep[None, :]
    return out


def align_maps(maps2: Tensor, alignment: TokenAlignment) -> Tensor:
    """Align view-2 token-grid maps (e.g. CAMs) to the view-1 grid.

    Args:
        maps2 (Tensor): ``(B, C, h2, w2)``.
        alignment (TokenAlignment): View-2 -> view-1 correspondence.

    Returns:
        Tensor: ``(B, C, h1, w1)``, zero at invalid view-1 tokens.
    """
    if maps2.dim() != 4 or tuple(maps2.shape[-2:]) != alignment.grid2:
        raise ValueError(
            f'align_maps: maps {tuple(maps2.shape)} must be (B, C, '
            f'{alignment.grid2[0]}, {alignment.grid2[1]})'
        )
    out = align_patch_tokens(maps2.flatten(2), alignment, dim=-1)
    return out.unflatten(-1, alignment.grid1)
