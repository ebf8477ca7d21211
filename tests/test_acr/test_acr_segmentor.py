import copy
import logging
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from acr_plugin.acr import acr_segmentor
from acr_plugin.acr.attention.attention_capture import AttentionCapture
from acr_plugin.acr.views.token_alignment import flip_alignment
from acr_plugin.hosts.vit_cam.vit_cam import ViTCAM
from tests.scripts import ROOT

ACR_CFG = 'configs/acr/acr_vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py'
BASE_CFG = 'configs/vit_cam/vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py'


def samples(labels, size=(64, 64)):
    out = []
    for row in labels:
        sample = SegDataSample()
        sample.img_labels = torch.tensor(row, dtype=torch.float)
        sample.set_metainfo(dict(img_shape=size, ori_shape=size))
        out.append(sample)
    return out


def build(cfg_path=ACR_CFG, **overrides):
    cfg = Config.fromfile(cfg_path).model.to_dict()
    cfg.update(overrides)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def test_config_inherits_the_baseline_model_unchanged():
    acr = Config.fromfile(ACR_CFG)
    base = Config.fromfile(BASE_CFG)
    assert acr.model.type == 'ACRSegmentor'
    assert acr.model.model == base.model
    # everything but the model is inherited as is
    assert acr.train_dataloader == base.train_dataloader
    assert acr.optim_wrapper == base.optim_wrapper


def test_loss_terms_match_an_independent_recomputation():
    torch.manual_seed(0)
    model = build()
    x = torch.randn(2, 3, 64, 64)
    data = samples([[1, 0, 0, 0, 0, 1], [0, 1, 0, 0, 0, 0]])
    losses = model.loss(x, data)
    expected_keys = {
        'loss_cls',
        'loss_cls_patch',
        'loss_cls_v2',
        'loss_cls_patch_v2',
        'loss_acr_cls',
        'loss_acr_aff',
        'acr_attn_entropy',
    }
    assert set(losses) == expected_keys
    # the model's own losses on each view are unchanged
    inner = model.model
    base1 = inner.loss(x, data)
    base2 = inner.loss(x.flip(-1), data)
    for key in base1:
        torch.testing.assert_close(losses[key], base1[key])
        torch.testing.assert_close(losses[key + '_v2'], base2[key])
    # the ACR terms equal the loss applied to separately captured attention
    with AttentionCapture(inner.backbone) as cap:
        inner.loss(x, data)
        attn1 = cap.pop()
        inner.loss(x.flip(-1), data)
        attn2 = cap.pop()
    terms = model.acr_loss.forward_terms(attn1, attn2, flip_alignment(8, 8))
    for key, value in terms.items():
        torch.testing.assert_close(losses[key], value)
    assert losses['loss_acr_aff'] > 0
    # no hooks are left behind
    for module in inner.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_acr_gradient_reaches_the_backbone():
    torch.manual_seed(0)
    model = build()
    x = torch.randn(2, 3, 64, 64)
    losses = model.loss(x, samples([[1, 0, 0, 0, 0, 0]] * 2))
    (losses['loss_acr_cls'] + losses['loss_acr_aff']).backward()
    qkv = model.model.backbone.blocks[0].attn.qkv.weight
    assert qkv.grad is not None and qkv.grad.abs().sum() > 0
    # the consistency terms do not touch the classifiers
    assert model.model.token_classifier.weight.grad is None


def test_compute_matched_control_has_no_acr_terms():
    torch.manual_seed(0)
    model = build(acr_loss=None)
    losses = model.loss(torch.randn(1, 3, 64, 64), samples([[1, 0, 0, 0, 0, 0]]))
    assert set(losses) == {
        'loss_cls',
        'loss_cls_patch',
        'loss_cls_v2',
        'loss_cls_patch_v2',
    }


def test_prediction_is_delegated_unchanged():
    torch.manual_seed(0)
    model = build()
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model.predict(x, samples([[0, 1, 0, 0, 0, 0]]))[0]
        ref = model.model.predict(x, samples([[0, 1, 0, 0, 0, 0]]))[0]
    torch.testing.assert_close(out.seg_logits.data, ref.seg_logits.data)


def test_rescale_and_crop_views_train():
    torch.manual_seed(0)
    for view in (
        dict(type='rescale', scale_range=(0.75, 1.25)),
        dict(type='crop', max_offset=2),
    ):
        model = build(view=view)
        losses = model.loss(
            torch.randn(2, 3, 64, 64), samples([[1, 0, 0, 0, 0, 0]] * 2)
        )
        total = sum(v for k, v in losses.items() if 'loss' in k)
        assert torch.isfinite(total)
        total.backward()


def test_cam_term_uses_the_models_cams():
    torch.manual_seed(0)
    cfg = Config.fromfile(ACR_CFG).model.to_dict()
    cfg['acr_loss']['cam_weight'] = 1.0
    model = MODELS.build(cfg)
    losses = model.loss(torch.randn(2, 3, 64, 64), samples([[1, 0, 0, 0, 0, 0]] * 2))
    assert 'loss_acr_cam' in losses and losses['loss_acr_cam'] > 0


def test_bad_wrapping_errors_name_the_culprit():
    base = Config.fromfile(BASE_CFG).model.to_dict()
    with pytest.raises(AttributeError, match='no_such_module'):
        MODELS.build(
            dict(
                type='ACRSegmentor',
                model=copy.deepcopy(base),
                capture_module='no_such_module',
                acr_loss=dict(type='AllPairsConsistencyLoss'),
            )
        )
    cnn = dict(
        type='ACRSegmentor',
        model=copy.deepcopy(base),
        capture_module='backbone.vit.patch_embed',
        acr_loss=dict(type='AllPairsConsistencyLoss'),
    )
    model = MODELS.build(cnn)
    with pytest.raises(ValueError, match='attention'):
        model.loss(torch.randn(1, 3, 64, 64), samples([[1, 0, 0, 0, 0, 0]]))
    deep = copy.deepcopy(cnn)
    deep.update(capture_module='backbone', capture=dict(layers=[7]))
    model = MODELS.build(deep)
    with pytest.raises(IndexError, match='7'):
        model.loss(torch.randn(1, 3, 64, 64), samples([[1, 0, 0, 0, 0, 0]]))


class PatchlessViTCAM(ViTCAM):
    """ViTCAM without one member of the host contract."""

    @property
    def patch_size(self):
        raise AttributeError('patch_size')


class LogitlessViTCAM(ViTCAM):
    """ViTCAM without ``logits`` (what the gradient head explains)."""

    @property
    def logits(self):
        raise AttributeError('logits')


class CamlessViTCAM(ViTCAM):
    """ViTCAM without ``loss_with_cams``."""

    @property
    def loss_with_cams(self):
        raise AttributeError('loss_with_cams')


def test_the_host_contract_is_checked_at_construction():
    cfg = Config.fromfile(ACR_CFG).model.to_dict()
    cfg['model']['type'] = PatchlessViTCAM
    with pytest.raises(TypeError, match='ACRSegmentor: PatchlessViTCAM .*patch_size'):
        MODELS.build(copy.deepcopy(cfg))
    cfg['model']['type'] = CamlessViTCAM
    MODELS.build(copy.deepcopy(cfg))  # the CAM term is off: not needed
    cfg['acr_loss']['cam_weight'] = 1.0
    with pytest.raises(TypeError, match='CamlessViTCAM .*CAMLossHost.*loss_with_cams'):
        MODELS.build(copy.deepcopy(cfg))
    # a predictor checks the model once, here too
    cfg['model']['type'] = 'ViTCAM'
    cfg['predictor'] = dict(type='ClsTokenGradCAMHead')
    MODELS.build(copy.deepcopy(cfg))
    cfg['model']['type'] = LogitlessViTCAM
    with pytest.raises(TypeError, match='Head: LogitlessViTCAM .*GradCAMHost.*logits'):
        MODELS.build(copy.deepcopy(cfg))


def _runner_model(cfg: Config, work_dir, name: str):
    """The model as mmengine's Runner builds it: the file-level
    ``data_preprocessor`` becomes the default of the top-level model dict."""
    cfg.work_dir = str(work_dir)
    cfg.log_level = 'WARNING'
    cfg.experiment_name = name
    return Runner.from_cfg(cfg).model


def _log_spy(monkeypatch) -> list:
    logged = []
    monkeypatch.setattr(
        acr_segmentor, 'print_log', lambda msg, **kw: logged.append((msg, kw))
    )
    return logged


def test_the_wrapped_models_data_preprocessor_wins(tmp_path, monkeypatch):
    logged = _log_spy(monkeypatch)
    cfg = Config.fromfile(ACR_CFG)
    assert cfg.data_preprocessor.size_divisor == 8  # what the Runner injects
    cfg.model.model.data_preprocessor.size = (96, 96)
    cfg.model.model.data_preprocessor.size_divisor = None
    cfg.model.model.data_preprocessor.mean = [1.0, 2.0, 3.0]
    model = _runner_model(cfg, tmp_path, 'inner_preprocessor')
    pre = model.data_preprocessor
    assert pre.size == (96, 96)
    torch.testing.assert_close(pre.mean.flatten(), torch.tensor([1.0, 2.0, 3.0]))
    batch = dict(
        inputs=[torch.zeros(3, 64, 64, dtype=torch.uint8)],
        data_samples=samples([[1, 0, 0, 0, 0, 0]]),
    )
    assert pre(batch, training=True)['inputs'].shape[-2:] == (96, 96)
    # the ignored outer one is reported at INFO
    (msg, kw), *_ = [entry for entry in logged if 'data_preprocessor' in entry[0]]
    assert 'wrapped model' in msg and 'ignored' in msg
    assert kw['level'] == logging.INFO


def test_the_outer_data_preprocessor_serves_a_model_without_one(tmp_path, monkeypatch):
    logged = _log_spy(monkeypatch)
    cfg = Config.fromfile(ACR_CFG)
    assert cfg.model.model.pop('data_preprocessor') == cfg.data_preprocessor
    cfg.data_preprocessor.mean = [4.0, 5.0, 6.0]
    pre = _runner_model(cfg, tmp_path, 'outer_preprocessor').data_preprocessor
    assert pre.size_divisor == 8
    torch.testing.assert_close(pre.mean.flatten(), torch.tensor([4.0, 5.0, 6.0]))
    # the shipped configs (inner equal to the file-level one) log nothing
    _runner_model(Config.fromfile(ACR_CFG), tmp_path, 'same_preprocessor')
    assert not [msg for msg, _ in logged if 'data_preprocessor' in msg]


ACR = osp.join(ROOT, ACR_CFG)


# ---------------------------------------------------------- ACR misuse
def _labels(n):
    out = []
    for _ in range(n):
        sample = SegDataSample()
        sample.img_labels = torch.tensor([1.0, 0, 0, 0, 0, 0])
        sample.set_metainfo(dict(img_shape=(64, 64), ori_shape=(64, 64)))
        out.append(sample)
    return out


def test_acr_around_a_module_without_attention_names_it():
    cfg = Config.fromfile(ACR).model.to_dict()
    cfg['capture_module'] = 'backbone.vit.patch_embed'
    model = MODELS.build(cfg)
    with pytest.raises(ValueError, match=r'PatchEmbed has no attention module'):
        model.loss(torch.randn(1, 3, 64, 64), _labels(1))
    cfg['capture_module'] = 'backbone.no_such_part'
    with pytest.raises(AttributeError, match='no_such_part.*capture_module'):
        MODELS.build(cfg)


@pytest.mark.parametrize('layers', [[4], [0, -5]])
def test_acr_layers_beyond_the_depth_name_the_layer(layers):
    cfg = Config.fromfile(ACR).model.to_dict()
    cfg['capture'] = dict(layers=layers)
    model = MODELS.build(cfg)
    bad = layers[-1]
    with pytest.raises(IndexError, match=rf'layer {bad} is out of range.* 4 attention'):
        model.loss(torch.randn(1, 3, 64, 64), _labels(1))
