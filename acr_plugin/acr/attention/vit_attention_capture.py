"""A config-buildable wrapper that returns a model's output and its attention."""

from typing import Any, List, Optional, Sequence, Tuple, Union

import torch.nn as nn
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptMultiConfig

from .attention_capture import AttentionCapture
from .query_key_pair import AttentionRecord


@MODELS.register_module()
class ViTAttentionCapture(BaseModule):
    """Wrap a ViT (or any model) so that its forward also returns attention.

    ``forward(*args, **kwargs)`` runs the wrapped model once under an
    :class:`AttentionCapture` and returns ``(model_output, attentions)``, where
    ``attentions`` is the list of per-layer records of that forward
    (``(B, heads, N, N)`` probabilities, or ``QueryKeyPair(q * scale, k)`` in
    ``'qk'`` mode). The hooks exist only during the call.

    Example:
        >>> wrapper = MODELS.build(dict(
        ...     type='ViTAttentionCapture',
        ...     model=dict(type='VisionTransformer', img_size=(32, 32),
        ...                patch_size=8, embed_dims=32, num_layers=2,
        ...                num_heads=2),
        ...     layers=[-1]))
        >>> feats, (attn, ) = wrapper(images)

    Args:
        model (dict | nn.Module): Config of the model (built with
            ``MODELS.build``) or a built module.
        layers (Sequence[int], optional): Attention layers to capture (see
            :class:`AttentionCapture`); None captures all. Defaults to None.
        mode (str): ``'probs'`` or ``'qk'``. Defaults to ``'probs'``.
        detach (bool): Return detached attention. Defaults to False.
        init_cfg (dict or list[dict], optional): Initialisation config.
            Defaults to None.
    """

    def __init__(
        self,
        model: Union[ConfigType, nn.Module],
        layers: Optional[Sequence[int]] = None,
        mode: str = 'probs',
        detach: bool = False,
        init_cfg: OptMultiConfig = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.model = model if isinstance(model, nn.Module) else MODELS.build(model)
        # finds the attention modules and validates layers/mode at build time
        self.capture = AttentionCapture(
            self.model, layers=layers, mode=mode, detach=detach
        )

    def forward(self, *args: Any, **kwargs: Any) -> Tuple[Any, List[AttentionRecord]]:
        """Run the model and return ``(model_output, attentions)``."""
        with self.capture:
            output = self.model(*args, **kwargs)
            attentions = self.capture.pop()
        return output, attentions
