"""The host contract: what a model must offer to be wrapped by ``ACRSegmentor``
or explained by ``ClsTokenGradCAMHead``, written down as ``typing.Protocol``\\ s.

Two levels:

* :class:`ViTBackbone` is the token layout of a ViT backbone (token width,
  patch size, prefix-token count, token grid of an input size).
  ``TimmViT`` and ``MultiClassTokenViT`` implement it; mmseg's
  ``VisionTransformer`` is adapted by :class:`MMSegViTLayout`
  (:func:`vit_layout` picks).
* :class:`ViTHost` is a model whose class logits come through a ViT: the ViT
  whose attention is captured (``captured_vit``) and its token layout.
  :class:`GradCAMHost` adds the image logits the gradient head explains,
  :class:`ACRHost` what ``ACRSegmentor`` calls, :class:`CAMLossHost`
  ``loss_with_cams`` for the CAM term. The WSSS classifiers (``ViTCAM``,
  ``ToCo``, ``MCTformer``) implement them through ``WSSSClassifier``.

:func:`require_members` checks a model once and names the missing members and
the model class.
"""

import math
from typing import Any, Iterable, List, Protocol, Tuple, runtime_checkable

import torch.nn as nn
from mmseg.models.backbones import VisionTransformer
from mmseg.utils import SampleList
from torch import Tensor


@runtime_checkable
class ViTBackbone(Protocol):
    """Token layout of a ViT backbone.

    Attributes:
        embed_dim (int): Token width ``D``.
        patch_size (int): Stride in pixels from the input to the token grid.
        num_prefix_tokens (int): Tokens in front of the patches (class,
            register, distillation tokens).
    """

    embed_dim: int
    patch_size: int
    num_prefix_tokens: int

    def grid_size(self, h: int, w: int) -> Tuple[int, int]:
        """Token grid ``(gh, gw)`` of an ``h x w`` input."""


@runtime_checkable
class ViTHost(Protocol):
    """A model whose class logits come through a ViT.

    Attributes:
        captured_vit (nn.Module): The ViT whose attention modules are hooked.
        patch_size (int): Pixels per token of ``captured_vit``.
        num_prefix_tokens (int): Tokens in front of the patches.
    """

    captured_vit: nn.Module
    patch_size: int
    num_prefix_tokens: int

    def token_grid(self, height: int, width: int) -> Tuple[int, int]:
        """Token grid ``(gh, gw)`` of a ``height x width`` input."""


@runtime_checkable
class GradCAMHost(ViTHost, Protocol):
    """A :class:`ViTHost` that ``ClsTokenGradCAMHead`` can explain."""

    def logits(self, inputs: Tensor) -> Tensor:
        """Image-level logits ``(B, C)``, computed from the class token(s)."""


@runtime_checkable
class ACRHost(ViTHost, Protocol):
    """A segmentor ``ACRSegmentor`` can wrap: a :class:`ViTHost` with its own
    losses and prediction.

    Attributes:
        align_corners (bool): Resize mode of its predictions.
    """

    align_corners: bool

    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        """Its training losses on one view."""

    def predict(self, inputs: Tensor, data_samples: SampleList) -> SampleList:
        """Its predictions."""


@runtime_checkable
class CAMLossHost(ACRHost, Protocol):
    """An :class:`ACRHost` whose loss also returns its CAMs (the ACR CAM term)."""

    def loss_with_cams(
        self, inputs: Tensor, data_samples: SampleList
    ) -> Tuple[dict, Tensor]:
        """:meth:`loss` and the raw CAMs ``(B, C, h, w)`` of the same forward."""


def protocol_members(protocol: type) -> List[str]:
    """Names a ``Protocol`` requires (its own and its base protocols')."""
    names: List[str] = []
    for cls in reversed(protocol.__mro__):
        if not getattr(cls, '_is_protocol', False) or cls is Protocol:
            continue
        own = list(getattr(cls, '__annotations__', {}))
        own += [n for n, v in vars(cls).items() if callable(v) and n[0] != '_']
        names += [n for n in own if n not in names]
    return names


def require_members(
    obj: Any, protocol: type, user: str, extra: Iterable[str] = ()
) -> None:
    """Raise if ``obj`` lacks a member of ``protocol`` (or of ``extra``).

    Args:
        obj: The model (or backbone) to check.
        protocol (type): The ``Protocol`` it must implement.
        user (str): Who needs it, for the message (e.g. ``'ACRSegmentor'``).
        extra (Iterable[str]): Further member names required.

    Raises:
        TypeError: Naming the missing members, ``obj``'s class and the
            protocol.
    """
    wanted = protocol_members(protocol) + list(extra)
    missing = [name for name in wanted if not hasattr(obj, name)]
    if missing:
        raise TypeError(
            f'{user}: {type(obj).__name__} does not implement the host contract '
            f'{protocol.__name__} (acr_plugin.models.host_contract): missing '
            f'{", ".join(missing)}'
        )


class MMSegViTLayout:
    """:class:`ViTBackbone` of an mmseg ``VisionTransformer``.

    Args:
        vit (VisionTransformer): The mmseg backbone.
    """

    def __init__(self, vit: VisionTransformer) -> None:
        self.vit = vit

    @property
    def embed_dim(self) -> int:
        return int(self.vit.cls_token.shape[-1])

    @property
    def patch_size(self) -> int:
        size = self.vit.patch_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def num_prefix_tokens(self) -> int:
        return int(bool(self.vit.with_cls_token))

    def grid_size(self, h: int, w: int) -> Tuple[int, int]:
        """The patch embedding's output size (adaptive padding, then conv)."""
        embed = self.vit.patch_embed
        if embed.adap_padding:
            pad_h, pad_w = embed.adap_padding.get_pad_shape((h, w))
            h, w = h + pad_h, w + pad_w
        conv = embed.projection
        return tuple(
            math.floor((size + 2 * p - d * (k - 1) - 1) / s) + 1
            for size, p, d, k, s in zip(
                (h, w), conv.padding, conv.dilation, conv.kernel_size, conv.stride
            )
        )


def vit_layout(backbone: nn.Module) -> ViTBackbone:
    """The :class:`ViTBackbone` of a backbone: itself if it implements the
    protocol (``TimmViT``), :class:`MMSegViTLayout` for mmseg's
    ``VisionTransformer``.

    Raises:
        TypeError: For any other backbone, naming its missing members.
    """
    if isinstance(backbone, VisionTransformer):
        return MMSegViTLayout(backbone)
    require_members(backbone, ViTBackbone, 'vit_layout')
    return backbone
