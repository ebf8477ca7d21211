"""ACR, all-pairs consistency regularisation (Sun et al., arXiv:2308.04321).

One folder holds the method:

- ``acr_segmentor.ACRSegmentor``: wraps any WSSS classifier, builds the second
  view, captures both views' self-attention and adds the ACR loss;
- ``consistency/``: ``AllPairsConsistencyLoss``, the class-activation and
  attention (affinity) consistency terms, with ``consistency_terms`` (the
  reference maths) and ``chunked_consistency`` (the chunked, memory-bounded
  form: ``alignment_plan``, ``chunk_ops``, ``chunked_function``,
  ``checkpointed_kl``, ``qk_entropy``);
- ``attention/``: self-attention capture of timm and
  ``torch.nn.MultiheadAttention`` blocks (``attention_sites``,
  ``attention_ops``, ``query_key_pair``, ``timm_adapter``,
  ``torch_mha_adapter``, ``attention_capture``, ``vit_attention_capture``);
- ``views/``: ``token_alignment`` (token correspondence between views) and
  ``view_maker`` (the second view);
- ``cls_token_grad_cam_head.ClsTokenGradCAMHead`` with ``grad_cam_ops``: the
  class-wise localisation from class-token gradients;
- ``uniform_attention_hook.UniformAttentionHook``: the uniform-attention control.
"""

from .acr_segmentor import ACRSegmentor
from .attention.attention_capture import AttentionCapture
from .attention.attention_ops import attention_entropy, head_average, probs_from_qk
from .attention.attention_sites import AttentionSite, find_attention_modules
from .attention.query_key_pair import QueryKeyPair
from .attention.vit_attention_capture import ViTAttentionCapture
from .cls_token_grad_cam_head import ClsTokenGradCAMHead
from .consistency.all_pairs_consistency_loss import AllPairsConsistencyLoss
from .consistency.chunked_consistency import chunked_consistency_terms
from .consistency.chunked_function import ChunkedConsistencyFunction
from .consistency.consistency_terms import (
    affinity_term,
    cam_term,
    class_row_term,
    elementwise_distance,
    normalize_cams,
    patch_row_entropy,
    symmetric_kl_rows,
)
from .consistency.qk_entropy import qk_attention_entropy, qk_patch_row_entropy
from .grad_cam_ops import (
    GRAD_CAM_VARIANTS,
    affinity_matrix,
    grad_cam_maps,
    grad_cam_maps_batched,
    layer_scores,
)
from .uniform_attention_hook import UniformAttention, UniformAttentionHook
from .views.token_alignment import (
    TokenAlignment,
    align_attention,
    align_maps,
    align_patch_tokens,
    compose_alignments,
    crop_alignment,
    flip_alignment,
    rescale_alignment,
)
from .views.view_maker import make_view

__all__ = [
    'ACRSegmentor',
    'AllPairsConsistencyLoss',
    'AttentionCapture',
    'AttentionSite',
    'QueryKeyPair',
    'ViTAttentionCapture',
    'attention_entropy',
    'find_attention_modules',
    'head_average',
    'probs_from_qk',
    'ClsTokenGradCAMHead',
    'GRAD_CAM_VARIANTS',
    'affinity_matrix',
    'grad_cam_maps',
    'grad_cam_maps_batched',
    'layer_scores',
    'affinity_term',
    'cam_term',
    'class_row_term',
    'elementwise_distance',
    'normalize_cams',
    'patch_row_entropy',
    'symmetric_kl_rows',
    'ChunkedConsistencyFunction',
    'chunked_consistency_terms',
    'qk_attention_entropy',
    'qk_patch_row_entropy',
    'UniformAttention',
    'UniformAttentionHook',
    'TokenAlignment',
    'align_attention',
    'align_maps',
    'align_patch_tokens',
    'compose_alignments',
    'crop_alignment',
    'flip_alignment',
    'make_view',
    'rescale_alignment',
]
