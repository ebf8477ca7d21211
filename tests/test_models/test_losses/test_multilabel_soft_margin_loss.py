import pytest
import torch
from mmseg.registry import MODELS


def test_mlsm_equals_torch_reference():
    torch.manual_seed(0)
    logits = torch.randn(5, 7)
    labels = (torch.rand(5, 7) > 0.6).float()
    loss = MODELS.build(dict(type='MultiLabelSoftMarginLoss', loss_weight=2.0))
    expected = torch.nn.MultiLabelSoftMarginLoss()(logits, labels)
    torch.testing.assert_close(loss(logits, labels), 2.0 * expected)
    assert loss.loss_name == 'loss_cls'


def test_mlsm_rejects_bad_names_and_shapes():
    with pytest.raises(ValueError, match='loss_'):
        MODELS.build(dict(type='MultiLabelSoftMarginLoss', loss_name='cls'))
    loss = MODELS.build(dict(type='MultiLabelSoftMarginLoss'))
    with pytest.raises(ValueError, match='same shape'):
        loss(torch.zeros(2, 3), torch.zeros(2, 4))
