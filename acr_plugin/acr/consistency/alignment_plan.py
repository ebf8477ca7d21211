"""How the chunked consistency visits the rows of two views' attention.

:func:`make_plan` resolves a :class:`~acr_plugin.acr.views.TokenAlignment`
into an :class:`AlignmentPlan`: token orders that make every chunk of aligned
rows a slice of both views (an injective perm) or a resampling matrix that
mixes view-2 rows and columns (bilinear rescale, repeating perm).
:func:`iter_row_chunks` then yields the :class:`RowChunk` s of the class-row
and affinity terms, and :func:`add_row_sums` splits per-row values of a chunk
between the two terms.
"""

from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

import torch
from torch import Tensor

from acr_plugin.acr.views.token_alignment import TokenAlignment

#: terms computed by the chunked consistency
CONSISTENCY_TERMS = ('cls', 'aff')
#: default number of query rows recomputed at a time
DEFAULT_CHUNK_SIZE = 64

#: resampling matrices sparser than this are applied as sparse tensors
_SPARSE_DENSITY = 0.1


@dataclass
class AlignmentPlan:
    """How the chunk loop visits rows and columns (see :func:`make_plan`).

    Tokens of each view are reordered once (an ``O(T d)`` gather of ``q`` and
    ``k``) so that every chunk is a slice: view 1 puts its ``Nv`` valid patch
    tokens right after the prefix; for an injective perm, view 2 puts the
    counterpart of each valid view-1 patch at the same place, so aligned
    rows *and* columns are the slice ``[P, P + Nv)`` of both views.
    Softmax rows are invariant to a reordering of the keys (the extra,
    unmatched view-2 keys of a crop stay in the normaliser). Otherwise (a
    resampling matrix, or a perm that repeats view-2 tokens) view 2 keeps
    its order and is mixed by ``matrix``.

    Args:
        num_prefix (int): Prefix tokens ``P``.
        num_tokens1 (int): View-1 patch tokens ``N1``.
        num_tokens2 (int): View-2 patch tokens ``N2``.
        num_valid (int): Compared view-1 patch tokens ``Nv``.
        chunk_size (int): Rows per chunk.
        order1 (Tensor, optional): Long ``(P + N1,)`` view-1 token order;
            None keeps the order (every patch valid).
        order2 (Tensor, optional): Long ``(P + N2,)`` view-2 token order
            (perm mode); None keeps the order.
        matrix (Tensor, optional): ``(Nv, N2)`` resampling rows of the valid
            view-1 patches (matrix mode).
        matrix_sparse (Tensor, optional): Sparse copy of ``matrix``.
        ranges2 (list, optional): Matrix mode: per patch-row chunk, the
            ``[lo, hi)`` range of view-2 patches its rows draw from.
    """

    num_prefix: int
    num_tokens1: int
    num_tokens2: int
    num_valid: int
    chunk_size: int
    order1: Optional[Tensor] = None
    order2: Optional[Tensor] = None
    matrix: Optional[Tensor] = None
    matrix_sparse: Optional[Tensor] = None
    ranges2: Optional[List[Tuple[int, int]]] = None

    @property
    def mode(self) -> str:
        """``'perm'`` (pure slicing) or ``'matrix'`` (mixing by R)."""
        return 'perm' if self.matrix is None else 'matrix'


def _order_with_first(first: Tensor, num_prefix: int, num_tokens: int) -> Tensor:
    """``[prefix, P + first, P + (the other patches, ascending)]``."""
    rest = torch.ones(num_tokens, dtype=torch.bool)
    rest[first] = False
    return torch.cat(
        [
            torch.arange(num_prefix),
            num_prefix + first,
            num_prefix + rest.nonzero().squeeze(1),
        ]
    )


def make_plan(
    alignment: TokenAlignment,
    num_prefix: int,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    device: Optional[torch.device] = None,
    dtype: torch.dtype = torch.float32,
) -> AlignmentPlan:
    """Resolve an alignment into the orders and chunks of the computation.

    Args:
        alignment (TokenAlignment): View-2 -> view-1 token alignment.
        num_prefix (int): Prefix tokens ``P``.
        chunk_size (int): Rows per chunk. Defaults to 64.
        device (torch.device, optional): Device of the records.
        dtype (torch.dtype): Dtype of a resampling matrix. Defaults to
            float32.

    Returns:
        AlignmentPlan: The plan (index tensors on ``device``).

    Raises:
        ValueError: If no view-1 patch token is valid.
    """
    p, n1, n2 = int(num_prefix), alignment.num_tokens1, alignment.num_tokens2
    valid = alignment.valid_mask(torch.device('cpu'))
    if not bool(valid.any()):
        raise ValueError('valid mask selects no patch token: the views do not overlap')
    valid_idx = valid.nonzero().squeeze(1)
    num_valid = valid_idx.numel()
    order1 = None if num_valid == n1 else _order_with_first(valid_idx, p, n1)
    plan = AlignmentPlan(p, n1, n2, num_valid, int(chunk_size))
    if order1 is not None:
        plan.order1 = order1.to(device)
    if alignment.perm is not None:
        perm = alignment.perm.cpu()[valid_idx]
        if perm.unique().numel() == num_valid:
            if not torch.equal(perm, torch.arange(n2)):
                plan.order2 = _order_with_first(perm, p, n2).to(device)
            return plan
        matrix = torch.zeros(num_valid, n2, dtype=torch.float64)
        matrix[torch.arange(num_valid), perm] = 1.0
    else:
        matrix = alignment.matrix.detach().cpu()[valid_idx]
    nonzero = matrix.ne(0)
    ranges = []
    for start in range(0, num_valid, plan.chunk_size):
        cols = nonzero[start : start + plan.chunk_size].any(0).nonzero().squeeze(1)
        if cols.numel() == 0:  # all-zero rows: any one view-2 row does
            ranges.append((0, 1))
        else:
            ranges.append((int(cols.min()), int(cols.max()) + 1))
    plan.ranges2 = ranges
    plan.matrix = matrix.to(device=device, dtype=dtype)
    device_type = plan.matrix.device.type
    if device_type in ('cpu', 'cuda') and nonzero.float().mean() < _SPARSE_DENSITY:
        plan.matrix_sparse = plan.matrix.to_sparse().coalesce()
    return plan


@dataclass
class RowChunk:
    """One chunk of compared rows (in the plan's token orders).

    The first ``num_cls`` rows are prefix rows (class-row term), the others
    patch rows (affinity term); a chunk may hold both in perm mode.

    Args:
        rows1 (slice): View-1 rows.
        rows2 (slice): View-2 rows whose probabilities are needed.
        num_cls (int): Leading rows that belong to the class-row term.
        mix (Tensor, optional): Matrix mode, patch rows: ``(r1, r2)``
            row-mixing weights; None: view-2 row ``j`` of ``rows2`` is
            aligned row ``j``.
    """

    rows1: slice
    rows2: slice
    num_cls: int
    mix: Optional[Tensor] = None

    @property
    def num_rows(self) -> int:
        """Compared rows in the chunk."""
        return self.rows1.stop - self.rows1.start


def iter_row_chunks(plan: AlignmentPlan, terms: Tuple[str, ...]) -> Iterator[RowChunk]:
    """Chunks of the prefix rows (class-row term) and valid patch rows.

    Perm mode walks the rows ``[0, P + Nv)`` (or the part that ``terms``
    needs) in slices of ``chunk_size``; matrix mode visits the prefix rows
    on their own first, then chunks of patch rows with their mixing weights.

    Args:
        plan (AlignmentPlan): From :func:`make_plan`.
        terms (tuple[str]): Subset of :data:`CONSISTENCY_TERMS`.

    Yields:
        RowChunk: One chunk at a time.
    """
    p, size = plan.num_prefix, plan.chunk_size
    first = 0 if 'cls' in terms else p
    last = p + plan.num_valid if 'aff' in terms else p
    if plan.mode == 'perm':
        for start in range(first, last, size):
            rows = slice(start, min(last, start + size))
            yield RowChunk(rows, rows, max(0, min(rows.stop, p) - start))
        return
    for start in range(first, min(p, last), size):
        rows = slice(start, min(p, start + size))
        yield RowChunk(rows, rows, rows.stop - start)
    if 'aff' in terms:
        for i, start in enumerate(range(0, plan.num_valid, size)):
            stop = min(plan.num_valid, start + size)
            lo, hi = plan.ranges2[i]
            mix = plan.matrix[start:stop, lo:hi]
            yield RowChunk(slice(p + start, p + stop), slice(p + lo, p + hi), 0, mix)


def add_row_sums(per_row: Tensor, chunk: RowChunk, sums: dict) -> None:
    """Add per-row values ``(B, r)`` of a chunk to the ``'cls'`` / ``'aff'`` sums.

    Out of place, so that it serves differentiable (checkpointed) chunks too.
    """
    k = chunk.num_cls
    if k:
        sums['cls'] = sums['cls'] + per_row[:, :k].sum(1)
    if k < chunk.num_rows:
        sums['aff'] = sums['aff'] + per_row[:, k:].sum(1)
