"""The backward of ``ClsTokenGradCAMHead``: gradients of class-slot logits
w.r.t. the captured attention (one vmapped backward or a per-slot loop) and
the check that they reach the class-token rows."""

from typing import List, Optional, Union

import torch
from torch import Tensor


def attention_grads_batched(
    logits: Tensor, inputs: List[Tensor], grad_outputs: Tensor
) -> List[Optional[Tensor]]:
    """Gradients of all class slots in ONE backward (vmap over the slots).

    Args:
        logits (Tensor): ``(N, C)`` image logits.
        inputs (list[Tensor]): Captured attention maps ``(N, heads, T, T)``.
        grad_outputs (Tensor): ``(K, N, C)``, one one-hot row set per slot.

    Returns:
        list: Per input ``(K, N, heads, T, T)`` gradients, or None for an
        input the logits do not depend on.
    """
    return list(
        torch.autograd.grad(
            logits,
            inputs,
            grad_outputs=grad_outputs,
            is_grads_batched=True,
            allow_unused=True,
        )
    )


def attention_grads_looped(
    logits: Tensor, inputs: List[Tensor], grad_outputs: Tensor
) -> List[Optional[Tensor]]:
    """:func:`attention_grads_batched` as ``K`` backward passes through the
    same graph (for ops without vmap support)."""
    per_slot = []
    num_slots = grad_outputs.shape[0]
    for k in range(num_slots):
        per_slot.append(
            torch.autograd.grad(
                logits,
                inputs,
                grad_outputs=grad_outputs[k],
                retain_graph=k < num_slots - 1,
                allow_unused=True,
            )
        )
    grads = []
    for layer in range(len(inputs)):
        items = [slot[layer] for slot in per_slot]
        if all(g is None for g in items):
            grads.append(None)
            continue
        zero = next(g for g in items if g is not None)
        grads.append(
            torch.stack([torch.zeros_like(zero) if g is None else g for g in items])
        )
    return grads


def class_rows_unreached(
    grads: List[Optional[Tensor]],
    rows: Union[int, Tensor],
    layer_ids: List[int],
    start_layer: int,
) -> Optional[str]:
    """Why the logits do not reach the class-token rows, or None if they do.

    The layers are scanned from the last one down to the first whose
    gradient is not all zero; its class rows (``rows``: one int, or a
    ``(K, N)`` table per slot and image) must then get some gradient.

    Args:
        grads (list[Tensor | None]): ``(K, N, heads, T, T)`` per layer.
        rows (int | Tensor): The class-token row(s) read.
        layer_ids (list[int]): Attention-layer index of each gradient.
        start_layer (int): The head's ``start_layer`` (for the message).

    Returns:
        str | None: The reason, or None.
    """
    for layer, grad in reversed(list(zip(layer_ids, grads))):
        if grad is None or not bool(grad.ne(0).any()):
            continue
        if isinstance(rows, int):
            row_grads = grad[..., rows, :]
        else:
            index = rows.view(*rows.shape, 1, 1, 1).expand(
                *rows.shape, grad.shape[2], 1, grad.shape[-1]
            )
            row_grads = grad.gather(-2, index)
        if bool(row_grads.ne(0).any()):
            return None
        return (
            f'the class-token rows get no gradient at layer {layer} (the '
            'last selected layer with any gradient)'
        )
    return f'no attention layer from start_layer={start_layer} on gets any gradient'
