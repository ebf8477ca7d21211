"""The WSSS models ACR is adopted into, one folder each, unchanged in architecture:

- ``vit_cam``: a plain ViT classifier with patch-token CAMs;
- ``toco``: ToCo, single-stage (Ru et al., CVPR 2023) with its losses, PAR, CTC
  views, momentum teacher and colour jitter;
- ``mctformer``: MCTformer-V1/V2 with one class token per class (Xu et al., CVPR 2022).
"""

from . import mctformer, toco, vit_cam  # noqa: F401
