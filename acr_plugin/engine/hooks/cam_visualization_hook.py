"""CAM pictures during testing: image, ground truth, pseudo label, heatmaps."""

import os.path as osp
from typing import List, Optional, Sequence

import cv2
import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.visualization import Visualizer
from mmseg.registry import HOOKS


def colorize_labels(
    label: np.ndarray, palette: np.ndarray, ignore_index: int = 255
) -> np.ndarray:
    """``(H, W)`` class ids -> ``(H, W, 3)`` RGB, ignore pixels white."""
    out = np.full((*label.shape, 3), 255, dtype=np.uint8)
    valid = label != ignore_index
    out[valid] = palette[np.clip(label[valid], 0, len(palette) - 1)]
    return out


def overlay(image: np.ndarray, color: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend an RGB picture over an RGB image."""
    blended = image.astype(np.float32) * (1 - alpha) + color.astype(np.float32) * alpha
    return blended.round().clip(0, 255).astype(np.uint8)


def heatmap(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """A [0, 1] map as a JET heatmap over an RGB image."""
    cam8 = (np.clip(cam, 0, 1) * 255).astype(np.uint8)
    color = cv2.applyColorMap(cam8, cv2.COLORMAP_JET)[..., ::-1]
    return overlay(image, color, alpha)


def cam_panel(
    image: np.ndarray,
    seg_logits: np.ndarray,
    pred: np.ndarray,
    palette: np.ndarray,
    classes: Sequence[str],
    gt: Optional[np.ndarray] = None,
    labels: Optional[np.ndarray] = None,
    max_classes: int = 4,
) -> np.ndarray:
    """One row: image | ground truth | prediction | a heatmap per class.

    Args:
        image (np.ndarray): ``(H, W, 3)`` RGB uint8.
        seg_logits (np.ndarray): ``(C + 1, H, W)``; channels 1.. are CAMs.
        pred (np.ndarray): ``(H, W)`` predicted ids.
        palette (np.ndarray): ``(C + 1, 3)`` RGB colours.
        classes (Sequence[str]): Class names (background first).
        gt (np.ndarray, optional): ``(H, W)`` ground-truth ids.
        labels (np.ndarray, optional): ``(C,)`` image labels; heatmaps are drawn
            for these classes, else for the strongest ones.
        max_classes (int): At most this many heatmaps. Defaults to 4.
    """
    tiles = [image]
    if gt is not None:
        tiles.append(overlay(image, colorize_labels(gt, palette)))
    tiles.append(overlay(image, colorize_labels(pred, palette)))
    cams = seg_logits[1:]
    if labels is not None and labels.sum() > 0:
        order = np.flatnonzero(labels > 0)
    else:
        order = np.argsort(-cams.reshape(len(cams), -1).max(1))
    for c in order[:max_classes]:
        tile = heatmap(image, cams[c])
        cv2.putText(
            tile,
            str(classes[c + 1]),
            (2, 12),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
        tiles.append(tile)
    return np.concatenate(tiles, axis=1)


@HOOKS.register_module()
class CAMVisualizationHook(Hook):
    """Save CAM pictures of test images through mmengine's visualiser.

    Unlike mmseg's ``SegVisualizationHook`` it takes the image from the data
    batch (so it works on the synthetic data, which has no files) and draws,
    per image, one row: image, ground truth (when kept), prediction and a
    heatmap per image-level class. Images go to every visualiser backend
    (``LocalVisBackend``: ``<save_dir>/vis_data/vis_image``; TensorBoard when
    configured and installed). ``tools/test.py --show-dir DIR`` switches it on.

    Args:
        draw (bool): Draw at all. Defaults to False.
        interval (int): Draw every ``interval``-th test image. Defaults to 1.
        max_images (int, optional): Stop after this many pictures. Defaults
            to 16.
        show (bool): Also show in a window. Defaults to False.
        wait_time (float): Seconds per shown picture. Defaults to 0.
    """

    priority = 'NORMAL'

    def __init__(
        self,
        draw: bool = False,
        interval: int = 1,
        max_images: Optional[int] = 16,
        show: bool = False,
        wait_time: float = 0.0,
    ) -> None:
        self.draw = draw
        self.interval = max(1, interval)
        self.max_images = max_images
        self.show = show
        self.wait_time = wait_time
        self._seen = 0
        self._drawn = 0

    def before_test(self, runner) -> None:
        self._seen = 0
        self._drawn = 0

    def after_test_iter(
        self, runner, batch_idx: int, data_batch: dict, outputs: List
    ) -> None:
        if not self.draw:
            return
        visualizer = Visualizer.get_current_instance()
        meta = runner.test_evaluator.dataset_meta or {}
        classes = meta.get('classes')
        palette = np.asarray(meta.get('palette'), dtype=np.uint8)
        for inputs, sample in zip(data_batch['inputs'], outputs):
            index = self._seen
            self._seen += 1
            if index % self.interval:
                continue
            if self.max_images is not None and self._drawn >= self.max_images:
                return
            picture = self.render(inputs, sample, classes, palette)
            name = osp.splitext(
                osp.basename(str(sample.metainfo.get('img_path', f'image_{index}')))
            )[0]
            visualizer.add_image(f'cam_{index:05d}_{name}', picture, step=0)
            if self.show:
                visualizer.show(picture, win_name=name, wait_time=self.wait_time)
            self._drawn += 1

    def render(self, inputs: torch.Tensor, sample, classes, palette) -> np.ndarray:
        """The picture of one test sample (RGB uint8)."""
        image = inputs.detach().cpu().numpy().transpose(1, 2, 0)[..., ::-1]
        seg_logits = sample.seg_logits.data.detach().float().cpu().numpy()
        height, width = seg_logits.shape[1:]
        if image.shape[:2] != (height, width):
            image = cv2.resize(
                np.ascontiguousarray(image),
                (width, height),
                interpolation=cv2.INTER_LINEAR,
            )
        pred = sample.pred_sem_seg.data[0].cpu().numpy()
        gt = sample.gt_sem_seg.data[0].cpu().numpy() if 'gt_sem_seg' in sample else None
        labels = sample.img_labels.cpu().numpy() if 'img_labels' in sample else None
        return cam_panel(
            np.ascontiguousarray(image, dtype=np.uint8),
            seg_logits,
            pred,
            palette,
            classes,
            gt,
            labels,
        )
