"""Data samples, seeded generators and small references shared by the tests."""

import numpy as np
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample


def gen(seed):
    """A CPU random generator seeded with ``seed``."""
    return torch.Generator().manual_seed(seed)


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


def reference_image_labels(seg_map, num_classes):
    """Independent reference: loop over the classes, position k-1."""
    return np.array(
        [float((seg_map == k).any()) for k in range(1, num_classes + 1)],
        dtype=np.float32,
    )
