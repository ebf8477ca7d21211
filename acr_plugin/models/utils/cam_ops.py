"""Pure tensor operations on class activation maps (CAMs).

Conventions: ``cams`` are ``(B, C, H, W)`` over the C *foreground* classes;
``labels`` are ``(B, C)`` multi-hot; seg logits are ``(B, C + 1, H, W)`` with the
background score as channel 0 (mmseg's class 0).
"""

from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def cam_from_patch_tokens(
    patch_map: Tensor, weight: Tensor, bias: Optional[Tensor] = None
) -> Tensor:
    """Apply a linear classifier to every patch token: ``CAM = W F``.

    Args:
        patch_map (Tensor): Patch tokens ``(B, D, h, w)``.
        weight (Tensor): Classifier weight ``(C, D)`` or ``(C, D, 1, 1)``.
        bias (Tensor, optional): Classifier bias ``(C,)``. Defaults to None.

    Returns:
        Tensor: Raw (un-rectified) CAMs ``(B, C, h, w)``.
    """
    if weight.dim() == 4:
        weight = weight.flatten(1)
    cams = torch.einsum('bdhw,cd->bchw', patch_map, weight)
    if bias is not None:
        cams = cams + bias.view(1, -1, 1, 1)
    return cams


def global_pool(cams: Tensor, mode: str = 'max', topk: float = 0.1) -> Tensor:
    """Pool ``(B, C, h, w)`` score maps to ``(B, C)`` logits.

    Args:
        cams (Tensor): Score maps.
        mode (str): ``'max'``, ``'avg'`` or ``'topk'`` (mean of the top
            ``topk`` fraction of positions). Defaults to ``'max'``.
        topk (float): Fraction of positions for ``'topk'``. Defaults to 0.1.
    """
    flat = cams.flatten(2)
    if mode == 'max':
        return flat.amax(dim=2)
    if mode == 'avg':
        return flat.mean(dim=2)
    if mode == 'topk':
        k = max(1, int(round(flat.shape[2] * topk)))
        return flat.topk(k, dim=2).values.mean(dim=2)
    raise ValueError(f'unknown pooling mode "{mode}" (max, avg or topk)')


def minmax_normalize(cams: Tensor, eps: float = 1e-5) -> Tensor:
    """Per-image, per-class min-max normalisation to [0, 1].

    Args:
        cams (Tensor): ``(B, C, H, W)`` maps.
        eps (float): Added to the range. Defaults to 1e-5.
    """
    flat = cams.flatten(2)
    low = flat.amin(dim=2)[..., None, None]
    high = flat.amax(dim=2)[..., None, None]
    return (cams - low) / (high - low + eps)


def cams_to_seg_logits(
    cams: Tensor, bg_thr: float, labels: Optional[Tensor] = None
) -> Tensor:
    """Turn normalised CAMs into ``(B, C + 1, H, W)`` seg logits.

    Channel 0 is the constant background score ``bg_thr``; classes absent from
    ``labels`` (when given) are zeroed so they can never win the argmax.
    """
    if labels is not None:
        cams = cams * labels[:, :, None, None].to(cams.dtype)
    background = cams.new_full((cams.shape[0], 1, *cams.shape[2:]), bg_thr)
    return torch.cat([background, cams], dim=1)


#: how a rescaled size meets the patch grid: ``'round'`` to whole patches,
#: or ``'floor'``: ``int(s * h)`` pixels, of which the patch embedding keeps
#: the whole patches (ToCo)
SIZE_ROUNDINGS = ('round', 'floor')


def _check_rounding(rounding: str) -> None:
    if rounding not in SIZE_ROUNDINGS:
        raise ValueError(
            f'size rounding must be one of {SIZE_ROUNDINGS}, got "{rounding}"'
        )


def scaled_size(
    size: Sequence[int], scale: float, size_divisor: int = 1, rounding: str = 'round'
) -> Tuple[int, int]:
    """``size * scale`` as resized pixels.

    ``rounding='round'``: rounded to a multiple of ``size_divisor`` (>= 1
    unit). ``'floor'``: ``int(s * scale)`` pixels (>= 1), as ToCo resizes
    (Ru et al., CVPR 2023); see :func:`rescale_images` for the patch grid.
    """
    _check_rounding(rounding)
    if rounding == 'floor':
        return tuple(max(1, int(s * scale)) for s in size)
    return tuple(
        max(size_divisor, int(round(s * scale / size_divisor)) * size_divisor)
        for s in size
    )


def rescale_images(
    images: Tensor,
    scale: float,
    align_corners: bool = False,
    size_divisor: int = 1,
    rounding: str = 'round',
) -> Tensor:
    """Bilinear resize of ``(B, C, H, W)`` by ``scale`` (see
    :func:`scaled_size`); the input itself when the size does not change."""
    size = scaled_size(images.shape[-2:], scale, size_divisor, rounding)
    if size == tuple(images.shape[-2:]):
        return images
    return F.interpolate(
        images, size=size, mode='bilinear', align_corners=align_corners
    )


def whole_patches(images: Tensor, patch_size: int) -> Tensor:
    """The pixels a strided patch embedding (kernel = stride = patch) reads:
    ``images`` without the bottom rows / right columns beyond a multiple of
    ``patch_size`` (the input itself if there are none)."""
    height, width = images.shape[-2:]
    kept = (height // patch_size * patch_size, width // patch_size * patch_size)
    if min(kept) < 1:
        raise ValueError(
            f'whole_patches: a {height}x{width} px image holds no {patch_size} px patch'
        )
    if kept == (height, width):
        return images
    return images[..., : kept[0], : kept[1]]


def multi_scale_flip_cams(
    cam_fn: Callable[[Tensor], Tensor],
    inputs: Tensor,
    scales: Sequence[float] = (1.0,),
    flip: bool = True,
    flip_merge: str = 'max',
    align_corners: bool = False,
    size_divisor: int = 1,
    plain_cams: Optional[Tensor] = None,
    rounding: str = 'round',
) -> Tensor:
    """Test-time augmented CAMs at the input resolution.

    For each scale the input is resized (bilinear), ``cam_fn`` gives raw CAMs,
    they are resized back to the input size; with ``flip`` the mirrored input's
    CAMs are mirrored back and merged with the plain ones by ``flip_merge``
    (``'max'``, as ToCo, or ``'sum'``). Each map is rectified (ReLU) and the
    scales are summed.

    ``plain_cams`` = ``cam_fn(inputs)`` computed by the caller (e.g. by its
    training forward) is used at the scale that keeps the input size instead
    of running ``cam_fn`` on ``inputs`` again (only the mirrored input is run
    there): the same result for a ``cam_fn`` that treats the samples of a
    batch independently and deterministically (a ViT without dropout).

    Args:
        cam_fn (callable): ``(B, 3, h, w) -> (B, C, h', w')`` raw CAMs.
        inputs (Tensor): Normalised images ``(B, 3, H, W)``.
        scales (Sequence[float]): Resize factors. Defaults to ``(1.0,)``.
        flip (bool): Add the horizontally flipped view. Defaults to True.
        flip_merge (str): ``'max'`` or ``'sum'``. Defaults to ``'max'``.
        align_corners (bool): For every bilinear resize. Defaults to False.
        size_divisor (int): A ViT's patch size (see ``rounding``).
            Defaults to 1.
        plain_cams (Tensor, optional): ``cam_fn(inputs)``, raw, if already
            computed. Defaults to None.
        rounding (str): ``'round'``: each rescaled size is rounded to a
            multiple of ``size_divisor`` (so that e.g. ``0.5 x 40`` px still
            fills whole patches); ``'floor'``: ``int(s * h) x int(s * w)`` px
            (and their mirror image) of which ``cam_fn`` gets the
            :func:`whole_patches`, i.e. what a strided patch embedding makes
            of them (ToCo). The CAMs are resized back to the input size
            either way. Defaults to ``'round'``.

    Returns:
        Tensor: ``(B, C, H, W)`` non-negative CAMs (not normalised).
    """
    if flip_merge not in ('max', 'sum'):
        raise ValueError(f'flip_merge must be "max" or "sum", got {flip_merge}')
    _check_rounding(rounding)
    size = inputs.shape[2:]
    total = None
    for scale in scales:
        x = rescale_images(inputs, scale, align_corners, size_divisor, rounding)
        # mirror before cutting to whole patches: the mirrored image loses its
        # other edge, as a patch embedding fed the mirrored image would
        pair = [x, x.flip(-1)] if flip else [x]
        if rounding == 'floor':
            pair = [whole_patches(view, size_divisor) for view in pair]
        if plain_cams is not None and pair[0] is inputs:
            cams = torch.cat([plain_cams, cam_fn(pair[1])]) if flip else plain_cams
        else:
            cams = cam_fn(torch.cat(pair) if flip else pair[0])
        cams = F.interpolate(
            cams, size=size, mode='bilinear', align_corners=align_corners
        )
        cams = F.relu(cams)
        if flip:
            plain, mirrored = cams.chunk(2)
            mirrored = mirrored.flip(-1)
            cams = (
                torch.maximum(plain, mirrored)
                if flip_merge == 'max'
                else plain + mirrored
            )
        total = cams if total is None else total + cams
    return total
