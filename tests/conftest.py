"""Shared pytest setup: mmseg's default scope, acr_plugin registered."""

import torch
from mmseg.utils import register_all_modules

import acr_plugin  # noqa: F401  (registers every component)

register_all_modules(init_default_scope=True)
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
