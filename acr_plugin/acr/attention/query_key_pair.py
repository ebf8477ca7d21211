"""The ``(q, k)`` record of one attention layer and its single shape check.

``AttentionCapture(mode='qk')`` records, per layer, the scaled queries and
the keys, ``softmax(q @ k^T)`` being the layer's attention. The capture, the
consistency loss and the chunked consistency all take these records as a
:class:`QueryKeyPair` (plain ``(q, k)`` tuples are accepted and converted) and
check their shapes with :meth:`QueryKeyPair.check` / :func:`check_view_pair`.
"""

from typing import NamedTuple, Optional, Sequence, Tuple, Union

from torch import Tensor


class QueryKeyPair(NamedTuple):
    """Scaled queries and keys of one attention layer.

    A tuple, so ``q, k = pair`` and ``probs_from_qk(*pair)`` work.

    Args:
        q (Tensor): Scaled queries ``q * scale`` ``(B, heads, T, head_dim)``.
        k (Tensor): Keys ``(B, heads, T', head_dim)`` (``T' = T`` for
            self-attention).
    """

    q: Tensor
    k: Tensor

    @classmethod
    def of(cls, record: Sequence[Tensor]) -> 'QueryKeyPair':
        """The pair of a ``(q, k)`` tuple or list (a pair is returned as is)."""
        if isinstance(record, cls):
            return record
        if not is_query_key_record(record):
            raise ValueError(
                f'a (q, k) record must be a pair of tensors, got {type(record)}'
            )
        return cls(record[0], record[1])

    def detach(self) -> 'QueryKeyPair':
        """Both tensors detached."""
        return QueryKeyPair(self.q.detach(), self.k.detach())

    def check(
        self,
        num_tokens: Optional[int] = None,
        what: str = '(q, k) record',
        tokens_hint: str = '',
    ) -> 'QueryKeyPair':
        """Raise a ``ValueError`` naming ``what`` unless the shapes fit.

        ``q`` and ``k`` must be 4-D with the same batch, heads and head_dim;
        with ``num_tokens`` both must also have exactly that many tokens.

        Args:
            num_tokens (int, optional): Required tokens of ``q`` and ``k``.
                Defaults to None (any, may differ).
            what (str): How the error names the record. Defaults to
                ``'(q, k) record'``.
            tokens_hint (str): Appended to the expected shape in the error
                when ``num_tokens`` is given (e.g. ``' = 1 prefix + 9 patch
                tokens'``).

        Returns:
            QueryKeyPair: ``self``.
        """
        q, k = self.q, self.k
        fits = (
            q.dim() == 4
            and k.dim() == 4
            and q.shape[:2] == k.shape[:2]
            and q.shape[-1] == k.shape[-1]
        )
        if num_tokens is not None:
            fits = fits and q.shape[2] == k.shape[2] == num_tokens
        if not fits:
            tokens, hint = (
                ('T', '') if num_tokens is None else (num_tokens, tokens_hint)
            )
            raise ValueError(
                f'{what} has shapes q {tuple(q.shape)} / k {tuple(k.shape)}, '
                f'expected both (B, H, {tokens}, head_dim){hint}'
            )
        return self


#: one captured layer: probabilities ``(B, heads, N, N)`` or a ``(q, k)`` pair
AttentionRecord = Union[Tensor, QueryKeyPair]


def is_query_key_record(record: Union[Tensor, Sequence[Tensor]]) -> bool:
    """Whether a captured record is a ``(q, k)`` pair (not probabilities)."""
    return isinstance(record, (tuple, list)) and len(record) == 2


def check_view_pair(
    record1: Sequence[Tensor],
    record2: Sequence[Tensor],
    num_prefix: int,
    num_patches: Tuple[int, int],
    where: str = '',
) -> Tuple[QueryKeyPair, QueryKeyPair]:
    """Check the ``(q, k)`` records of one layer of two views.

    Each view's ``q`` and ``k`` must be ``(B, H, P + N_v, head_dim)``, and the
    views must agree in batch, heads and head_dim.

    Args:
        record1 (QueryKeyPair | tuple): View-1 record.
        record2 (QueryKeyPair | tuple): View-2 record.
        num_prefix (int): Prefix tokens ``P``.
        num_patches (tuple[int, int]): Patch tokens ``(N1, N2)`` of the views.
        where (str): Appended to ``'(q, k) record'`` in errors (e.g.
            ``' of layer 3'``). Defaults to ''.

    Returns:
        tuple[QueryKeyPair, QueryKeyPair]: The two records as pairs.

    Raises:
        ValueError: Naming the view and what does not fit.
    """
    pairs = []
    for view, record, n in ((1, record1, num_patches[0]), (2, record2, num_patches[1])):
        pair = QueryKeyPair.of(record)
        pairs.append(
            pair.check(
                num_prefix + n,
                f'view-{view} (q, k) record{where}',
                f' = {num_prefix} prefix + {n} patch tokens',
            )
        )
    q1, q2 = pairs[0].q, pairs[1].q
    if q1.shape[:2] != q2.shape[:2] or q1.shape[-1] != q2.shape[-1]:
        raise ValueError(
            f'(q, k) records{where}: batch/head dims differ between views: '
            f'{tuple(q1.shape)} vs {tuple(q2.shape)}'
        )
    return pairs[0], pairs[1]
