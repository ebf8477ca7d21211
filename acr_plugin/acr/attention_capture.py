"""Capture the self-attention of ViT blocks with hooks (no model fork).

Two kinds of attention modules are found (:func:`find_attention_modules`):

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
* ``'qk'``: the pair ``(q * scale, k)``, each ``(B, heads, N, head_dim)``, after
  ``q_norm``/``k_norm``, so that ``softmax(q @ k^T)`` (:func:`probs_from_qk`)
  equals the model's attention. The model keeps its fused kernel; gradients of a
  loss on ``softmax(q @ k^T)`` reach the model's parameters through ``q`` and
  ``k``, but the recomputed probabilities are not on the path to the output.
"""

import inspect
import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: one captured item: probabilities, or a ``(q * scale, k)`` pair
AttentionRecord = Union[Tensor, Tuple[Tensor, Tensor]]

_MODES = ('probs', 'qk')
_TIMM_ATTRS = ('qkv', 'num_heads', 'scale', 'attn_drop')


@dataclass
class AttentionSite:
    """One attention module of a model.

    Args:
        name (str): Dotted module name in the model (``model.get_submodule``).
        module (nn.Module): The attention module.
        kind (str): ``'timm'`` or ``'torch_mha'``.
    """

    name: str
    module: nn.Module
    kind: str


def find_attention_modules(model: nn.Module) -> List[AttentionSite]:
    """List the self-attention modules of a model in block order.

    The order is the modules' registration order, which is the forward order
    for the sequential blocks of a ViT.

    Args:
        model (nn.Module): Any model (a ViT, a segmentor holding one, ...).

    Returns:
        list[AttentionSite]: The attention modules found.

    Raises:
        ValueError: If the model has no supported attention module.
    """
    sites = []
    for name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            sites.append(AttentionSite(name, module, 'torch_mha'))
        elif all(hasattr(module, attr) for attr in _TIMM_ATTRS):
            sites.append(AttentionSite(name, module, 'timm'))
    if not sites:
        raise ValueError(
            f'{type(model).__name__} has no attention module to capture: '
            'expected timm-style Attention modules (with qkv, num_heads, scale '
            'and attn_drop) or torch.nn.MultiheadAttention'
        )
    return sites


def head_average(attn: Tensor) -> Tensor:
    """Average attention probabilities over heads.

    Args:
        attn (Tensor): ``(B, heads, N, M)`` attention.

    Returns:
        Tensor: ``(B, N, M)``.
    """
    if attn.dim() != 4:
        raise ValueError(
            f'head_average expects (B, heads, N, M) attention, got shape '
            f'{tuple(attn.shape)}'
        )
    return attn.mean(dim=1)


def attention_entropy(attn: Tensor, normalized: bool = True) -> Tensor:
    """Mean row entropy of attention probabilities, per image.

    Args:
        attn (Tensor): ``(B, heads, N, M)`` or ``(B, N, M)`` probabilities
            (rows sum to 1).
        normalized (bool): Divide by ``log(M)`` so that uniform rows give 1
            and one-hot rows 0. Defaults to True.

    Returns:
        Tensor: ``(B,)`` entropy averaged over heads and rows.
    """
    if attn.dim() == 3:
        attn = attn.unsqueeze(1)
    if attn.dim() != 4:
        raise ValueError(
            f'attention_entropy expects (B, heads, N, M) or (B, N, M) '
            f'attention, got shape {tuple(attn.shape)}'
        )
    row_entropy = -torch.xlogy(attn, attn).sum(dim=-1)
    entropy = row_entropy.mean(dim=(1, 2))
    if normalized:
        num_keys = attn.shape[-1]
        if num_keys < 2:
            return torch.zeros_like(entropy)
        entropy = entropy / math.log(num_keys)
    return entropy


def probs_from_qk(q: Tensor, k: Tensor) -> Tensor:
    """Attention probabilities from a ``'qk'`` record.

    Args:
        q (Tensor): Scaled queries ``(B, heads, N, head_dim)``.
        k (Tensor): Keys ``(B, heads, M, head_dim)``.

    Returns:
        Tensor: ``softmax(q @ k^T)`` ``(B, heads, N, M)``.
    """
    return (q @ k.transpose(-2, -1)).softmax(dim=-1)


def timm_qk_from_qkv(module: nn.Module, qkv: Tensor) -> Tuple[Tensor, Tensor]:
    """Scaled queries and keys of a timm ``Attention`` from its ``qkv`` output.

    Args:
        module (nn.Module): The timm attention module (``num_heads``,
            ``scale``, optional ``q_norm``/``k_norm``).
        qkv (Tensor): Output of ``module.qkv``, ``(B, N, 3 * heads * head_dim)``.

    Returns:
        tuple[Tensor, Tensor]: ``q * scale`` and ``k``, ``(B, heads, N, head_dim)``.
    """
    batch, num_tokens, width = qkv.shape
    heads = module.num_heads
    parts = qkv.reshape(batch, num_tokens, 3, heads, width // (3 * heads))
    q = parts[:, :, 0].transpose(1, 2)
    k = parts[:, :, 1].transpose(1, 2)
    q_norm = getattr(module, 'q_norm', None)
    k_norm = getattr(module, 'k_norm', None)
    if q_norm is not None:
        q = q_norm(q)
    if k_norm is not None:
        k = k_norm(k)
    return q * module.scale, k


def _to_batch_first(x: Tensor, batch_first: bool) -> Tensor:
    if x.dim() == 2:  # unbatched (L, E)
        return x.unsqueeze(0)
    return x if batch_first else x.transpose(0, 1)


def mha_project(
    mha: nn.MultiheadAttention, query: Tensor, key: Tensor, value: Tensor
) -> Tuple[Tensor, Tensor, Tensor]:
    """Per-head ``q * scale``, ``k`` and ``v`` of ``nn.MultiheadAttention``.

    Args:
        mha (nn.MultiheadAttention): The module (its ``batch_first`` decides the
            input layout; unbatched 2-D inputs are accepted).
        query (Tensor): Query input as given to ``mha``.
        key (Tensor): Key input as given to ``mha``.
        value (Tensor): Value input as given to ``mha``.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``q * head_dim ** -0.5`` ``(B, heads, L,
        head_dim)``, ``k`` and ``v`` ``(B, heads, S, head_dim)``.
    """
    if mha.bias_k is not None or mha.add_zero_attn:
        raise NotImplementedError(
            'AttentionCapture: nn.MultiheadAttention with add_bias_kv or '
            'add_zero_attn is not supported'
        )
    if mha._qkv_same_embed_dim:
        w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
    else:
        w_q, w_k, w_v = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
    if mha.in_proj_bias is not None:
        b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
    else:
        b_q = b_k = b_v = None
    heads, head_dim = mha.num_heads, mha.head_dim

    def split(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        x = F.linear(_to_batch_first(x, mha.batch_first), weight, bias)
        return x.view(x.shape[0], x.shape[1], heads, head_dim).transpose(1, 2)

    q = split(query, w_q, b_q) * head_dim**-0.5
    return q, split(key, w_k, b_k), split(value, w_v, b_v)


def _additive_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """torch MHA convention: boolean True = not allowed to attend."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
            mask, float('-inf')
        )
    return mask.to(dtype)


def mha_attention_bias(
    attn_mask: Optional[Tensor],
    key_padding_mask: Optional[Tensor],
    shape: Tuple[int, int, int, int],
    dtype: torch.dtype,
) -> Optional[Tensor]:
    """Additive attention bias from torch MHA's ``attn_mask``/``key_padding_mask``.

    Args:
        attn_mask (Tensor, optional): ``(L, S)`` or ``(B * heads, L, S)`` mask.
        key_padding_mask (Tensor, optional): ``(B, S)`` mask.
        shape (tuple): ``(B, heads, L, S)`` of the attention logits.
        dtype (torch.dtype): Dtype of the logits.

    Returns:
        Tensor or None: A bias broadcastable to ``shape``, or None.
    """
    batch, heads, length, src_len = shape
    bias = None
    if attn_mask is not None:
        bias = _additive_mask(attn_mask, dtype)
        if bias.dim() == 2:
            bias = bias.view(1, 1, length, src_len)
        else:
            bias = bias.view(batch, heads, length, src_len)
    if key_padding_mask is not None:
        padding = _additive_mask(key_padding_mask, dtype).view(batch, 1, 1, src_len)
        bias = padding if bias is None else bias + padding
    return bias


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

    @property
    def active(self) -> bool:
        """Whether the hooks are installed."""
        return self._active

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
            item = (
                item.detach()
                if isinstance(item, Tensor)
                else tuple(t.detach() for t in item)
            )
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
        self._record(layer, timm_qk_from_qkv(attn_module, output))

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
            self._record(layer, (q, k))
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
