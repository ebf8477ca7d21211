"""Self-attention capture of timm and ``torch.nn.MultiheadAttention`` blocks.

- ``attention_sites``: :func:`find_attention_modules` and its
  :class:`AttentionSite` records;
- ``attention_ops``: pure maths on probabilities (:func:`head_average`,
  :func:`attention_entropy`) and :func:`probs_from_qk`;
- ``query_key_pair``: :class:`QueryKeyPair`, the ``(q * scale, k)`` record of
  one layer, and its shape check;
- ``timm_adapter`` / ``torch_mha_adapter``: queries and keys (and masks) read
  from timm's ``Attention`` and from ``nn.MultiheadAttention``;
- ``attention_capture``: :class:`AttentionCapture`, the hook manager;
- ``vit_attention_capture``: :class:`ViTAttentionCapture`, its registered
  wrapper.
"""
