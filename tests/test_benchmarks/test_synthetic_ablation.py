"""The synthetic ablation command runs for every model family (tiny sizes)."""

import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from tests.scripts import load_script

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.mark.slow
def test_ablation_rows_for_toco_and_mctformer(tmp_path):
    variants = [
        'toco_baseline',
        'toco_acr',
        'mct_baseline',
        'mct_uniform_attn',
        'mct_acr',
    ]
    cmd = [
        sys.executable,
        osp.join(ROOT, 'benchmarks/synthetic_ablation.py'),
        '--work-dir',
        str(tmp_path),
        '--variants',
        *variants,
        '--seeds',
        '0',
        '--iters',
        '2',
        '--batch',
        '4',
        '--pretrain-iters',
        '1',
        '--num-train',
        '8',
        '--num-val',
        '4',
        '--grad-head',
        'mct_acr',
    ]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    summary = report['summary']
    for name in variants:
        row = summary[f'{name}/patch']
        assert 0 <= row['mIoU_best']['mean'] <= 100
        assert len(row['attn_entropy_per_layer']) == 4
    # paired against the baseline of the same family
    assert 'paired_diff_mean' in summary['toco_acr/patch']['mIoU_best']
    assert 'paired_diff_mean' in summary['mct_acr/patch']['mIoU_best']
    # ToCo reports its decoder, MCTformer its class-token F1 and gradient head
    assert 0 <= summary['toco_baseline/patch']['seg_mIoU']['mean'] <= 100
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
