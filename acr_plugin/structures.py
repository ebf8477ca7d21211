"""Names of the WSSS-specific fields that travel through pipelines and samples.

* ``img_labels``: image-level multi-hot labels over the *foreground* classes
  (segmentation class ``k`` >= 1 is position ``k - 1``). In a pipeline's
  ``results`` dict it is a ``np.ndarray`` of shape ``(C,)`` and dtype float32; in a
  ``SegDataSample`` it is a data field holding a float ``torch.Tensor`` ``(C,)``.
* ``gt_part_map``: synthetic-data part map (0 background, 1 body, 2 head),
  a ``(H, W)`` uint8 array in ``results`` (listed in ``seg_fields`` so geometric
  transforms move it with the mask) and a ``PixelData`` in a ``SegDataSample``.
"""

import torch

IMG_LABELS = 'img_labels'
#: image-level logits ``(C,)`` written by a WSSS segmentor's ``predict``
PRED_IMG_LOGITS = 'pred_img_logits'
PART_MAP = 'gt_part_map'
#: ``(1, H, W)`` bool ``PixelData``: the pixels of a (transformed) batch that
#: hold image, not batch padding (set by ``ACRSegmentor`` on view-2 samples)
VALID_MASK = 'valid_mask'

#: values of the part map (0 is background)
PART_BODY, PART_HEAD = 1, 2


def stack_img_labels(data_samples) -> torch.Tensor:
    """Stack the ``img_labels`` of a batch into a ``(B, C)`` float tensor.

    Raises:
        KeyError: if a sample carries no image-level labels (the pipeline lacks
            ``DeriveImageLabels``/``LoadImageLabels`` + ``PackWSSSInputs``).
    """
    labels = []
    for i, sample in enumerate(data_samples):
        if IMG_LABELS not in sample:
            raise KeyError(
                f'data sample {i} has no "{IMG_LABELS}" field: add '
                'DeriveImageLabels or LoadImageLabels before PackWSSSInputs '
                'in the pipeline'
            )
        labels.append(sample.get(IMG_LABELS).float())
    return torch.stack(labels)


def labels_for_prediction(data_samples, owner: str, switch: str) -> torch.Tensor:
    """Image labels ``(B, C)`` a predictor restricts its CAMs to.

    Args:
        data_samples (list, optional): The batch's samples.
        owner (str): Prefix of the error naming the setting, e.g.
            ``'test_cfg.'``.
        switch (str): How to turn the restriction off, for the error.

    Raises:
        KeyError: If a sample (or the whole list) carries no ``img_labels``.
    """
    if data_samples is None or any(IMG_LABELS not in s for s in data_samples):
        raise KeyError(
            f'{owner}use_labels=True needs "{IMG_LABELS}" in every test sample '
            '(DeriveImageLabels/LoadImageLabels in the test pipeline), or set '
            f'{switch}'
        )
    return stack_img_labels(data_samples)


def attach_img_logits(results, logits: torch.Tensor):
    """Store each image's logits ``(C,)`` as ``pred_img_logits``; return results."""
    for sample, row in zip(results, logits):
        sample.set_data({PRED_IMG_LOGITS: row})
    return results


def valid_masks(data_samples, size, device) -> torch.Tensor:
    """``(B, H, W)`` bool: the image pixels of each sample in a padded batch.

    A sample's ``valid_mask`` field wins (a transformed view); otherwise the
    box ``[:h, :w]`` of its ``img_shape`` (``SegDataPreProcessor`` pads at
    the bottom / right).

    Args:
        data_samples (list): The batch's ``SegDataSample`` s.
        size (tuple[int, int]): Batch size ``(H, W)``.
        device: Device of the masks.
    """
    masks = torch.zeros(len(data_samples), *size, dtype=torch.bool, device=device)
    for i, sample in enumerate(data_samples):
        if VALID_MASK in sample:
            mask = sample.get(VALID_MASK).data[0].to(device)
            if tuple(mask.shape) != tuple(size):
                raise ValueError(
                    f'data sample {i}: {VALID_MASK} has shape {tuple(mask.shape)}, '
                    f'the batch is {tuple(size)}'
                )
            masks[i] = mask
            continue
        h, w = sample.metainfo.get('img_shape', size)[:2]
        masks[i, :h, :w] = True
    return masks
