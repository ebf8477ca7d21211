"""The two views of ACR and the token correspondence between them.

- ``token_alignment``: :class:`TokenAlignment` (view-2 -> view-1 patch-token
  correspondence), its constructors (``*_alignment``) and the functions that
  align view-2 quantities (``align_*``);
- ``view_maker``: :func:`make_view` (flip, rescale, crop).
"""
