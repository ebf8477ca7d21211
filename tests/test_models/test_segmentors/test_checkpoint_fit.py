"""Checkpoints of a baseline and of its ACR config load into each other; a
checkpoint that does not fit the model is refused (not trained past)."""

import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.runner import Runner, load_checkpoint
from mmseg.registry import MODELS

from acr_plugin.models.segmentors import checkpoint_fit
from acr_plugin.models.segmentors.checkpoint_fit import (
    CheckpointMismatchError,
    wrapper_key_map,
)
from tests.samples import make_samples

SYNTHETIC = '600it_synthetic-64x64.py'
HOSTS = {
    'vit_cam': (
        f'configs/vit_cam/vit-cam_tiny-p8_1xb64-{SYNTHETIC}',
        f'configs/acr/acr_vit-cam_tiny-p8_1xb64-{SYNTHETIC}',
    ),
    'toco': (
        f'configs/toco/toco_tiny-p8_1xb32-{SYNTHETIC}',
        f'configs/acr/acr_toco_tiny-p8_1xb32-{SYNTHETIC}',
    ),
    'mctformer': (
        f'configs/mctformer/mctformer-v2_tiny-p8_1xb64-{SYNTHETIC}',
        f'configs/acr/acr_mctformer-v2_tiny-p8_1xb64-{SYNTHETIC}',
    ),
}
LABELS = [[1, 0, 0, 0, 0, 1], [0, 1, 0, 0, 0, 0]]
WRAPPED = checkpoint_fit.WRAPPER_PREFIX


def _build(path: str, seed: int, **model_overrides) -> torch.nn.Module:
    """The config's model as the Runner builds it, initialised with ``seed``."""
    cfg = Config.fromfile(path)
    model = copy.deepcopy(cfg.model)
    model.update(model_overrides)
    model.setdefault('data_preprocessor', cfg.data_preprocessor)
    torch.manual_seed(seed)
    built = MODELS.build(model)
    built.init_weights()
    return built.eval()


def _save(model: torch.nn.Module, path) -> str:
    torch.save(dict(meta=dict(), state_dict=model.state_dict()), str(path))
    return str(path)


def _outputs(model: torch.nn.Module) -> dict:
    """Tensor outputs and predictions on a fixed batch."""
    torch.manual_seed(1234)
    inputs = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        tensor = model._forward(inputs)
        preds = model.predict(inputs, make_samples(LABELS, size=(64, 64)))
    return dict(
        tensor=tensor,
        seg_logits=[p.seg_logits.data for p in preds],
        pred=[p.pred_sem_seg.data for p in preds],
    )


def _assert_differs(a: dict, b: dict) -> None:
    """The outputs differ (the load under test has something to restore)."""
    with pytest.raises(AssertionError):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_wrapper_key_map_adds_or_removes_the_wrapper_prefix():
    wrapper = ['model.backbone.w', 'model.head.w']
    baseline = ['backbone.w', 'head.w']
    assert wrapper_key_map(baseline, wrapper) == dict(zip(baseline, wrapper))
    assert wrapper_key_map(wrapper, baseline) == dict(zip(wrapper, baseline))
    # keys that fit, or fit nothing either way, stay
    assert wrapper_key_map(wrapper + ['x.w'], wrapper) == {}
    assert wrapper_key_map(['backbone.w', 'model.backbone.w'], wrapper) == {}
    # a model key is taken once
    assert wrapper_key_map(['backbone.w', 'model.head.w'], baseline) == {
        'model.head.w': 'head.w'
    }


@pytest.mark.parametrize('host', list(HOSTS))
def test_baseline_checkpoint_loads_into_the_acr_model(host, tmp_path):
    base_cfg, acr_cfg = HOSTS[host]
    baseline = _build(base_cfg, seed=0)
    ckpt = _save(baseline, tmp_path / 'baseline.pth')
    acr = _build(acr_cfg, seed=1)
    expected = _outputs(baseline)
    _assert_differs(_outputs(acr.model), expected)

    load_checkpoint(acr, ckpt, map_location='cpu')  # strict=False: the Runner's

    state = acr.state_dict()
    for key, value in baseline.state_dict().items():
        assert torch.equal(state[WRAPPED + key], value), key
    assert len(state) == len(baseline.state_dict())
    got = _outputs(acr.model)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    with torch.no_grad():  # the wrapper predicts what the baseline predicts
        x = torch.randn(2, 3, 64, 64)
        torch.testing.assert_close(acr._forward(x), baseline._forward(x))


@pytest.mark.parametrize('host', list(HOSTS))
def test_acr_checkpoint_loads_its_wrapped_model_into_the_baseline(host, tmp_path):
    base_cfg, acr_cfg = HOSTS[host]
    acr = _build(acr_cfg, seed=0)
    ckpt = _save(acr, tmp_path / 'acr.pth')
    baseline = _build(base_cfg, seed=1)
    expected = _outputs(acr.model)
    _assert_differs(_outputs(baseline), expected)

    load_checkpoint(baseline, ckpt, map_location='cpu')

    torch.testing.assert_close(_outputs(baseline), expected, rtol=0, atol=0)
    # torch's own loader remaps the same way, also when strict
    other = _build(base_cfg, seed=2)
    other.load_state_dict(acr.state_dict(), strict=True)
    torch.testing.assert_close(_outputs(other), expected, rtol=0, atol=0)


def test_runner_load_from_restores_the_wrapped_model(tmp_path):
    """``load_from`` of a baseline checkpoint in the ACR config, through the
    Runner (what tools/train.py and mmseg's tools do before training)."""
    base_cfg, acr_cfg = HOSTS['vit_cam']
    baseline = _build(base_cfg, seed=7)  # not the Runner's seed (0)
    ckpt = _save(baseline, tmp_path / 'baseline.pth')
    cfg = Config.fromfile(acr_cfg)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.load_from = ckpt
    cfg.log_level = 'WARNING'
    cfg.experiment_name = 'load_from_baseline'
    runner = Runner.from_cfg(cfg)
    _assert_differs(_outputs(runner.model.eval().model), _outputs(baseline))
    runner.load_checkpoint(cfg.load_from, map_location='cpu')
    model = runner.model.eval()
    assert type(model).__name__ == 'ACRSegmentor'
    torch.testing.assert_close(
        _outputs(model.model), _outputs(baseline), rtol=0, atol=0
    )
    state = model.state_dict()
    for key, value in baseline.state_dict().items():
        assert torch.equal(state[WRAPPED + key], value), key


@pytest.mark.parametrize('into', ['baseline', 'acr'])
def test_checkpoint_of_another_model_is_refused(into, tmp_path):
    """A ViT-CAM checkpoint given to an MCTformer config (or its ACR config)
    stops the load with both names and examples of the keys."""
    ckpt = _save(_build(HOSTS['vit_cam'][0], seed=0), tmp_path / 'vit_cam.pth')
    target = HOSTS['mctformer'][0 if into == 'baseline' else 1]
    model = _build(target, seed=0)
    name = 'MCTformer' if into == 'baseline' else 'ACRSegmentor'
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(model, ckpt, map_location='cpu')  # strict=False
    message = str(err.value)
    assert ckpt in message and f'model {name}' in message
    assert 'not in the checkpoint, e.g.' in message  # missing model weights
    assert 'not in the model, e.g.' in message  # unexpected checkpoint keys
    assert 'token_classifier.weight' in message  # a ViT-CAM key
    # torch's loader refuses too, even with strict=False
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    with pytest.raises(
        CheckpointMismatchError, match=f'state dict does not fit.*{name}'
    ):
        model.load_state_dict(state, strict=False)


def test_shape_mismatch_is_refused(tmp_path):
    base_cfg, acr_cfg = HOSTS['vit_cam']
    ckpt = _save(_build(base_cfg, seed=0, num_classes=5), tmp_path / 'five.pth')
    acr = _build(acr_cfg, seed=0)
    with pytest.raises(CheckpointMismatchError, match='size mismatch for model.'):
        load_checkpoint(acr, ckpt, map_location='cpu')


def test_runner_resume_of_another_model_stops_before_the_optimizer(tmp_path):
    """``--resume`` of another model's work dir: the model's error, not the
    optimizer's (which mmengine reaches after a strict=False load)."""
    vit_cam = _build(HOSTS['vit_cam'][0], seed=0)
    optimizer = torch.optim.AdamW(vit_cam.parameters())
    ckpt = str(tmp_path / 'iter_1.pth')
    torch.save(
        dict(
            meta=dict(epoch=0, iter=1),
            state_dict=vit_cam.state_dict(),
            optimizer=optimizer.state_dict(),
            message_hub=MessageHub('resume_source').state_dict(),
        ),
        ckpt,
    )
    cfg = Config.fromfile(HOSTS['toco'][0])
    cfg.work_dir = str(tmp_path)
    cfg.log_level = 'WARNING'
    cfg.experiment_name = 'resume_other_model'
    runner = Runner.from_cfg(cfg)
    with pytest.raises(CheckpointMismatchError, match='iter_1.pth" does not fit.*ToCo'):
        runner.resume(ckpt)


def test_legitimate_loads_are_unchanged(tmp_path):
    """A model's own checkpoint (ToCo's EMA teacher included) loads, strict or
    not; loads into submodules stay the caller's business."""
    toco = _build(HOSTS['toco'][0], seed=0)
    assert any('.teacher.' in key for key in toco.state_dict())
    state = {
        k: v + 1 if v.is_floating_point() else v for k, v in toco.state_dict().items()
    }
    other = _build(HOSTS['toco'][0], seed=1)
    result = other.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for key, value in other.state_dict().items():
        assert torch.equal(value, state[key]), key
    load_checkpoint(
        _build(HOSTS['toco'][1], seed=2), _save(other, tmp_path / 'toco.pth')
    )
    toco.backbone.load_state_dict(other.backbone.state_dict())
    toco.backbone.load_state_dict({}, strict=False)


def test_batch_norm_step_counters_may_be_missing():
    """As in mmengine's loader: old checkpoints lack ``num_batches_tracked``."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = torch.nn.BatchNorm2d(2)
            checkpoint_fit.install_checkpoint_fit(self)

    state = Net().state_dict()
    del state['bn.num_batches_tracked']
    Net().load_state_dict(state, strict=False)
    del state['bn.running_mean']
    with pytest.raises(CheckpointMismatchError, match='bn.running_mean'):
        Net().load_state_dict(state, strict=False)


def test_mismatch_can_be_downgraded_to_a_warning(tmp_path, monkeypatch):
    ckpt = _save(_build(HOSTS['vit_cam'][0], seed=0), tmp_path / 'vit_cam.pth')
    model = _build(HOSTS['mctformer'][0], seed=0)
    model.strict_checkpoint_fit = False
    logged = []
    monkeypatch.setattr(
        checkpoint_fit, 'print_log', lambda msg, **kw: logged.append((msg, kw))
    )
    load_checkpoint(model, ckpt, map_location='cpu')
    assert any('does not fit the model MCTformer' in msg for msg, _ in logged)
