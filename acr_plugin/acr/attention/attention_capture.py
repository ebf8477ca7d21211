"""Capture the self-attention of ViT blocks with hooks (no model fork).

Two kinds of attention modules are found (:func:`find_attention_modules`,
read through ``timm_adapter`` and ``torch_mha_adapter``):

* ``'timm'``: timm's ``Attention`` and any duck-typed look-alike (a module with
  ``qkv``, ``num_heads``, ``scale`` and ``attn_drop``: ViT, DeiT, hybrid ViT).
  timm computes ``attn = softmax(q * scale @ k^T)`` and multiplies
  ``attn_drop(attn)`` by ``v`` on its non-fused path; the fused SDPA path never
  materialises the probabilities.
* ``'torch_mha'``: ``torch.nn.MultiheadAttention`` (mmseg's
  ``VisionTransformer`` wraps it in mmcv's ``MultiheadAttention`` as
  ``layers[i].attn.attn``, fed sequence-first). The weights that torch returns
  are a view taken *after* they were multiplied by ``v``, so they are not on the
  path to the output and ``autograd.grad`` w.r.t. them fails. The capture
  therefore recomputes the attention from the module's own projections and
  returns that output instead, so the graph runs through the captured tensor
  (torch's own result, computed on its fused path, is discarded: one extra
  attention per captured layer).

Two capture modes:

* ``'probs'``: the post-softmax attention ``(B, heads, N, N)`` that is really
  multiplied by ``V`` (after attention dropout, which is the identity in eval
  mode or with ``attn_drop=0``). ``torch.autograd.grad(logit, probs)`` is the
  gradient w.r.t. the attention (GETAM-style CAMs). timm modules are switched to
  their non-fused path (``fused_attn = False``) while captured.
* ``'qk'``: the pair ``(q * scale, k)`` (a :class:`QueryKeyPair`), each
  ``(B, heads, N, head_dim)``, after
  ``q_norm``/``k_norm``, so that ``softmax(q @ k^T)`` (:func:`probs_from_qk`)
  equals the model's attention. The model keeps its fused kernel; gradients of a
  loss on ``softmax(q @ k^T)`` reach the model's parameters through ``q`` and
  ``k``, but the recomputed probabilities are not on the path to the output.
"""

import inspect
from functools import partial
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch.nn.functional as F
from torch import Tensor, nn

from .attention_sites import AttentionSite, find_attention_modules
from .query_key_pair import AttentionRecord, QueryKeyPair
from .timm_adapter import timm_qk_from_qkv
from .torch_mha_adapter import mha_attention_bias, mha_project

_MODES = ('probs', 'qk')


class AttentionCapture:
    """Record the self-attention of selected blocks during forward passes.

    Use as a context manager (or call :meth:`start` / :meth:`stop`). Every
    forward of the model inside the context appends one record per selected
    layer: a ``(B, heads, N, N)`` tensor in ``'probs'`` mode, a ``(q * scale,
    k)`` pair in ``'qk'`` mode. :meth:`pop` returns the records of exactly one
    forward (a list over the selected layers), :meth:`pop_all` those of any
    number of forwards. Leaving the context removes every hook, restores every
    ``fused_attn`` flag that was changed and drops the records, so nothing is
    kept across iterations.

    Example:
        >>> with AttentionCapture(vit, layers=[-2, -1]) as capture:
        ...     logits1 = vit(view1)
        ...     attn1 = capture.pop()  # [(B, heads, N, N), (B, heads, N, N)]
        ...     logits2 = vit(view2)
        ...     attn2 = capture.pop()

    Note:
        Activation checkpointing re-runs forwards during backward; those calls
        would add records, so do not combine it with capture.

    Args:
        model (nn.Module): The model holding the attention modules.
        layers (Sequence[int], optional): Indices into the attention modules
            found by :func:`find_attention_modules` (negative indices count
            from the end). None selects all. Defaults to None.
        mode (str): ``'probs'`` or ``'qk'``. Defaults to ``'probs'``.
        detach (bool): Record detached tensors. Defaults to False.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Optional[Sequence[int]] = None,
        mode: str = 'probs',
        detach: bool = False,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(
                f'AttentionCapture: unknown mode "{mode}" (expected one of {_MODES})'
            )
        self.model_name = type(model).__name__
        self.sites = find_attention_modules(model)
        self.mode = mode
        self.detach = detach
        self._layers = self._resolve_layers(layers)
        if mode == 'qk':
            for layer in self._layers:
                self._check_qk_support(self.sites[layer])
        self._handles: List[Any] = []
        self._fused_flags: List[Tuple[nn.Module, Any]] = []
        self._mha_flags: Dict[int, Tuple[bool, bool]] = {}
        self._records: Dict[int, List[AttentionRecord]] = {}
        self._active = False

    # ------------------------------------------------------------ properties
    @property
    def num_layers(self) -> int:
        """Number of attention modules found in the model."""
        return len(self.sites)

    @property
    def layers(self) -> List[int]:
        """Selected layer indices (non-negative, sorted, unique)."""
        return list(self._layers)

    def _resolve_layers(self, layers: Optional[Sequence[int]]) -> List[int]:
        depth = self.num_layers
        if layers is None:
            return list(range(depth))
        if isinstance(layers, int):
            layers = [layers]
        resolved = set()
        for layer in layers:
            if not -depth <= layer < depth:
                raise IndexError(
                    f'AttentionCapture: layer {layer} is out of range for '
                    f'{self.model_name}, which has {depth} attention layers'
                )
            resolved.add(layer % depth)
        if not resolved:
            raise ValueError('AttentionCapture: "layers" selects no layer')
        return sorted(resolved)

    def _check_qk_support(self, site: AttentionSite) -> None:
        if site.kind != 'timm':
            return
        try:
            from timm.layers import Attention
        except ImportError:  # pragma: no cover - timm is a dependency
            Attention = None
        if Attention is None or type(site.module).forward is not Attention.forward:
            raise NotImplementedError(
                f'AttentionCapture mode "qk" supports timm.layers.Attention only; '
                f'{site.name} is a {type(site.module).__name__} whose attention may '
                'differ from softmax(q k^T) (use mode="probs")'
            )

    # ------------------------------------------------------------ lifecycle
    def start(self) -> 'AttentionCapture':
        """Install the hooks (and switch timm modules to the non-fused path)."""
        if self._active:
            raise RuntimeError('AttentionCapture.start(): already started')
        self._records = {layer: [] for layer in self._layers}
        self._active = True
        try:
            for layer in self._layers:
                self._install(layer, self.sites[layer])
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Remove every hook, restore ``fused_attn`` flags, drop the records."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        for module, flag in self._fused_flags:
            module.fused_attn = flag
        self._fused_flags = []
        self._mha_flags = {}
        self._records = {}
        self._active = False

    def __enter__(self) -> 'AttentionCapture':
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _install(self, layer: int, site: AttentionSite) -> None:
        module = site.module
        if site.kind == 'timm':
            if self.mode == 'probs':
                if getattr(module, 'fused_attn', False):
                    self._fused_flags.append((module, module.fused_attn))
                    module.fused_attn = False
                self._handles.append(
                    module.attn_drop.register_forward_hook(
                        partial(self._timm_probs_hook, layer)
                    )
                )
            else:
                self._handles.append(
                    module.register_forward_pre_hook(
                        partial(self._timm_mask_guard, site.name), with_kwargs=True
                    )
                )
                self._handles.append(
                    module.qkv.register_forward_hook(
                        partial(self._timm_qk_hook, layer, module)
                    )
                )
        else:
            signature = inspect.signature(module.forward)
            if self.mode == 'probs':
                self._handles.append(
                    module.register_forward_pre_hook(
                        partial(self._mha_pre_hook, layer, signature),
                        with_kwargs=True,
                    )
                )
            self._handles.append(
                module.register_forward_hook(
                    partial(self._mha_hook, layer, signature), with_kwargs=True
                )
            )

    # ------------------------------------------------------------ records
    def _record(self, layer: int, item: AttentionRecord) -> None:
        if self.detach:
            item = item.detach()
        self._records[layer].append(item)

    def num_forwards(self) -> int:
        """Forwards recorded since the last pop (-1 if layers disagree)."""
        counts = {len(self._records.get(layer, [])) for layer in self._layers}
        return counts.pop() if len(counts) == 1 else -1

    def clear(self) -> None:
        """Drop the records without removing the hooks."""
        for records in self._records.values():
            records.clear()

    def pop_all(self) -> List[List[AttentionRecord]]:
        """Records of every forward since the last pop, then forget them.

        Returns:
            list[list]: One element per forward, each a list over the selected
            layers (in :attr:`layers` order).
        """
        counts = [len(self._records.get(layer, [])) for layer in self._layers]
        if len(set(counts)) != 1:
            per_layer = dict(zip(self._layers, counts))
            raise RuntimeError(
                'AttentionCapture: the selected layers ran a different number of '
                f'times since the last pop ({per_layer}); a forward was '
                'interrupted or the model calls its blocks conditionally'
            )
        forwards = [
            [self._records[layer][i] for layer in self._layers]
            for i in range(counts[0])
        ]
        self.clear()
        return forwards

    def pop(self) -> List[AttentionRecord]:
        """Records of the one forward since the last pop, then forget them.

        Returns:
            list: One record per selected layer (in :attr:`layers` order).

        Raises:
            RuntimeError: If not exactly one forward ran since the last pop
                (use :meth:`pop_all` for several).
        """
        if not self._active:
            raise RuntimeError('AttentionCapture.pop(): capture is not started')
        num = self.num_forwards()
        if num != 1:
            raise RuntimeError(
                f'AttentionCapture.pop() expects exactly one forward of '
                f'{self.model_name} since the last pop, got {num} '
                '(use pop_all() for several forwards)'
            )
        return self.pop_all()[0]

    # ------------------------------------------------------------ timm hooks
    def _timm_probs_hook(
        self, layer: int, module: nn.Module, args: tuple, output: Tensor
    ) -> None:
        # the attn_drop output is the tensor multiplied by V
        self._record(layer, output)

    def _timm_qk_hook(
        self,
        layer: int,
        attn_module: nn.Module,
        module: nn.Module,
        args: tuple,
        output: Tensor,
    ) -> None:
        self._record(layer, timm_qk_from_qkv(attn_module, output).check())

    @staticmethod
    def _timm_mask_guard(name: str, module: nn.Module, args: tuple, kwargs: dict):
        if (
            len(args) > 1
            or kwargs.get('attn_mask') is not None
            or kwargs.get('is_causal', False)
        ):
            raise NotImplementedError(
                f'AttentionCapture mode "qk": {name} was called with an attention '
                'mask, which softmax(q k^T) would ignore (use mode="probs")'
            )
        return None

    # ------------------------------------------------------------ torch MHA
    def _mha_pre_hook(
        self,
        layer: int,
        signature: inspect.Signature,
        module: nn.Module,
        args: tuple,
        kwargs: dict,
    ) -> Tuple[tuple, dict]:
        call = signature.bind(*args, **kwargs)
        call.apply_defaults()
        arguments = dict(call.arguments)
        self._mha_flags[layer] = (
            bool(arguments['need_weights']),
            bool(arguments['average_attn_weights']),
        )
        # the output is recomputed in the forward hook: let torch take its
        # cheapest path meanwhile
        arguments['need_weights'] = False
        return (), arguments

    def _mha_hook(
        self,
        layer: int,
        signature: inspect.Signature,
        module: nn.MultiheadAttention,
        args: tuple,
        kwargs: dict,
        output: Tuple[Tensor, Optional[Tensor]],
    ) -> Optional[Tuple[Tensor, Optional[Tensor]]]:
        call = signature.bind(*args, **kwargs)
        call.apply_defaults()
        arguments = call.arguments
        query = arguments['query']
        q, k, v = mha_project(module, query, arguments['key'], arguments['value'])
        attn_mask = arguments['attn_mask']
        key_padding_mask = arguments['key_padding_mask']
        if attn_mask is None and arguments['is_causal']:
            raise NotImplementedError(
                'AttentionCapture: nn.MultiheadAttention called with is_causal '
                'but no attn_mask'
            )
        if self.mode == 'qk':
            if attn_mask is not None or key_padding_mask is not None:
                raise NotImplementedError(
                    'AttentionCapture mode "qk": nn.MultiheadAttention called '
                    'with a mask, which softmax(q k^T) would ignore (use '
                    'mode="probs")'
                )
            self._record(layer, QueryKeyPair(q, k).check())
            return None

        logits = q @ k.transpose(-2, -1)
        bias = mha_attention_bias(
            attn_mask, key_padding_mask, tuple(logits.shape), logits.dtype
        )
        if bias is not None:
            logits = logits + bias
        probs = F.dropout(logits.softmax(dim=-1), module.dropout, module.training)
        self._record(layer, probs)

        out = (probs @ v).transpose(1, 2)
        out = out.reshape(out.shape[0], out.shape[1], module.embed_dim)
        out = F.linear(out, module.out_proj.weight, module.out_proj.bias)
        need_weights, average = self._mha_flags.pop(layer, (False, False))
        weights = (probs.mean(dim=1) if average else probs) if need_weights else None
        if query.dim() == 2:  # unbatched
            out = out.squeeze(0)
            weights = weights.squeeze(0) if weights is not None else None
        elif not module.batch_first:
            out = out.transpose(0, 1)
        return out, weights
