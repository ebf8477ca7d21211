import pytest
import torch
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from tests.samples import make_samples

MMSEG_VIT = dict(
    type='VisionTransformer',
    img_size=(32, 32),
    patch_size=8,
    embed_dims=32,
    num_layers=2,
    num_heads=2,
    mlp_ratio=2,
    out_indices=(1,),
    final_norm=False,
    with_cls_token=True,
    output_cls_token=True,
    interpolate_mode='bicubic',
)


def build_model(**kwargs):
    cfg = dict(
        type='ViTCAM',
        num_classes=4,
        backbone=MMSEG_VIT,
        data_preprocessor=dict(
            type='SegDataPreProcessor', mean=[0, 0, 0], std=[1, 1, 1]
        ),
    )
    cfg.update(kwargs)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def test_loss_keys_and_gradients():
    torch.manual_seed(0)
    model = build_model(patch_head=dict(pool='max'), cam_source='patch')
    x = torch.randn(2, 3, 32, 32)
    losses = model.loss(x, make_samples([[1, 0, 0], [0, 1, 1]]))
    assert set(losses) == {'loss_cls', 'loss_cls_patch'}
    sum(losses.values()).backward()
    assert model.token_classifier.weight.grad.abs().sum() > 0
    assert model.patch_classifier.weight.grad.abs().sum() > 0
    assert any(
        p.grad is not None and p.grad.abs().sum() > 0
        for p in model.backbone.parameters()
    )


def test_token_cam_uses_the_token_classifier():
    torch.manual_seed(0)
    model = build_model(cam_source='token')
    x = torch.randn(1, 3, 32, 32)
    out = model.forward_outputs(x)
    patch_map = out['patch_map']
    expected = torch.einsum('bdhw,cd->bchw', patch_map, model.token_classifier.weight)
    torch.testing.assert_close(out['cams'], expected)
    assert out['cams'].shape == (1, 3, 4, 4)


def test_predict_restricts_to_labels_and_is_flip_equivariant():
    torch.manual_seed(0)
    model = build_model(test_cfg=dict(bg_thr=0.3, scales=(1.0, 0.75)))
    model.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        res = model.predict(x, make_samples([[0, 1, 0]]))[0]
        res_flip = model.predict(x.flip(-1), make_samples([[0, 1, 0]]))[0]
    logits = res.seg_logits.data
    assert logits.shape == (4, 32, 32)
    assert torch.all(logits[0] == 0.3)
    assert torch.all(logits[1] == 0) and torch.all(logits[3] == 0)
    assert set(res.pred_sem_seg.data.unique().tolist()) <= {0, 2}
    torch.testing.assert_close(logits, res_flip.seg_logits.data.flip(-1))


def test_predict_without_labels_needs_use_labels_false():
    model = build_model()
    model.eval()
    x = torch.randn(1, 3, 32, 32)
    sample = SegDataSample()
    sample.set_metainfo(dict(img_shape=(32, 32), ori_shape=(32, 32)))
    with pytest.raises(KeyError, match='img_labels'):
        model.predict(x, [sample])
    model.test_cfg['use_labels'] = False
    with torch.no_grad():
        out = model.predict(x, [sample])[0]
    assert out.seg_logits.data.shape == (4, 32, 32)


def test_bad_configs_raise():
    with pytest.raises(ValueError, match='background'):
        build_model(num_classes=1)
    with pytest.raises(ValueError, match='patch_head'):
        build_model(cam_source='patch')


@pytest.mark.parametrize('scales', [(1.0, 0.75), (0.75,)])
def test_predicted_image_logits_are_those_of_the_plain_input(scales):
    torch.manual_seed(0)
    model = build_model(test_cfg=dict(scales=scales))
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        results = model.predict(x, make_samples([[0, 1, 0], [1, 0, 1]]))
        expected = model.logits(x)
    got = torch.stack([r.pred_img_logits for r in results])
    torch.testing.assert_close(got, expected)


def test_test_cfg_refuses_unknown_keys():
    with pytest.raises(
        ValueError, match=r'ViTCAM test_cfg: unknown key\(s\) bg_thresh; '
    ):
        build_model(test_cfg=dict(bg_thresh=0.4))
