"""Pure helpers that bring ViT checkpoints into timm's key layout.

Three layouts are understood (see :class:`~acr_plugin.models.backbones.TimmViT`):

* timm's own (``blocks.0.attn.qkv.weight``, ``patch_embed.proj.weight``, ...);
* mmseg's ``VisionTransformer`` (``layers.0.attn.attn.in_proj_weight``,
  ``patch_embed.projection.weight``, final norm ``ln1``, ...);
* a whole-model checkpoint (mmengine runner or a plain ``state_dict``) whose
  backbone lives under ``backbone.`` (optionally behind our wrapper attribute,
  e.g. ``backbone.vit.blocks.0...``).

Every function here works on plain ``dict``s of tensors and never touches a
module, so each step can be tested on its own.
"""

import math
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from timm.layers import resample_abs_pos_embed

StateDict = Dict[str, torch.Tensor]

#: keys under which checkpoints nest their weights (mmengine, DeiT/timm, ...)
WRAPPER_KEYS = ('state_dict', 'model', 'module')

#: classifier parts of a timm model that a backbone never uses
HEAD_PREFIXES = ('head.', 'head_dist.', 'fc_norm.', 'pre_logits.')

# mmseg VisionTransformer -> timm VisionTransformer, applied in order to keys
# (regex on the full key, first match wins).
_MMSEG_TO_TIMM: Tuple[Tuple[str, str], ...] = (
    (r'^patch_embed\.projection\.', 'patch_embed.proj.'),
    (r'^layers\.(\d+)\.ln1\.', r'blocks.\1.norm1.'),
    (r'^layers\.(\d+)\.ln2\.', r'blocks.\1.norm2.'),
    (r'^layers\.(\d+)\.attn\.attn\.in_proj_weight$', r'blocks.\1.attn.qkv.weight'),
    (r'^layers\.(\d+)\.attn\.attn\.in_proj_bias$', r'blocks.\1.attn.qkv.bias'),
    (r'^layers\.(\d+)\.attn\.attn\.out_proj\.', r'blocks.\1.attn.proj.'),
    (r'^layers\.(\d+)\.ffn\.layers\.0\.0\.', r'blocks.\1.mlp.fc1.'),
    (r'^layers\.(\d+)\.ffn\.layers\.1\.', r'blocks.\1.mlp.fc2.'),
    (r'^layers\.(\d+)\.ffn\.gamma2\.weight$', r'blocks.\1.ls2.gamma'),
    (r'^ln1\.', 'norm.'),
    (r'^ln_pre\.', 'norm_pre.'),
)


def unwrap_checkpoint(checkpoint: Mapping) -> StateDict:
    """Return the state dict nested in a loaded checkpoint.

    Descends through ``state_dict`` / ``model`` / ``module`` wrappers (mmengine
    runner checkpoints, DeiT releases, ...) until a mapping of tensors is left.

    Args:
        checkpoint (Mapping): The object returned by ``torch.load`` or
            ``CheckpointLoader.load_checkpoint``.

    Returns:
        dict: ``{key: tensor}``; non-tensor entries (e.g. ``meta``) are dropped.

    Raises:
        TypeError: If ``checkpoint`` is not a mapping.
    """
    if not isinstance(checkpoint, Mapping):
        raise TypeError(
            f'a checkpoint must be a mapping, got {type(checkpoint).__name__}'
        )
    state = checkpoint
    descended = True
    while descended:
        descended = False
        for key in WRAPPER_KEYS:
            inner = state.get(key)
            if isinstance(inner, Mapping):
                state = inner
                descended = True
                break
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _strip(state_dict: StateDict, prefix: str) -> StateDict:
    """Keep only keys starting with ``prefix`` and remove it."""
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def find_backbone_prefix(keys: Sequence[str]) -> Optional[str]:
    """Find the key prefix that ends with ``backbone.``, if any.

    ``backbone.blocks.0...`` gives ``'backbone.'`` and
    ``model.backbone.blocks.0...`` gives ``'model.backbone.'``. When several
    exist (e.g. a teacher and a student), the shortest wins. The CNN of a
    timm hybrid (``patch_embed.backbone.``) is not a model backbone and is
    ignored.

    Args:
        keys (Sequence[str]): State-dict keys.

    Returns:
        str or None: The prefix (with trailing dot) or None when no key has a
        ``backbone`` component.
    """
    found = set()
    for key in keys:
        match = re.match(r'^((?:[^.]+\.)*?backbone\.)', key)
        if match and not match.group(1).endswith('patch_embed.backbone.'):
            found.add(match.group(1))
    if not found:
        return None
    return min(found, key=lambda p: (p.count('.'), p))


def select_backbone_state(
    state_dict: StateDict,
    prefix: Optional[str] = None,
    wrapper_prefixes: Sequence[str] = ('vit.',),
) -> StateDict:
    """Extract the backbone weights of a (possibly whole-model) state dict.

    Steps: drop a DDP ``module.`` prefix; keep the keys under ``prefix`` (or,
    when ``prefix`` is None, under the auto-detected ``...backbone.`` prefix
    if one exists) and strip it; finally strip our own wrapper attribute
    (e.g. ``vit.``) from keys that carry it.

    Args:
        state_dict (dict): Flat state dict.
        prefix (str, optional): Explicit prefix of the backbone weights
            (e.g. ``'backbone.'``). Defaults to None (auto-detect).
        wrapper_prefixes (Sequence[str]): Attribute prefixes of wrapper
            modules to strip. Defaults to ``('vit.',)``.

    Returns:
        dict: Backbone-relative state dict (may be empty).
    """
    if state_dict and all(k.startswith('module.') for k in state_dict):
        state_dict = _strip(state_dict, 'module.')
    if prefix is None:
        prefix = find_backbone_prefix(list(state_dict))
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        state_dict = _strip(state_dict, prefix)
    out = {}
    for key, value in state_dict.items():
        for wrapper in wrapper_prefixes:
            if key.startswith(wrapper):
                key = key[len(wrapper) :]
                break
        out[key] = value
    return out


def is_mmseg_vit_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether the keys follow mmseg's ``VisionTransformer`` naming."""
    return any(k.startswith(('layers.', 'patch_embed.projection.')) for k in state_dict)


def convert_mmseg_vit_to_timm(state_dict: StateDict) -> StateDict:
    """Rename mmseg ``VisionTransformer`` keys to timm's layout.

    ``nn.MultiheadAttention``'s packed ``in_proj`` stores q, k, v row blocks
    with heads contiguous inside each, exactly like timm's ``qkv`` Linear, so
    the weights are renamed, never permuted. Unknown keys are kept unchanged
    (they show up as unexpected keys when loading).

    Args:
        state_dict (dict): mmseg-layout backbone state dict.

    Returns:
        dict: timm-layout state dict.
    """
    out = {}
    for key, value in state_dict.items():
        new_key = key
        for pattern, repl in _MMSEG_TO_TIMM:
            candidate, count = re.subn(pattern, repl, key)
            if count:
                new_key = candidate
                break
        out[new_key] = value
    return out


def split_head_keys(
    state_dict: StateDict, prefixes: Sequence[str] = HEAD_PREFIXES
) -> Tuple[StateDict, List[str]]:
    """Separate classifier-head keys from backbone keys.

    Args:
        state_dict (dict): timm-layout state dict.
        prefixes (Sequence[str]): Prefixes of head keys. Defaults to
            :data:`HEAD_PREFIXES`.

    Returns:
        tuple: ``(backbone_state, dropped_keys)``.
    """
    kept, dropped = {}, []
    for key, value in state_dict.items():
        if key.startswith(tuple(prefixes)):
            dropped.append(key)
        else:
            kept[key] = value
    return kept, dropped


def resize_pos_embed(
    pos_embed: torch.Tensor,
    new_grid: Tuple[int, int],
    num_prefix_tokens: int,
    old_grid: Optional[Tuple[int, int]] = None,
) -> torch.Tensor:
    """Resample a ``(1, P + h * w, D)`` absolute position embedding.

    The ``P`` prefix entries are kept; the grid part is resized bicubically by
    timm's :func:`~timm.layers.resample_abs_pos_embed`.

    Args:
        pos_embed (Tensor): Position embedding ``(1, P + h * w, D)``.
        new_grid (tuple[int, int]): Target ``(gh, gw)``.
        num_prefix_tokens (int): ``P``, the entries that are not on the grid.
        old_grid (tuple[int, int], optional): Source grid; inferred as square
            when None. Defaults to None.

    Returns:
        Tensor: ``(1, P + gh * gw, D)``.

    Raises:
        ValueError: If the source grid is not square and ``old_grid`` is not
            given, or does not match the number of entries.
    """
    if pos_embed.dim() != 3:
        raise ValueError(
            f'pos_embed must be (1, L, D), got shape {tuple(pos_embed.shape)}'
        )
    num_grid = pos_embed.shape[1] - num_prefix_tokens
    if old_grid is None:
        side = math.isqrt(max(num_grid, 0))
        if num_grid <= 0 or side * side != num_grid:
            raise ValueError(
                f'pos_embed of shape {tuple(pos_embed.shape)} minus '
                f'{num_prefix_tokens} prefix entries has {num_grid} grid '
                'entries, which is not a square grid: cannot infer its size'
            )
        old_grid = (side, side)
    if old_grid[0] * old_grid[1] != num_grid:
        raise ValueError(
            f'pos_embed has {num_grid} grid entries but old_grid={old_grid}'
        )
    return resample_abs_pos_embed(
        pos_embed,
        new_size=list(new_grid),
        old_size=list(old_grid),
        num_prefix_tokens=num_prefix_tokens,
    )
