"""WeightsOnlyCheckpointHook (acr_plugin/engine/hooks/weights_only_checkpoint_hook.py):
what it strips from a checkpoint before saving."""

import numpy as np
import torch


def test_weights_only_hook_leaves_the_live_state_alone():
    from acr_plugin.engine.hooks.weights_only_checkpoint_hook import (
        WeightsOnlyCheckpointHook,
    )

    phases = [dict(end_step=3, start_lr='initial_lr')]
    live = dict(anneal_func=np.cos, last_step=3, _schedule_phases=phases)
    checkpoint = dict(param_schedulers=[live], meta=dict(iter=3))
    WeightsOnlyCheckpointHook().before_save_checkpoint(None, checkpoint)
    assert checkpoint['param_schedulers'] == [
        dict(last_step=3, _schedule_phases=phases)
    ]
    assert live['anneal_func'] is np.cos  # the scheduler keeps its function


def test_without_callables_names_every_removed_entry():
    from acr_plugin.engine.hooks.weights_only_checkpoint_hook import (
        without_callables,
    )

    weights = torch.ones(2)
    state = dict(
        a=[dict(fn=len, keep=1), (weights, dict(cls=int, x='y'))],
        b=dict(c=dict(d=print)),
        e=3,
    )
    cleaned, removed = without_callables(state, 'root')
    assert removed == ['root.a.0.fn', 'root.a.1.1.cls', 'root.b.c.d']
    assert cleaned == dict(a=[dict(keep=1), (weights, dict(x='y'))], b=dict(c={}), e=3)
    assert isinstance(cleaned['a'][1], tuple) and cleaned['a'][1][0] is weights
    assert 'fn' in state['a'][0]  # the input is not modified
    assert without_callables(dict(f=len))[1] == ['f']


def test_checkpoint_without_schedulers_is_untouched():
    from acr_plugin.engine.hooks.weights_only_checkpoint_hook import (
        WeightsOnlyCheckpointHook,
    )

    checkpoint = dict(meta=dict(hook=len), state_dict={})
    WeightsOnlyCheckpointHook().before_save_checkpoint(None, checkpoint)
    assert checkpoint == dict(meta=dict(hook=len), state_dict={})
