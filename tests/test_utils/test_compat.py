"""Version shims: checkpoints load where torch / mmengine lack the newer APIs."""

import contextlib

import mmengine.runner.checkpoint as mmengine_checkpoint
import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from acr_plugin.models.backbones.checkpoint_loading import load_checkpoint_weights_only
from acr_plugin.utils import compat


def test_fallback_globals_equal_mmengines_list(monkeypatch):
    newer = set(mmengine_checkpoint.get_torch_safe_globals())
    monkeypatch.delattr(mmengine_checkpoint, 'get_torch_safe_globals')
    assert set(compat.mmengine_safe_globals()) == newer


def test_runner_checkpoint_loads_without_mmengines_list(monkeypatch, tmp_path):
    """A checkpoint with numpy objects and a HistoryBuffer (what a runner
    saves) loads weights-only with the fallback list."""
    path = str(tmp_path / 'runner.pth')
    buffer = HistoryBuffer()
    buffer.update(1.5)
    saved = dict(
        state_dict=dict(w=torch.ones(2)),
        message_hub=dict(buffer=buffer, array=np.arange(3), scalar=np.float64(2.0)),
    )
    torch.save(saved, path)
    monkeypatch.delattr(mmengine_checkpoint, 'get_torch_safe_globals')
    loaded = load_checkpoint_weights_only(path)
    torch.testing.assert_close(loaded['state_dict']['w'], torch.ones(2))
    np.testing.assert_array_equal(loaded['message_hub']['array'], np.arange(3))


def test_without_torch_safe_globals_plain_state_dicts_still_load(monkeypatch, tmp_path):
    """torch < 2.5 has no safe_globals context: the shim is a no-op there and
    a plain state dict (a pretrained backbone) loads weights-only."""
    path = str(tmp_path / 'plain.pth')
    torch.save(dict(weight=torch.arange(4.0)), path)
    monkeypatch.delattr(torch.serialization, 'safe_globals')
    context = compat.safe_globals([np.ndarray])
    assert isinstance(context, contextlib.nullcontext)
    loaded = load_checkpoint_weights_only(path)
    torch.testing.assert_close(loaded['weight'], torch.arange(4.0))


def test_safe_globals_allows_the_listed_types(tmp_path):
    path = str(tmp_path / 'array.pth')
    torch.save(dict(array=np.arange(3)), path)
    with pytest.raises(Exception, match='(?i)unsupported|weights_only'):
        torch.load(path, weights_only=True)
    with compat.safe_globals(compat.mmengine_safe_globals()):
        loaded = torch.load(path, weights_only=True)
    np.testing.assert_array_equal(loaded['array'], np.arange(3))
