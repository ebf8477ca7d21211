"""CAMVisualizationHook and its picture helpers
(acr_plugin/engine/hooks/cam_visualization_hook.py) on a fake runner."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from acr_plugin.engine.hooks import cam_visualization_hook as vis_module
from acr_plugin.engine.hooks.cam_visualization_hook import (
    CAMVisualizationHook,
    cam_panel,
    colorize_labels,
    overlay,
)

PALETTE = np.array([[0, 0, 0], [200, 0, 0], [0, 200, 0], [0, 0, 200]], np.uint8)
CLASSES = ('background', 'a', 'b', 'c')


def test_colorize_labels_and_overlay():
    label = np.array([[0, 1], [3, 255]])
    rgb = colorize_labels(label, PALETTE)
    assert rgb.tolist() == [[[0, 0, 0], [200, 0, 0]], [[0, 0, 200], [255, 255, 255]]]
    image = np.full((1, 2, 3), 100, np.uint8)
    color = np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8)
    # 100 * 0.75 + c * 0.25, rounded
    assert overlay(image, color, 0.25).tolist() == [[[75] * 3, [139] * 3]]


@pytest.mark.parametrize(
    'gt,labels,tiles', [(None, None, 2 + 3), (True, np.array([0, 1, 0]), 3 + 1)]
)
def test_cam_panel_layout(gt, labels, tiles):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    seg_logits = rng.random((4, 6, 5)).astype(np.float32)
    pred = seg_logits.argmax(0)
    gt_map = pred if gt else None
    panel = cam_panel(image, seg_logits, pred, PALETTE, CLASSES, gt_map, labels)
    assert panel.shape == (6, 5 * tiles, 3) and panel.dtype == np.uint8
    np.testing.assert_array_equal(panel[:, :5], image)
    expected_pred = overlay(image, colorize_labels(pred, PALETTE))
    column = 10 if gt else 5
    np.testing.assert_array_equal(panel[:, column : column + 5], expected_pred)
    # at most max_classes heatmaps
    assert cam_panel(
        image, seg_logits, pred, PALETTE, CLASSES, max_classes=1
    ).shape == (
        6,
        15,
        3,
    )


class RecordingVisualizer:
    def __init__(self):
        self.images = []

    def add_image(self, name, picture, step=0):
        self.images.append((name, picture.shape))


def sample(index, size=(6, 5)):
    out = SegDataSample(metainfo=dict(img_path=f'dir/img_{index}.jpg'))
    logits = torch.rand(4, *size)
    out.seg_logits = PixelData(data=logits)
    out.pred_sem_seg = PixelData(data=logits.argmax(0, keepdim=True))
    out.gt_sem_seg = PixelData(data=logits.argmax(0, keepdim=True))
    return out


def test_hook_draws_every_interval_up_to_max_images(monkeypatch):
    visualizer = RecordingVisualizer()
    monkeypatch.setattr(
        vis_module.Visualizer, 'get_current_instance', lambda: visualizer
    )
    runner = SimpleNamespace(
        test_evaluator=SimpleNamespace(
            dataset_meta=dict(classes=CLASSES, palette=PALETTE.tolist())
        )
    )
    hook = CAMVisualizationHook(draw=True, interval=2, max_images=2)
    hook.before_test(runner)
    for batch in range(3):
        # inputs at another size than the logits: resized to them
        inputs = torch.randint(0, 256, (2, 3, 12, 10), dtype=torch.uint8)
        outputs = [sample(2 * batch), sample(2 * batch + 1)]
        hook.after_test_iter(runner, batch, dict(inputs=inputs), outputs)
    # images 0, 2 (4 is past max_images); image + gt + pred + 3 heatmaps
    assert visualizer.images == [
        ('cam_00000_img_0', (6, 30, 3)),
        ('cam_00002_img_2', (6, 30, 3)),
    ]
    off = CAMVisualizationHook()
    off.after_test_iter(runner, 0, dict(inputs=inputs), outputs)
    assert len(visualizer.images) == 2
