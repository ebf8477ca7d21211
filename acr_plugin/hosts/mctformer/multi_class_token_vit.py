"""mmseg backbone: a timm ViT with one class token per class (MCTformer)."""

import logging
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmseg.registry import MODELS
from torch import Tensor

from acr_plugin.models.backbones.checkpoint_conversion import (
    convert_mmseg_vit_to_timm,
    is_mmseg_vit_layout,
    select_backbone_state,
    unwrap_checkpoint,
)
from acr_plugin.models.backbones.timm_vit import TimmViT

StateDict = Dict[str, Tensor]


def replicate_class_token(
    cls_token: Tensor,
    pos_embed: Optional[Tensor],
    num_class_tokens: int,
    num_pos_prefix: int = 1,
) -> Tuple[Tensor, Optional[Tensor]]:
    """Copy one class token (and its position embedding) ``C`` times.

    Args:
        cls_token (Tensor): The class token ``(1, 1, D)``.
        pos_embed (Tensor, optional): Position embedding ``(1, P + N, D)``
            whose first entry belongs to the class token, or None.
        num_class_tokens (int): ``C``.
        num_pos_prefix (int): ``P``, the prefix entries of ``pos_embed``
            (class token, then register tokens: all but the class entry are
            dropped); 0 when the position embedding covers the patches only
            (timm's ``no_embed_class``), which is then returned unchanged.
            Defaults to 1.

    Returns:
        tuple: ``cls_tokens`` ``(1, C, D)`` and ``pos_embed`` ``(1, C + N, D)``
        (the class entry repeated ``C`` times, the patch entries kept), or the
        unchanged ``pos_embed`` / None.
    """
    if cls_token.dim() != 3 or cls_token.shape[:2] != (1, 1):
        raise ValueError(
            f'replicate_class_token: expected one class token (1, 1, D), got '
            f'shape {tuple(cls_token.shape)}'
        )
    tokens = cls_token.expand(-1, num_class_tokens, -1).clone()
    if pos_embed is None or num_pos_prefix == 0:
        return tokens, pos_embed
    if pos_embed.dim() != 3 or pos_embed.shape[1] <= num_pos_prefix:
        raise ValueError(
            f'replicate_class_token: pos_embed of shape {tuple(pos_embed.shape)} '
            f'has no patch entries after {num_pos_prefix} prefix entries'
        )
    class_pos = pos_embed[:, :1].expand(-1, num_class_tokens, -1)
    return tokens, torch.cat([class_pos, pos_embed[:, num_pos_prefix:]], dim=1)


def expand_class_token_state(
    state: StateDict, num_class_tokens: int, pos_has_prefix: bool = True
) -> StateDict:
    """Give a timm-layout backbone state dict ``C`` class tokens.

    * ``cls_token`` with ``C`` tokens (a multi-class-token checkpoint): the
      state is returned as it is.
    * ``cls_token`` with one token (timm, DeiT, mmseg ViT, our single-token
      runs): it is replicated ``C`` times, and so is its ``pos_embed`` entry
      (:func:`replicate_class_token`); register tokens (``reg_token``) and
      their position entries are dropped.
    * no ``cls_token``: returned as it is (reported as a missing key).

    Args:
        state (dict): Backbone state dict in timm's key layout.
        num_class_tokens (int): ``C``.
        pos_has_prefix (bool): Whether ``pos_embed`` holds entries for the
            prefix tokens (False for timm's ``no_embed_class`` models).
            Defaults to True.

    Returns:
        dict: A new state dict.

    Raises:
        ValueError: If the checkpoint has neither 1 nor ``C`` class tokens.
    """
    state = dict(state)
    if 'cls_token' not in state:
        return state
    num_found = state['cls_token'].shape[1]
    if num_found == num_class_tokens:
        return state
    if num_found != 1:
        raise ValueError(
            f'the checkpoint has {num_found} class tokens; a ViT with '
            f'{num_class_tokens} class tokens loads 1 (replicated) or '
            f'{num_class_tokens}'
        )
    reg = state.pop('reg_token', None)
    num_reg = 0 if reg is None else reg.shape[1]
    if num_reg:
        print_log(
            f'MultiClassTokenViT: dropping {num_reg} register tokens of the checkpoint',
            logger='current',
            level=logging.WARNING,
        )
    num_pos_prefix = 1 + num_reg if pos_has_prefix else 0
    state['cls_token'], state['pos_embed'] = replicate_class_token(
        state['cls_token'], state.get('pos_embed'), num_class_tokens, num_pos_prefix
    )
    if state['pos_embed'] is None:
        state.pop('pos_embed')
    return state


@MODELS.register_module()
class MultiClassTokenViT(TimmViT):
    """A timm ViT with ``C`` class tokens in front of the patches (MCTformer).

    timm builds an ordinary one-class-token ViT; its class token is then
    replicated ``C`` times (``vit.cls_token`` becomes ``(1, C, D)``), and so
    is the class entry of its position embedding (``vit.pos_embed`` becomes
    ``(1, C + N, D)``), and ``vit.num_prefix_tokens`` is set to ``C``. timm's
    own embedding stage therefore lays the tokens out as ``[class token 0 ..
    class token C-1, patches]`` and, in dynamic mode, resamples only the
    patch part of the position embedding; :meth:`embed_tokens` is inherited.
    Token ``c`` is meant to belong to class ``c`` (the segmentor reads it so).
    Attention modules stay ``blocks[i].attn`` (timm's), so
    :class:`AttentionCapture` works in ``'probs'`` and ``'qk'`` modes.

    Weights: with a ``Pretrained`` init cfg, an ordinary single-class-token
    checkpoint (timm, DeiT, mmseg ViT, a ``TimmViT`` run) gets its class token
    and class position entry replicated ``C`` times again after loading; a
    checkpoint that already has ``C`` class tokens (an MCTformer run) loads
    them as they are. Checkpoints with another number of class tokens are
    refused.

    Register tokens are not supported (every prefix token is a class token),
    nor are models without a class token.

    It implements the host contract's ``ViTBackbone`` as :class:`TimmViT`
    does, with ``num_prefix_tokens = C``.

    Args:
        model_name (str): timm model name, e.g. ``'deit_small_patch16_224'``.
        num_class_tokens (int): Number ``C`` of class tokens (the foreground
            classes).
        model_kwargs (dict, optional): Extra timm arguments (``embed_dim``,
            ``depth``, ``drop_path_rate``, ...); ``class_token=False`` and
            ``reg_tokens`` are refused. Defaults to None.
        **kwargs: The other :class:`TimmViT` arguments (``img_size``,
            ``out_indices``, ``out_norm``,
            ``freeze_pos_embed``: the class entries of ``pos_embed`` too,
            ``timm_pretrained``: the class token is replicated afterwards,
            ``pretrained``, ``init_cfg``). ``out_norm`` defaults to False as
            in :class:`TimmViT` (MCTformer reads the class tokens without it).

    Example:
        >>> vit = MultiClassTokenViT('vit_tiny_patch16_224', 3, img_size=32,
        ...                          model_kwargs=dict(patch_size=8, depth=2))
        >>> (patch_map, class_tokens), = vit(torch.rand(1, 3, 32, 48))
        >>> patch_map.shape, class_tokens.shape
        (torch.Size([1, 192, 4, 6]), torch.Size([1, 3, 192]))
    """

    def __init__(
        self,
        model_name: str,
        num_class_tokens: int,
        model_kwargs: Optional[Dict[str, Any]] = None,
        **kwargs,
    ) -> None:
        name = type(self).__name__
        if isinstance(num_class_tokens, bool) or int(num_class_tokens) < 1:
            raise ValueError(
                f'{name}: num_class_tokens must be >= 1, got {num_class_tokens}'
            )
        model_kwargs = dict(model_kwargs or {})
        if not model_kwargs.get('class_token', True):
            raise ValueError(
                f'{name}: model_kwargs.class_token=False leaves no class token '
                'to replicate'
            )
        if model_kwargs.get('reg_tokens', 0):
            raise ValueError(
                f'{name}: register tokens (model_kwargs.reg_tokens) are not '
                'supported: every prefix token must be a class token'
            )
        super().__init__(model_name, model_kwargs=model_kwargs, **kwargs)
        vit = self.vit
        if getattr(vit, 'cls_token', None) is None or vit.num_prefix_tokens != 1:
            raise ValueError(
                f'{name}: timm model {model_name!r} must have exactly one prefix '
                f'token (a class token) to replicate, it has '
                f'{vit.num_prefix_tokens} (distilled or register-token models '
                'are not supported)'
            )
        self.num_class_tokens = int(num_class_tokens)
        with torch.no_grad():
            cls_tokens, pos_embed = replicate_class_token(
                vit.cls_token.detach(),
                None if vit.pos_embed is None else vit.pos_embed.detach(),
                self.num_class_tokens,
                self._pos_prefix_entries(1),
            )
        vit.cls_token = nn.Parameter(cls_tokens)
        if pos_embed is not None:
            vit.pos_embed = nn.Parameter(pos_embed)
        vit.num_prefix_tokens = self.num_class_tokens
        # the parameter was replaced: apply freeze_pos_embed again
        if self.freeze_pos_embed:
            vit.pos_embed.requires_grad_(False)

    def _pos_prefix_entries(self, num_prefix: int) -> int:
        return 0 if getattr(self.vit, 'no_embed_class', False) else num_prefix

    # ------------------------------------------------------------------ info
    @property
    def cls_tokens(self) -> nn.Parameter:
        """The ``C`` class tokens ``(1, C, D)`` (``vit.cls_token``)."""
        return self.vit.cls_token

    # ----------------------------------------------------------- pretrained
    def convert_state_dict(
        self, checkpoint: dict, prefix: Optional[str] = None
    ) -> Dict[str, Tensor]:
        """:meth:`TimmViT.convert_state_dict` with ``C`` class tokens.

        A single class token (and its position entry) is replicated ``C``
        times before the position embedding is resampled to this model's
        grid (see :func:`expand_class_token_state`).

        Args:
            checkpoint (dict): Loaded checkpoint (any supported layout).
            prefix (str, optional): Explicit prefix of the backbone keys.
                Defaults to None (auto-detect).

        Returns:
            dict: State dict for ``self.vit``.
        """
        state = select_backbone_state(unwrap_checkpoint(checkpoint), prefix=prefix)
        if is_mmseg_vit_layout(state):
            state = convert_mmseg_vit_to_timm(state)
        state = expand_class_token_state(
            state,
            self.num_class_tokens,
            pos_has_prefix=self._pos_prefix_entries(1) > 0,
        )
        # keys are backbone-relative now: no prefix to look for again
        return super().convert_state_dict(state, prefix='')
