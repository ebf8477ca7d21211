"""NonFiniteLossHook: a non-finite loss stops the run before the update."""

import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmseg.registry import HOOKS, MODELS

from acr_plugin.engine.hooks import NonFiniteLossHook
from acr_plugin.engine.hooks.non_finite_loss_hook import (
    describe_non_finite_loss,
    non_finite_losses,
)
from tests.scripts import ROOT
from tests.synthetic_runs import tiny_synthetic_cfg

ACR = osp.join(ROOT, 'configs/acr/acr_vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py')


# ------------------------------------------------------- non-finite loss
def test_non_finite_loss_message_names_keys():
    log_vars = dict(
        loss=torch.tensor(float('nan')),
        loss_cls=torch.tensor(0.7),
        loss_acr_aff=torch.tensor(float('nan')),
        loss_acr_cls=torch.tensor(float('inf')),
        acr_attn_entropy=torch.tensor(float('nan')),  # diagnostic, not summed
    )
    bad = non_finite_losses(log_vars)
    assert list(bad) == ['loss_acr_aff', 'loss_acr_cls']
    message = describe_non_finite_loss(
        log_vars, iteration=7, max_iters=10, rank=1, world_size=2, img_paths=['a.jpg']
    )
    assert 'iteration 7/10 on rank 1' in message
    assert 'loss_acr_aff=nan, loss_acr_cls=inf' in message
    assert 'loss_cls=0.7' in message and 'a.jpg' in message
    overflow = dict(loss=torch.tensor(float('inf')), loss_a=torch.tensor(3e38))
    assert 'overflowed' in describe_non_finite_loss(overflow, iteration=1)


class _Snapshot(Hook):
    """Copy the weights before a given iteration (0-based)."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.weights = None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.at:
            self.weights = copy.deepcopy(runner.model.state_dict())


@pytest.mark.slow
def test_non_finite_acr_term_stops_before_the_update(tmp_path):
    cfg = tiny_synthetic_cfg(ACR, str(tmp_path), iters=3, num_train=8, num_val=4)
    cfg.train_dataloader.batch_size = 4
    cfg.experiment_name = 'non_finite_loss'
    assert cfg.default_hooks.non_finite_loss.type == 'NonFiniteLossHook'
    runner = Runner.from_cfg(cfg)
    assert any(isinstance(hook, NonFiniteLossHook) for hook in runner.hooks)
    snapshot = _Snapshot(at=1)
    runner.register_hook(snapshot)
    acr_loss = runner.model.acr_loss
    forward_terms = acr_loss.forward_terms
    calls = []

    def poisoned(*args, **kwargs):
        terms = forward_terms(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # the second iteration
            terms['loss_acr_aff'] = terms['loss_acr_aff'] * float('nan')
        return terms

    acr_loss.forward_terms = poisoned
    with pytest.raises(FloatingPointError) as info:
        runner.train()
    message = str(info.value)
    assert 'iteration 2/3' in message and 'loss_acr_aff=nan' in message
    assert 'loss_cls=' in message  # the finite terms are listed too
    # no update was computed from the nan loss: weights and optimiser state
    # are those after iteration 1
    assert snapshot.weights is not None
    for name, value in runner.model.state_dict().items():
        assert torch.equal(value, snapshot.weights[name]), name
    steps = {
        int(state['step']) for state in runner.optim_wrapper.optimizer.state.values()
    }
    assert steps == {1}
    assert not osp.exists(tmp_path / 'iter_3.pth')


def test_hook_restores_parse_losses():
    model = MODELS.build(Config.fromfile(ACR).model.to_dict())

    class FakeRunner:
        iter = 0
        max_iters = 1

    FakeRunner.model = model
    hook = HOOKS.build(dict(type='NonFiniteLossHook'))
    hook.before_train(FakeRunner)
    hook.before_train(FakeRunner)  # a second train() does not stack wrappers
    wrapped = model.parse_losses
    assert wrapped.__wrapped__.__func__ is type(model).parse_losses
    loss, _ = model.parse_losses(dict(loss_a=torch.tensor(1.0)))
    assert loss == 1.0
    with pytest.raises(FloatingPointError, match='iteration 1/1: loss_a=inf'):
        model.parse_losses(dict(loss_a=torch.tensor(float('inf'))))
    hook.after_train(FakeRunner)
    assert 'parse_losses' not in model.__dict__
