"""Adapter for timm's ``Attention``: its scaled queries and keys.

timm computes ``attn = softmax(q * scale @ k^T)`` (after optional
``q_norm``/``k_norm``) from the output of its ``qkv`` projection; the fused SDPA
path never materialises the probabilities, so the capture reads ``q`` and ``k``
from the ``qkv`` output instead.
"""

from torch import Tensor, nn

from .query_key_pair import QueryKeyPair


def timm_qk_from_qkv(module: nn.Module, qkv: Tensor) -> QueryKeyPair:
    """Scaled queries and keys of a timm ``Attention`` from its ``qkv`` output.

    Args:
        module (nn.Module): The timm attention module (``num_heads``,
            ``scale``, optional ``q_norm``/``k_norm``).
        qkv (Tensor): Output of ``module.qkv``, ``(B, N, 3 * heads * head_dim)``.

    Returns:
        QueryKeyPair: ``q * scale`` and ``k``, ``(B, heads, N, head_dim)``.
    """
    batch, num_tokens, width = qkv.shape
    heads = module.num_heads
    parts = qkv.reshape(batch, num_tokens, 3, heads, width // (3 * heads))
    q = parts[:, :, 0].transpose(1, 2)
    k = parts[:, :, 1].transpose(1, 2)
    q_norm = getattr(module, 'q_norm', None)
    k_norm = getattr(module, 'k_norm', None)
    if q_norm is not None:
        q = q_norm(q)
    if k_norm is not None:
        k = k_norm(k)
    return QueryKeyPair(q * module.scale, k)
