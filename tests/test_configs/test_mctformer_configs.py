"""MCTformer configs: the recipes, what the ACR configs set on top of them,
and the full-size models built. (That every config parses, builds, wraps its
baseline unchanged and trains + tests through the tools:
test_configs_build.py and test_configs_run.py.)"""

import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmseg.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MCT = 'configs/mctformer/'
ACR = 'configs/acr/'
VOC_V2 = MCT + 'mctformer-v2_deit-s16_4xb16-60e_voc12aug-224x224.py'
VOC_V1 = MCT + 'mctformer-v1_deit-s16_4xb16-60e_voc12aug-224x224.py'
COCO_V2 = MCT + 'mctformer-v2_deit-s16_4xb16-60e_coco14-224x224.py'
COCO_V1 = MCT + 'mctformer-v1_deit-s16_4xb16-60e_coco14-224x224.py'
ACR_VOC = ACR + 'acr_mctformer-v2_deit-s16_4xb16-60e_voc12aug-224x224.py'
ACR_COCO = ACR + 'acr_mctformer-v2_deit-s16_4xb16-60e_coco14-224x224.py'
ACR_SYN = ACR + 'acr_mctformer-v2_tiny-p8_1xb64-600it_synthetic-64x64.py'
ACR_VOC_V1 = ACR + 'acr_mctformer-v1_deit-s16_4xb16-60e_voc12aug-224x224.py'
ACR_SYN_V1 = ACR + 'acr_mctformer-v1_tiny-p8_1xb64-600it_synthetic-64x64.py'
ACR_SYN_GRAD = ACR + 'acr-gradcam_mctformer-v2_tiny-p8_1xb64-600it_synthetic-64x64.py'

# (ACR config, alpha, class tokens)
ACR_PAIRS = [
    (ACR_VOC, 125.0, 20),
    (ACR_COCO, 100.0, 80),
    (ACR_SYN, 10.0, 6),
    (ACR_SYN_GRAD, 10.0, 6),
    (ACR_VOC_V1, 125.0, 20),
    (ACR_SYN_V1, 10.0, 6),
]


def load(path: str) -> Config:
    return Config.fromfile(osp.join(ROOT, path))


def inner_model(cfg: Config) -> dict:
    model = cfg.model.to_dict()
    return model['model'] if model['type'] == 'ACRSegmentor' else model


def build_without_weights(cfg: Config):
    model = cfg.model.to_dict()
    inner = model['model'] if model['type'] == 'ACRSegmentor' else model
    inner['backbone']['init_cfg'] = None
    model = MODELS.build(model)
    model.init_weights()
    return model


@pytest.mark.parametrize(
    'path,num_fg,version',
    [(VOC_V2, 20, 'v2'), (VOC_V1, 20, 'v1'), (COCO_V2, 80, 'v2'), (COCO_V1, 80, 'v1')],
)
def test_full_size_recipe(path, num_fg, version):
    cfg = load(path)
    model = inner_model(cfg)
    assert model['type'] == 'MCTformer' and model['version'] == version
    assert model['num_classes'] == num_fg + 1
    assert model['attn_layers'] == 3 and model['refine']
    backbone = model['backbone']
    assert backbone['model_name'] == 'deit_small_patch16_224'
    assert backbone['num_class_tokens'] == num_fg
    assert backbone['out_norm'] is False
    assert backbone['model_kwargs']['drop_path_rate'] == 0.1
    assert backbone['init_cfg']['type'] == 'Pretrained'
    assert model['test_cfg']['flip'] and model['test_cfg']['eps'] == 1e-8
    optim = cfg.optim_wrapper.optimizer
    assert optim.type == 'AdamW' and optim.lr == 6.25e-5
    assert optim.weight_decay == 0.05
    warmup, cosine = cfg.param_scheduler
    assert warmup.type == 'LinearLR'
    assert warmup.start_factor * optim.lr == pytest.approx(1e-6)
    assert cosine.type == 'CosineAnnealingLR' and cosine.eta_min == 1e-5
    assert cosine.end == cfg.train_cfg.max_iters
    images = 10582 if 'voc' in path else 82081
    assert cfg.train_cfg.max_iters == images * 60 // 64  # 60 epochs, 4 x 16
    assert warmup.end == round(images * 5 / 64)
    ops = {
        t.type: t
        for step in cfg.train_dataloader.dataset.pipeline
        if step.type == 'TorchvisionTransforms'
        for t in step.transforms
    }
    assert list(ops['RandomResizedCrop'].scale) == [0.08, 1.0]
    assert ops['RandAugment'].magnitude == 9 and ops['RandomErasing'].p == 0.25
    assert 'RandomHorizontalFlip' in ops
    # CAMs are tested at full resolution
    test_steps = [s.type for s in cfg.test_dataloader.dataset.pipeline]
    assert not {'Resize', 'RandomResize', 'RandomCrop'} & set(test_steps)
    evaluators = {e.type for e in cfg.val_evaluator.sub_metrics}
    assert {'IoUMetric', 'CAMMetric'} <= evaluators


@pytest.mark.parametrize('acr_path,alpha,num_fg', ACR_PAIRS)
def test_acr_configs_weight_the_class_token_rows(acr_path, alpha, num_fg):
    """alpha and the C class-token rows of the ACR loss, flip view, the
    localisation (that the wrapped model, data and schedule are the
    baseline's: test_configs_build.py)."""
    acr = load(acr_path)
    loss = acr.model.acr_loss
    assert loss.loss_weight == alpha and loss.num_prefix_tokens == num_fg
    assert acr.model.view.type == 'flip'
    predictor = acr.model.get('predictor')
    if acr_path == ACR_SYN_GRAD:
        assert predictor.type == 'ClsTokenGradCAMHead'
        assert predictor.prefix_row == 'class'
    else:  # MCTformer's own localisation
        assert predictor is None


@pytest.mark.parametrize(
    'path',
    [VOC_V2, VOC_V1, COCO_V2, COCO_V1, ACR_VOC, ACR_COCO, ACR_VOC_V1],
    ids=osp.basename,
)
def test_full_size_configs_build(path):
    model = build_without_weights(load(path))
    mct = model.model if type(model).__name__ == 'ACRSegmentor' else model
    num_fg = mct.num_fg_classes
    assert mct.backbone.num_prefix_tokens == num_fg
    assert mct.backbone.cls_tokens.shape == (1, num_fg, 384)
    assert mct.backbone.num_layers == 12
    assert (mct.patch_head is None) == (mct.version == 'v1')
    # timm's no-weight-decay rule: norms, biases, class tokens, pos_embed
    optim = build_optim_wrapper(model, load(path).optim_wrapper).optimizer
    decay = {
        id(p): group['weight_decay']
        for group in optim.param_groups
        for p in group['params']
    }
    backbone = mct.backbone.vit
    assert decay[id(backbone.cls_token)] == decay[id(backbone.pos_embed)] == 0
    assert decay[id(backbone.blocks[0].norm1.weight)] == 0
    assert decay[id(backbone.blocks[0].attn.qkv.bias)] == 0
    assert decay[id(backbone.blocks[0].attn.qkv.weight)] == 0.05
