"""Pure operations on attention probabilities."""

import math

import pytest
import torch

from acr_plugin.acr.attention.attention_ops import attention_entropy, head_average


def test_entropy_and_head_average():
    uniform = torch.full((2, 3, 4, 6), 1 / 6)
    torch.testing.assert_close(attention_entropy(uniform), torch.ones(2))
    one_hot = torch.zeros(2, 3, 4, 6)
    one_hot[..., 2] = 1
    torch.testing.assert_close(attention_entropy(one_hot), torch.zeros(2))
    torch.testing.assert_close(attention_entropy(head_average(uniform)), torch.ones(2))
    # un-normalised entropy of uniform rows is log(M)
    torch.testing.assert_close(
        attention_entropy(uniform, normalized=False), torch.full((2,), math.log(6))
    )
    # mean over heads and rows of a mixed tensor
    mixed = torch.cat([uniform[:, :1], one_hot[:, :1]], dim=1)
    torch.testing.assert_close(attention_entropy(mixed), torch.full((2,), 0.5))
    torch.testing.assert_close(head_average(mixed), mixed.sum(1) / 2)
    with pytest.raises(ValueError, match='heads'):
        head_average(uniform[0])
