"""Segmentor building blocks shared by the WSSS classifiers of ``acr_plugin.hosts``."""

from .checkpoint_fit import CheckpointMismatchError, install_checkpoint_fit

__all__ = ['CheckpointMismatchError', 'install_checkpoint_fit']
