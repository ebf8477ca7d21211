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


@pytest.mark.slow
def test_fashion_mnist_rows_use_its_own_pretraining(tmp_path):
    from acr_plugin.datasets.fashion_mnist import make_tiny_fashion_mnist

    data_root = make_tiny_fashion_mnist(str(tmp_path / 'idx'))
    variants = [
        'fm_baseline',
        'fm_uniform_attn',
        'fm_acr',
        'fm_toco_baseline',
        'fm_mct_baseline',
        'fm_mct_acr',
    ]
    work = tmp_path / 'work'
    args = ['--benchmark', 'fashion_mnist', '--work-dir', str(work)]
    args += ['--variants', *variants, '--seeds', '0', '--data-root', data_root]
    args += [*TINY_PROTOCOL_ARGS, '--grad-head', 'fm_baseline', 'fm_mct_acr']
    report = run_benchmark('benchmarks/synthetic_ablation.py', args, timeout=900)
    assert report['benchmark'] == 'fashion_mnist'
    summary = report['summary']
    assert set(summary) == {
        'fm_baseline/patch',
        'fm_baseline/grad',
        'fm_uniform_attn/patch',
        'fm_acr/patch',
        'fm_toco_baseline/patch',
        'fm_mct_baseline/patch',
        'fm_mct_acr/patch',
        'fm_mct_acr/grad',
    }
    # paired against the baseline of the same family
    assert 'paired_diff_mean' in summary['fm_acr/patch']['mIoU_best']
    assert 'paired_diff_mean' in summary['fm_mct_acr/patch']['mIoU_best']
    # ToCo reports its decoder; every host runs on the hybrid ViT's 4 blocks
    assert math.isfinite(summary['fm_toco_baseline/patch']['seg_mIoU']['mean'])
    for name in variants:
        assert len(summary[f'{name}/patch']['attn_entropy_per_layer']) == 4, name
    assert summary['fm_uniform_attn/patch']['attn_entropy_mean']['mean'] == (
        pytest.approx(1.0, abs=1e-3)
    )
    # the Fashion-MNIST twin, cached under its config's name and digest
    (pretrained,) = os.listdir(work / 'pretrain')
    assert pretrained.startswith('vit-cls_tiny-r-p8_1xb64-2400it_fashion-mnist-')
    # 10 classes: the trivial predictors are scored on the benchmark's labels
    assert set(report['trivial']) == {'all_background', 'whole_image_labels'}


def test_variants_of_another_benchmark_are_refused(monkeypatch, capsys):
    ablation = _ablation_module()
    argv = ['synthetic_ablation.py', '--variants', 'baseline', 'fm_acr']
    monkeypatch.setattr(sys, 'argv', argv)
    with pytest.raises(SystemExit):
        ablation.parse_args()
    assert 'fm_acr belong to another benchmark' in capsys.readouterr().err
    monkeypatch.setattr(
        sys, 'argv', [*argv[:2], 'fm_acr', '--benchmark', 'fashion_mnist']
    )
    args = ablation.parse_args()
    assert args.work_dir == 'work_dirs/fashion_mnist_ablation'
    assert args.pretrain_iters == 2400  # its pretraining config's length
    assert ablation.settings_tag(args, has_acr_loss=True) == ''


def test_cached_runs_are_keyed_on_the_config_they_ran():
    """A changed config (or data root, or pretrained start) changes the digest
    that a cached run must match to be reused."""
    ablation = _ablation_module()
    cfg = ablation.FM_VIT_CAM_CFG
    digest = ablation.config_digest(cfg)
    assert digest == ablation.config_digest(cfg)
    assert digest != ablation.config_digest(cfg, ablation.data_root_options('/d'))
    assert digest != ablation.config_digest(cfg, pretrained='a.pth')
    assert digest != ablation.config_digest(ablation.VARIANTS['fm_acr']['config'])


def test_verdict_is_acr_against_its_control_paired_per_seed():
    """ACR rows are judged against the two-view control of their family (not
    the one-view baseline): beyond 2 standard deviations of the paired
    differences it helps or hurts, otherwise it does nothing."""
    ablation = _ablation_module()
    assert ablation.verdict(1.0, 0.4) == 'helps'
    assert ablation.verdict(-1.0, 0.4) == 'hurts'
    assert ablation.verdict(1.0, 0.5) == 'no effect'  # exactly 2 std: not beyond
    runs = {
        ('fm_baseline', 'patch'): {0: {'mIoU_best': 10.0}, 1: {'mIoU_best': 20.0}},
        ('fm_two_view', 'patch'): {0: {'mIoU_best': 11.0}, 1: {'mIoU_best': 21.0}},
        ('fm_acr', 'patch'): {0: {'mIoU_best': 14.0}, 1: {'mIoU_best': 23.5}},
    }
    table = ablation.verdicts(runs)
    assert list(table) == ['fm_acr/patch']  # the controls are not judged
    row = table['fm_acr/patch']
    assert row['control'] == 'fm_two_view'
    assert row['mIoU_best']['values'] == [3.0, 2.5]
    assert row['mIoU_best']['mean'] == pytest.approx(2.75)
    assert row['mIoU_best']['verdict'] == 'helps'  # 2.75 > 2 x 0.354
    for variant in ablation.VARIANTS:  # every ACR run has a control to face
        if ablation.has_acr_loss(variant):
            control = ablation.family_member(variant, 'control')
            assert control is not None, variant
            assert not ablation.has_acr_loss(control), control


def test_summary_leaves_out_metrics_a_benchmark_cannot_measure():
    """Fashion-MNIST has no part annotation: head recall is NaN in every run
    and must not reach the mean, the std or the paired differences."""
    ablation = _ablation_module()
    nan = float('nan')

    def run(miou):
        return {
            'mIoU_best': miou,
            'head_recall': nan,
            'attn_entropy_per_layer': [0.5],
            'train_time_s': 1.0,
        }

    results = {
        ('fm_baseline', 'patch'): {0: run(10.0), 1: run(12.0)},
        ('fm_acr', 'patch'): {0: run(11.0), 1: run(12.5)},
    }
    summary = ablation.summarise(results, None)
    row = summary['fm_acr/patch']
    assert 'head_recall' not in row
    assert row['mIoU_best']['paired_diff_mean'] == pytest.approx(0.75)
