"""Every shipped config parses and its model builds (no pretrained weights)."""

import glob
import json
import os.path as osp
import re

import pytest
from mmengine.config import Config
from mmseg.registry import DATASETS, MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    path
    for path in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in path
)


def strip_pretrained(node):
    """Drop every Pretrained init_cfg (no checkpoint files in tests)."""
    if isinstance(node, dict):
        init = node.get('init_cfg')
        if isinstance(init, dict) and init.get('type') == 'Pretrained':
            node['init_cfg'] = None
        for value in node.values():
            strip_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            strip_pretrained(value)


def is_full_size(path: str) -> bool:
    return 'synthetic' not in osp.basename(path)


def test_configs_found():
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize(
    'path',
    [
        pytest.param(p, marks=pytest.mark.slow) if is_full_size(p) else p
        for p in CONFIGS
    ],
    ids=[osp.relpath(p, ROOT) for p in CONFIGS],
)
def test_config_builds(path):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports['imports'] == ['acr_plugin']
    model_cfg = cfg.model.to_dict()
    strip_pretrained(model_cfg)
    model = MODELS.build(model_cfg)
    model.init_weights()
    assert sum(p.numel() for p in model.parameters()) > 0
    if 'synthetic' in osp.basename(path):
        # synthetic data needs no files: the datasets build too
        for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            dataset = DATASETS.build(cfg[key]['dataset'])
            assert len(dataset) > 0


PATCH_VIT_CONFIGS = [
    p
    for p in CONFIGS
    if osp.basename(p).startswith(('toco', 'acr_toco', 'mctformer', 'acr_mctformer'))
]


@pytest.mark.parametrize(
    'path', PATCH_VIT_CONFIGS, ids=[osp.relpath(p, ROOT) for p in PATCH_VIT_CONFIGS]
)
def test_test_images_of_any_size_are_padded_to_whole_patches(path):
    """Full-resolution test images (VOC: e.g. 375 x 500) must reach a plain
    ViT as whole patches: the data preprocessor pads them at test time."""
    cfg = Config.fromfile(path)
    preprocessor = cfg.model.get('data_preprocessor')
    if preprocessor is None:  # ACR wrapper: the inner model's
        preprocessor = cfg.model.model.data_preprocessor
    model_cfg = cfg.model.get('model', cfg.model)
    # token size in pixels; the hybrid ('-r-') embeds 2x2 patches of its
    # stride-4 convolutional stem's feature map
    patch = 8 if re.search(r'_tiny(-r)?-p8_', path) else 16
    embed = patch // 4 if '_tiny-r-' in path else patch
    assert model_cfg.backbone.get('model_kwargs', {}).get('patch_size', embed) == embed
    from mmseg.structures import SegDataSample

    module = MODELS.build(preprocessor)
    import torch

    batch = dict(
        inputs=[torch.zeros(3, 37, 50, dtype=torch.uint8)],
        data_samples=[SegDataSample()],
    )
    inputs = module(batch, False)['inputs']
    assert inputs.shape[-2] % patch == 0 and inputs.shape[-1] % patch == 0


@pytest.mark.parametrize(
    'path',
    [p for p in CONFIGS if is_full_size(p)],
    ids=[osp.relpath(p, ROOT) for p in CONFIGS if is_full_size(p)],
)
def test_full_size_configs_state_their_total_batch(path):
    """`tools/train.py --auto-scale-lr` needs auto_scale_lr.base_batch_size: the
    GPUs x batch per GPU of the config's name, which the loader must match."""
    gpus, per_gpu = map(int, re.search(r'_(\d+)xb(\d+)-', osp.basename(path)).groups())
    cfg = Config.fromfile(path)
    assert cfg.train_dataloader.batch_size == per_gpu
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=gpus * per_gpu)


ACR_CONFIGS = [
    p
    for p in CONFIGS
    if osp.basename(osp.dirname(p)) == 'acr' and osp.basename(p).startswith('acr')
]


@pytest.mark.parametrize(
    'path', ACR_CONFIGS, ids=[osp.relpath(p, ROOT) for p in ACR_CONFIGS]
)
def test_acr_config_wraps_its_baseline_unchanged(path):
    """ACR is adopted by config inheritance alone: acr[-variant]_<name>.py
    wraps configs/*/<name>.py's model exactly and changes nothing else."""
    name = osp.basename(path).split('_', 1)[1]
    (baseline,) = [
        p for p in CONFIGS if osp.basename(p) == name and p not in ACR_CONFIGS
    ]
    acr, base = Config.fromfile(path).to_dict(), Config.fromfile(baseline).to_dict()
    assert acr['model']['type'] == 'ACRSegmentor'
    assert acr['model']['model'] == base['model']
    for key in set(acr) | set(base):
        if key not in ('model', '_base_'):
            assert acr.get(key) == base.get(key), key


SYN = '_tiny-p8_1xb64-600it_synthetic-64x64.py'
SYN_TOCO = '_tiny-p8_1xb32-600it_synthetic-64x64.py'
FASHION = '_tiny-r-p8_1xb64-600it_fashion-mnist-64x64.py'
FASHION_TOCO = '_tiny-r-p8_1xb32-600it_fashion-mnist-64x64.py'
UNIFORM_HOOK = dict(type='UniformAttentionHook', module='backbone')
#: the ablations' configs (benchmarks/synthetic_ablation.py, both benchmarks):
#: config -> (its parent, the settings it changes: dotted key -> value)
ABLATIONS = {
    f'acr/acr-alpha0_vit-cam{SYN}': (
        f'acr/acr_vit-cam{SYN}',
        {'model.acr_loss': None},
    ),
    f'acr/acr-entcap_vit-cam{SYN}': (
        f'acr/acr_vit-cam{SYN}',
        {'model.acr_loss.entropy_cap': 0.85, 'model.acr_loss.entropy_weight': 1.0},
    ),
    f'acr/acr-stopgrad_vit-cam{SYN}': (
        f'acr/acr_vit-cam{SYN}',
        {'model.acr_loss.stop_grad': 'view2'},
    ),
    f'acr/acr-rescale_vit-cam{SYN}': (
        f'acr/acr_vit-cam{SYN}',
        {'model.view': dict(type='rescale', scale_range=(0.75, 1.25))},
    ),
    f'acr/acr-alpha0_toco{SYN_TOCO}': (
        f'acr/acr_toco{SYN_TOCO}',
        {'model.acr_loss': None},
    ),
    f'acr/acr-alpha0_mctformer-v2{SYN}': (
        f'acr/acr_mctformer-v2{SYN}',
        {'model.acr_loss': None},
    ),
    f'acr/acr-alpha0_mctformer-v1{SYN}': (
        f'acr/acr_mctformer-v1{SYN}',
        {'model.acr_loss': None},
    ),
    f'acr/uniform-attn_vit-cam{SYN}': (
        f'vit_cam/vit-cam{SYN}',
        {'custom_hooks': [UNIFORM_HOOK]},
    ),
    f'acr/uniform-attn_toco{SYN_TOCO}': (
        f'toco/toco{SYN_TOCO}',
        {'custom_hooks': 'APPEND'},
    ),
    f'acr/uniform-attn_mctformer-v2{SYN}': (
        f'mctformer/mctformer-v2{SYN}',
        {'custom_hooks': [UNIFORM_HOOK]},
    ),
    f'acr/acr-alpha0_vit-cam{FASHION}': (
        f'acr/acr_vit-cam{FASHION}',
        {'model.acr_loss': None},
    ),
    f'acr/uniform-attn_vit-cam{FASHION}': (
        f'vit_cam/vit-cam{FASHION}',
        {'custom_hooks': [UNIFORM_HOOK]},
    ),
    f'acr/acr-alpha0_toco{FASHION_TOCO}': (
        f'acr/acr_toco{FASHION_TOCO}',
        {'model.acr_loss': None},
    ),
    f'acr/uniform-attn_toco{FASHION_TOCO}': (
        f'toco/toco{FASHION_TOCO}',
        {'custom_hooks': 'APPEND'},
    ),
    f'acr/acr-alpha0_mctformer-v2{FASHION}': (
        f'acr/acr_mctformer-v2{FASHION}',
        {'model.acr_loss': None},
    ),
    f'acr/uniform-attn_mctformer-v2{FASHION}': (
        f'mctformer/mctformer-v2{FASHION}',
        {'custom_hooks': [UNIFORM_HOOK]},
    ),
}


def test_every_ablation_config_is_listed():
    names = {
        osp.relpath(p, osp.join(ROOT, 'configs'))
        for p in CONFIGS
        if osp.basename(p).startswith(('acr-', 'uniform-attn'))
        and not osp.basename(p).startswith('acr-gradcam')
    }
    assert names == set(ABLATIONS)


@pytest.mark.parametrize('name', sorted(ABLATIONS))
def test_ablation_config_changes_only_its_settings(name):
    """Each ablation is its parent config with the stated settings changed."""
    parent_name, changes = ABLATIONS[name]
    child = Config.fromfile(osp.join(ROOT, 'configs', name)).to_dict()
    expected = Config.fromfile(osp.join(ROOT, 'configs', parent_name)).to_dict()
    for key, value in changes.items():
        *path, last = key.split('.')
        node = expected
        for part in path:
            node = node[part]
        if value == 'APPEND':  # the parent's hooks, then the uniform one
            value = list(node[last]) + [UNIFORM_HOOK]
        node[last] = value
    assert json.dumps(child, sort_keys=True) == json.dumps(expected, sort_keys=True)


OFFICIAL_ACR = [
    p for p in ACR_CONFIGS if osp.basename(p).startswith('acr_vit-cam_vit-b-r50')
]


@pytest.mark.parametrize(
    'path', OFFICIAL_ACR, ids=[osp.relpath(p, ROOT) for p in OFFICIAL_ACR]
)
def test_official_acr_configs_localise_as_the_official_script(path):
    """The ACR authors' inference runs --getam_func grad --start_layer 10
    --aff True: the "grad" variant over blocks 10 and 11 of the 12, refined by
    the patch affinity, flip TTA, at 384 px (Sun et al., arXiv 2308.04321)."""
    from acr_plugin.acr.grad_cam_ops import resolve_start_layer

    cfg = Config.fromfile(path)
    head = cfg.model.predictor
    assert cfg.model.model.backbone.model_name == 'vit_base_r50_s16_384'
    depth = 12  # blocks of timm's vit_base_r50_s16_384
    assert head.type == 'ClsTokenGradCAMHead' and head.variant == 'grad'
    assert resolve_start_layer(head.start_layer, depth) == 10
    assert head.refine is True and head.flip is True
    assert tuple(head.input_size) == (384, 384)
