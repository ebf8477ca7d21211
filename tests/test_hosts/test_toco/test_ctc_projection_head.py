"""CTCProjectionHead: student MLP, fixed-norm last layer, EMA teacher."""

import pytest
import torch
from mmseg.registry import MODELS

SMALL = dict(in_channels=8, hidden_channels=16, bottleneck_channels=4, out_channels=10)


def build(**kwargs):
    cfg = dict(type='CTCProjectionHead', **SMALL)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def inputs(n=5, seed=0):
    return torch.randn(n, 8, generator=torch.Generator().manual_seed(seed))


def student_teacher_pairs(head):
    teacher = dict(head.teacher.named_parameters())
    return [(p, teacher[name]) for name, p in head.student.named_parameters()]


def test_shapes_and_structure():
    head = build()
    x = inputs()
    assert head(x).shape == (5, 10)
    assert head.forward_teacher(x).shape == (5, 10)
    linears = [m for m in head.student['mlp'] if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (8, 16),
        (16, 16),
        (16, 4),
    ]
    gelus = [m for m in head.student['mlp'] if isinstance(m, torch.nn.GELU)]
    assert len(gelus) == 2
    assert head.student['last_layer'].bias is None
    one = build(num_layers=1)
    assert [type(m) for m in one.student['mlp']] == [torch.nn.Linear]
    assert one(x).shape == (5, 10)
    with pytest.raises(ValueError, match='num_layers'):
        build(num_layers=0)


def test_output_is_unit_bottleneck_times_unit_rows():
    head = build()
    x = inputs()
    # manual: MLP -> L2 norm -> rows of v divided by their norms (g = 1)
    mlp_out = head.student['mlp'](x)
    v = head.student['last_layer'].weight
    expected = (mlp_out / mlp_out.norm(dim=1, keepdim=True)) @ (
        v / v.norm(dim=1, keepdim=True)
    ).T
    torch.testing.assert_close(head(x), expected)
    # g is fixed: rescaling the rows of v does not change the output
    before = head(x)
    with torch.no_grad():
        v.mul_(torch.rand(10, 1) * 5 + 0.1)
    torch.testing.assert_close(head(x), before)
    # every output is a cosine: |out| <= 1
    assert head(x).abs().max() <= 1 + 1e-6


def test_teacher_equals_student_after_init():
    torch.manual_seed(0)
    head = build()
    for s, t in student_teacher_pairs(head):
        assert torch.equal(s, t) and s is not t
    head.init_weights()
    for s, t in student_teacher_pairs(head):
        assert torch.equal(s, t)
    x = inputs()
    torch.testing.assert_close(head.forward_teacher(x), head(x))
    # the default init_cfg: truncated normal (std 0.02) weights, zero biases
    first = head.student['mlp'][0]
    assert 0.01 < first.weight.std().item() < 0.03  # not torch's U(+-1/sqrt(8))
    assert torch.equal(first.bias, torch.zeros_like(first.bias))


def test_momentum_update_formula():
    head = build()
    with torch.no_grad():
        for p in head.student.parameters():
            p.add_(torch.randn_like(p))
    before = {n: p.clone() for n, p in head.teacher.named_parameters()}
    student = dict(head.student.named_parameters())
    head.momentum_update(0.9)
    for name, p in head.teacher.named_parameters():
        expected = 0.9 * before[name] + 0.1 * student[name].detach()
        torch.testing.assert_close(p, expected)
        assert not torch.equal(p, student[name])
    head.momentum_update(momentum=0.0)
    for s, t in student_teacher_pairs(head):
        assert torch.equal(s, t)
    with pytest.raises(ValueError, match='momentum'):
        head.momentum_update(1.5)


def test_teacher_is_frozen_and_gets_no_gradient():
    head = build()
    trainable = [p for p in head.parameters() if p.requires_grad]
    teacher_ids = {id(p) for p in head.teacher.parameters()}
    assert trainable and not any(id(p) in teacher_ids for p in trainable)
    assert len(trainable) == len(list(head.student.parameters()))
    x = inputs().requires_grad_(True)
    out = head(x).sum() + head.forward_teacher(x).sum()
    assert not head.forward_teacher(x).requires_grad
    out.backward()
    assert all(p.grad is None for p in head.teacher.parameters())
    assert all(p.grad is not None for p in head.student.parameters())
    optim = torch.optim.SGD(trainable, lr=0.1)
    optim.step()
    # one optimiser step moves the student only
    assert not torch.equal(head(x), head.forward_teacher(x))


def test_state_dict_round_trip():
    head = build()
    with torch.no_grad():
        for p in head.student.parameters():
            p.add_(0.5)
    head.momentum_update(0.5)
    state = head.state_dict()
    assert any(k.startswith('teacher.') for k in state)
    assert any(k.startswith('student.') for k in state)
    other = build()
    other.load_state_dict(state)
    x = inputs(seed=1)
    torch.testing.assert_close(other(x), head(x), rtol=0, atol=0)
    torch.testing.assert_close(
        other.forward_teacher(x), head.forward_teacher(x), rtol=0, atol=0
    )
    assert not any(p.requires_grad for p in other.teacher.parameters())


def test_bad_input_names_x():
    head = build()
    with pytest.raises(ValueError, match='x must be'):
        head(torch.zeros(3, 7))
    with pytest.raises(ValueError, match='x must be'):
        head.forward_teacher(torch.zeros(3, 7))
