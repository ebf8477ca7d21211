"""ToCo-style single-stage model: CAMs, configs, prediction (its training
step: test_toco_training_step.py)."""

import copy
import math
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.structures import PixelData
from mmseg.registry import MODELS

from acr_plugin.evaluation import CAMMetric
from acr_plugin.hosts.toco.toco import CAM_SEG_LOGITS
from acr_plugin.models.utils.crf import crf_available
from tests.toco_models import (
    LABELS,
    TOCO,
    build,
    record_seg_pseudo_labels,
    samples,
    tiny_model_cfg,
)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
ACR_TOCO = 'configs/acr/acr_toco_tiny-p8_1xb32-600it_synthetic-64x64.py'


needs_crf = pytest.mark.skipif(
    not crf_available(), reason='pydensecrf2 (requirements/runtime.txt) not built'
)


@pytest.mark.parametrize('rounding', ['floor', 'round'])
def test_cam_scales_resize_as_toco(rounding):
    """Each CAM scale resizes to int(s * h) x int(s * w) px and the patch
    embedding keeps the whole 8 px patches (ToCo; the default), or rounds to
    whole patches (``cam_rounding='round'``)."""
    cfg = None if rounding == 'floor' else dict(cam_rounding='round')
    model = build(**({} if cfg is None else dict(pseudo_cfg=cfg)))
    assert model.pseudo_cfg['cam_rounding'] == rounding
    model.eval()
    shapes = []
    handle = model.backbone.register_forward_hook(
        lambda mod, args, out: shapes.append(tuple(args[0].shape[-2:]))
    )
    with torch.no_grad():
        model.multi_scale_cams(torch.randn(1, 3, 72, 72), (1.0, 0.5, 1.5))
    handle.remove()
    # x0.5: 36 px -> 32 either way; x1.5: 108 px -> 104 (floor) / 112 (round)
    want = [(72, 72), (32, 32), (104, 104) if rounding == 'floor' else (112, 112)]
    assert shapes == want
    with pytest.raises(ValueError, match='cam_rounding'):
        MODELS.build(tiny_model_cfg(pseudo_cfg=dict(cam_rounding='ceil')))


@pytest.mark.parametrize('output', ['seg', 'cam'])
def test_predict_fields_and_flip_equivariance(output):
    model = build(
        test_cfg=dict(output=output, seg_scales=(1.0, 1.5), cam_scales=(1.0, 0.5))
    )
    model.eval()
    # 48 px: every scale fills whole 8 px patches (ToCo's int(s * w) px lose
    # their right edge to the patches otherwise, not mirror-symmetric)
    inputs = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        plain = model.predict(inputs, samples(LABELS, (32, 48)))
        flipped = model.predict(inputs.flip(-1), samples(LABELS, (32, 48)))
    for a, b in zip(plain, flipped):
        assert a.seg_logits.data.shape == (7, 32, 48)
        torch.testing.assert_close(
            a.seg_logits.data, b.seg_logits.data.flip(-1), atol=1e-5, rtol=1e-4
        )
        assert a.pred_img_logits.data.shape == (6,)
        if output == 'seg':
            cam = a.get(CAM_SEG_LOGITS).data
            assert cam.shape == (7, 32, 48)
            torch.testing.assert_close(
                cam, b.get(CAM_SEG_LOGITS).data.flip(-1), atol=1e-5, rtol=1e-4
            )
            assert not torch.equal(cam, a.seg_logits.data)
        else:
            assert CAM_SEG_LOGITS not in a
            # CAM layout: constant background plane, absent classes zeroed
            assert torch.all(a.seg_logits.data[0] == 0.5)
    absent = [c + 1 for c in range(6) if not LABELS[0][c]]
    cam = plain[0].get(CAM_SEG_LOGITS) if output == 'seg' else plain[0].seg_logits
    assert cam.data[absent].abs().max() == 0


def test_decoder_and_cam_metrics_from_one_prediction():
    model = build()
    model.eval()
    data = samples(LABELS)
    for sample in data:
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 7, (1, 32, 32)))
    with torch.no_grad():
        results = model.predict(torch.randn(2, 3, 32, 32), data)
    metric = CAMMetric(pred_key=CAM_SEG_LOGITS, prefix='cam')
    metric.dataset_meta = dict(classes=[f'c{i}' for i in range(7)])
    metric.process({}, [r.to_dict() for r in results])
    out = metric.evaluate(2)
    assert 'cam/mIoU_best' in out
    default = CAMMetric()
    default.dataset_meta = metric.dataset_meta
    with pytest.raises(ValueError, match='background'):
        # seg_logits holds the decoder's logits, not a CAM layout
        default.process({}, [r.to_dict() for r in results])


def test_bad_configs_name_the_key():
    cfg = tiny_model_cfg()
    cfg['decode_head']['num_classes'] = 5
    with pytest.raises(ValueError, match='decode_head.num_classes'):
        MODELS.build(cfg)
    with pytest.raises(ValueError, match='ctc_head and loss_ctc'):
        MODELS.build(tiny_model_cfg(loss_ctc=None))
    with pytest.raises(ValueError, match='low < high'):
        MODELS.build(tiny_model_cfg(pseudo_cfg=dict(low=0.8, high=0.7)))
    with pytest.raises(ValueError, match='test_cfg.output'):
        MODELS.build(tiny_model_cfg(test_cfg=dict(output='both')))


def test_acr_wraps_toco_unchanged_and_adds_every_term():
    base = Config.fromfile(osp.join(ROOT, TOCO))
    acr = Config.fromfile(osp.join(ROOT, ACR_TOCO))
    assert acr.model.model.to_dict() == base.model.to_dict()
    cfg = copy.deepcopy(acr.model.to_dict())
    cfg['model'] = tiny_model_cfg()
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    model.model.set_train_phase(loss_weights=dict(loss_seg=0.1))
    losses = model.loss(torch.randn(2, 3, 32, 32), samples(LABELS))
    for key in (
        'loss_cls',
        'loss_cls_v2',
        'loss_ctc_v2',
        'loss_seg_v2',
        'loss_acr_cls',
        'loss_acr_aff',
        'loss_acr_cam',
    ):
        assert key in losses and torch.isfinite(losses[key]), key
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert model.model.classifier.weight.grad.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize('path', [TOCO, ACR_TOCO])
def test_synthetic_config_trains_and_reports_decoder_and_cam_miou(path, tmp_path):
    from mmengine.runner import Runner

    from tests.synthetic_runs import tiny_synthetic_cfg

    cfg = tiny_synthetic_cfg(osp.join(ROOT, path), str(tmp_path), iters=3)
    # switch the seg / reg losses on at the 2nd iteration (through the ACR
    # wrapper too) and check the hook reached the model
    cfg.custom_hooks[0].phases[1].begin = 1
    runner = Runner.from_cfg(cfg)
    runner.train()
    toco = runner.model.model if path == ACR_TOCO else runner.model
    assert toco.decode_head.loss_decode.loss_weight == 0.1
    assert toco.loss_reg.loss_weight == 0.05
    scalars = runner.message_hub.log_scalars
    assert scalars['train/loss_seg'].current() > 0
    if path == ACR_TOCO:
        assert 'train/loss_acr_cam' in scalars
    metrics = runner.test()
    for key in ('mIoU', 'cam/mIoU_best', 'cam/body_recall_at_fp0.10'):
        assert key in metrics and math.isfinite(metrics[key]), (key, metrics)


def test_gradient_cam_head_refuses_toco_with_a_clear_error():
    """The ACR ToCo configs keep ToCo's own localisation: its logits come
    from the patch tokens, the class-token rows get no gradient."""
    model = build()
    model.eval()
    head = MODELS.build(
        dict(type='ClsTokenGradCAMHead', variant='grad', start_layer=-1, flip=False)
    )
    with pytest.raises(ValueError, match='do not come from its class token'):
        head.predict(model, torch.randn(2, 3, 32, 32), samples(LABELS))


def test_acr_second_view_moves_the_padding_mask_with_the_flip():
    """Under ACR, ToCo's view 2 ignores the padding where the flip put it."""
    acr = Config.fromfile(osp.join(ROOT, ACR_TOCO)).model.to_dict()
    acr['model'] = tiny_model_cfg()
    torch.manual_seed(0)
    model = MODELS.build(acr)
    model.init_weights()
    toco = model.model
    toco.set_train_phase(loss_weights=dict(loss_seg=0.1, loss_reg=0.0))
    # no uncertain band: every valid pixel gets a label (whatever the random init)
    toco.pseudo_cfg.update(low=0.0, high=1e-6)
    captured = record_seg_pseudo_labels(toco)
    data = samples(LABELS)
    data[0].set_metainfo(dict(img_shape=(24, 16)))
    model.loss(torch.randn(2, 3, 32, 32), data)
    view1, view2 = captured
    assert (view1[0, 24:] == 255).all() and (view1[0, :, 16:] == 255).all()
    assert (view2[0, 24:] == 255).all() and (view2[0, :, :16] == 255).all()
    assert (view1[0, :24, :16] != 255).all() and (view2[0, :24, 16:] != 255).all()
    # the caller's samples are untouched
    assert 'valid_mask' not in data[0]


def test_classifiers_read_the_global_max_pool_of_the_tokens():
    """Ru et al., CVPR 2023: Conv2d(D, C, 1) AFTER global max pooling (not a max over
    the CAM, which picks one location per class)."""
    model = build()
    outputs = model.forward_outputs(torch.randn(2, 3, 32, 32))
    for tokens, conv, key in (
        ('patch_map', model.classifier, 'logits'),
        ('aux_map', model.aux_classifier, 'aux_logits'),
    ):
        pooled = outputs[tokens].amax(dim=(2, 3))  # (B, D)
        expected = pooled @ conv.weight.flatten(1).T
        torch.testing.assert_close(outputs[key], expected)
        cams = torch.einsum('bdhw,cd->bchw', outputs[tokens], conv.weight.flatten(1))
        torch.testing.assert_close(outputs[key.replace('logits', 'cams')], cams)
        assert not torch.allclose(outputs[key], cams.amax(dim=(2, 3)))


def test_predict_reads_image_logits_from_the_tta_forward():
    """No extra forward for pred_img_logits: they come from the TTA pass at
    the input size and equal model.logits()."""
    model = build(test_cfg=dict(output='cam', cam_scales=(1.0, 0.5)))
    model.eval()
    inputs = torch.randn(2, 3, 32, 32)
    calls = []
    handle = model.backbone.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        results = model.predict(inputs, samples(LABELS))
    handle.remove()
    assert len(calls) == 2  # one forward per scale (flip pairs batched)
    with torch.no_grad():
        expected = model.logits(inputs)
    for i, result in enumerate(results):
        torch.testing.assert_close(result.pred_img_logits.data, expected[i])


@needs_crf
def test_test_time_crf_refines_the_decoder_prediction():
    """test_cfg.crf: decoder masks = dense CRF of softmax(decoder logits) on
    the input image; the CAM masks stay as they are."""
    from acr_plugin.models.utils.crf import dense_crf

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    imgs[:, 8:24, 8:24] = (220, 40, 40)
    mean = torch.tensor([123.675, 116.28, 103.53])
    std = torch.tensor([58.395, 57.12, 57.375])
    inputs = ((torch.from_numpy(imgs).float() - mean) / std).permute(0, 3, 1, 2)
    crf = dict(num_iters=5, bilateral_sxy=20.0)
    plain, refined = build(), build(test_cfg=dict(crf=crf))
    plain.eval()
    refined.eval()
    with torch.no_grad():
        expected = plain.predict(inputs, samples(LABELS))
        got = refined.predict(inputs, samples(LABELS))
    for img, exp, out in zip(imgs, expected, got):
        probs = exp.seg_logits.data.softmax(0).numpy()
        marginals = dense_crf(img, probs, **crf)
        got = out.seg_logits.data.exp().numpy()  # log marginals
        np.testing.assert_allclose(got, marginals, atol=1e-5)
        assert torch.equal(
            out.pred_sem_seg.data[0], torch.from_numpy(marginals.argmax(0))
        )
        torch.testing.assert_close(
            out.get(CAM_SEG_LOGITS).data, exp.get(CAM_SEG_LOGITS).data
        )
        # the CRF moved the probabilities (whether an argmax flips depends on
        # the random init)
        assert np.abs(marginals - probs).max() > 0.05
    with pytest.raises(ValueError, match='ToCo test_cfg.crf: unknown'):
        build(test_cfg=dict(crf=dict(iterations=5)))


@needs_crf
@pytest.mark.parametrize(
    'path,key',
    [
        ('configs/toco/toco_vit-b16_2xb2-20k_voc12aug-448x448.py', 'model.'),
        ('configs/acr/acr_toco_vit-b16_2xb2-20k_voc12aug-448x448.py', 'model.model.'),
    ],
)
def test_crf_switched_on_from_the_command_line(path, key):
    """docs/adopting_acr.md's `--cfg-options model.test_cfg.crf.num_iters=10` works on
    the shipped configs (no crf key there: a None would refuse the merge)."""
    from tests.test_configs.test_configs_build import strip_pretrained

    cfg = Config.fromfile(osp.join(ROOT, path))
    cfg.merge_from_dict({key + 'test_cfg.crf.num_iters': 10})
    model_cfg = cfg.model.to_dict()
    strip_pretrained(model_cfg)
    model = MODELS.build(model_cfg)
    toco = model.model if key == 'model.model.' else model
    assert toco.test_cfg['crf'] == dict(num_iters=10)


@pytest.mark.parametrize(
    'crf', [None, pytest.param(dict(num_iters=2), marks=needs_crf)]
)
def test_predict_without_data_samples(crf):
    """Like mmseg's EncoderDecoder: no data samples, predictions at input size."""
    model = build(test_cfg=dict(use_labels=False, crf=crf))
    model.eval()
    with torch.no_grad():
        out = model.predict(torch.randn(2, 3, 32, 40))
    for sample in out:
        assert sample.seg_logits.data.shape == (7, 32, 40)
        assert sample.pred_sem_seg.data.shape == (1, 32, 40)
        assert sample.get(CAM_SEG_LOGITS).data.shape == (7, 32, 40)


@pytest.mark.parametrize('key', ['pseudo_cfg', 'ctc_cfg', 'test_cfg'])
def test_option_dicts_refuse_unknown_keys(key):
    """A misspelt option stops the build, naming the key (not ignored)."""
    with pytest.raises(
        ValueError, match=rf'ToCo {key}: unknown key\(s\) hihg; allowed: '
    ):
        build(**{key: dict(hihg=0.7)})
