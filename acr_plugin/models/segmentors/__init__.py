"""Segmentor building blocks shared by the WSSS classifiers of ``acr_plugin.hosts``."""

from .checkpoint_fit import CheckpointMismatchError, install_checkpoint_fit
from .wsss_classifier import WSSSClassifier, split_vit_output

__all__ = [
    'CheckpointMismatchError',
    'WSSSClassifier',
    'install_checkpoint_fit',
    'split_vit_output',
]
