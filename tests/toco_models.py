"""Test helper: a tiny ToCo built from the synthetic config, its samples
and a recorder of the decoder's pseudo labels (ToCo model and training-
step tests)."""

import os.path as osp

import torch
from mmengine.config import Config
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from acr_plugin.structures import IMG_LABELS
from tests.scripts import ROOT

TOCO = 'configs/toco/toco_tiny-p8_1xb32-600it_synthetic-64x64.py'


def tiny_model_cfg(**overrides) -> dict:
    cfg = Config.fromfile(osp.join(ROOT, TOCO)).model.to_dict()
    cfg['backbone']['model_kwargs'].update(embed_dim=24, depth=3, num_heads=2)
    cfg['backbone']['out_indices'] = (1, 2)
    cfg['decode_head'].update(in_channels=24, channels=16)
    cfg['ctc_head'].update(
        in_channels=24, hidden_channels=32, bottleneck_channels=16, out_channels=32
    )
    cfg['ctc_cfg'].update(num_local=3)
    cfg['par'].update(num_iter=2)
    cfg.update(overrides)
    return cfg


def build(**overrides):
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_cfg(**overrides))
    model.init_weights()
    return model


def samples(labels, size=(32, 32)):
    out = []
    for row in labels:
        sample = SegDataSample(
            metainfo=dict(img_shape=size, ori_shape=size, pad_shape=size)
        )
        sample.set_data({IMG_LABELS: torch.tensor(row, dtype=torch.float32)})
        out.append(sample)
    return out


def record_seg_pseudo_labels(toco) -> list:
    """Make ``toco`` append the decoder's pseudo labels of every seg-loss
    call to the returned list."""
    captured = []
    original = toco._seg_loss
    toco._seg_loss = lambda s, p: captured.append(p) or original(s, p)
    return captured


LABELS = [[1, 0, 0, 1, 0, 0], [0, 1, 0, 0, 0, 0]]
