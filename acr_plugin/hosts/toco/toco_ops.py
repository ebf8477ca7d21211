"""Pure tensor operations of ToCo's single-stage training (Ru et al., CVPR 2023).

Pseudo labels from CAMs (ignore band, PAR refinement with two background
levels), the uncertainty map that places the local crops of the class-token
contrast (CTC) and the sampling of those crops.

Conventions: ``cams`` are ``(B, C, H, W)`` over the C foreground classes,
normalised to [0, 1]; ``img_labels`` are ``(B, C)`` multi-hot; label maps are
long with 0 = background, ``k`` = foreground class ``k - 1`` (position in the
CAMs) plus 1, and ``ignore_index`` for ignored pixels.
"""

from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

#: roi map values: certain background, uncertain, certain foreground
ROI_BACKGROUND, ROI_UNCERTAIN, ROI_FOREGROUND = 0, 1, 2


def _check_cams(cams: Tensor, name: str) -> None:
    if cams.dim() != 4:
        raise ValueError(f'{name}: cams must be (B, C, H, W), got {tuple(cams.shape)}')


def ignore_band_labels(
    cams: Tensor, high: float, low: float, ignore_index: int = 255
) -> Tensor:
    """Pseudo labels with an ignore band between two thresholds.

    With ``m`` the maximum over classes and ``k`` the arg-max plus 1, a pixel is
    ``k`` if ``m > high``, ``ignore_index`` if ``low < m <= high`` and 0 if
    ``m <= low``.

    Args:
        cams (Tensor): ``(B, C, H, W)`` CAMs in [0, 1], zero for absent classes.
        high (float): Foreground threshold.
        low (float): Background threshold.
        ignore_index (int): Label of the band. Defaults to 255.

    Returns:
        Tensor: ``(B, H, W)`` long labels.
    """
    _check_cams(cams, 'ignore_band_labels')
    if low > high:
        raise ValueError(f'ignore_band_labels: low ({low}) must be <= high ({high})')
    score, index = cams.max(dim=1)
    labels = torch.full_like(index, ignore_index)
    labels[score > high] = index[score > high] + 1
    labels[score <= low] = 0
    return labels


def token_band_labels(
    cams: Tensor,
    size: Tuple[int, int],
    high: float,
    low: float,
    ignore_index: int = 255,
    valid: Optional[Tensor] = None,
) -> Tensor:
    """PTC's token labels: CAMs resized to the token grid, then the ignore band.

    The ``(H, W)`` CAMs are first resized bilinearly (``align_corners=False``,
    i.e. sampled at each patch centre) to the ``(h, w)`` token grid and only
    then labelled by :func:`ignore_band_labels` (ToCo's order, Ru et al.,
    CVPR 2023). With ``valid`` (``(B, H, W)`` bool, False on batch padding),
    a token whose centre pixel ``(floor((i + 0.5) H / h), floor((j + 0.5) W /
    w))`` is padding gets ``ignore_index``.

    Args:
        cams (Tensor): ``(B, C, H, W)`` CAMs in [0, 1], zero for absent classes.
        size (tuple[int, int]): Token grid ``(h, w)``.
        high (float): Foreground threshold.
        low (float): Background threshold.
        ignore_index (int): Label of the band and of padding. Defaults to 255.
        valid (Tensor, optional): ``(B, H, W)`` bool mask of real pixels.

    Returns:
        Tensor: ``(B, h, w)`` long labels.
    """
    _check_cams(cams, 'token_band_labels')
    size = (int(size[0]), int(size[1]))
    labels = ignore_band_labels(_resize(cams, size), high, low, ignore_index)
    if valid is not None:
        height, width = cams.shape[-2:]
        if tuple(valid.shape) != (cams.shape[0], height, width):
            raise ValueError(
                'token_band_labels: valid must be (B, H, W) = '
                f'{(cams.shape[0], height, width)}, got {tuple(valid.shape)}'
            )
        rows = ((torch.arange(size[0]) + 0.5) * height / size[0]).long()
        cols = ((torch.arange(size[1]) + 0.5) * width / size[1]).long()
        centres = valid[:, rows.to(valid.device)][:, :, cols.to(valid.device)]
        labels[~centres] = ignore_index
    return labels


def _resize(x: Tensor, size: Tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode='bilinear', align_corners=False)


def refine_cams_with_par(
    par: Callable[[Tensor, Tensor], Tensor],
    images: Tensor,
    cams: Tensor,
    img_labels: Tensor,
    high: float,
    low: float,
    down_scale: float = 0.5,
    ignore_index: int = 255,
) -> Tensor:
    """ToCo's pseudo label: PAR-refined CAMs at two background levels, fused.

    Steps: restrict ``cams`` to the image labels; build the ``(C + 1)``-plane
    score maps with a constant background plane ``high`` and, separately,
    ``low``; resize images and maps by ``down_scale`` (bilinear,
    ``align_corners=False``, size ``max(1, int(H * down_scale))``); turn each
    map into probabilities by a softmax over the background and the present
    classes (absent classes get 0, as ToCo refines probabilities); refine
    with ``par``; resize back to ``(H, W)``; mask absent classes to ``-inf``;
    ``label_high`` / ``label_low`` = arg-max of each refinement. The result is
    ``label_high`` where it is foreground, else 0 where ``label_low`` is
    background, else ``ignore_index`` (the two disagree). Images without any
    foreground label are all background.

    ``par`` is called once on the two stacked probability maps (``2 (C + 1)``
    planes): this equals two separate refinements for any ``par`` that treats
    planes independently, as :class:`PixelAdaptiveRefinement` does. Runs
    without gradients.

    Args:
        par (callable): ``(images, masks) -> refined masks``, e.g. a
            :class:`PixelAdaptiveRefinement`.
        images (Tensor): ``(B, 3, H, W)`` images (any normalisation).
        cams (Tensor): ``(B, C, H, W)`` CAMs normalised to [0, 1].
        img_labels (Tensor): ``(B, C)`` multi-hot image labels.
        high (float): Background level of the confident map (0.7 in ToCo).
        low (float): Background level of the permissive map (0.25 in ToCo).
        down_scale (float): Resize factor for the refinement. Defaults to 0.5.
        ignore_index (int): Label of disagreeing pixels. Defaults to 255.

    Returns:
        Tensor: ``(B, H, W)`` long pseudo labels.
    """
    _check_cams(cams, 'refine_cams_with_par')
    batch, num_classes, height, width = cams.shape
    if img_labels.shape != (batch, num_classes):
        raise ValueError(
            f'refine_cams_with_par: img_labels must be (B, C) = '
            f'{(batch, num_classes)}, got {tuple(img_labels.shape)}'
        )
    if (
        images.dim() != 4
        or images.shape[0] != batch
        or images.shape[2:] != cams.shape[2:]
    ):
        raise ValueError(
            'refine_cams_with_par: images must be (B, 3, H, W) matching the cams '
            f'{tuple(cams.shape)}, got {tuple(images.shape)}'
        )
    if not 0 < down_scale <= 1:
        raise ValueError(
            f'refine_cams_with_par: down_scale must lie in (0, 1], got {down_scale}'
        )
    with torch.no_grad():
        present = img_labels > 0
        absent = ~present[:, :, None, None]
        small = (max(1, int(height * down_scale)), max(1, int(width * down_scale)))
        fg = _resize(cams.masked_fill(absent, 0.0), small)
        fg = fg.masked_fill(absent, float('-inf'))
        # per level: softmax over [background, present classes] (absent
        # classes get probability 0), then PAR on the probabilities
        probs = [
            torch.cat([fg.new_full((batch, 1, *small), float(level)), fg], 1).softmax(1)
            for level in (high, low)
        ]
        refined = par(_resize(images.to(cams.dtype), small), torch.cat(probs, dim=1))
        refined = _resize(refined, (height, width))
        plane_high, plane_low = refined.split(num_classes + 1, dim=1)
        label_high = _masked_argmax(plane_high, absent)
        label_low = _masked_argmax(plane_low, absent)

        labels = torch.full_like(label_high, ignore_index)
        labels[label_low == 0] = 0
        labels = torch.where(label_high > 0, label_high, labels)
        labels[~present.any(dim=1)] = 0
    return labels


def _masked_argmax(planes: Tensor, absent: Tensor) -> Tensor:
    """Arg-max over ``[bg, classes]`` planes with absent classes excluded
    (the first maximum on ties, as ``argmax``; ``max(dim)`` finds the same
    index several times faster over the class dimension of a CPU tensor)."""
    fg = planes[:, 1:].masked_fill(absent, float('-inf'))
    return torch.cat([planes[:, :1], fg], dim=1).max(dim=1).indices


def roi_map(cams: Tensor, low: float = 0.25, high: float = 0.7) -> Tensor:
    """Uncertainty map that places CTC's local crops.

    Args:
        cams (Tensor): ``(B, C, H, W)`` CAMs in [0, 1].
        low (float): At or below: certain background. Defaults to 0.25.
        high (float): At or above: certain foreground. Defaults to 0.7.

    Returns:
        Tensor: ``(B, H, W)`` long map: :data:`ROI_BACKGROUND` (0) where the
        class maximum ``m <= low``, :data:`ROI_FOREGROUND` (2) where
        ``m >= high``, else :data:`ROI_UNCERTAIN` (1).
    """
    _check_cams(cams, 'roi_map')
    score = cams.amax(dim=1)
    roi = torch.full(score.shape, ROI_UNCERTAIN, dtype=torch.long, device=cams.device)
    roi[score <= low] = ROI_BACKGROUND
    roi[score >= high] = ROI_FOREGROUND
    return roi


def sample_local_crops(
    images: Tensor,
    roi: Tensor,
    num_crops: int = 8,
    crop_size: int = 96,
    margin: Optional[int] = None,
    neg_thr: float = 0.2,
    generator: Optional[torch.Generator] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Sample CTC's local crops centred on uncertain or background pixels.

    As ToCo (Ru et al., CVPR 2023): the interior pixels are the rows and
    columns in ``[margin, H - margin)`` (``[margin, W - margin)``); centres
    are drawn uniformly *without replacement* among the interior pixels with
    ``roi <= 1`` (uncertain or background), or among all interior pixels when
    fewer than ``num_crops`` of them have it. The box is ``y0 = y - crop_size
    // 2``, ``y1 = y0 + crop_size`` (likewise ``x``), shifted to stay inside
    the image when a small ``margin`` would let it leave. A crop is negative
    if ``roi.sum() / crop_size ** 2 <= neg_thr`` over the crop, positive
    otherwise.

    ``images`` need not be the view the ``roi`` was computed on: ToCo cuts the
    crops from an independently augmented copy of the image at the
    coordinates of the roi map. Images (and the roi map) smaller than
    ``crop_size`` are first padded with zeros at the bottom and right (the roi
    with :data:`ROI_BACKGROUND`), so ``boxes`` are in the coordinates of that
    padded image, which equal the original ones.

    Args:
        images (Tensor): ``(B, 3, H, W)`` images.
        roi (Tensor): ``(B, H, W)`` map from :func:`roi_map`.
        num_crops (int): Crops per image. Defaults to 8.
        crop_size (int): Crop side. Defaults to 96.
        margin (int, optional): Minimum distance of a centre from the top /
            left border (the bottom / right one is ``margin + 1``).
            Defaults to ``crop_size // 2``.
        neg_thr (float): Largest mean roi value of a negative crop. Defaults
            to 0.2.
        generator (torch.Generator, optional): Source of randomness; None uses
            the global RNG. Defaults to None.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``crops`` ``(B, num_crops, 3, crop_size,
        crop_size)``, ``positive`` ``(B, num_crops)`` bool and ``boxes``
        ``(B, num_crops, 4)`` long as ``(y0, x0, y1, x1)`` (end exclusive).

    Raises:
        ValueError: For mismatched shapes, or a margin that leaves no centre.
    """
    if images.dim() != 4 or roi.dim() != 3:
        raise ValueError(
            'sample_local_crops: images must be (B, 3, H, W) and roi (B, H, W), '
            f'got {tuple(images.shape)} and {tuple(roi.shape)}'
        )
    if images.shape[0] != roi.shape[0] or images.shape[2:] != roi.shape[1:]:
        raise ValueError(
            'sample_local_crops: roi must match the images in batch size and '
            f'H, W, got {tuple(roi.shape)} for images {tuple(images.shape)}'
        )
    if num_crops < 1 or crop_size < 1:
        raise ValueError(
            f'sample_local_crops: num_crops ({num_crops}) and crop_size '
            f'({crop_size}) must be positive'
        )
    margin = crop_size // 2 if margin is None else int(margin)
    pad_h = max(0, crop_size - images.shape[2])
    pad_w = max(0, crop_size - images.shape[3])
    if pad_h or pad_w:
        images = F.pad(images, (0, pad_w, 0, pad_h))
        roi = F.pad(roi, (0, pad_w, 0, pad_h), value=ROI_BACKGROUND)
    batch, _, height, width = images.shape
    if margin < 0 or 2 * margin > min(height, width):
        raise ValueError(
            f'sample_local_crops: margin {margin} leaves no valid centre in a '
            f'{height}x{width} image (need 0 <= 2 * margin <= min(H, W))'
        )

    valid = torch.zeros(height, width, dtype=torch.bool, device=roi.device)
    valid[margin : height - margin, margin : width - margin] = True
    if int(valid.sum()) < num_crops:
        # too small for ToCo's sampling (e.g. a padded image of crop_size):
        # the closed range [margin, size - margin], with replacement below
        valid[margin : height - margin + 1, margin : width - margin + 1] = True
    device = generator.device if generator is not None else torch.device('cpu')
    centres = []
    for b in range(batch):
        candidates = (valid & (roi[b] <= ROI_UNCERTAIN)).nonzero()
        if candidates.shape[0] < num_crops:
            candidates = valid.nonzero()
        count = candidates.shape[0]
        if count >= num_crops:
            index = torch.randperm(count, generator=generator, device=device)
            index = index[:num_crops]
        else:
            index = torch.randint(
                count, (num_crops,), generator=generator, device=device
            )
        centres.append(candidates[index.to(candidates.device)])
    centres = torch.stack(centres)  # (B, N, 2)

    limits = torch.tensor([height - crop_size, width - crop_size], device=roi.device)
    starts = (centres - crop_size // 2).clamp(min=0)
    starts = torch.minimum(starts, limits)
    boxes = torch.cat([starts, starts + crop_size], dim=2).long()

    steps = torch.arange(crop_size, device=roi.device)
    rows = (starts[..., 0, None] + steps)[:, :, :, None]  # (B, N, S, 1)
    cols = (starts[..., 1, None] + steps)[:, :, None, :]  # (B, N, 1, S)
    bidx = torch.arange(batch, device=roi.device)[:, None, None, None]
    crops = images.permute(0, 2, 3, 1)[bidx, rows, cols]  # (B, N, S, S, 3)
    crops = crops.permute(0, 1, 4, 2, 3).contiguous()
    roi_sum = roi[bidx, rows, cols].flatten(2).sum(dim=2)
    positive = roi_sum.float() / crop_size**2 > neg_thr
    return crops, positive, boxes
