"""ACR, all-pairs consistency regularisation (Sun et al., arXiv:2308.04321).

One folder holds the method:

- ``acr_segmentor.ACRSegmentor``: wraps any WSSS classifier, builds the second
  view, captures both views' self-attention and adds the ACR loss;
- ``all_pairs_consistency_loss.AllPairsConsistencyLoss``: the class-activation
  and attention (affinity) consistency terms, with ``consistency_terms`` (the
  reference maths) and ``efficient_consistency`` (the chunked, memory-bounded form);
- ``attention_capture`` / ``vit_attention_capture``: self-attention capture of
  timm and ``torch.nn.MultiheadAttention`` blocks;
- ``view_alignment``: token alignment between views and the view maker;
- ``cls_token_grad_cam_head.ClsTokenGradCAMHead`` with ``grad_cam_ops``: the
  class-wise localisation from class-token gradients;
- ``uniform_attention_hook.UniformAttentionHook``: the uniform-attention control.
"""

from .acr_segmentor import ACRSegmentor
from .all_pairs_consistency_loss import AllPairsConsistencyLoss
from .attention_capture import (
    AttentionCapture,
    AttentionSite,
    attention_entropy,
    find_attention_modules,
    head_average,
    probs_from_qk,
)
from .cls_token_grad_cam_head import ClsTokenGradCAMHead
from .consistency_terms import (
    affinity_term,
    cam_term,
    class_row_term,
    elementwise_distance,
    normalize_cams,
    patch_row_entropy,
    symmetric_kl_rows,
)
from .efficient_consistency import (
    ChunkedConsistencyFunction,
    chunked_consistency_terms,
    qk_attention_entropy,
    qk_patch_row_entropy,
)
from .grad_cam_ops import (
    GRAD_CAM_VARIANTS,
    affinity_matrix,
    grad_cam_maps,
    grad_cam_maps_batched,
    layer_scores,
)
from .uniform_attention_hook import UniformAttention, UniformAttentionHook
from .view_alignment import (
    TokenAlignment,
    align_attention,
    align_maps,
    align_patch_tokens,
    compose_alignments,
    crop_alignment,
    flip_alignment,
    identity_alignment,
    make_view,
    photometric_jitter,
    rescale_alignment,
)
from .vit_attention_capture import ViTAttentionCapture

__all__ = [
    'ACRSegmentor',
    'AllPairsConsistencyLoss',
    'AttentionCapture',
    'AttentionSite',
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
    'identity_alignment',
    'make_view',
    'photometric_jitter',
    'rescale_alignment',
]
