"""The ACR consistency loss: reference terms and the chunked route.

- ``consistency_terms``: the reference maths on post-softmax attention
  (class rows, affinities, CAM term, entropies, distances);
- ``all_pairs_consistency_loss``: :class:`AllPairsConsistencyLoss`, the
  registered loss;
- ``chunked_consistency``: :func:`chunked_consistency_terms`, the same terms
  from ``(q, k)`` records at fused-attention memory cost, built from
  ``alignment_plan`` (token orders and row chunks), ``chunk_ops`` (per-chunk
  maths), ``chunked_function`` (the autograd function and its backward
  kernels) and ``checkpointed_kl`` (the KL route);
- ``qk_entropy``: attention entropies from ``(q, k)`` records.
"""
