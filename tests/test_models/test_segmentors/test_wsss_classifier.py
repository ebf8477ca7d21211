"""WSSSClassifier: the shared constructor of ViTCAM, ToCo and MCTformer."""

import pytest
from mmengine.config import Config
from mmseg.registry import MODELS

from acr_plugin.models.segmentors import WSSSClassifier

HOSTS = {
    'ViTCAM': 'configs/vit_cam/vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py',
    'ToCo': 'configs/toco/toco_tiny-p8_1xb32-600it_synthetic-64x64.py',
    'MCTformer': (
        'configs/mctformer/mctformer-v2_tiny-p8_1xb64-600it_synthetic-64x64.py'
    ),
}


def host_cfg(name: str) -> dict:
    return Config.fromfile(HOSTS[name]).model.to_dict()


@pytest.mark.parametrize('name', sorted(HOSTS))
def test_shared_constructor(name):
    cfg = host_cfg(name)
    cfg['test_cfg'] = dict(bg_thr=0.3)
    cfg['train_cfg'] = None
    model = MODELS.build(cfg)
    assert isinstance(model, WSSSClassifier)
    assert model.num_fg_classes == model.num_classes - 1
    assert model.test_cfg['bg_thr'] == 0.3 and 'use_labels' in model.test_cfg
    assert model.train_cfg == {}
    assert model.embed_dim == model.backbone.embed_dim
    # the checkpoint-fit hooks are installed
    assert model._load_state_dict_post_hooks


@pytest.mark.parametrize('name', sorted(HOSTS))
def test_shared_checks_name_the_class(name):
    with pytest.raises(ValueError, match=f'{name}: num_classes counts background'):
        MODELS.build(dict(host_cfg(name), num_classes=1))
    with pytest.raises(ValueError, match=f'{name} test_cfg: unknown key'):
        MODELS.build(dict(host_cfg(name), test_cfg=dict(no_such_key=1)))
