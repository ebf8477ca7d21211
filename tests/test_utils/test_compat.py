"""Version shims: checkpoints load where torch / mmengine lack the newer APIs."""

import io
import pickle

import mmengine.runner.checkpoint as mmengine_checkpoint
import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from acr_plugin.models.backbones.checkpoint_loading import load_checkpoint_weights_only
from acr_plugin.utils import compat


@pytest.mark.skipif(
    not hasattr(mmengine_checkpoint, 'get_torch_safe_globals'),
    reason='this mmengine has no list to compare with (upstream <= 0.10.7)',
)
def test_fallback_globals_equal_mmengines_list(monkeypatch):
    newer = set(compat.mmengine_safe_globals())
    assert getattr in set(mmengine_checkpoint.get_torch_safe_globals())
    assert getattr not in newer  # replaced by the checked one
    assert (compat.checkpoint_getattr, 'builtins.getattr') in newer
    monkeypatch.delattr(mmengine_checkpoint, 'get_torch_safe_globals')
    assert set(compat.mmengine_safe_globals()) == newer


def _runner_like_checkpoint(path):
    buffer = HistoryBuffer()
    buffer.update(1.5)
    saved = dict(
        state_dict=dict(w=torch.ones(2)),
        message_hub=dict(buffer=buffer, array=np.arange(3), scalar=np.float64(2.0)),
    )
    torch.save(saved, path)


class _Payload:
    """An arbitrary object: a weights-only load must refuse to build it."""


#: how weights_only_load runs: torch's allow-list (torch >= 2.5) and the
#: restricted unpickler of older torch (forced here by hiding the allow-list)
ROUTES = [
    pytest.param(
        'safe_globals',
        marks=pytest.mark.skipif(
            not hasattr(torch.serialization, 'safe_globals'), reason='torch < 2.5'
        ),
    ),
    'restricted_unpickler',
]


def _route(monkeypatch, route):
    if route == 'restricted_unpickler':
        monkeypatch.delattr(torch.serialization, 'safe_globals', raising=False)


@pytest.mark.parametrize('route', ROUTES)
def test_runner_checkpoint_loads_without_mmengines_list(monkeypatch, tmp_path, route):
    """A checkpoint with numpy objects and a HistoryBuffer (what a runner
    saves) loads weights-only with the fallback list, on either route."""
    path = str(tmp_path / 'runner.pth')
    _runner_like_checkpoint(path)
    monkeypatch.delattr(mmengine_checkpoint, 'get_torch_safe_globals', raising=False)
    _route(monkeypatch, route)
    loaded = load_checkpoint_weights_only(path)
    torch.testing.assert_close(loaded['state_dict']['w'], torch.ones(2))
    np.testing.assert_array_equal(loaded['message_hub']['array'], np.arange(3))
    assert loaded['message_hub']['scalar'] == 2.0
    assert loaded['message_hub']['buffer'].current() == 1.5


@pytest.mark.parametrize('route', ROUTES)
def test_weights_only_load_allows_exactly_the_listed_types(
    monkeypatch, tmp_path, route
):
    _route(monkeypatch, route)
    plain = str(tmp_path / 'plain.pth')
    torch.save(dict(weight=torch.arange(4.0), meta=dict(iter=3)), plain)
    loaded = compat.weights_only_load(plain)
    torch.testing.assert_close(loaded['weight'], torch.arange(4.0))
    assert loaded['meta'] == dict(iter=3)

    array = str(tmp_path / 'array.pth')
    torch.save(dict(array=np.arange(3)), array)
    with pytest.raises(pickle.UnpicklingError, match='(?i)unsupported global'):
        compat.weights_only_load(array)
    loaded = compat.weights_only_load(array, compat.mmengine_safe_globals())
    np.testing.assert_array_equal(loaded['array'], np.arange(3))

    payload = str(tmp_path / 'payload.pth')
    torch.save(dict(payload=_Payload()), payload)
    with pytest.raises(pickle.UnpicklingError, match='_Payload'):
        compat.weights_only_load(payload, compat.mmengine_safe_globals())


def test_config_packages_point_at_forks_only_where_upstream_is_missing(monkeypatch):
    from mmengine.config import utils as config_utils

    table = {'mmseg': 'mmsegmentation', 'mmcv': 'mmcv', 'mmdet': 'mmdet'}
    monkeypatch.setattr(config_utils, 'MODULE2PACKAGE', table)
    installed = {'onedl-mmsegmentation', 'mmcv', 'onedl-mmcv'}
    monkeypatch.setattr(compat, '_distribution_installed', installed.__contains__)
    assert compat.register_config_packages() == {'mmseg': 'onedl-mmsegmentation'}
    # upstream mmcv stays, mmdet (neither installed) is left to mmengine's error
    assert table == {'mmseg': 'onedl-mmsegmentation', 'mmcv': 'mmcv', 'mmdet': 'mmdet'}


def test_mmseg_config_bases_resolve_on_this_stack(tmp_path):
    """``mmseg::`` bases resolve once acr_plugin is imported, upstream or fork."""
    from mmengine.config import Config

    import acr_plugin  # noqa: F401 (registers the prefixes)

    path = tmp_path / 'user_cfg.py'
    path.write_text(
        "_base_ = ['mmseg::_base_/default_runtime.py',"
        " 'mmseg::_base_/schedules/schedule_20k.py']\n"
    )
    cfg = Config.fromfile(str(path))
    assert cfg.default_scope == 'mmseg'
    assert cfg.train_cfg.max_iters == 20000


@pytest.mark.parametrize('public', [True, False])
def test_load_state_dict_pre_hook_on_every_torch(monkeypatch, public):
    """The public API (torch >= 2.3) or the private one before it: the hook
    sees the module and the state dict, and may rename keys."""
    calls = []

    def hook(module, state_dict, prefix, *args):
        calls.append(module)
        state_dict[prefix + 'weight'] = state_dict.pop(prefix + 'old_weight')

    module = torch.nn.Linear(2, 2)
    if not public:
        monkeypatch.setattr(
            torch.nn.Linear, 'register_load_state_dict_pre_hook', None, raising=False
        )
    compat.register_load_state_dict_pre_hook(module, hook)
    state = {'old_weight': torch.ones(2, 2), 'bias': torch.zeros(2)}
    module.load_state_dict(state)
    assert calls == [module]
    torch.testing.assert_close(module.weight, torch.ones(2, 2))


class _GetattrChain:
    """getattr(getattr, '__self__') is the builtins module: the first step of
    reaching eval through an allowed builtin getattr."""

    def __reduce__(self):
        return getattr, (getattr, '__self__')


class _CallThroughRebuild:
    """torch's allowed _rebuild_from_type_v2 calls the function it is given."""

    def __reduce__(self):
        import os

        return torch._tensor._rebuild_from_type_v2, (os.getcwd, torch.Tensor, (), {})


@pytest.mark.parametrize('route', ROUTES)
@pytest.mark.parametrize('payload', [_GetattrChain, _CallThroughRebuild])
def test_crafted_checkpoints_are_refused(monkeypatch, tmp_path, route, payload):
    _route(monkeypatch, route)
    path = str(tmp_path / 'crafted.pth')
    torch.save(dict(state_dict=dict(w=torch.ones(1)), x=payload()), path)
    with pytest.raises(pickle.UnpicklingError):
        compat.weights_only_load(path, compat.mmengine_safe_globals())


def test_checkpoint_getattr_reaches_only_the_listed_functions():
    from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler

    assert compat.checkpoint_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean
    anneal = compat.checkpoint_getattr(OneCycleParamScheduler, '_annealing_cos')
    assert anneal is OneCycleParamScheduler._annealing_cos
    for obj, name in [(getattr, '__self__'), (HistoryBuffer, '__init__'), (np, 'save')]:
        with pytest.raises(pickle.UnpicklingError, match='is not allowed'):
            compat.checkpoint_getattr(obj, name)


def _pickle(*ops: bytes) -> io.BytesIO:
    return io.BytesIO(b'\x80\x02' + b''.join(ops) + b'.')


def test_restricted_unpickler_checks_calls_classes_and_states():
    """The torch < 2.5 route, opcode by opcode (raw protocol-2 pickles)."""
    unpickler = compat._restricted_pickle_module(
        compat.mmengine_safe_globals()
    ).Unpickler
    history = b'cmmengine.logging.history_buffer\nHistoryBuffer\n'
    # an allowed class: created, and its instance's state set
    buffer = unpickler(
        _pickle(history, b')\x81', b'}X\x01\x00\x00\x00aK\x01s', b'b')
    ).load()
    assert type(buffer) is HistoryBuffer and buffer.a == 1
    refused = {
        'global': _pickle(b'cos\nsystem\n'),
        'state of a class': _pickle(history, b'}X\x03\x00\x00\x00maxNs', b'b'),
        'INST': _pickle(b'(', b'icollections\nOrderedDict\n'),
        'EXT1': _pickle(b'\x82\x01'),
    }
    for what, data in refused.items():
        with pytest.raises(pickle.UnpicklingError, match='Weights only load failed'):
            unpickler(data).load()
        assert not hasattr(HistoryBuffer, 'a'), what
    assert callable(HistoryBuffer.max)  # the class was not changed
