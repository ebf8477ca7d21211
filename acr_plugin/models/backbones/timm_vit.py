"""mmseg backbone wrapping any timm Vision Transformer (ViT, DeiT, hybrids)."""

import logging
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import timm
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModule, initialize
from mmengine.model.weight_init import update_init_info
from mmseg.registry import MODELS
from timm.layers import HybridEmbed
from torch import Tensor

from acr_plugin.models.backbones.checkpoint_conversion import (
    convert_mmseg_vit_to_timm,
    is_mmseg_vit_layout,
    resize_pos_embed,
    select_backbone_state,
    split_head_keys,
    unwrap_checkpoint,
)
from acr_plugin.models.backbones.checkpoint_loading import load_checkpoint_weights_only

#: arguments that ``TimmViT`` passes to ``timm.create_model`` itself
_RESERVED_KWARGS = ('pretrained', 'num_classes', 'img_size', 'dynamic_img_size')


@MODELS.register_module()
class TimmViT(BaseModule):
    """A timm Vision Transformer as an mmseg backbone, with prefix tokens.

    The model is built by ``timm.create_model(model_name, pretrained=False,
    num_classes=0, img_size=img_size, dynamic_img_size=True, **model_kwargs)``
    and kept in ``self.vit``. timm's dynamic mode accepts any input size
    (non-square too): the position embedding is resampled to the input's token
    grid. The forward pass calls its modules (``patch_embed``, ``_pos_embed``,
    ``patch_drop``, ``norm_pre``, ``blocks``, ``norm``) in timm's order, so
    attention modules stay reachable
    as ``blocks[i].attn`` for hooks and ``fused_attn`` is left as timm set it.

    Every block always runs (even those after the last out index) so that
    attention hooks see the whole network.

    It implements the host contract's ``ViTBackbone``
    (``acr_plugin.models.host_contract``): ``embed_dim``, ``patch_size``,
    ``num_prefix_tokens`` and ``grid_size(h, w)``, read by the hosts'
    ``WSSSClassifier`` base.

    Call graph::

        forward(x) -> embed_tokens(x) -> vit.blocks[i] (hooked by
            AttentionCapture) -> vit.norm (out_norm) -> (patch_map, prefix)
        init_weights() -> load_pretrained() -> convert_state_dict()

    Weights: ``init_cfg=dict(type='Pretrained', checkpoint=...)`` (or the
    ``pretrained`` shortcut) loads, in :meth:`init_weights`, a checkpoint in
    timm layout, mmseg ``VisionTransformer`` layout, or a whole-model
    checkpoint of a segmentor whose backbone is under ``backbone.`` (e.g. one
    trained with our configs). Classifier-head keys are ignored and
    ``pos_embed`` is resampled to this model's grid. An optional ``prefix``
    in the init cfg selects the backbone keys explicitly. Without a
    ``Pretrained`` init cfg, :meth:`init_weights` keeps timm's own
    initialisation (and timm's pretrained weights, if requested).

    Args:
        model_name (str): timm model name, e.g. ``'vit_base_patch16_224'``,
            ``'deit_small_patch16_224'``, ``'vit_base_resnet50_384'``.
        img_size (int | tuple[int, int]): Input size the model (its position
            embedding grid) is built for. Defaults to 224.
        model_kwargs (dict, optional): Extra keyword arguments of the timm
            model (``embed_dim``, ``depth``, ``num_heads``, ``patch_size``,
            ``drop_path_rate``, ``class_token``, ``reg_tokens``, ...).
            Defaults to None.
        out_indices (int | Sequence[int]): Blocks whose outputs are returned,
            negative indices counting from the end. Defaults to ``(-1,)``.
        out_norm (bool | Sequence[bool]): Apply the final ``norm`` to the
            returned tokens, for all outputs or one flag per out index.
            Defaults to False.
        freeze_pos_embed (bool): Exclude ``pos_embed`` from training.
            Defaults to False.
        timm_pretrained (bool): Let timm download its own pretrained weights
            while building (needs network). Defaults to False.
        pretrained (str, optional): Checkpoint path, shortcut for
            ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``.
            Defaults to None.
        init_cfg (dict | list[dict], optional): Initialisation config.
            Defaults to None.

    Example:
        >>> backbone = TimmViT('vit_tiny_patch16_224', img_size=32,
        ...                    model_kwargs=dict(patch_size=8, depth=2))
        >>> (patch_map, prefix), = backbone(torch.rand(1, 3, 32, 48))
        >>> patch_map.shape, prefix.shape
        (torch.Size([1, 192, 4, 6]), torch.Size([1, 1, 192]))
    """

    def __init__(
        self,
        model_name: str,
        img_size: Union[int, Tuple[int, int]] = 224,
        model_kwargs: Optional[Dict[str, Any]] = None,
        out_indices: Union[int, Sequence[int]] = (-1,),
        out_norm: Union[bool, Sequence[bool]] = False,
        freeze_pos_embed: bool = False,
        timm_pretrained: bool = False,
        pretrained: Optional[str] = None,
        init_cfg: Union[dict, List[dict], None] = None,
    ) -> None:
        if pretrained is not None:
            if not isinstance(pretrained, str):
                raise TypeError(
                    f'pretrained must be a checkpoint path (str) or None, got '
                    f'{type(pretrained).__name__}'
                )
            if init_cfg is not None:
                raise ValueError('TimmViT: set either pretrained or init_cfg, not both')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=init_cfg)

        model_kwargs = dict(model_kwargs or {})
        clashes = [k for k in _RESERVED_KWARGS if k in model_kwargs]
        if clashes:
            raise ValueError(
                f'TimmViT: model_kwargs must not contain {clashes}; use the '
                'TimmViT arguments (img_size, timm_pretrained) instead; '
                'dynamic_img_size is always True'
            )
        self.model_name = model_name
        self.vit = timm.create_model(
            model_name,
            pretrained=timm_pretrained,
            num_classes=0,
            img_size=img_size,
            dynamic_img_size=True,
            **model_kwargs,
        )
        for name in ('patch_embed', 'blocks', 'norm', '_pos_embed'):
            if not hasattr(self.vit, name):
                raise TypeError(
                    f'TimmViT: timm model {model_name!r} '
                    f'({type(self.vit).__name__}) has no {name!r}; only '
                    'VisionTransformer-like models are supported'
                )
        if not isinstance(self.vit.patch_drop, nn.Identity):
            raise ValueError(
                'TimmViT: patch_drop_rate > 0 drops patch tokens, so the '
                'outputs could not be reshaped to the token grid'
            )

        self.out_indices = self._normalise_indices(out_indices)
        if isinstance(out_norm, bool):
            out_norm = [out_norm] * len(self.out_indices)
        out_norm = [bool(flag) for flag in out_norm]
        if len(out_norm) != len(self.out_indices):
            raise ValueError(
                f'TimmViT: out_norm has {len(out_norm)} flags for '
                f'{len(self.out_indices)} out_indices {self.out_indices}'
            )
        self.out_norm = tuple(out_norm)

        if freeze_pos_embed:
            if self.vit.pos_embed is None:
                raise ValueError(
                    f'TimmViT: freeze_pos_embed=True but {model_name!r} has '
                    'no learned pos_embed'
                )
            self.vit.pos_embed.requires_grad_(False)
        self.freeze_pos_embed = freeze_pos_embed

    # ------------------------------------------------------------------ info
    @property
    def blocks(self) -> nn.Sequential:
        """The timm transformer blocks (``blocks[i].attn`` for hooks)."""
        return self.vit.blocks

    @property
    def num_layers(self) -> int:
        """Number of transformer blocks (the depth)."""
        return len(self.vit.blocks)

    @property
    def embed_dim(self) -> int:
        """Token width ``D``."""
        return int(self.vit.embed_dim)

    @property
    def num_prefix_tokens(self) -> int:
        """Number ``P`` of class / register / distillation tokens."""
        return int(self.vit.num_prefix_tokens)

    @property
    def patch_size(self) -> int:
        """Total stride from pixels to tokens (CNN stride x patch for hybrids).

        For non-square patches this is the larger side; use
        :meth:`grid_size` for exact grids.
        """
        embed = self.vit.patch_embed
        if hasattr(embed, 'feat_ratio'):
            return int(embed.feat_ratio(as_scalar=True))
        return int(max(embed.patch_size))

    def grid_size(self, h: int, w: int) -> Tuple[int, int]:
        """Token grid ``(gh, gw)`` that an ``h x w`` input produces.

        Plain patch embeddings floor (or ceil with ``dynamic_img_pad``);
        the CNN of a hybrid pads its strided layers ("same"-style, as timm's
        ResNet stems do), so its feature map is ``ceil(h / stride)``.

        Args:
            h (int): Input height.
            w (int): Input width.

        Returns:
            tuple[int, int]: Grid height and width.
        """
        embed = self.vit.patch_embed
        if isinstance(embed, HybridEmbed):
            fh = math.ceil(h / embed.feature_ratio[0])
            fw = math.ceil(w / embed.feature_ratio[1])
            ph, pw = embed.patch_size
            if embed.dynamic_img_pad:
                return math.ceil(fh / ph), math.ceil(fw / pw)
            return fh // ph, fw // pw
        if hasattr(embed, 'dynamic_feat_size'):
            gh, gw = embed.dynamic_feat_size((h, w))
            return int(gh), int(gw)
        ph, pw = embed.patch_size
        return h // ph, w // pw

    def _normalise_indices(
        self, out_indices: Union[int, Sequence[int]]
    ) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = (out_indices,)
        depth = self.num_layers
        result = []
        for index in out_indices:
            if not -depth <= index < depth:
                raise IndexError(
                    f'TimmViT: out index {index} out of range for '
                    f'{self.model_name!r} with {depth} blocks'
                )
            result.append(index % depth)
        if len(set(result)) != len(result):
            raise ValueError(
                f'TimmViT: out_indices {tuple(out_indices)} repeat a block'
            )
        return tuple(result)

    # --------------------------------------------------------------- forward
    def embed_tokens(self, x: Tensor) -> Tuple[Tensor, Tuple[int, int]]:
        """Token embedding stage: patches, prefix tokens, position embedding.

        Runs timm's ``patch_embed``, ``_pos_embed`` (prefix tokens and the
        position embedding, resampled to the input's grid by dynamic mode),
        ``patch_drop`` and ``norm_pre``. Subclasses with other prefix tokens
        override this method.

        Args:
            x (Tensor): Images ``(B, C, H, W)``.

        Returns:
            tuple: ``tokens`` ``(B, P + gh * gw, D)`` (prefix tokens first)
            and the token grid ``(gh, gw)``.
        """
        vit = self.vit
        tokens = vit.patch_embed(x)
        if tokens.dim() != 4:
            raise TypeError(
                f'TimmViT: the patch embedding of {self.model_name!r} returned '
                f"{tuple(tokens.shape)}, not the (B, gh, gw, D) map of timm's "
                'dynamic mode'
            )
        gh, gw = tokens.shape[1], tokens.shape[2]  # NHWC, flattened by _pos_embed
        tokens = vit._pos_embed(tokens)
        tokens = vit.patch_drop(tokens)
        tokens = vit.norm_pre(tokens)
        return tokens, (int(gh), int(gw))

    def forward(self, x: Tensor) -> Tuple[Tuple[Tensor, Tensor], ...]:
        """Run the ViT and collect the requested block outputs.

        Args:
            x (Tensor): Images ``(B, C, H, W)``.

        Returns:
            tuple: One ``(patch_map, prefix_tokens)`` pair per out index:
            ``patch_map`` ``(B, D, gh, gw)`` on this input's token grid and
            ``prefix_tokens`` ``(B, P, D)`` (``P`` may be 0).
        """
        vit = self.vit
        tokens, (gh, gw) = self.embed_tokens(x)

        taken: Dict[int, Tensor] = {}
        wanted = dict(zip(self.out_indices, self.out_norm))
        for i, block in enumerate(vit.blocks):
            tokens = block(tokens)
            if i in wanted:
                taken[i] = vit.norm(tokens) if wanted[i] else tokens

        num_prefix = self.num_prefix_tokens
        outs = []
        for i in self.out_indices:
            out = taken[i]
            prefix = out[:, :num_prefix]
            patch_map = out[:, num_prefix:].unflatten(1, (gh, gw))
            outs.append((patch_map.permute(0, 3, 1, 2).contiguous(), prefix))
        return tuple(outs)

    # ----------------------------------------------------------- pretrained
    def init_weights(self) -> None:
        """Apply ``init_cfg``; ``Pretrained`` entries are loaded last.

        timm initialised the model when it was built, so timm's own
        ``init_weights`` is *not* called again (it would also wipe weights
        that ``timm_pretrained`` downloaded).
        """
        if self.is_init:
            print_log(
                f'init_weights of {type(self).__name__} has been called more '
                'than once.',
                logger='current',
                level=logging.WARNING,
            )
            return
        cfgs = self.init_cfg or []
        if isinstance(cfgs, dict):
            cfgs = [cfgs]
        pretrained = [c for c in cfgs if c.get('type') == 'Pretrained']
        others = [c for c in cfgs if c.get('type') != 'Pretrained']
        if others:
            initialize(self, others)
        for cfg in pretrained:
            self.load_pretrained(cfg['checkpoint'], prefix=cfg.get('prefix'))
            if hasattr(self, '_params_init_info'):
                update_init_info(
                    self,
                    init_info=f'{type(self).__name__}: load from {cfg["checkpoint"]}',
                )
        self._is_init = True

    def convert_state_dict(
        self, checkpoint: dict, prefix: Optional[str] = None
    ) -> Dict[str, Tensor]:
        """Bring a loaded checkpoint to this model's timm key layout.

        Args:
            checkpoint (dict): Loaded checkpoint (any supported layout).
            prefix (str, optional): Explicit prefix of the backbone keys;
                auto-detected (``...backbone.``) when None. Defaults to None.

        Returns:
            dict: State dict for ``self.vit``, head keys removed and
            ``pos_embed`` resampled to this model's grid.
        """
        state = unwrap_checkpoint(checkpoint)
        state = select_backbone_state(state, prefix=prefix)
        if is_mmseg_vit_layout(state):
            state = convert_mmseg_vit_to_timm(state)
        state, dropped = split_head_keys(state)
        if dropped:
            print_log(
                f'TimmViT: ignoring {len(dropped)} classifier-head keys',
                logger='current',
                level=logging.DEBUG,
            )
        own = self.vit.pos_embed
        if (
            'pos_embed' in state
            and own is not None
            and state['pos_embed'].shape != own.shape
        ):
            old = state['pos_embed']
            num_prefix = (
                0
                if getattr(self.vit, 'no_embed_class', False)
                else self.num_prefix_tokens
            )
            grid = tuple(self.vit.patch_embed.grid_size)
            state['pos_embed'] = resize_pos_embed(old, grid, num_prefix)
            print_log(
                f'TimmViT: resized pos_embed {tuple(old.shape)} -> '
                f'{tuple(own.shape)} (grid {grid})',
                logger='current',
            )
        return state

    def load_pretrained(
        self, checkpoint: str, prefix: Optional[str] = None
    ) -> Dict[str, List[str]]:
        """Load backbone weights from a checkpoint file (``strict=False``).

        Args:
            checkpoint (str): Local file (``.pth``/``.pt`` loaded with
                ``weights_only=True``, or ``.safetensors``) or a URL
                understood by mmengine's ``CheckpointLoader``; see
                :func:`load_checkpoint_weights_only`.
            prefix (str, optional): Explicit prefix of the backbone keys.
                Defaults to None (auto-detect).

        Returns:
            dict: ``loaded``, ``missing``, ``unexpected`` and
            ``size_mismatch`` key lists.

        Raises:
            ValueError: If no key of the checkpoint matches this backbone.
            pickle.UnpicklingError: If the file holds objects that a
                ``weights_only`` load refuses.
        """
        print_log(f'TimmViT: load backbone weights from {checkpoint}', logger='current')
        raw = load_checkpoint_weights_only(checkpoint, map_location='cpu')
        try:
            state = self.convert_state_dict(raw, prefix=prefix)
        except ValueError as err:
            raise ValueError(f'{checkpoint}: {err}') from err
        own = self.vit.state_dict()
        mismatch = [
            k
            for k, v in state.items()
            if k in own and tuple(v.shape) != tuple(own[k].shape)
        ]
        for key in mismatch:
            state.pop(key)
        matched = [k for k in state if k in own]
        if not matched:
            sample = sorted(unwrap_checkpoint(raw))[:5]
            raise ValueError(
                f'TimmViT: no key of checkpoint {checkpoint!r} matches the '
                f'backbone {self.model_name!r} (first keys: {sample}); '
                'expected timm, mmseg VisionTransformer or backbone.* keys'
            )
        result = self.vit.load_state_dict(state, strict=False)
        report = dict(
            loaded=matched,
            missing=list(result.missing_keys),
            unexpected=list(result.unexpected_keys),
            size_mismatch=mismatch,
        )
        print_log(
            f'TimmViT: loaded {len(matched)}/{len(own)} tensors from {checkpoint}',
            logger='current',
        )
        for name in ('missing', 'unexpected', 'size_mismatch'):
            if report[name]:
                print_log(
                    f'TimmViT: {name.replace("_", " ")} keys: {report[name]}',
                    logger='current',
                    level=logging.WARNING,
                )
        return report
