"""mmseg's own tools and ``mmseg::`` config bases run acr_plugin's configs.

A user of the plug-in keeps mmseg's ``tools/train.py`` / ``tools/test.py``
(shipped inside the installed package, ``mmseg/.mim/tools``) and inherits
mmseg's own base configs (``_base_ = ['mmseg::_base_/...']``); only
``custom_imports`` names acr_plugin. Both routes train the synthetic ACR model
here, on whichever stack runs the tests (the pinned onedl one in CI, the classic
upstream one under ``make test-upstream``).
"""

import importlib.metadata
import os.path as osp
import subprocess
import sys

import mmseg
import pytest

from tests.scripts import ROOT
from tests.synthetic_runs import dist_smoke_options

MIM_TOOLS = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools')
ACR = 'configs/acr/acr_vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py'

USER_CONFIG = """\
# a user's own config: mmseg's bases, acr_plugin's synthetic model and data
_base_ = [
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_20k.py',
    '{root}/configs/_base_/models/vit_cam_tiny-p8.py',
    '{root}/configs/_base_/datasets/synthetic_wsss.py',
]
custom_imports = dict(imports=['acr_plugin'], allow_failed_imports=False)
model = dict(
    _delete_=True,
    type='ACRSegmentor',
    model={{{{_base_.model}}}},
    acr_loss=dict(type='AllPairsConsistencyLoss', loss_weight=10.0),
    view=dict(type='flip'),
)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=5.0),
)
val_evaluator = dict(type='WSSSMetric', sub_metrics=[
    dict(type='IoUMetric', iou_metrics=['mIoU']),
    dict(type='CAMMetric', fp_budget=0.10),
])
test_evaluator = val_evaluator
"""


def _run(args, **kwargs):
    out = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, **kwargs
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return out.stdout + out.stderr


def _upstream_mmseg() -> bool:
    try:
        importlib.metadata.distribution('mmsegmentation')
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _train_and_test(train_py, test_py, config, work, options):
    _run([train_py, config, '--work-dir', work, '--cfg-options', *options])
    ckpt = osp.join(work, 'iter_2.pth')
    assert osp.isfile(ckpt)
    log = _run(
        [
            test_py,
            config,
            ckpt,
            '--work-dir',
            osp.join(work, 'test'),
            '--cfg-options',
            *options,
        ]
    )
    assert 'mIoU:' in log and 'body_recall_at_fp0.10:' in log, log[-2000:]


@pytest.mark.slow
def test_mmseg_own_tools_train_and_test_the_acr_config(tmp_path):
    """The shipped ACR config through the tools inside the installed mmseg."""
    assert osp.isfile(osp.join(MIM_TOOLS, 'train.py')), MIM_TOOLS
    _train_and_test(
        osp.join(MIM_TOOLS, 'train.py'),
        osp.join(MIM_TOOLS, 'test.py'),
        ACR,
        str(tmp_path),
        dist_smoke_options(2),
    )


@pytest.mark.slow
def test_user_config_on_mmseg_bases_trains_acr(tmp_path):
    """``mmseg::`` bases + ``custom_imports``: with upstream mmsegmentation
    through mmseg's own tools; with the onedl forks (whose mmengine looks the
    prefix up under upstream's distribution name) through acr_plugin's tools,
    which import acr_plugin before parsing the config (see
    ``acr_plugin.utils.compat.register_config_packages``)."""
    config = tmp_path / 'my_acr_config.py'
    config.write_text(USER_CONFIG.format(root=ROOT))
    tools = MIM_TOOLS if _upstream_mmseg() else osp.join(ROOT, 'tools')
    options = [
        opt for opt in dist_smoke_options(2) if not opt.startswith('param_scheduler')
    ]
    _train_and_test(
        osp.join(tools, 'train.py'),
        osp.join(tools, 'test.py'),
        str(config),
        str(tmp_path / 'work'),
        options,
    )
