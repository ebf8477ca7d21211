"""Discovery of the self-attention modules of a model.

Two kinds are recognised: ``'timm'`` (timm's ``Attention`` and duck-typed
look-alikes with ``qkv``, ``num_heads``, ``scale`` and ``attn_drop``: ViT,
DeiT, hybrid ViT) and ``'torch_mha'`` (``torch.nn.MultiheadAttention``, which
mmseg's ``VisionTransformer`` wraps in mmcv's ``MultiheadAttention``).
"""

from dataclasses import dataclass
from typing import List

from torch import nn

#: attributes that make a module a timm-style attention
TIMM_ATTRS = ('qkv', 'num_heads', 'scale', 'attn_drop')


@dataclass
class AttentionSite:
    """One attention module of a model.

    Args:
        name (str): Dotted module name in the model (``model.get_submodule``).
        module (nn.Module): The attention module.
        kind (str): ``'timm'`` or ``'torch_mha'``.
    """

    name: str
    module: nn.Module
    kind: str


def find_attention_modules(model: nn.Module) -> List[AttentionSite]:
    """List the self-attention modules of a model in block order.

    The order is the modules' registration order, which is the forward order
    for the sequential blocks of a ViT.

    Args:
        model (nn.Module): Any model (a ViT, a segmentor holding one, ...).

    Returns:
        list[AttentionSite]: The attention modules found.

    Raises:
        ValueError: If the model has no supported attention module.
    """
    sites = []
    for name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            sites.append(AttentionSite(name, module, 'torch_mha'))
        elif all(hasattr(module, attr) for attr in TIMM_ATTRS):
            sites.append(AttentionSite(name, module, 'timm'))
    if not sites:
        raise ValueError(
            f'{type(model).__name__} has no attention module to capture: '
            'expected timm-style Attention modules (with qkv, num_heads, scale '
            'and attn_drop) or torch.nn.MultiheadAttention'
        )
    return sites
