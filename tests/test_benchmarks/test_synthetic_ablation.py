"""The synthetic ablation command runs for every model family (tiny sizes)."""

import math
import os
import os.path as osp
import sys

import pytest
from mmengine.config import Config

from tests.scripts import ROOT, TINY_PROTOCOL_ARGS, load_script, run_benchmark


@pytest.mark.slow
def test_ablation_rows_for_toco_and_mctformer(tmp_path):
    variants = [
        'toco_baseline',
        'toco_acr',
        'mct_baseline',
        'mct_uniform_attn',
        'mct_acr',
    ]
    args = ['--work-dir', str(tmp_path), '--variants', *variants, '--seeds', '0']
    args += [*TINY_PROTOCOL_ARGS, '--grad-head', 'mct_acr']
    report = run_benchmark('benchmarks/synthetic_ablation.py', args, timeout=900)
    summary = report['summary']
    for name in variants:
        row = summary[f'{name}/patch']
        assert math.isfinite(row['mIoU_best']['mean']), name
        assert len(row['attn_entropy_per_layer']) == 4
    # paired against the baseline of the same family
    assert 'paired_diff_mean' in summary['toco_acr/patch']['mIoU_best']
    assert 'paired_diff_mean' in summary['mct_acr/patch']['mIoU_best']
    # ToCo reports its decoder, MCTformer its class-token F1 and gradient head
    assert math.isfinite(summary['toco_baseline/patch']['seg_mIoU']['mean'])
    assert 'f1_token' in summary['mct_baseline/patch']
    assert 'mct_acr/grad' in summary
    assert summary['mct_uniform_attn/patch']['attn_entropy_mean']['mean'] == (
        pytest.approx(1.0, abs=1e-3)
    )
    # every run file names the non-default settings it was made with
    runs = sorted(f for f in os.listdir(tmp_path / 'runs') if f.endswith('.json'))
    tag = '_iters2_batch4_pretrainiters1_numtrain8_numval4'
    assert runs == sorted(f'{name}_s0{tag}.json' for name in variants)


def _ablation_module():
    return load_script('benchmarks/synthetic_ablation.py')


def test_every_variant_trains_a_shipped_config():
    """Each row is one config file (the ablations live in configs/acr/); the
    uniform-attention controls are exactly the configs with the hook."""
    ablation = _ablation_module()
    for name, spec in ablation.VARIANTS.items():
        path = osp.join(ROOT, spec['config'])
        assert osp.isfile(path), (name, spec['config'])
        uniform = ablation.uses_uniform_attention(Config.fromfile(path))
        assert uniform == name.endswith('uniform_attn'), name
    families = {spec['family'] for spec in ablation.VARIANTS.values()}
    for family in families:  # every family has one baseline to pair against
        baselines = [
            n
            for n, s in ablation.VARIANTS.items()
            if s['family'] == family and s.get('baseline')
        ]
        assert len(baselines) == 1, (family, baselines)


def test_run_cache_key_names_every_non_default_setting(monkeypatch):
    ablation = _ablation_module()
    monkeypatch.setattr(sys, 'argv', ['synthetic_ablation.py'])
    args = ablation.parse_args()
    assert ablation.settings_tag(args, has_acr_loss=True) == ''  # README's runs
    args.alpha = 3.0
    assert ablation.settings_tag(args, has_acr_loss=True) == '_alpha3'
    # alpha does not change a run without an ACR loss: its cache is shared
    assert ablation.settings_tag(args, has_acr_loss=False) == ''
    args.iters, args.no_pretrain = 300, True
    assert ablation.settings_tag(args, has_acr_loss=True) == '_iters300_scratch_alpha3'
