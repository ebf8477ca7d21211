"""Data samples for model tests."""

import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample


def make_samples(labels, size=(32, 32)):
    """One SegDataSample per row of image labels: ``img_labels``, image and
    original shape ``size``, an all-background ``gt_sem_seg``."""
    samples = []
    for row in labels:
        sample = SegDataSample()
        sample.img_labels = torch.tensor(row, dtype=torch.float)
        sample.set_metainfo(dict(img_shape=size, ori_shape=size))
        sample.gt_sem_seg = PixelData(data=torch.zeros(1, *size, dtype=torch.long))
        samples.append(sample)
    return samples
