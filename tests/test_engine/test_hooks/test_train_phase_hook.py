"""TrainPhaseHook: the loss-weight and label-source schedule by iteration."""

from types import SimpleNamespace

import pytest
import torch.nn as nn

from acr_plugin.engine.hooks import TrainPhaseHook, phase_at

PHASES = [
    dict(
        begin=0, loss_weights=dict(loss_seg=0.0, loss_reg=0.0), seg_label_source='aux'
    ),
    dict(begin=8, loss_weights=dict(loss_seg=0.1)),
    dict(begin=12, seg_label_source='final', loss_weights=dict(loss_reg=0.05)),
]


def test_phase_at_merges_phases_in_order():
    assert phase_at(PHASES, 0) == dict(
        loss_weights=dict(loss_seg=0.0, loss_reg=0.0), seg_label_source='aux'
    )
    assert phase_at(PHASES, 7) == phase_at(PHASES, 0)
    assert phase_at(PHASES, 8) == dict(
        loss_weights=dict(loss_seg=0.1, loss_reg=0.0), seg_label_source='aux'
    )
    assert phase_at(PHASES, 100) == dict(
        loss_weights=dict(loss_seg=0.1, loss_reg=0.05), seg_label_source='final'
    )


class Phased(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = []

    def set_train_phase(self, **settings):
        self.calls.append(settings)


class Wrapper(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = Phased()
        self.head = nn.Linear(2, 2)


def test_hook_applies_the_phase_of_the_iteration_also_after_resume():
    model = Wrapper()
    hook = TrainPhaseHook(PHASES)
    runner = SimpleNamespace(model=model, iter=0)
    hook.before_train(runner)
    for it in range(14):
        runner.iter = it
        hook.before_train_iter(runner, it)
    calls = model.model.calls
    assert len(calls) == 3  # applied only when the settings change
    assert calls[-1] == phase_at(PHASES, 13)
    # a resumed run (fresh hook) starts in the phase of its iteration
    resumed = Wrapper()
    hook2 = TrainPhaseHook(PHASES)
    hook2.before_train_iter(SimpleNamespace(model=resumed, iter=9), 0)
    assert resumed.model.calls == [phase_at(PHASES, 9)]


@pytest.mark.parametrize(
    'phases, match',
    [
        ([], 'empty'),
        ([dict(loss_weights={})], 'begin'),
        ([dict(begin=5)], 'begin at 0'),
        ([dict(begin=0), dict(begin=0)], 'increase'),
        ([dict(begin=-1)], '>= 0'),
    ],
)
def test_bad_phases_are_rejected(phases, match):
    with pytest.raises((ValueError, KeyError), match=match):
        TrainPhaseHook(phases)


def test_hooks_refuse_models_without_the_method():
    runner = SimpleNamespace(model=nn.Linear(2, 2), iter=0)
    with pytest.raises(TypeError, match='set_train_phase'):
        TrainPhaseHook([dict(begin=0)]).before_train(runner)
