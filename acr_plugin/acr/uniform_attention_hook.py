"""Ablation control: force every captured attention map to be uniform."""

from typing import List, Optional

import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

from acr_plugin.acr.attention.attention_sites import find_attention_modules


class UniformAttention:
    """Context manager replacing timm attention probabilities by ``1 / N``.

    Each timm ``Attention`` is moved off its fused kernel and a
    forward hook on ``attn_drop`` returns a uniform tensor, so every token
    attends to all tokens equally (the attention output becomes the mean of
    the values). This is the "uniform attention" control of the synthetic
    ablation: uniform attention is trivially flip-consistent, so ACR's gains
    must be compared against it.

    Args:
        model (nn.Module): Module holding timm attention blocks (all of them
            are flattened).
    """

    def __init__(self, model: nn.Module) -> None:
        sites = find_attention_modules(model)
        if any(site.kind != 'timm' for site in sites):
            raise NotImplementedError(
                f'UniformAttention supports timm attention only; '
                f'{type(model).__name__} has {sorted({s.kind for s in sites})}'
            )
        self.sites = sites
        self._handles: List = []
        self._fused: List[bool] = []

    @staticmethod
    def _uniform(module: nn.Module, args: tuple, output: torch.Tensor):
        # a leaf that takes gradients while autograd records, so a gradient
        # w.r.t. the attention probabilities (ClsTokenGradCAMHead) still
        # exists; nothing flows back to q and k either way
        uniform = torch.full_like(output, 1.0 / output.shape[-1])
        return uniform.requires_grad_(torch.is_grad_enabled())

    def __enter__(self) -> 'UniformAttention':
        for site in self.sites:
            self._fused.append(bool(getattr(site.module, 'fused_attn', False)))
            site.module.fused_attn = False
            self._handles.append(
                site.module.attn_drop.register_forward_hook(self._uniform)
            )
        return self

    def __exit__(self, *exc_info) -> None:
        for handle in self._handles:
            handle.remove()
        for site, fused in zip(self.sites, self._fused):
            site.module.fused_attn = fused
        self._handles.clear()
        self._fused.clear()


@HOOKS.register_module()
class UniformAttentionHook(Hook):
    """Keep the model's attention uniform for the whole run (ablation only).

    Args:
        module (str): Dotted name of the submodule holding the attention
            blocks, looked up on the (unwrapped) model. Defaults to
            ``'backbone'``; for an ``ACRSegmentor`` use ``'model.backbone'``.
            Every attention layer of it is flattened.
    """

    priority = 'VERY_HIGH'

    def __init__(self, module: str = 'backbone') -> None:
        self.module = module
        self._context: Optional[UniformAttention] = None

    def before_run(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        target = model.get_submodule(self.module)
        self._context = UniformAttention(target).__enter__()

    def after_run(self, runner) -> None:
        if self._context is not None:
            self._context.__exit__(None, None, None)
            self._context = None
