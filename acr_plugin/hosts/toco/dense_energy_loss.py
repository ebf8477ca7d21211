"""Exact dense-CRF energy loss (Tang et al., ECCV 2018) without an N x N kernel.

For one image with ``N`` pixels (those inside the roi), class probabilities
``S`` ``(N, K)`` and the Gaussian bilateral kernel::

    W_ij = exp(-|p_i - p_j|^2 / (2 sigma_xy^2) - |I_i - I_j|^2 / (2 sigma_rgb^2))

(``p`` pixel coordinates in pixels, ``I`` RGB in 0..255, ``W_ii = 0``) the
relaxed Potts energy is::

    E = sum_k sum_{i != j} W_ij S_ik (1 - S_jk) = sum(S * (W (1 - S)))

and, ``W`` being symmetric, ``dE/dS = W (1 - S) - W S``. Writing
``f = [p / sigma_xy, I / sigma_rgb]`` gives ``W_ij = exp(-|f_i - f_j|^2 / 2)``.

Optionally each pixel's term is weighted by a gate ``g_i >= 0`` held constant
(no gradient): ``E_g = sum_i g_i sum_k S_ik (W (1 - S))_ik`` with the exact
gradient ``g * W (1 - S) - W (g * S)``. :class:`DenseEnergyLoss` can derive it
from the prediction's uncertainty (``gate='uncertainty'``).

:class:`DenseEnergyFunction` builds ``chunk_size`` rows of ``W`` at a time
and multiplies them with ``X = [1 - S, S]`` (one ``(chunk, N) @ (N, 2K)``
product per chunk): the first half of the result gives the energy, the
difference of the halves is exactly the gradient rows, which are kept
(``(N, K)``, as small as ``S``) so that backward needs no second pass over
the kernel. Memory is ``O(chunk_size * N)``; time ``O(N^2 (K + d))``.
Distances come from coordinate differences (``torch.cdist`` without its
matrix-product shortcut, so no ``|a|^2 + |b|^2 - 2ab`` cancellation), in
float32 at least (autocast is off inside). Small float32 kernels on the CPU
(at most :data:`GRAM_MAX_ENTRIES` per chunk, e.g. the 32 x 32 grids of the
64-px synthetic twin; not the 224 x 224 grids of 448-px crops) use that
shortcut in float64 instead (the loss about 1.3x faster there): its
cancellation error (~1e-16 of the squared feature norms) lies far below
float32's rounding of the squared distance, so the kernel agrees with the
difference-based one to float32 rounding. The kernel depends on the images
only: no gradient reaches ``images``.
"""

import math
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import Tensor
from torch.autograd.function import once_differentiable

_LOW_PRECISION = (torch.float16, torch.bfloat16)


#: largest chunk (rows x pixels) whose float32 CPU kernel is built from a
#: float64 Gram product (32 MB of float64)
GRAM_MAX_ENTRIES = 1 << 22


def _gram_path(feats: Tensor, chunk_size: int) -> bool:
    """Small float32 CPU kernels: squared distances from a float64 Gram
    product (memory: 3x the float32 chunk, hence only for small chunks)."""
    rows = min(chunk_size, feats.shape[0])
    return (
        feats.dtype == torch.float32
        and feats.device.type == 'cpu'
        and rows * feats.shape[0] <= GRAM_MAX_ENTRIES
    )


def _gram_operands(feats: Tensor) -> Tuple[Tensor, Tensor]:
    """float64 ``(N, d + 2)`` row / column operands whose product is
    ``-|f_i - f_j|^2 / 2 = f_i f_j - |f_i|^2 / 2 - |f_j|^2 / 2``."""
    feats64 = feats.double()
    half_norms = feats64.square().sum(dim=1, keepdim=True).mul_(-0.5)
    ones = torch.ones_like(half_norms)
    return (
        torch.cat([feats64, half_norms, ones], dim=1),
        torch.cat([feats64, ones, half_norms], dim=1),
    )


def _kernel_rows(
    rows: Tensor,
    feats: Tensor,
    offset: int,
    gram: Optional[Tuple[Tensor, Tensor]] = None,
) -> Tensor:
    """Rows ``offset .. offset + len(rows)`` of ``W`` (zero diagonal).

    Args:
        rows (Tensor): ``(c, d)`` features of the chunk's pixels.
        feats (Tensor): ``(N, d)`` features of all pixels.
        offset (int): Index of the chunk's first pixel.
        gram (tuple[Tensor, Tensor], optional): :func:`_gram_operands` of
            ``feats``: given, ``-|f_i - f_j|^2 / 2`` is one float64 product,
            rounded to ``feats``' dtype (see the module doc). Defaults to
            None (coordinate differences).

    Returns:
        Tensor: ``(c, N)`` kernel rows.
    """
    if gram is None:
        # exact differences (no |a|^2 + |b|^2 - 2ab cancellation), one kernel
        dist = torch.cdist(rows, feats, compute_mode='donot_use_mm_for_euclid_dist')
        exponent = dist.square_().mul_(-0.5)
    else:
        row_ops, col_ops = gram
        exponent = row_ops[offset : offset + rows.shape[0]] @ col_ops.t()
        exponent = exponent.clamp_(max=0.0).to(feats.dtype)
    weights = exponent.exp_()
    weights.diagonal(offset=offset).zero_()
    return weights


class DenseEnergyFunction(torch.autograd.Function):
    """Dense energy ``E = sum(S * (W (1 - S)))`` of one image, chunked.

    ``apply(probs, feats, chunk_size, gate)`` with ``probs`` ``(N, K)``,
    ``feats`` ``(N, d)`` scaled features (``W_ij = exp(-|f_i - f_j|^2 / 2)``),
    ``chunk_size`` kernel rows per product and ``gate`` ``(N,)`` per-pixel
    weights or None (all 1): ``E = sum(g[:, None] * S * (W (1 - S)))``;
    returns a scalar. Gradient only for ``probs`` (``g * W (1 - S) - W (g *
    S)``, computed in the forward pass).
    """

    @staticmethod
    def forward(
        ctx,
        probs: Tensor,
        feats: Tensor,
        chunk_size: int,
        gate: Optional[Tensor] = None,
    ) -> Tensor:
        num_pixels, num_classes = probs.shape
        with torch.autocast(device_type=probs.device.type, enabled=False):
            probs = probs.detach()
            feats = feats.detach().to(probs.dtype)
            if gate is None:
                gated = probs
            else:
                gate = gate.detach().to(probs.dtype)[:, None]
                gated = gate * probs
            operand = torch.cat([1 - probs, gated], dim=1)  # (N, 2K)
            grad = torch.empty_like(probs)
            energy = probs.new_zeros(())
            gram = _gram_operands(feats) if _gram_path(feats, chunk_size) else None
            for start in range(0, num_pixels, chunk_size):
                stop = min(start + chunk_size, num_pixels)
                weights = _kernel_rows(feats[start:stop], feats, start, gram)
                products = weights @ operand  # (c, 2K)
                w_rest = products[:, :num_classes]  # W (1 - S)
                if gate is not None:
                    w_rest = w_rest * gate[start:stop]  # g * W (1 - S)
                energy += (probs[start:stop] * w_rest).sum()
                torch.sub(w_rest, products[:, num_classes:], out=grad[start:stop])
        ctx.save_for_backward(grad)
        return energy

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor) -> Tuple[Optional[Tensor], None, None, None]:
        (grad,) = ctx.saved_tensors
        return grad_output * grad, None, None, None


def _check_energy_inputs(
    probs: Tensor, images: Tensor, roi: Optional[Tensor], gate: Optional[Tensor]
):
    if probs.dim() != 4:
        raise ValueError(
            f'dense_energy: probs must be (B, K, H, W), got shape {tuple(probs.shape)}'
        )
    b, _, h, w = probs.shape
    if images.dim() != 4 or images.shape[0] != b or images.shape[2:] != (h, w):
        raise ValueError(
            f'dense_energy: images must be (B, 3, H, W) with (B, H, W) = '
            f'{(b, h, w)} from probs, got shape {tuple(images.shape)}'
        )
    if roi is not None:
        if tuple(roi.shape) != (b, h, w):
            raise ValueError(
                f'dense_energy: roi must be (B, H, W) = {(b, h, w)}, got shape '
                f'{tuple(roi.shape)}'
            )
        if roi.dtype != torch.bool:
            raise ValueError(f'dense_energy: roi must be bool, got {roi.dtype}')
    if gate is not None and tuple(gate.shape) != (b, h, w):
        raise ValueError(
            f'dense_energy: gate must be (B, H, W) = {(b, h, w)}, got shape '
            f'{tuple(gate.shape)}'
        )


def dense_energy(
    probs: Tensor,
    images: Tensor,
    sigma_rgb: float,
    sigma_xy: float,
    roi: Optional[Tensor] = None,
    chunk_size: int = 4096,
    gate: Optional[Tensor] = None,
) -> Tensor:
    """Batch mean of the exact dense-CRF (Potts) energy of soft segmentations.

    Args:
        probs (Tensor): ``(B, K, H, W)`` class probabilities.
        images (Tensor): ``(B, 3, H, W)`` un-normalised RGB images (0..255)
            of the same size; no gradient flows to them.
        sigma_rgb (float): Colour bandwidth (0..255 units).
        sigma_xy (float): Spatial bandwidth (pixels).
        roi (Tensor, optional): ``(B, H, W)`` bool; only pixels inside take
            part (as ``i`` and as ``j``). Defaults to None (all pixels).
        chunk_size (int): Kernel rows per product. Defaults to 4096.
        gate (Tensor, optional): ``(B, H, W)`` per-pixel weights of the
            energy, held constant (no gradient). Defaults to None (all 1).

    Returns:
        Tensor: Scalar, ``mean_b E_b`` (float32 for half-precision input).

    Raises:
        ValueError: If shapes, the roi dtype, the bandwidths or
            ``chunk_size`` are wrong.
    """
    _check_energy_inputs(probs, images, roi, gate)
    if sigma_rgb <= 0 or sigma_xy <= 0:
        raise ValueError(
            f'dense_energy: sigma_rgb and sigma_xy must be > 0, got '
            f'{sigma_rgb} and {sigma_xy}'
        )
    if chunk_size < 1:
        raise ValueError(f'dense_energy: chunk_size must be >= 1, got {chunk_size}')
    dtype = torch.float32 if probs.dtype in _LOW_PRECISION else probs.dtype
    b, num_classes, h, w = probs.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=probs.device, dtype=dtype),
        torch.arange(w, device=probs.device, dtype=dtype),
        indexing='ij',
    )
    coords = torch.stack([ys.flatten(), xs.flatten()], dim=1) / sigma_xy  # (N, 2)
    colors = images.detach().to(dtype).flatten(2).transpose(1, 2) / sigma_rgb
    soft = probs.to(dtype).flatten(2).transpose(1, 2)  # (B, N, K)
    gates = None if gate is None else gate.detach().to(dtype).flatten(1)  # (B, N)

    energies: List[Tensor] = []
    for i in range(b):
        feats = torch.cat([coords, colors[i]], dim=1)
        s = soft[i]
        g = None if gates is None else gates[i]
        if roi is not None:
            inside = roi[i].flatten()
            feats, s = feats[inside], s[inside]
            g = None if g is None else g[inside]
        energies.append(DenseEnergyFunction.apply(s, feats, chunk_size, g))
    return torch.stack(energies).mean()


@MODELS.register_module()
class DenseEnergyLoss(nn.Module):
    """ToCo's regularisation loss: dense energy of the softmaxed seg logits.

    The images (un-normalised RGB, 0..255) are resized bilinearly by
    ``scale_factor`` (output size ``floor(H * scale_factor)``), the seg
    logits bilinearly to that size and softmaxed over classes, the roi by
    nearest neighbour; the value is ``loss_weight * weight *
    dense_energy(...)``.

    ``gate='uncertainty'`` weights each pixel's energy by ``1 - max_k S_k``
    (held constant; 1 where the caller's ``ignore`` mask is set, e.g. the
    ignore band of the pseudo labels), so confident pixels are barely
    regularised: the gating of ToCo's released loss as we read it (the paper
    lists only the weights and bandwidths, so it is off by default).

    Args:
        weight (float): Scale of the raw energy. Defaults to 1e-7.
        loss_weight (float): Multiplier, read at call time (a hook may
            change it). Defaults to 0.05.
        sigma_rgb (float): Colour bandwidth. Defaults to 15.0.
        sigma_xy (float): Spatial bandwidth in pixels of the *full-resolution*
            image (scaled by ``scale_factor`` with the image, as in Tang et
            al.'s loss). Defaults to 100.0.
        scale_factor (float): Resize factor of the images. Defaults to 0.5.
        loss_name (str): Log key; must start with ``loss_``. Defaults to
            ``'loss_reg'``.
        chunk_size (int): Kernel rows per product (memory
            ``O(chunk_size * N)``). Defaults to 4096.
        gate (str, optional): None (every pixel weighs 1) or
            ``'uncertainty'``. Defaults to None.
    """

    def __init__(
        self,
        weight: float = 1e-7,
        loss_weight: float = 0.05,
        sigma_rgb: float = 15.0,
        sigma_xy: float = 100.0,
        scale_factor: float = 0.5,
        loss_name: str = 'loss_reg',
        chunk_size: int = 4096,
        gate: Optional[str] = None,
    ) -> None:
        super().__init__()
        if not loss_name.startswith('loss_'):
            raise ValueError(
                f'DenseEnergyLoss: loss_name must start with "loss_": {loss_name}'
            )
        if scale_factor <= 0:
            raise ValueError(
                f'DenseEnergyLoss: scale_factor must be > 0, got {scale_factor}'
            )
        self.weight = weight
        self.loss_weight = loss_weight
        self.sigma_rgb = sigma_rgb
        self.sigma_xy = sigma_xy
        self.scale_factor = scale_factor
        if gate not in (None, 'uncertainty'):
            raise ValueError(
                f'DenseEnergyLoss: gate must be None or "uncertainty", got {gate!r}'
            )
        self.chunk_size = chunk_size
        self.gate = gate
        self._loss_name = loss_name

    def forward(
        self,
        seg_logits: Tensor,
        images: Tensor,
        roi: Optional[Tensor] = None,
        ignore: Optional[Tensor] = None,
        **kwargs,
    ) -> Tensor:
        """Weighted dense energy.

        Args:
            seg_logits (Tensor): ``(B, K, h, w)`` segmentation logits.
            images (Tensor): ``(B, 3, H, W)`` un-normalised RGB, 0..255.
            roi (Tensor, optional): ``(B, H, W)`` bool region (e.g. the
                un-padded area). Defaults to None.
            ignore (Tensor, optional): ``(B, H, W)`` bool, pixels whose
                uncertainty gate is 1 (``gate='uncertainty'`` only).
                Defaults to None.

        Returns:
            Tensor: Scalar loss.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                f'DenseEnergyLoss: images must be (B, 3, H, W), got shape '
                f'{tuple(images.shape)}'
            )
        if seg_logits.dim() != 4 or seg_logits.shape[0] != images.shape[0]:
            raise ValueError(
                f'DenseEnergyLoss: seg_logits must be (B, K, h, w) with '
                f'B = {images.shape[0]} (from images), got shape '
                f'{tuple(seg_logits.shape)}'
            )
        h, w = images.shape[2:]
        size = (math.floor(h * self.scale_factor), math.floor(w * self.scale_factor))
        if min(size) < 1:
            raise ValueError(
                f'DenseEnergyLoss: images of size {(h, w)} vanish at '
                f'scale_factor={self.scale_factor}'
            )
        for name, mask in (('roi', roi), ('ignore', ignore)):
            if mask is not None and tuple(mask.shape) != (images.shape[0], h, w):
                raise ValueError(
                    f'DenseEnergyLoss: {name} must be (B, H, W) = '
                    f'{(images.shape[0], h, w)} like images, got shape '
                    f'{tuple(mask.shape)}'
                )
        images = images.detach()
        if not images.is_floating_point() or images.dtype in _LOW_PRECISION:
            images = images.float()
        if size != (h, w):
            images = F.interpolate(
                images, size=size, mode='bilinear', align_corners=False
            )
            if roi is not None:
                roi = F.interpolate(roi[:, None].float(), size=size, mode='nearest')
                roi = roi[:, 0] > 0.5
            if ignore is not None:
                ignore = F.interpolate(
                    ignore[:, None].float(), size=size, mode='nearest'
                )
                ignore = ignore[:, 0] > 0.5
        if seg_logits.dtype in _LOW_PRECISION:
            seg_logits = seg_logits.float()
        if seg_logits.shape[2:] != size:
            seg_logits = F.interpolate(
                seg_logits, size=size, mode='bilinear', align_corners=False
            )
        probs = seg_logits.softmax(dim=1)
        gate = None
        if self.gate == 'uncertainty':
            gate = 1.0 - probs.detach().amax(dim=1)
            if ignore is not None:
                gate = gate.masked_fill(ignore, 1.0)
        # sigma_xy is given in full-resolution pixels (as in Tang et al.'s
        # loss): in the resized image it spans scale_factor times as many
        sigma_xy = self.sigma_xy * size[1] / w
        energy = dense_energy(
            probs, images, self.sigma_rgb, sigma_xy, roi, self.chunk_size, gate
        )
        return self.loss_weight * self.weight * energy

    @property
    def loss_name(self) -> str:
        return self._loss_name
