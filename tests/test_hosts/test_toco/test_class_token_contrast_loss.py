"""ClassTokenContrastLoss and class_token_contrast vs a naive loop reference."""

import math

import pytest
import torch
from mmseg.registry import MODELS

from acr_plugin.hosts.toco import class_token_contrast
from tests.samples import gen


# --------------------------------------------------------------------- CTC
def ctc_reference(student, teacher, positive, temperature, eps=1e-4):
    """Per image, per teacher view, per student loops on python floats: the raw
    dot products of ToCo."""
    s_all, t_all, p_all = student.tolist(), teacher.tolist(), positive.tolist()
    total = 0.0
    for s_img, t_img, p_img in zip(s_all, t_all, p_all):
        loss = 0.0
        for t in t_img:
            e = [
                math.exp(sum(a * b for a, b in zip(t, s)) / temperature) for s in s_img
            ]
            neg = sum(ek for ek, p in zip(e, p_img) if not p)
            for ek, p in zip(e, p_img):
                if p:
                    loss += -math.log(ek / (ek + neg + eps))
            loss += -math.log(1 / (1 + neg + eps))
        total += loss / (2 * (sum(p_img) + eps))
    return total / len(s_all)


def _ctc_students(seed=10, batch=3, num_local=5, width=6):
    """Students as ToCo lays them out: 2 global views (always positive)
    followed by the local crops."""
    student = torch.randn(batch, 2 + num_local, width, generator=gen(seed))
    local = torch.randint(0, 2, (batch, num_local), generator=gen(seed + 1)).bool()
    local[0] = False  # an image with only negative crops
    positive = torch.cat([torch.ones(batch, 2, dtype=torch.bool), local], dim=1)
    return student.double(), positive


@pytest.mark.parametrize('temperature', [0.5, 1.0])
def test_ctc_matches_loop_reference(temperature):
    student, positive = _ctc_students()
    teacher = torch.randn(3, 2, 6, generator=gen(11), dtype=torch.float64)
    value = class_token_contrast(student, teacher, positive, temperature)
    ref = ctc_reference(student, teacher, positive, temperature)
    assert abs(value.item() - ref) < 1e-12 * max(1.0, abs(ref))


def test_ctc_raw_dot_products_not_cosine():
    student, positive = _ctc_students(seed=20)
    teacher = torch.randn(3, 2, 6, generator=gen(21), dtype=torch.float64)
    raw = class_token_contrast(student, teacher, positive, 0.5)
    # rescaling rows changes the loss: the outputs are not normalised
    scaled = class_token_contrast(3 * student, 0.1 * teacher, positive, 0.5)
    assert abs(scaled.item() - raw.item()) > 1e-3
    built = MODELS.build(dict(type='ClassTokenContrastLoss', loss_weight=1.0))
    torch.testing.assert_close(built(student, teacher, positive), raw)


def test_ctc_edge_cases():
    student = torch.randn(2, 4, 5, generator=gen(12), dtype=torch.float64)
    teacher = torch.randn(2, 2, 5, generator=gen(13), dtype=torch.float64)
    all_pos = torch.ones(2, 4, dtype=torch.bool)  # no negatives
    value = class_token_contrast(student, teacher, all_pos, 0.5)
    assert abs(value.item() - ctc_reference(student, teacher, all_pos, 0.5)) < 1e-12
    # an image without any positive student is an impossible input for ToCo
    # (its global views are positives): an error, not a 1 / eps blow-up
    some_pos = all_pos.clone()
    some_pos[1] = False
    with pytest.raises(ValueError, match=r'positive student.*\[1\]'):
        class_token_contrast(student, teacher, some_pos, 0.5)


def test_ctc_gradient_reaches_student_only():
    student = torch.randn(2, 3, 4, generator=gen(14), requires_grad=True)
    teacher = torch.randn(2, 2, 4, generator=gen(15), requires_grad=True)
    positive = torch.tensor([[1, 0, 1], [1, 1, 0]], dtype=torch.bool)
    loss = MODELS.build(dict(type='ClassTokenContrastLoss'))
    loss(student, teacher, positive).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_ctc_module_weight_and_errors():
    loss = MODELS.build(dict(type='ClassTokenContrastLoss', temperature=1.0))
    assert loss.loss_name == 'loss_ctc' and loss.loss_weight == 0.5
    student = torch.randn(2, 3, 4, generator=gen(16))
    teacher = torch.randn(2, 2, 4, generator=gen(17))
    positive = torch.tensor([[1, 0, 1], [1, 1, 0]], dtype=torch.bool)
    raw = class_token_contrast(student, teacher, positive, 1.0)
    torch.testing.assert_close(loss(student, teacher, positive), 0.5 * raw)
    loss.loss_weight = 2.0
    torch.testing.assert_close(loss(student, teacher, positive), 2.0 * raw)
    with pytest.raises(ValueError, match='loss_'):
        MODELS.build(dict(type='ClassTokenContrastLoss', loss_name='ctc'))
    with pytest.raises(ValueError, match='temperature'):
        MODELS.build(dict(type='ClassTokenContrastLoss', temperature=0.0))
    with pytest.raises(ValueError, match='student'):
        loss(student[0], teacher, positive)
    with pytest.raises(ValueError, match='teacher'):
        loss(student, teacher[..., :3], positive)
    with pytest.raises(ValueError, match='positive'):
        loss(student, teacher, positive[:, :2])
    with pytest.raises(ValueError, match='positive'):
        loss(student, teacher, positive.long())
