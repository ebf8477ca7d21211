"""Build a config's model (checkpoint loaded, eval mode) or one split's dataset.

The entry points of the pseudo-label tools: both set the config's default
scope and import its ``custom_imports`` first, so a config runs as
``tools/train.py`` would run it.
"""

from typing import Optional

import torch.nn as nn
from mmengine.config import Config
from mmengine.device import get_device
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmengine.utils import import_modules_from_strings
from mmseg.registry import DATASETS, MODELS
from torch.utils.data import Dataset


def build_model(
    cfg: Config, checkpoint: Optional[str] = None, device: Optional[str] = None
) -> nn.Module:
    """Build ``cfg.model``, load a checkpoint and switch to eval mode.

    Args:
        cfg (Config): A full config (``model``, ``default_scope``,
            ``custom_imports``).
        checkpoint (str, optional): Checkpoint loaded strictly. Defaults to
            None (random weights, for tests).
        device (str, optional): Defaults to mmengine's ``get_device()``.

    Returns:
        nn.Module: The model in eval mode.
    """
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    model = MODELS.build(cfg.model)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    model.to(device or get_device())
    model.eval()
    return model


def build_split_dataset(
    cfg: Config, split_key: str = 'test_dataloader', pipeline_key: Optional[str] = None
) -> Dataset:
    """Build the dataset of a dataloader config key.

    Args:
        cfg (Config): A full config.
        split_key (str): Dataloader whose dataset is labelled, e.g.
            ``'test_dataloader'`` or ``'train_dataloader'``. Defaults to
            ``'test_dataloader'``.
        pipeline_key (str, optional): Dataloader whose ``dataset.pipeline``
            replaces the split's (e.g. the training images with the test
            pipeline: ``split_key='train_dataloader'``,
            ``pipeline_key='test_dataloader'``). Defaults to None.

    Returns:
        Dataset: The built dataset.
    """
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    for key in (split_key, pipeline_key):
        if key is not None and 'dataset' not in cfg.get(key, {}):
            raise KeyError(f'the config has no "{key}.dataset"')
    dataset_cfg = cfg[split_key]['dataset'].copy()
    if pipeline_key is not None:
        dataset_cfg['pipeline'] = cfg[pipeline_key]['dataset']['pipeline']
    return DATASETS.build(dataset_cfg)
