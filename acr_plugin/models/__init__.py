"""Components shared by several methods: the timm ViT backbone, the second-stage
decode heads, the multi-label loss, segmentor mixins and tensor ops."""

from . import backbones, heads, losses, segmentors, utils  # noqa: F401
