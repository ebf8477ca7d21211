"""DeepLab-LargeFOV-style decoder used by single-stage WSSS models (ToCo)."""

import torch.nn as nn
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from torch import Tensor


@MODELS.register_module()
class LargeFOVHead(BaseDecodeHead):
    """``num_convs`` dilated 3x3 convs with ReLU, then a 1x1 classifier.

    ToCo's decoder (Ru et al., CVPR 2023): conv3x3 768->512 dilation 5, ReLU,
    conv3x3 512->512 dilation 5, ReLU, conv1x1 -> C+1, no biases and no
    normalisation. It is an ordinary mmseg decode head (``in_index``,
    ``dropout_ratio``, ``predict_by_feat``), so a config may swap it for any
    other mmseg head (e.g. ``ASPPHead``) without touching the model.

    Args:
        dilation (int): Dilation (and padding) of the 3x3 convs. Defaults
            to 5.
        num_convs (int): Number of 3x3 convs. Defaults to 2.
        bias (bool): Biases in all convs, the classifier included. Defaults
            to False.
        **kwargs: ``BaseDecodeHead`` arguments (``in_channels``,
            ``channels``, ``num_classes``, ...). ``dropout_ratio`` defaults
            to 0 and ``norm_cfg`` to None here.
    """

    def __init__(
        self, dilation: int = 5, num_convs: int = 2, bias: bool = False, **kwargs
    ) -> None:
        kwargs.setdefault('dropout_ratio', 0.0)
        super().__init__(**kwargs)
        if num_convs < 1:
            raise ValueError(f'LargeFOVHead: num_convs must be >= 1, got {num_convs}')
        self.dilation = dilation
        convs = []
        for i in range(num_convs):
            convs.append(
                ConvModule(
                    self.in_channels if i == 0 else self.channels,
                    self.channels,
                    kernel_size=3,
                    padding=dilation,
                    dilation=dilation,
                    bias=bias,
                    conv_cfg=self.conv_cfg,
                    norm_cfg=self.norm_cfg,
                    act_cfg=self.act_cfg,
                )
            )
        self.convs = nn.Sequential(*convs)
        # BaseDecodeHead's classifier has a bias; LargeFOV's has none
        self.conv_seg = nn.Conv2d(self.channels, self.out_channels, 1, bias=bias)

    def forward(self, inputs) -> Tensor:
        """Seg logits ``(B, num_classes, h, w)`` at the feature resolution."""
        x = self._transform_inputs(inputs)
        return self.cls_seg(self.convs(x))
