"""DeepLab-V2's ASPP classifier: the second stage of most multi-stage WSSS papers."""

from numbers import Integral
from typing import Sequence, Tuple

import torch.nn as nn
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from torch import Tensor


def check_dilations(dilations) -> Tuple[int, ...]:
    """``dilations`` as a tuple of positive ints; ``ValueError`` otherwise."""
    if isinstance(dilations, (str, bytes)) or not isinstance(dilations, Sequence):
        raise ValueError(
            'DeepLabV2Head: dilations must be a sequence of positive ints, '
            f'got {dilations!r}'
        )
    bad = [
        d
        for d in dilations
        if isinstance(d, bool) or not isinstance(d, Integral) or d < 1
    ]
    if not dilations or bad:
        raise ValueError(
            'DeepLabV2Head: dilations must be a non-empty sequence of positive '
            f'ints, got {tuple(dilations)!r}'
        )
    return tuple(int(d) for d in dilations)


@MODELS.register_module()
class DeepLabV2Head(BaseDecodeHead):
    """Sum of parallel dilated 3x3 convs straight to the class logits (ASPP).

    DeepLab-V2's classifier on ResNet-101 (Chen et al., "DeepLab: Semantic
    Image Segmentation with Deep Convolutional Nets, Atrous Convolution, and
    Fully Connected CRFs", TPAMI 2017, ASPP-L): four 3x3 convs with dilation
    (and padding) 6, 12, 18 and 24, each from the ``in_channels`` backbone
    features (2048 for ResNet-101) directly to the ``num_classes`` logits,
    with biases, no normalisation, no activation and no image pooling; their
    outputs are summed. It is the second-stage network of ACR, MCTformer and
    most multi-stage WSSS papers, unlike mmseg's ``ASPPHead`` (DeepLab-V3:
    BN-ReLU branches, image pooling, a fused bottleneck and a 1x1 classifier).

    The branches ARE the classifier, so they are stored as ``conv_seg``
    (an ``nn.ModuleList``, one conv per dilation) and :meth:`cls_seg`
    applies them: ``BaseDecodeHead``'s default ``init_cfg`` (normal std 0.01,
    bias 0, on ``conv_seg``: DeepLab-V2's initialisation) then reaches every
    branch, every parameter of the head is used (DDP runs with
    ``find_unused_parameters=False``) and checkpoints name the classifier
    ``decode_head.conv_seg.<i>``. There is no layer between the features and
    the classifier, so ``channels`` is ``in_channels`` (after
    ``input_transform``); another value is an error. It is an ordinary mmseg
    decode head otherwise (``in_index``, ``loss_decode``, ``ignore_index``,
    ``sampler``, ``align_corners``, ``predict_by_feat``).

    Call graph::

        forward(inputs)
          -> _transform_inputs(inputs)           (B, in_channels, h, w)
          -> cls_seg(x)
               [dropout(x) if dropout_ratio > 0]
               -> sum_i conv_seg[i](x)           3x3, dilation = padding = d_i
          = seg logits (B, num_classes, h, w)    at the feature resolution
        loss / predict: BaseDecodeHead (loss_by_feat, predict_by_feat)

    Args:
        dilations (Sequence[int]): Dilation (and padding) of each branch, one
            3x3 conv per entry; positive ints. Defaults to ``(6, 12, 18, 24)``
            (DeepLab-V2 ASPP-L).
        **kwargs: ``BaseDecodeHead`` arguments (``in_channels``,
            ``num_classes``, ``in_index``, ``loss_decode``, ...). ``channels``
            may be left out (it is ``in_channels``); ``dropout_ratio``
            defaults to 0 here (DeepLab-V2's ASPP-L has no dropout).
    """

    def __init__(
        self,
        dilations: Sequence[int] = (6, 12, 18, 24),
        **kwargs,
    ) -> None:
        dilations = check_dilations(dilations)
        kwargs.setdefault('dropout_ratio', 0.0)
        in_channels = kwargs.get('in_channels')
        if in_channels is None:
            raise TypeError('DeepLabV2Head: in_channels is required')
        feat_channels = in_channels
        if kwargs.get('input_transform') == 'resize_concat':
            feat_channels = sum(in_channels)
        channels = kwargs.pop('channels', feat_channels)
        if channels != feat_channels:
            raise ValueError(
                'DeepLabV2Head: the branches read the backbone features '
                f'directly, so channels must be in_channels ({feat_channels}) '
                f'or left out, got {channels}'
            )
        super().__init__(channels=channels, **kwargs)
        self.dilations = dilations
        # the branches replace BaseDecodeHead's 1x1 classifier
        del self.conv_seg
        self.conv_seg = nn.ModuleList(
            nn.Conv2d(
                self.channels,
                self.out_channels,
                kernel_size=3,
                padding=d,
                dilation=d,
            )
            for d in dilations
        )

    def cls_seg(self, feat: Tensor) -> Tensor:
        """Sum of the branch logits ``(B, out_channels, h, w)`` of ``feat``."""
        if self.dropout is not None:
            feat = self.dropout(feat)
        out = self.conv_seg[0](feat)
        for branch in self.conv_seg[1:]:
            out = out + branch(feat)
        return out

    def forward(self, inputs) -> Tensor:
        """Seg logits ``(B, num_classes, h, w)`` at the feature resolution."""
        return self.cls_seg(self._transform_inputs(inputs))
