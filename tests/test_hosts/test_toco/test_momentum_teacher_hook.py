"""MomentumTeacherHook's timing against ToCo's (Ru et al., CVPR 2023).

ToCo starts the teacher projection head as a copy of the student and moves it
(``t <- 0.9 t + 0.1 s`` per parameter) at the start of every iteration, just
before the teacher forward of that iteration. The hook moves it after each
optimiser step (``after_train_iter``). Both give the same teacher at every
iteration: ToCo's first move is from a copy of the student (a no-op up to
rounding) and every later one uses the student after the previous step, which
is the student the hook uses right after that step.
"""

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from mmengine.hooks import CheckpointHook
from mmengine.runner import get_priority
from torch import nn

from acr_plugin.hosts.toco import CTCProjectionHead, MomentumTeacherHook

MOMENTUM = 0.9


def _model(seed=0):
    torch.manual_seed(seed)
    head = CTCProjectionHead(
        in_channels=8, hidden_channels=16, bottleneck_channels=4, out_channels=6
    )
    head.init_weights()  # student initialised, teacher = copy of the student
    model = nn.ModuleDict(dict(backbone=nn.Linear(8, 8), ctc_head=head))
    return model.double()


def _batches(num, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(4, 8, generator=gen, dtype=torch.float64),  # "global"
            torch.randn(4, 8, generator=gen, dtype=torch.float64),  # "local"
        )
        for _ in range(num)
    ]


def _loss(model, global_view, local_view):
    """Student on the local view, teacher on the global view (both through
    the trainable backbone): a DINO-style cross-entropy, so the student (head
    and backbone) changes at every step. Returns the loss and the teacher's
    output."""
    head = model['ctc_head']
    teacher = head.forward_teacher(model['backbone'](global_view))
    student = head(model['backbone'](local_view))
    target = (teacher / 0.1).softmax(dim=-1)
    loss = -(target * F.log_softmax(student / 0.1, dim=-1)).sum(-1).mean()
    return loss + student.pow(2).mean(), teacher


def _reference_ema(head):
    """ToCo's update, written out: ``t <- m t + (1 - m) s`` per parameter."""
    with torch.no_grad():
        for t, s in zip(head.teacher.parameters(), head.student.parameters()):
            t.copy_(MOMENTUM * t + (1.0 - MOMENTUM) * s)


def _run_reference(model, batches):
    """Way A (ToCo): update the teacher at the start of the iteration, before
    the teacher forward; then the loss and one SGD step."""
    optim = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], 0.5)
    teachers = []
    for global_view, local_view in batches:
        _reference_ema(model['ctc_head'])
        loss, teacher = _loss(model, global_view, local_view)
        optim.zero_grad()
        loss.backward()
        optim.step()
        teachers.append(teacher)
    return teachers


def _run_hook(model, batches, loss_calls=1, start_iter=0):
    """Way B (the plug-in): forward with the current teacher, SGD step, then
    ``MomentumTeacherHook.after_train_iter`` on a runner stand-in (the hook
    reads ``runner.model`` only). ``loss_calls=2`` runs the loss twice per step
    with the gradients summed, as ``ACRSegmentor`` does (two views)."""
    optim = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], 0.5)
    hook = MomentumTeacherHook(momentum=MOMENTUM)
    runner = SimpleNamespace(model=model, iter=start_iter)
    hook.before_train(runner)
    teachers = []
    for i, (global_view, local_view) in enumerate(batches):
        runner.iter = start_iter + i
        optim.zero_grad()
        step_teachers = []
        for _ in range(loss_calls):
            loss, teacher = _loss(model, global_view, local_view)
            (loss / loss_calls).backward()
            step_teachers.append(teacher)
        for teacher in step_teachers[1:]:  # the teacher does not move in a step
            assert torch.equal(teacher, step_teachers[0])
        optim.step()
        hook.after_train_iter(runner, runner.iter, data_batch=None, outputs={})
        teachers.append(step_teachers[0])
    return teachers


def _assert_same(teachers_a, teachers_b, model_a, model_b):
    assert len(teachers_a) == len(teachers_b)
    for it, (a, b) in enumerate(zip(teachers_a, teachers_b)):
        # ToCo's iteration-0 move (0.9 s + 0.1 s) equals s only up to rounding
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14, msg=f'iter {it}')
    for name, p in model_a.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(
                p, model_b.get_parameter(name), rtol=1e-12, atol=1e-14, msg=name
            )


@pytest.mark.parametrize('loss_calls', [1, 2])
def test_hook_gives_the_teacher_of_the_reference_at_every_iteration(loss_calls):
    batches = _batches(5)
    model_a, model_b = _model(), _model()
    for a, b in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(a, b)
    head = model_b['ctc_head']
    for t, s in zip(head.teacher.parameters(), head.student.parameters()):
        assert torch.equal(t, s)  # both ways start with teacher = student
    teachers_a = _run_reference(model_a, batches)
    teachers_b = _run_hook(model_b, batches, loss_calls=loss_calls)
    _assert_same(teachers_a, teachers_b, model_a, model_b)
    # the test is not vacuous: the student moved and so did the teacher
    assert not torch.allclose(teachers_b[0], teachers_b[-1])
    # iteration 0: the teacher output is the initial student's
    initial = _model()
    with torch.no_grad():
        student0 = initial['ctc_head'](initial['backbone'](batches[0][0]))
    torch.testing.assert_close(teachers_b[0], student0, rtol=0, atol=0)


@pytest.mark.parametrize('variant', ['stale_student', 'in_forward_twice'])
def test_other_orders_are_caught(variant):
    """The comparison is sharp enough to see a wrong order: moving the teacher
    after its forward but before the step (it then lags one step behind), or
    keeping ToCo's in-forward move under ACRSegmentor, which runs the loss
    twice per step (the teacher would move twice per step)."""
    batches = _batches(4)
    model_a, model_c = _model(), _model()
    teachers_a = _run_reference(model_a, batches)
    optim = torch.optim.SGD([p for p in model_c.parameters() if p.requires_grad], 0.5)
    teachers_c = []
    for global_view, local_view in batches:
        optim.zero_grad()
        if variant == 'stale_student':
            loss, teacher = _loss(model_c, global_view, local_view)
            _reference_ema(model_c['ctc_head'])
            loss.backward()
        else:
            for _ in range(2):
                _reference_ema(model_c['ctc_head'])
                loss, teacher = _loss(model_c, global_view, local_view)
                (loss / 2).backward()
        optim.step()
        teachers_c.append(teacher)
    # iteration 0 agrees (the teacher is still the initial student) ...
    torch.testing.assert_close(teachers_a[0], teachers_c[0], rtol=1e-12, atol=1e-14)
    # ... then the teacher differs
    assert not torch.allclose(teachers_a[1], teachers_c[1], rtol=1e-6, atol=0)


def test_resume_from_the_state_dict_continues_the_reference():
    """The hook runs before checkpointing (ABOVE_NORMAL), so a checkpoint after
    iteration k holds the teacher for iteration k + 1; loading it into a fresh
    model and hook continues exactly as an uninterrupted ToCo run."""
    hook_priority = get_priority(MomentumTeacherHook().priority)
    assert hook_priority < get_priority(CheckpointHook.priority)
    batches = _batches(6)
    model_a = _model()
    teachers_a = _run_reference(model_a, batches)

    first = _model()
    teachers_b = _run_hook(first, batches[:3])
    state = copy.deepcopy(first.state_dict())
    assert any(key.startswith('ctc_head.teacher.') for key in state)
    resumed = _model(seed=123)  # different init, overwritten by the checkpoint
    resumed.load_state_dict(state)
    # SGD without momentum has no state: the optimiser resumes trivially
    teachers_b += _run_hook(resumed, batches[3:], start_iter=3)
    _assert_same(teachers_a, teachers_b, model_a, resumed)


def test_momentum_teacher_hook_updates_once_per_iteration():
    from acr_plugin.hosts.toco import CTCProjectionHead

    head = CTCProjectionHead(
        in_channels=4, hidden_channels=8, bottleneck_channels=4, out_channels=6
    )
    head.init_weights()
    with torch.no_grad():
        for p in head.student.parameters():
            p.add_(1.0)
    before = [p.clone() for p in head.teacher.parameters()]
    student = [p.clone() for p in head.student.parameters()]
    model = nn.ModuleDict(dict(inner=nn.ModuleDict(dict(head=head))))
    hook = MomentumTeacherHook(momentum=0.9)
    runner = SimpleNamespace(model=model, iter=0)
    hook.before_train(runner)
    hook.after_train_iter(runner, 0)
    for t0, s, t1 in zip(before, student, head.teacher.parameters()):
        torch.testing.assert_close(t1, 0.9 * t0 + 0.1 * s)


def test_hook_refuses_models_without_the_method():
    runner = SimpleNamespace(model=nn.Linear(2, 2), iter=0)
    with pytest.raises(TypeError, match='momentum_update'):
        MomentumTeacherHook().before_train(runner)
    with pytest.raises(ValueError, match='momentum'):
        MomentumTeacherHook(momentum=1.5)
