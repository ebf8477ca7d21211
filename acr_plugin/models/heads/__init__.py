"""Decode heads shared by the second stage (DeepLab-LargeFOV, DeepLab-v2 ASPP)."""

from .deeplabv2_head import DeepLabV2Head
from .large_fov_head import LargeFOVHead

__all__ = ['DeepLabV2Head', 'LargeFOVHead']
