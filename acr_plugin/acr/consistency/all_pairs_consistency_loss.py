"""All-pairs consistency loss (ACR) between the attention of two views.

One concept: the registered :class:`AllPairsConsistencyLoss` (option checks,
per-layer dispatch to the naive or the chunked route, reduction); the maths
lives in ``consistency_terms`` and ``chunked_consistency``.
"""

from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from mmseg.registry import MODELS
from torch import Tensor

from acr_plugin.acr.attention.attention_ops import probs_from_qk
from acr_plugin.acr.attention.query_key_pair import (
    AttentionRecord,
    QueryKeyPair,
    check_view_pair,
    is_query_key_record,
)
from acr_plugin.acr.views.token_alignment import (
    TokenAlignment,
    align_attention,
    align_maps,
)

from .alignment_plan import DEFAULT_CHUNK_SIZE, AlignmentPlan, make_plan
from .chunk_ops import compute_dtype
from .chunked_consistency import chunked_consistency_terms
from .chunked_function import GRAD_MODES
from .consistency_terms import (
    DISTANCES,
    affinity_term,
    cam_term,
    class_row_term,
    normalize_cams,
    patch_row_entropy,
)
from .qk_entropy import qk_patch_row_entropy

REDUCTIONS = ('none', 'mean', 'sum')
#: how the attention terms are computed (see ``AllPairsConsistencyLoss``)
ROUTES = ('naive', 'efficient')


def _check_choice(owner: str, option: str, value: str, choices: tuple) -> None:
    """Raise ``ValueError('{owner}: unknown {option} ...')`` for a bad choice."""
    if value not in choices:
        raise ValueError(f'{owner}: unknown {option} "{value}" (one of {choices})')


@MODELS.register_module()
class AllPairsConsistencyLoss(nn.Module):
    """ACR: consistency of class-token and patch-to-patch attention across views.

    With the defaults this is the official regulariser (Sun et al., arXiv 2308.04321):
    for every layer, heads averaged, L1 between view 1 and view 2 aligned to view 1
    (``align_attention``), mean over batch, layers and entries, of

    * the class rows ``A[:P, P:]`` (``loss_acr_cls``) and
    * the affinity block ``A[P:, P:]`` (``loss_acr_aff``),

    never comparing ``A[:P, :P]`` or ``A[P:, :P]``; both views get gradients.
    Options beyond the official code: other distances, per-head distances,
    a CAM-activation term, a stop-gradient side and an entropy cap (uniform
    attention is trivially consistent; the cap penalises it). Only view-1
    tokens marked valid by the alignment are compared (masked means).

    Records: each layer's attention is either post-softmax probabilities
    ``(B, [H,] T, T)`` (``AttentionCapture(mode='probs')``) or a ``(q * scale,
    k)`` pair ``(B, H, T, d)`` each (a ``QueryKeyPair`` or a plain tuple;
    ``mode='qk'``: the model keeps its fused attention kernel). ``route``
    decides how ``(q, k)`` records are used:

    * ``'efficient'`` (default): chunked recomputation
      (``chunked_consistency``): no ``(B, H, T, T)`` tensor is stored, the
      backward recomputes ``chunk_size`` query rows at a time. Equal to the
      naive route up to float rounding (tested to 1e-5 relative, loss and
      gradients).
    * ``'naive'``: ``softmax(q k^T)`` materialised, then the official formula.

    Probability records always take the naive formula (they are already
    materialised). :attr:`capture_mode` tells a wrapper which records to
    capture (``ACRSegmentor`` follows it).

    Args:
        num_prefix_tokens (int): Prefix (class) tokens ``P`` before the
            patches (MCTformer: C class tokens). Defaults to 1.
        layers (Sequence[int], optional): Indices into the attention lists
            (negative allowed). Defaults to None (all).
        head_average (bool): Average heads before the distance (official);
            False compares every head and averages the distances. Defaults
            to True.
        distance (str): ``'l1'``, ``'l2'`` (mean squared), ``'smooth_l1'``
            or ``'kl'`` (row-wise symmetric KL, rows renormalised over the
            compared patch columns). Defaults to ``'l1'``.
        beta (float): Smooth-L1 threshold (attention differences are small,
            hence the small default). Defaults to 1e-3.
        cls_weight (float): Weight of the class-row term. Defaults to 1.0.
        aff_weight (float): Weight of the affinity term. Defaults to 1.0.
        cam_weight (float): Weight of the CAM term ``|CAM1 - align(CAM2)|``
            (needs ``cams1``/``cams2`` ``(B, C, h, w)``; each class map is
            ReLU'd and divided by its maximum, each view in its own frame,
            before aligning). Defaults to 0.0.
        stop_grad (str, optional): ``'view1'`` or ``'view2'`` detaches that
            view in every term. Defaults to None (both views learn).
        entropy_cap (float, optional): In ``(0, 1)``; adds ``relu(e - cap)``
            per view, ``e`` = mean normalised entropy of the patch rows of
            that view's per-head attention over the selected layers,
            averaged over both views (per sample, then reduced). Defaults
            to None (off).
        entropy_weight (float): Weight of the entropy penalty. Defaults to
            1.0.
        reduction (str): ``'mean'``, ``'sum'`` (over the batch) or ``'none'``
            (per sample ``(B,)``). Defaults to ``'mean'``.
        loss_weight (float): alpha, multiplies every term (official: 125
            VOC, 100 COCO). Defaults to 1.0.
        loss_name (str): Prefix of the term keys, must start with
            ``loss_``. Defaults to ``'loss_acr'``.
        route (str): ``'efficient'`` or ``'naive'`` (see above). Defaults to
            ``'efficient'``.
        chunk_size (int): Query rows per chunk of the efficient route.
            Defaults to 64.
        grad_mode (str): Efficient route, element-wise distances:
            ``'recompute'`` (backward recomputes the chunks; only ``q`` and
            ``k`` are kept) or ``'store'`` (the forward pass also computes
            the gradients and keeps two ``(B, H, T, d)`` tensors per layer
            and view: about a third less ACR compute, a little more
            memory). Defaults to ``'recompute'``.
    """

    def __init__(
        self,
        num_prefix_tokens: int = 1,
        layers: Optional[Sequence[int]] = None,
        head_average: bool = True,
        distance: str = 'l1',
        beta: float = 1e-3,
        cls_weight: float = 1.0,
        aff_weight: float = 1.0,
        cam_weight: float = 0.0,
        stop_grad: Optional[str] = None,
        entropy_cap: Optional[float] = None,
        entropy_weight: float = 1.0,
        reduction: str = 'mean',
        loss_weight: float = 1.0,
        loss_name: str = 'loss_acr',
        route: str = 'efficient',
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        grad_mode: str = 'recompute',
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if int(num_prefix_tokens) < 0:
            raise ValueError(f'{name}: num_prefix_tokens must be >= 0')
        _check_choice(name, 'distance', distance, DISTANCES)
        if stop_grad not in (None, 'view1', 'view2'):
            raise ValueError(
                f'{name}: stop_grad must be None, "view1" or "view2": {stop_grad}'
            )
        if entropy_cap is not None and not 0 < entropy_cap < 1:
            raise ValueError(f'{name}: entropy_cap must lie in (0, 1): {entropy_cap}')
        if reduction not in REDUCTIONS:
            raise ValueError(f'{name}: reduction must be one of {REDUCTIONS}')
        if not loss_name.startswith('loss_'):
            raise ValueError(f'{name}: loss_name must start with "loss_": {loss_name}')
        if cls_weight and int(num_prefix_tokens) == 0:
            raise ValueError(
                f'{name}: the class-row term needs prefix tokens; set '
                'cls_weight=0 when num_prefix_tokens=0'
            )
        _check_choice(name, 'route', route, ROUTES)
        if int(chunk_size) < 1:
            raise ValueError(f'{name}: chunk_size must be >= 1: {chunk_size}')
        _check_choice(name, 'grad_mode', grad_mode, GRAD_MODES)
        if layers is not None:
            layers = [int(i) for i in layers]
            if not layers:
                raise ValueError(f'{name}: layers must be None or non-empty')
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.layers = layers
        self.head_average = head_average
        self.distance = distance
        self.beta = beta
        self.cls_weight = cls_weight
        self.aff_weight = aff_weight
        self.cam_weight = cam_weight
        self.stop_grad = stop_grad
        self.entropy_cap = entropy_cap
        self.entropy_weight = entropy_weight
        self.reduction = reduction
        self.loss_weight = loss_weight
        self._loss_name = loss_name
        self.route = route
        self.chunk_size = int(chunk_size)
        self.grad_mode = grad_mode
        if not self.enabled_terms:
            raise ValueError(f'{name}: every term has weight 0')

    @property
    def loss_name(self) -> str:
        """Log key prefix of the terms (mmseg loss contract)."""
        return self._loss_name

    @property
    def capture_mode(self) -> str:
        """``AttentionCapture`` mode this loss wants: ``'qk'`` or ``'probs'``."""
        return 'qk' if self.route == 'efficient' else 'probs'

    @property
    def enabled_terms(self) -> List[str]:
        """Suffixes of the terms this loss computes, in key order."""
        terms = []
        if self.cls_weight:
            terms.append('cls')
        if self.aff_weight:
            terms.append('aff')
        if self.cam_weight:
            terms.append('cam')
        if self.entropy_cap is not None and self.entropy_weight:
            terms.append('entropy')
        return terms

    # ------------------------------------------------------------ helpers
    def _select_layers(self, attn1: Sequence[Tensor], attn2: Sequence[Tensor]):
        name = type(self).__name__
        if len(attn1) != len(attn2):
            raise ValueError(
                f'{name}: view 1 has {len(attn1)} attention maps, view 2 has '
                f'{len(attn2)}'
            )
        if len(attn1) == 0:
            raise ValueError(f'{name}: no attention maps were given')
        if self.layers is None:
            return list(range(len(attn1)))
        for i in self.layers:
            if not -len(attn1) <= i < len(attn1):
                raise IndexError(
                    f'{name}: layer index {i} out of range for {len(attn1)} '
                    'captured attention maps'
                )
        return self.layers

    def _check_layer(
        self, a1: Tensor, a2: Tensor, alignment: TokenAlignment, layer: int
    ) -> None:
        name = type(self).__name__
        p = self.num_prefix_tokens
        for view, a, n in (
            (1, a1, alignment.num_tokens1),
            (2, a2, alignment.num_tokens2),
        ):
            if a.dim() not in (3, 4) or tuple(a.shape[-2:]) != (p + n, p + n):
                raise ValueError(
                    f'{name}: view-{view} attention of layer {layer} has shape '
                    f'{tuple(a.shape)}, expected (B, [H,] {p + n}, {p + n}) = '
                    f'{p} prefix + {n} patch tokens of grid '
                    f'{alignment.grid1 if view == 1 else alignment.grid2}'
                )
        if a1.shape[:-2] != a2.shape[:-2]:
            raise ValueError(
                f'{name}: layer {layer} batch/head dims differ between views: '
                f'{tuple(a1.shape[:-2])} vs {tuple(a2.shape[:-2])}'
            )

    def _detach(self, x1: AttentionRecord, x2: AttentionRecord):
        """Both inputs, the ``stop_grad`` view detached."""
        if self.stop_grad == 'view1':
            x1 = x1.detach()
        elif self.stop_grad == 'view2':
            x2 = x2.detach()
        return x1, x2

    def _cam_values(
        self,
        cams1: Optional[Tensor],
        cams2: Optional[Tensor],
        alignment: TokenAlignment,
    ) -> Tensor:
        name = type(self).__name__
        if cams1 is None or cams2 is None:
            raise ValueError(f'{name}: cam_weight > 0 needs cams1 and cams2')
        if cams1.dim() != 4 or tuple(cams1.shape[-2:]) != alignment.grid1:
            raise ValueError(
                f'{name}: cams1 {tuple(cams1.shape)} must be (B, C, '
                f'{alignment.grid1[0]}, {alignment.grid1[1]})'
            )
        if cams2.dim() != 4 or tuple(cams2.shape[-2:]) != alignment.grid2:
            raise ValueError(
                f'{name}: cams2 {tuple(cams2.shape)} must be (B, C, '
                f'{alignment.grid2[0]}, {alignment.grid2[1]})'
            )
        if cams1.shape[:2] != cams2.shape[:2]:
            raise ValueError(
                f'{name}: cams1 {tuple(cams1.shape)} and cams2 '
                f'{tuple(cams2.shape)} differ in batch or class dims'
            )
        c1, c2 = self._detach(cams1, cams2)
        c1 = normalize_cams(c1)
        c2 = align_maps(normalize_cams(c2), alignment)
        valid = None if alignment.valid is None else alignment.valid_mask(c1.device)
        return cam_term(c1, c2, valid)

    def _efficient_layer(
        self,
        r1: QueryKeyPair,
        r2: QueryKeyPair,
        alignment: TokenAlignment,
        values: Dict[str, List[Tensor]],
        entropies: List[List[Tensor]],
        plans: Dict[tuple, AlignmentPlan],
    ) -> None:
        """One layer of (q, k) records by chunked recomputation."""
        p = self.num_prefix_tokens
        if 'entropy' in values:
            for view, pair in enumerate((r1, r2)):
                entropies[view].append(qk_patch_row_entropy(*pair, p, self.chunk_size))
        terms = tuple(t for t in ('cls', 'aff') if t in values)
        if not terms:
            return
        q1 = r1.q
        dtype = compute_dtype(q1)
        key = (q1.device, dtype)
        if key not in plans:
            plans[key] = make_plan(alignment, p, self.chunk_size, q1.device, dtype)
        cls, aff = chunked_consistency_terms(
            *r1,
            *r2,
            alignment,
            num_prefix=p,
            terms=terms,
            head_average=self.head_average,
            distance=self.distance,
            beta=self.beta,
            chunk_size=self.chunk_size,
            plan=plans[key],
            grad_mode=self.grad_mode,
            grad_weights=(self.cls_weight, self.aff_weight),
        )
        if cls is not None:
            values['cls'].append(cls)
        if aff is not None:
            values['aff'].append(aff)

    def _reduce(self, per_sample: Tensor, reduction: str) -> Tensor:
        if reduction == 'mean':
            return per_sample.mean()
        if reduction == 'sum':
            return per_sample.sum()
        return per_sample

    # ------------------------------------------------------------ forward
    def forward_terms(
        self,
        attn1: Sequence[Tensor],
        attn2: Sequence[Tensor],
        alignment: TokenAlignment,
        cams1: Optional[Tensor] = None,
        cams2: Optional[Tensor] = None,
        reduction_override: Optional[str] = None,
    ) -> Dict[str, Tensor]:
        """Each enabled term, weighted by ``loss_weight`` and its own weight.

        Args:
            attn1 (list[Tensor | tuple]): View-1 records per layer:
                post-softmax attention ``(B, H, P + N1, P + N1)`` (or
                ``(B, ...)`` without heads) or ``(q * scale, k)`` pairs
                ``(B, H, P + N1, d)``.
            attn2 (list[Tensor | tuple]): View-2 records, ``P + N2`` tokens.
            alignment (TokenAlignment): View-2 -> view-1 token alignment.
            cams1 (Tensor, optional): ``(B, C, h1, w1)`` view-1 CAMs (CAM
                term only; mask absent classes beforehand if wanted).
            cams2 (Tensor, optional): ``(B, C, h2, w2)`` view-2 CAMs.
            reduction_override (str, optional): Overrides ``reduction``.

        Returns:
            dict[str, Tensor]: ``{loss_name}_cls``, ``_aff``, ``_cam``,
            ``_entropy`` for the enabled terms; their sum is :meth:`forward`.
        """
        reduction = reduction_override or self.reduction
        if reduction not in REDUCTIONS:
            raise ValueError(f'reduction_override must be one of {REDUCTIONS}')
        enabled = self.enabled_terms
        p = self.num_prefix_tokens
        values: Dict[str, List[Tensor]] = {t: [] for t in enabled if t != 'cam'}
        valid = alignment.valid
        entropies: List[List[Tensor]] = [[], []]
        plans: Dict[tuple, AlignmentPlan] = {}  # one per device/dtype
        for layer in self._select_layers(attn1, attn2):
            a1, a2 = attn1[layer], attn2[layer]
            qk1, qk2 = is_query_key_record(a1), is_query_key_record(a2)
            if qk1 and qk2 and self.route == 'efficient':
                a1, a2 = check_view_pair(
                    a1,
                    a2,
                    p,
                    (alignment.num_tokens1, alignment.num_tokens2),
                    f' of layer {layer}',
                )
                a1, a2 = self._detach(a1, a2)
                self._efficient_layer(a1, a2, alignment, values, entropies, plans)
                continue
            # naive route: materialise the probabilities of (q, k) records
            a1 = probs_from_qk(*a1) if qk1 else a1
            a2 = probs_from_qk(*a2) if qk2 else a2
            self._check_layer(a1, a2, alignment, layer)
            a1, a2 = self._detach(a1, a2)
            if 'entropy' in values:
                entropies[0].append(patch_row_entropy(a1, p))
                entropies[1].append(patch_row_entropy(a2, p))
            if not ('cls' in values or 'aff' in values):
                continue
            if self.head_average and a1.dim() == 4:
                a1, a2 = a1.mean(1), a2.mean(1)
            a2 = align_attention(a2, alignment, p)
            if 'cls' in values:
                values['cls'].append(
                    class_row_term(a1, a2, p, valid, self.distance, self.beta)
                )
            if 'aff' in values:
                values['aff'].append(
                    affinity_term(a1, a2, p, valid, self.distance, self.beta)
                )
        per_sample: Dict[str, Tensor] = {}
        for term in ('cls', 'aff'):
            if term in values:
                per_sample[term] = torch.stack(values[term]).mean(0)
        if 'cam' in enabled:
            per_sample['cam'] = self._cam_values(cams1, cams2, alignment)
        if 'entropy' in values:
            cap = self.entropy_cap
            e1 = torch.stack(entropies[0]).mean(0)
            e2 = torch.stack(entropies[1]).mean(0)
            per_sample['entropy'] = 0.5 * ((e1 - cap).relu() + (e2 - cap).relu())
        weights = dict(
            cls=self.cls_weight,
            aff=self.aff_weight,
            cam=self.cam_weight,
            entropy=self.entropy_weight,
        )
        return {
            f'{self.loss_name}_{term}': self.loss_weight
            * weights[term]
            * self._reduce(per_sample[term], reduction)
            for term in enabled
        }

    def forward(
        self,
        attn1: Sequence[Tensor],
        attn2: Sequence[Tensor],
        alignment: TokenAlignment,
        cams1: Optional[Tensor] = None,
        cams2: Optional[Tensor] = None,
        reduction_override: Optional[str] = None,
        **kwargs,
    ) -> Tensor:
        """Weighted total: the sum of :meth:`forward_terms`."""
        terms = self.forward_terms(
            attn1, attn2, alignment, cams1, cams2, reduction_override
        )
        return sum(terms.values())
