"""Pixel-adaptive refinement (PAR) of score maps by local colour affinity.

ToCo (Ru et al., CVPR 2023) refines its label-masked CAMs with a fixed,
parameter-free random walk whose transition weights come from the image: each
pixel ``i`` looks at 8 neighbours at each dilation ``d`` (offsets ``(+-d, 0)``,
``(0, +-d)``, ``(+-d, +-d)``, replicate padding) and

* ``kappa_rgb_ij = -mean_c ((I_ic - I_jc) / (w1 * (sigma_ic + 1e-8))) ** 2``
  with ``sigma_ic`` the (unbiased) standard deviation of channel ``c`` over
  ``i``'s neighbour set;
* ``kappa_pos_ij = -(dist_ij / (w1 * (sigma_pos + 1e-8))) ** 2`` with
  ``dist_ij`` the Euclidean length of the offset and ``sigma_pos`` its
  (unbiased) standard deviation over the neighbour set;
* ``A_ij = softmax_j kappa_rgb + w2 * softmax_j kappa_pos``, *not*
  renormalised: every row sums to ``1 + w2``, as in ToCo's PAR.

The map is then propagated ``num_iter`` times: ``M_i <- sum_j A_ij M_j``.
Every plane of the map is refined independently with the same affinity.

Output scale: ToCo's raw values. Each step multiplies the total mass (and a
constant map) by ``1 + w2``, so the output is ``(1 + w2) ** num_iter`` times
the refinement with row-stochastic weights ``A / (1 + w2)`` (``1.01 ** 10``
with the defaults); that common positive factor leaves every per-pixel
arg-max over planes (the only use in :func:`refine_cams_with_par`) unchanged.

On the CPU (float32 / float64, no gradient) each step is one product of a
sparse CSR matrix holding ``A`` (row ``i``: its ``N`` weights at the flat
indices of its neighbours, in offset order) with the ``(B * H * W, K)`` map:
the same sums in the same order as the loop over shifted maps used elsewhere
(GPU, other dtypes, autograd), i.e. the same numbers, with 1 operation per
step instead of ``2 N`` (the loop's many small operations dominated the step
of the 64-px synthetic twin).
"""

import warnings
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: added to the standard deviation of both kernels (before the w1 factor, as
#: in ToCo) so that flat regions do not divide by 0
PAR_EPS = 1e-8


def neighbor_offsets(dilations: Sequence[int]) -> List[Tuple[int, int]]:
    """The ``(dy, dx)`` offsets of the 8 neighbours at every dilation.

    Args:
        dilations (Sequence[int]): Positive dilations.

    Returns:
        list[tuple[int, int]]: ``8 * len(dilations)`` offsets, dilation-major,
        each dilation in row-major order of the 3x3 stencil without its centre.
    """
    if len(dilations) == 0:
        raise ValueError('PAR: dilations must not be empty')
    offsets = []
    for d in dilations:
        d = int(d)
        if d < 1:
            raise ValueError(f'PAR: dilations must be positive, got {list(dilations)}')
        for dy in (-d, 0, d):
            for dx in (-d, 0, d):
                if dy or dx:
                    offsets.append((dy, dx))
    return offsets


def gather_neighbors(x: Tensor, offsets: Sequence[Tuple[int, int]]) -> Tensor:
    """Stack the values of every pixel's neighbours (replicate padding).

    Args:
        x (Tensor): ``(B, K, H, W)`` maps.
        offsets (Sequence[tuple[int, int]]): ``(dy, dx)`` offsets.

    Returns:
        Tensor: ``(B, K, N, H, W)`` with ``out[:, :, n, y, x] =
        x[:, :, clamp(y + dy_n), clamp(x + dx_n)]``.
    """
    return torch.stack(list(_shifted_views(x, offsets)), dim=2)


def _shifted_views(x: Tensor, offsets: Sequence[Tuple[int, int]]):
    """Yield ``x`` shifted by each offset (views of one replicate-padded map)."""
    height, width = x.shape[-2:]
    pad = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    padded = F.pad(x, (pad, pad, pad, pad), mode='replicate')
    for dy, dx in offsets:
        yield padded[..., pad + dy : pad + dy + height, pad + dx : pad + dx + width]


def par_affinity(
    images: Tensor,
    dilations: Sequence[int] = (1, 2, 4, 8, 12, 24),
    w1: float = 0.3,
    w2: float = 0.01,
) -> Tensor:
    """Affinity of each pixel to its dilated neighbours (ToCo's raw weights).

    Args:
        images (Tensor): ``(B, 3, H, W)`` float images (any per-channel affine
            normalisation: the colour kernel is scale- and shift-invariant).
        dilations (Sequence[int]): Neighbourhood dilations. Defaults to
            ``(1, 2, 4, 8, 12, 24)``.
        w1 (float): Width of both kernels relative to the local standard
            deviation. Defaults to 0.3.
        w2 (float): Weight of the positional kernel. Defaults to 0.01.

    Returns:
        Tensor: ``(B, N, H, W)`` affinities, ``N = 8 * len(dilations)`` in the
        order of :func:`neighbor_offsets`; they sum to ``1 + w2`` over ``N``
        (not renormalised, as in ToCo).
    """
    offsets = neighbor_offsets(dilations)
    neighbors = gather_neighbors(images, offsets)  # (B, 3, N, H, W)
    sigma = neighbors.std(dim=2, keepdim=True)
    diff = (images.unsqueeze(2) - neighbors) / (w1 * (sigma + PAR_EPS))
    kappa_rgb = -(diff**2).mean(dim=1)  # (B, N, H, W)

    dist = torch.tensor(
        [(dy**2 + dx**2) ** 0.5 for dy, dx in offsets],
        dtype=images.dtype,
        device=images.device,
    )
    kappa_pos = -((dist / (w1 * (dist.std() + PAR_EPS))) ** 2)
    pos = kappa_pos.softmax(dim=0).view(1, -1, 1, 1)
    return kappa_rgb.softmax(dim=1) + w2 * pos  # rows sum to 1 + w2 (ToCo)


def propagate(
    masks: Tensor,
    affinity: Tensor,
    offsets: Sequence[Tuple[int, int]],
    num_iter: int,
    sparse: Optional[bool] = None,
) -> Tensor:
    """Run ``num_iter`` steps of ``M_i <- sum_j A_ij M_j``.

    Args:
        masks (Tensor): ``(B, K, H, W)`` maps.
        affinity (Tensor): ``(B, N, H, W)`` weights from :func:`par_affinity`.
        offsets (Sequence[tuple[int, int]]): The ``N`` neighbour offsets.
        num_iter (int): Number of propagation steps.
        sparse (bool, optional): True: one CSR product per step; False: the
            loop over shifted maps; None (default): the CSR product for CPU
            float32 / float64 maps without gradient, else the loop. Both
            compute the same sums in the same order.

    Returns:
        Tensor: Refined ``(B, K, H, W)`` maps.
    """
    if sparse is None:
        sparse = _use_sparse(masks, affinity)
    if sparse and num_iter > 0:
        return _propagate_sparse(masks, affinity, offsets, num_iter)
    weights = affinity.unsqueeze(1).to(masks.dtype)  # (B, 1, N, H, W)
    for _ in range(num_iter):
        out = torch.zeros_like(masks)
        for n, shifted in enumerate(_shifted_views(masks, offsets)):
            out = out + weights[:, :, n] * shifted
        masks = out
    return masks


def _use_sparse(masks: Tensor, affinity: Tensor) -> bool:
    """The CSR product serves CPU float maps when no gradient is recorded."""
    needs_grad = torch.is_grad_enabled() and (
        masks.requires_grad or affinity.requires_grad
    )
    return (
        masks.device.type == 'cpu'
        and affinity.device.type == 'cpu'
        and masks.dtype in (torch.float32, torch.float64)
        and not needs_grad
    )


def neighbor_index(
    height: int,
    width: int,
    offsets: Sequence[Tuple[int, int]],
    device: Optional[torch.device] = None,
) -> Tensor:
    """Flat index ``y * W + x`` of every pixel's neighbours (replicate
    padding: coordinates clamped to the image).

    Returns:
        Tensor: ``(H * W, N)`` long, neighbours in the order of ``offsets``.
    """
    shifts = torch.tensor(offsets, dtype=torch.long, device=device)  # (N, 2)
    ys = torch.arange(height, device=device).view(1, -1, 1) + shifts[:, 0, None, None]
    xs = torch.arange(width, device=device).view(1, 1, -1) + shifts[:, 1, None, None]
    index = ys.clamp(0, height - 1) * width + xs.clamp(0, width - 1)  # (N, H, W)
    return index.flatten(1).t()


def _propagate_sparse(
    masks: Tensor,
    affinity: Tensor,
    offsets: Sequence[Tuple[int, int]],
    num_iter: int,
) -> Tensor:
    """:func:`propagate` as ``num_iter`` products of one block-diagonal CSR
    matrix ``(B H W, B H W)`` (row ``i``: ``A_ij`` at ``j``'s flat index) with
    the maps laid out as ``(B H W, K)``."""
    batch, planes, height, width = masks.shape
    pixels, count = height * width, len(offsets)
    device = masks.device
    index = neighbor_index(height, width, offsets, device)  # (HW, N)
    image_start = torch.arange(batch, device=device).view(-1, 1, 1) * pixels
    cols = (index + image_start).flatten()
    crow = torch.arange(0, batch * pixels * count + 1, count, device=device)
    # (B, N, H, W) -> (B, HW, N): each row's weights in offset order
    values = affinity.to(masks.dtype).flatten(2).transpose(1, 2).reshape(-1)
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter('ignore', UserWarning)
        matrix = torch.sparse_csr_tensor(
            crow, cols, values, size=(batch * pixels, batch * pixels)
        )
    x = masks.permute(0, 2, 3, 1).reshape(batch * pixels, planes)
    for _ in range(num_iter):
        x = matrix @ x
    return x.view(batch, height, width, planes).permute(0, 3, 1, 2).contiguous()


class PixelAdaptiveRefinement(nn.Module):
    """Parameter-free pixel-adaptive refinement of score maps (ToCo's PAR).

    See the module docstring for the affinity. The output has ToCo's scale:
    the weights of each step sum to ``1 + w2`` (not renormalised), so a
    constant map ``c`` comes out as ``c * (1 + w2) ** num_iter`` and the
    output is ``(1 + w2) ** num_iter`` times the row-stochastic refinement
    (same per-pixel arg-max over planes). It has no learnable
    parameters; call it under ``torch.no_grad()`` when only the refined maps
    are needed.

    Args:
        dilations (Sequence[int]): Neighbourhood dilations. Defaults to
            ``(1, 2, 4, 8, 12, 24)``.
        num_iter (int): Propagation steps. Defaults to 10.
        w1 (float): Relative width of the colour and position kernels.
            Defaults to 0.3.
        w2 (float): Weight of the position kernel. Defaults to 0.01.
    """

    def __init__(
        self,
        dilations: Sequence[int] = (1, 2, 4, 8, 12, 24),
        num_iter: int = 10,
        w1: float = 0.3,
        w2: float = 0.01,
    ) -> None:
        super().__init__()
        self.offsets = neighbor_offsets(dilations)
        if num_iter < 0:
            raise ValueError(f'PAR: num_iter must be >= 0, got {num_iter}')
        if w1 <= 0:
            raise ValueError(f'PAR: w1 must be positive, got {w1}')
        self.dilations = tuple(int(d) for d in dilations)
        self.num_iter = int(num_iter)
        self.w1 = float(w1)
        self.w2 = float(w2)

    def affinity(self, images: Tensor) -> Tensor:
        """``(B, N, H, W)`` neighbour affinities of ``images`` (rows sum to
        ``1 + w2``)."""
        return par_affinity(images, self.dilations, self.w1, self.w2)

    def forward(self, images: Tensor, masks: Tensor) -> Tensor:
        """Refine ``masks`` with the affinity of ``images``.

        Args:
            images (Tensor): ``(B, 3, H, W)`` float images.
            masks (Tensor): ``(B, K, H, W)`` score maps, same ``H, W``.

        Returns:
            Tensor: Refined ``(B, K, H, W)`` maps (dtype and device of
            ``masks``), at ToCo's scale (``(1 + w2) ** num_iter`` times the
            row-stochastic refinement).
        """
        if images.dim() != 4 or masks.dim() != 4:
            raise ValueError(
                'PixelAdaptiveRefinement: images and masks must be 4-D '
                f'(B, 3, H, W) / (B, K, H, W), got {tuple(images.shape)} and '
                f'{tuple(masks.shape)}'
            )
        if images.shape[0] != masks.shape[0] or images.shape[2:] != masks.shape[2:]:
            raise ValueError(
                'PixelAdaptiveRefinement: images and masks must share batch '
                f'size and H, W, got {tuple(images.shape)} and {tuple(masks.shape)}'
            )
        if not masks.is_floating_point():
            raise TypeError(
                'PixelAdaptiveRefinement: masks must be a float tensor, got '
                f'{masks.dtype}'
            )
        if not images.is_floating_point():
            images = images.float()
        return propagate(masks, self.affinity(images), self.offsets, self.num_iter)

    def extra_repr(self) -> str:
        return (
            f'dilations={self.dilations}, num_iter={self.num_iter}, '
            f'w1={self.w1}, w2={self.w2}'
        )
