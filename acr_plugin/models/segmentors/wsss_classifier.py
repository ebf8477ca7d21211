"""``WSSSClassifier``: the shared constructor of the WSSS host segmentors and
their side of the host contract."""

from typing import Any, Dict, Optional, Tuple

import torch.nn as nn
from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType, OptMultiConfig
from torch import Tensor

from acr_plugin.models.host_contract import ViTBackbone, vit_layout
from acr_plugin.models.segmentors.checkpoint_fit import install_checkpoint_fit
from acr_plugin.utils.config_utils import merge_with_defaults


def split_vit_output(output) -> Tuple[Tensor, Optional[Tensor]]:
    """Normalise one backbone output to ``(patch_map, prefix_tokens)``.

    Accepts our ``TimmViT`` pairs ``(B, D, h, w), (B, P, D)``, mmseg
    ``VisionTransformer`` outputs with ``output_cls_token=True``
    (``[(B, D, h, w), (B, D)]``) and plain ``(B, D, h, w)`` maps (no prefix).
    """
    if isinstance(output, Tensor):
        return output, None
    patch_map, prefix = output[0], output[1]
    if prefix is not None and prefix.dim() == 2:
        prefix = prefix[:, None]
    return patch_map, prefix


class WSSSClassifier(BaseSegmentor):
    """Base of the image-classifier hosts ``ViTCAM``, ``ToCo`` and ``MCTformer``.

    It builds the ViT ``backbone``, checks ``num_classes`` (background
    included), merges ``test_cfg`` into the class attribute
    ``test_defaults`` (every key the subclass reads), installs the
    checkpoint-fit hooks and implements the host contract
    (``acr_plugin.models.host_contract.ACRHost``) from the backbone's token
    layout (:func:`vit_layout`).

    Call graph::

        __init__ -> install_checkpoint_fit(self), MODELS.build(backbone),
                    vit_layout(backbone), merge_with_defaults(test_cfg)
        ACRSegmentor / ClsTokenGradCAMHead -> captured_vit, patch_size,
            num_prefix_tokens, token_grid(h, w)

    Args:
        backbone (dict): ViT backbone config (``TimmViT``,
            ``MultiClassTokenViT`` or mmseg's ``VisionTransformer``).
        num_classes (int): Segmentation classes including background.
        train_cfg (dict, optional): Kept as ``train_cfg`` (``{}`` if None).
        test_cfg (dict, optional): Overrides of ``test_defaults``.
        data_preprocessor (dict, optional): mmseg ``SegDataPreProcessor``.
        init_cfg (dict, optional): Initialisation config.
    """

    #: every ``test_cfg`` key the subclass reads, with its default
    test_defaults: Dict[str, Any] = {}

    def __init__(
        self,
        backbone: ConfigType,
        num_classes: int,
        train_cfg: OptConfigType,
        test_cfg: OptConfigType,
        data_preprocessor: OptConfigType,
        init_cfg: OptMultiConfig,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        install_checkpoint_fit(self)
        name = type(self).__name__
        if num_classes < 2:
            raise ValueError(
                f'{name}: num_classes counts background too: need >= 2, got '
                f'{num_classes}'
            )
        self.backbone = MODELS.build(backbone)
        self.num_classes = num_classes
        self.num_fg_classes = num_classes - 1
        self.train_cfg = train_cfg or {}
        self.test_cfg = merge_with_defaults(
            self.test_defaults, test_cfg, f'{name} test_cfg'
        )
        self.align_corners = False

    # ------------------------------------------------------------ host contract
    @property
    def backbone_layout(self) -> ViTBackbone:
        """Token layout of ``backbone`` (see :func:`vit_layout`)."""
        return vit_layout(self.backbone)

    @property
    def captured_vit(self) -> nn.Module:
        """The ViT whose attention ACR and the gradient head capture."""
        return self.backbone

    @property
    def embed_dim(self) -> int:
        """Token width ``D`` of the backbone."""
        return int(self.backbone_layout.embed_dim)

    @property
    def patch_size(self) -> int:
        """Pixels per token of the backbone."""
        return int(self.backbone_layout.patch_size)

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens in front of the patches (class tokens)."""
        return int(self.backbone_layout.num_prefix_tokens)

    def token_grid(self, height: int, width: int) -> Tuple[int, int]:
        """Token grid ``(gh, gw)`` of a ``height x width`` input."""
        gh, gw = self.backbone_layout.grid_size(height, width)
        return int(gh), int(gw)
