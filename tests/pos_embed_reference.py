"""Test helper: an explicit-matrix bicubic resize of a ViT position embedding,
the reference for the backbone and checkpoint-conversion tests."""

import torch


def keys_cubic(t: float, a: float = -0.5) -> float:
    t = abs(t)
    if t < 1:
        return (a + 2) * t**3 - (a + 3) * t**2 + 1
    if t < 2:
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return 0.0


def bicubic_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """``(n_out, n_in)`` PIL-style (antialiased, a=-0.5) bicubic weights."""
    scale = n_in / n_out
    stretch = max(scale, 1.0)
    mat = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        centre = (i + 0.5) * scale
        for j in range(n_in):
            mat[i, j] = keys_cubic((j + 0.5 - centre) / stretch)
        mat[i] /= mat[i].sum()
    return mat


def reference_resize(
    pos_embed: torch.Tensor, old: tuple, new: tuple, num_prefix: int = 1
) -> torch.Tensor:
    """Resize the grid part of ``(1, P + h*w, D)`` with explicit matrices."""
    prefix, grid = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    grid = grid.reshape(old[0], old[1], -1).double()
    grid = torch.einsum(
        'hH,HWd,wW->hwd',
        bicubic_matrix(old[0], new[0]),
        grid,
        bicubic_matrix(old[1], new[1]),
    )
    grid = grid.reshape(1, new[0] * new[1], -1).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)
