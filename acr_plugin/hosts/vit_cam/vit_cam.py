"""ViT-CAM: a plain ViT classifier that localises with class activation maps."""

from typing import Dict, Optional, Tuple

import torch.nn as nn
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType, OptMultiConfig, SampleList
from torch import Tensor

from acr_plugin.models.segmentors.cam_prediction import (
    CAMPredictionMixin,
    ImageLevelLossMixin,
)
from acr_plugin.models.segmentors.wsss_classifier import (
    WSSSClassifier,
    split_vit_output,
)
from acr_plugin.models.utils.cam_ops import cam_from_patch_tokens, global_pool
from acr_plugin.structures import stack_img_labels


@MODELS.register_module()
class ViTCAM(ImageLevelLossMixin, CAMPredictionMixin, WSSSClassifier):
    """Plain ViT classifier with class-activation-map localisation.

    The official ACR host (Sun et al., arXiv 2308.04321): a linear classifier on the
    class token of one block's output (the last block, before the final norm) trained
    with the multilabel soft-margin loss; localisation is a patch-token CAM. An optional
    second classifier (1x1 conv on the patch tokens with global pooling) gives sharper
    CAMs on small ViTs trained from scratch.

    Call graph::

        loss(inputs, samples) -> forward_outputs(inputs) -> loss_by_outputs()
        loss_with_cams(inputs, samples) -> (loss_by_outputs(), outputs['cams'])
            (called by ACRSegmentor.loss when the ACR CAM term is on)
        predict(inputs, samples) -> multi_scale_flip_cams(cam) -> normalise
            -> cams_to_seg_logits() -> postprocess_result()
        logits(inputs) (read by ClsTokenGradCAMHead) -> forward_outputs()

    The host contract (``captured_vit``, ``patch_size``,
    ``num_prefix_tokens``, ``token_grid``) comes from :class:`WSSSClassifier`.

    Args:
        backbone (dict): Backbone config (``TimmViT`` or mmseg's
            ``VisionTransformer`` with ``output_cls_token=True``).
        num_classes (int): Segmentation classes *including* background, as in
            mmseg (the classifiers have ``num_classes - 1`` outputs).
        token_head (bool): Linear classifier on prefix token 0 of the last
            backbone output (``MultiLabelSoftMarginLoss`` logged as
            ``loss_cls``). Defaults to True.
        patch_head (dict, optional): ``dict(pool='max'|'avg'|'topk',
            topk=0.1)`` adds a bias-free 1x1-conv classifier on the patch
            tokens with global pooling (``MultiLabelSoftMarginLoss`` logged
            as ``loss_cls_patch``). Defaults to None.
        cam_source (str): ``'patch'`` (the patch head's weights) or ``'token'``
            (the token classifier's weights applied to patch tokens). Defaults
            to ``'token'``.
        train_cfg (dict, optional): Unused; kept for mmseg's interface.
        test_cfg (dict, optional): CAM inference: ``scales`` (default
            ``(1.0,)``), ``flip`` (True), ``flip_merge`` (``'max'``),
            ``bg_thr`` (0.5), ``use_labels`` (True: restrict to the image's
            labels, the standard protocol when evaluating CAMs on a labelled
            split; False: every class competes), ``eps`` (1e-5).
        data_preprocessor (dict, optional): mmseg ``SegDataPreProcessor``.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(
        self,
        backbone: ConfigType,
        num_classes: int,
        token_head: bool = True,
        patch_head: Optional[dict] = None,
        cam_source: str = 'token',
        train_cfg: OptConfigType = None,
        test_cfg: OptConfigType = None,
        data_preprocessor: OptConfigType = None,
        init_cfg: OptMultiConfig = None,
    ) -> None:
        super().__init__(
            backbone, num_classes, train_cfg, test_cfg, data_preprocessor, init_cfg
        )
        if not token_head and patch_head is None:
            raise ValueError('ViTCAM needs token_head=True or a patch_head')
        if cam_source not in ('patch', 'token'):
            raise ValueError(
                f'cam_source must be "patch" or "token", got "{cam_source}"'
            )
        if cam_source == 'patch' and patch_head is None:
            raise ValueError('cam_source="patch" needs a patch_head')
        if cam_source == 'token' and not token_head:
            raise ValueError('cam_source="token" needs token_head=True')
        self.cam_source = cam_source
        embed_dim = self.embed_dim
        self.token_classifier = (
            nn.Linear(embed_dim, self.num_fg_classes) if token_head else None
        )
        self.patch_head_cfg = dict(pool='max', topk=0.1)
        if patch_head is not None:
            self.patch_head_cfg.update(patch_head)
            self.patch_classifier = nn.Conv2d(
                embed_dim, self.num_fg_classes, 1, bias=False
            )
            self.loss_patch = MODELS.build(
                dict(type='MultiLabelSoftMarginLoss', loss_name='loss_cls_patch')
            )
        else:
            self.patch_classifier = None
        if token_head:
            self.loss_token = MODELS.build(
                dict(type='MultiLabelSoftMarginLoss', loss_name='loss_cls')
            )

    # ------------------------------------------------------------ features
    def extract_feat(self, inputs: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """``(patch_map (B, D, h, w), prefix_tokens (B, P, D) or None)`` of the
        last backbone output."""
        return split_vit_output(self.backbone(inputs)[-1])

    def forward_outputs(self, inputs: Tensor) -> Dict[str, Tensor]:
        """Everything a training step (and the ACR wrapper) needs.

        Returns:
            dict: ``patch_map``, ``prefix`` (may be None), ``token_logits``
            (if a token head), ``patch_logits`` (if a patch head) and ``cams``
            (raw CAMs ``(B, C, h, w)`` of ``cam_source``).
        """
        patch_map, prefix = self.extract_feat(inputs)
        outputs = dict(patch_map=patch_map, prefix=prefix)
        if self.token_classifier is not None:
            if prefix is None:
                raise ValueError(
                    f'{type(self.backbone).__name__} returned no class token; '
                    'ViTCAM token_head needs one (mmseg VisionTransformer: '
                    'set output_cls_token=True)'
                )
            outputs['token_logits'] = self.token_classifier(prefix[:, 0])
        if self.patch_classifier is not None:
            patch_cams = self.patch_classifier(patch_map)
            outputs['patch_logits'] = global_pool(
                patch_cams, self.patch_head_cfg['pool'], self.patch_head_cfg['topk']
            )
            if self.cam_source == 'patch':
                outputs['cams'] = patch_cams
        if self.cam_source == 'token':
            outputs['cams'] = cam_from_patch_tokens(
                patch_map, self.token_classifier.weight
            )
        return outputs

    def cam(self, inputs: Tensor) -> Tensor:
        """Raw CAMs ``(B, C, h, w)`` at token resolution."""
        return self.forward_outputs(inputs)['cams']

    # ------------------------------------------------------------ training
    def loss_with_cams(
        self, inputs: Tensor, data_samples: SampleList
    ) -> Tuple[dict, Tensor]:
        """:meth:`loss` plus the raw CAMs ``(B, C, h, w)`` of the same forward
        (for the CAM-activation term of ``AllPairsConsistencyLoss``)."""
        labels = stack_img_labels(data_samples).to(inputs.device)
        outputs = self.forward_outputs(inputs)
        return self.loss_by_outputs(outputs, labels), outputs['cams']

    # ------------------------------------------------------------ inference
    @staticmethod
    def _image_logits(outputs: Dict[str, Tensor]) -> Tensor:
        return outputs.get('token_logits', outputs.get('patch_logits'))

    def logits(self, inputs: Tensor) -> Tensor:
        """Image-level logits: the token head's, else the patch head's."""
        return self._image_logits(self.forward_outputs(inputs))

    def cams_and_logits(self, inputs: Tensor) -> Tuple[Tensor, Tensor]:
        """Raw CAMs ``(B, C, h, w)`` and image logits of one forward."""
        outputs = self.forward_outputs(inputs)
        return outputs['cams'], self._image_logits(outputs)
