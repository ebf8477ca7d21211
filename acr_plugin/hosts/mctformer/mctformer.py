"""MCTformer: a ViT with one class token per class (V1 and V2)."""

from typing import Dict, Tuple

import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType, OptMultiConfig, SampleList
from torch import Tensor

from acr_plugin.acr.attention.attention_capture import AttentionCapture
from acr_plugin.acr.attention.attention_sites import find_attention_modules
from acr_plugin.hosts.mctformer.mct_ops import (
    class_to_patch_maps,
    class_token_logits,
    patch_affinity_refine,
)
from acr_plugin.models.segmentors.cam_prediction import (
    CAMPredictionMixin,
    ImageLevelLossMixin,
)
from acr_plugin.models.segmentors.wsss_classifier import (
    WSSSClassifier,
    split_vit_output,
)
from acr_plugin.structures import stack_img_labels

VERSIONS = ('v1', 'v2')


@MODELS.register_module()
class MCTformer(ImageLevelLossMixin, CAMPredictionMixin, WSSSClassifier):
    """Multi-class token transformer for WSSS (Xu et al., CVPR 2022).

    The backbone (e.g. ``MultiClassTokenViT``) puts ``C`` class tokens in
    front of the patches; class token ``c`` belongs to foreground class ``c``
    (segmentation class ``c + 1``). Its class logit is the mean over the
    embedding dimension of that token's output (no final LayerNorm: build the
    backbone with ``out_norm=False``). Version ``'v2'`` adds a
    ``Conv2d(D, C, 3, padding=1)`` on the patch grid whose global average
    gives patch logits, and whose ReLU output is a CAM. Training loss:
    ``MLSM(token logits)`` (+ ``MLSM(patch logits)`` for V2).

    Localisation (:meth:`predict`, Xu et al., CVPR 2022): the class-to-patch
    attention of the last ``attn_layers`` blocks, head-averaged and summed
    (``(B, C, h, w)``); V2 multiplies it by ``ReLU(CAM)``; with ``refine``
    each map is multiplied by the patch affinity ``P`` (head-averaged
    patch-to-patch attention summed over *all* blocks, not renormalised);
    maps are resized bilinearly to the input, the flipped view's maps are
    flipped back and added, and every class map is min-max normalised. The
    attention is captured with hooks (:class:`AttentionCapture`, ``'probs'``
    mode) on ``backbone``; training runs the backbone's fused attention.

    Call graph::

        loss(inputs, samples) -> forward_outputs(inputs) -> loss_by_outputs()
        loss_with_cams(inputs, samples) (ACRSegmentor.loss, CAM term on)
          -> V2: forward_outputs()['cams']; V1: AttentionCapture(backbone)
             -> class_to_patch_maps()
        predict(inputs, samples)
          -> multi_scale_flip_cams(mct_maps, merge 'sum') -> min-max
          -> cams_to_seg_logits() -> postprocess_result()
        logits(inputs) (ClsTokenGradCAMHead, prefix_row='class')

    The host contract (``captured_vit``, ``patch_size``,
    ``num_prefix_tokens`` = ``C``, ``token_grid``) comes from
    :class:`WSSSClassifier`.

    Args:
        backbone (dict): Backbone config; it must return ``(patch_map,
            prefix_tokens)`` pairs whose ``C`` first prefix tokens are the
            class tokens (``MultiClassTokenViT`` with
            ``num_class_tokens = num_classes - 1``) and expose
            ``num_prefix_tokens``.
        num_classes (int): Segmentation classes *including* background.
        version (str): ``'v2'`` (conv head, CAM-weighted maps) or ``'v1'``
            (class tokens only). Both train the class-token logits with
            ``MultiLabelSoftMarginLoss`` (``loss_cls``), V2 its patch logits
            too (``loss_cls_patch``). Defaults to ``'v2'``.
        attn_layers (int): ``K``, the last blocks whose class-to-patch
            attention forms the maps. Defaults to 3.
        refine (bool): Patch-affinity refinement. Defaults to True.
        train_cfg (dict, optional): Unused; kept for mmseg's interface.
        test_cfg (dict, optional): ``scales`` (default ``(1.0,)``), ``flip``
            (True: add the mirrored view's maps), ``flip_merge`` (``'sum'``,
            MCTformer's; ``'max'`` also works), ``bg_thr`` (0.5),
            ``use_labels`` (True: keep only the image's classes, the standard
            protocol when evaluating CAMs on a labelled split) and ``eps``
            (1e-8, min-max normalisation).
        data_preprocessor (dict, optional): mmseg ``SegDataPreProcessor``.
        init_cfg (dict, optional): Initialisation config.
    """

    test_defaults = dict(CAMPredictionMixin.test_defaults, flip_merge='sum', eps=1e-8)

    def __init__(
        self,
        backbone: ConfigType,
        num_classes: int,
        version: str = 'v2',
        attn_layers: int = 3,
        refine: bool = True,
        train_cfg: OptConfigType = None,
        test_cfg: OptConfigType = None,
        data_preprocessor: OptConfigType = None,
        init_cfg: OptMultiConfig = None,
    ) -> None:
        name = type(self).__name__
        if version not in VERSIONS:
            raise ValueError(f'{name}: version must be one of {VERSIONS}: {version}')
        super().__init__(
            backbone, num_classes, train_cfg, test_cfg, data_preprocessor, init_cfg
        )
        num_prefix = self.num_prefix_tokens
        if num_prefix != self.num_fg_classes:
            raise ValueError(
                f'{name}: the backbone {type(self.backbone).__name__} has '
                f'{num_prefix} prefix tokens, but num_classes={num_classes} '
                f'needs {self.num_fg_classes} class tokens (set '
                f'backbone.num_class_tokens={self.num_fg_classes})'
            )
        depth = len(find_attention_modules(self.backbone))
        if not 1 <= int(attn_layers) <= depth:
            raise ValueError(
                f'{name}: attn_layers must be in [1, {depth}] for a backbone of '
                f'{depth} attention layers, got {attn_layers}'
            )
        self.version = version
        self.attn_layers = int(attn_layers)
        self.refine = refine
        self.num_attention_layers = depth
        if version == 'v2':
            self.patch_head = nn.Conv2d(
                self.embed_dim, self.num_fg_classes, 3, padding=1
            )
            self.loss_patch = MODELS.build(
                dict(type='MultiLabelSoftMarginLoss', loss_name='loss_cls_patch')
            )
        else:
            self.patch_head = None
        self.loss_token = MODELS.build(
            dict(type='MultiLabelSoftMarginLoss', loss_name='loss_cls')
        )

    # ------------------------------------------------------------ features
    def extract_feat(self, inputs: Tensor) -> Tuple[Tensor, Tensor]:
        """``(patch_map (B, D, h, w), class_tokens (B, C, D))`` of the last
        backbone output."""
        patch_map, prefix = split_vit_output(self.backbone(inputs)[-1])
        if prefix is None or prefix.shape[1] < self.num_fg_classes:
            raise ValueError(
                f'{type(self.backbone).__name__} returned '
                f'{0 if prefix is None else prefix.shape[1]} prefix tokens; '
                f'MCTformer needs {self.num_fg_classes} class tokens'
            )
        return patch_map, prefix[:, : self.num_fg_classes]

    def forward_outputs(self, inputs: Tensor) -> Dict[str, Tensor]:
        """Everything a training step (and the ACR wrapper) needs.

        Returns:
            dict: ``patch_map`` ``(B, D, h, w)``, ``class_tokens``
            ``(B, C, D)``, ``token_logits`` ``(B, C)`` and, for V2,
            ``patch_logits`` ``(B, C)`` and ``cams`` (the raw conv-head
            output ``(B, C, h, w)``).
        """
        patch_map, class_tokens = self.extract_feat(inputs)
        outputs = dict(
            patch_map=patch_map,
            class_tokens=class_tokens,
            token_logits=class_token_logits(class_tokens),
        )
        if self.patch_head is not None:
            cams = self.patch_head(patch_map)
            outputs['cams'] = cams
            outputs['patch_logits'] = cams.mean(dim=(2, 3))
        return outputs

    def logits(self, inputs: Tensor) -> Tensor:
        """Class-token logits ``(B, C)`` (read by ``ClsTokenGradCAMHead``
        with ``prefix_row='class'``)."""
        return self.forward_outputs(inputs)['token_logits']

    # ------------------------------------------------------------ training
    def loss_with_cams(
        self, inputs: Tensor, data_samples: SampleList
    ) -> Tuple[dict, Tensor]:
        """:meth:`loss` plus maps ``(B, C, h, w)`` of the same forward for the
        CAM term of ``AllPairsConsistencyLoss`` (gradients flow through them).

        V2: the raw conv-head CAM. V1 has no CAM head: its maps are the
        class-to-patch attention of the last ``attn_layers`` blocks
        (:func:`class_to_patch_maps`, no refinement), captured by an own
        ``'probs'`` :class:`AttentionCapture` on those blocks during this
        forward (it works beside a wrapper's capture; those blocks then run
        timm's non-fused attention path).
        """
        labels = stack_img_labels(data_samples).to(inputs.device)
        if self.patch_head is not None:
            outputs = self.forward_outputs(inputs)
            return self.loss_by_outputs(outputs, labels), outputs['cams']
        layers = list(range(-self.attn_layers, 0))
        with AttentionCapture(self.backbone, layers=layers, mode='probs') as capture:
            outputs = self.forward_outputs(inputs)
            attns = capture.pop()
        maps = class_to_patch_maps(
            attns, self.num_fg_classes, tuple(outputs['patch_map'].shape[-2:])
        )
        return self.loss_by_outputs(outputs, labels), maps

    # ------------------------------------------------------------ inference
    def mct_maps(self, inputs: Tensor) -> Tuple[Tensor, Tensor]:
        """MCTformer maps at token resolution and the class-token logits.

        Args:
            inputs (Tensor): Normalised images ``(B, 3, H, W)``.

        Returns:
            tuple: ``maps`` ``(B, C, h, w)`` (non-negative, not normalised)
            and ``token_logits`` ``(B, C)``.
        """
        depth = self.num_attention_layers
        first = 0 if self.refine else depth - self.attn_layers
        layers = list(range(first, depth))
        with AttentionCapture(self.backbone, layers=layers, mode='probs') as capture:
            outputs = self.forward_outputs(inputs)
            attns = capture.pop()
        grid = tuple(outputs['patch_map'].shape[-2:])
        maps = class_to_patch_maps(
            attns[-self.attn_layers :], self.num_fg_classes, grid
        )
        if self.patch_head is not None:
            maps = maps * F.relu(outputs['cams'])
        if self.refine:
            maps = patch_affinity_refine(maps, attns, self.num_fg_classes)
        return maps, outputs['token_logits']

    def cams_and_logits(self, inputs: Tensor) -> Tuple[Tensor, Tensor]:
        """:meth:`mct_maps` (the localisation maps) and class-token logits."""
        return self.mct_maps(inputs)
