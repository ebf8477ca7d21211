"""The ToCo twin speed benchmark prints its profile and run-time ratio."""

import json

import pytest

from acr_plugin.hosts.toco import toco_ops
from acr_plugin.hosts.toco import toco_training_step as toco_module
from tests.scripts import load_script

PARTS = (
    'forward_outputs',
    'multi_scale_cams',
    'ptc',
    'ctc',
    'par_pseudo_labels',
    'decoder',
    'seg_loss',
    'dense_energy',
    'backward',
    'optimizer_step',
    'other',
)


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_steps_mode_reports_the_profile_and_the_ratio(capsys):
    bench = load_script('benchmarks/toco_twin_speed.py')
    argv = ['--mode', 'steps', '--steps', '1', '--profile-steps', '1']
    argv += ['--warmup', '0', '--batch', '2', '--threads', '1']
    returned = bench.main(argv)
    report = _last_json(capsys)
    assert report == json.loads(json.dumps(returned))
    profile = report['profile']
    assert profile['batch'] == 2 and profile['step_ms'] > 0
    for name in PARTS:
        part = profile['parts'][name]
        assert part['ms'] >= 0 and 0 <= part['share'] <= 1, name
    # the top-level parts partition the step
    shares = sum(p['share'] for p in profile['parts'].values())
    assert shares == pytest.approx(1.0, abs=0.02)
    for sub in ('ctc/local_view_augment', 'ctc/sample_local_crops', 'ctc/backbone'):
        assert sub in profile['subparts'], sub
    assert 'par_pseudo_labels/par' in profile['subparts']
    ratio = report['ratio']
    assert ratio['mode'] == 'steps' and 'extrapolat' in ratio['how']
    for key in ('toco', 'baseline'):
        assert ratio[key]['max_iters'] == 600
        assert ratio[key]['run_s'] > 0 and ratio[key]['step_s'] > 0
    assert ratio['ratio_toco_vs_baseline'] > 0
    assert isinstance(ratio['meets_target'], bool)
    # the timers are removed again (the module functions are shared)
    assert toco_module.refine_cams_with_par is toco_ops.refine_cams_with_par
    assert toco_module.sample_local_crops is toco_ops.sample_local_crops


def test_profile_only(capsys):
    bench = load_script('benchmarks/toco_twin_speed.py')
    bench.main(['--mode', 'none', '--profile-steps', '1', '--batch', '2'])
    report = _last_json(capsys)
    assert 'ratio' not in report and report['profile']['batch'] == 2


# both twins through tools/train.py, shrunk to 2 iterations on a few images
SHRINK = [
    'train_cfg.max_iters=2',
    'train_cfg.val_interval=2',
    'default_hooks.checkpoint.interval=2',
    'train_dataloader.batch_size=2',
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'train_dataloader.dataset.num_samples=4',
    'val_dataloader.batch_size=2',
    'val_dataloader.num_workers=0',
    'val_dataloader.persistent_workers=False',
    'val_dataloader.dataset.num_samples=2',
]


@pytest.mark.slow
def test_whole_mode_times_both_training_runs(capsys, tmp_path):
    bench = load_script('benchmarks/toco_twin_speed.py')
    argv = ['--profile-steps', '1', '--warmup', '0', '--batch', '2']
    argv += ['--work-dir', str(tmp_path), '--cfg-options', *SHRINK]
    bench.main(argv)
    ratio = _last_json(capsys)['ratio']
    assert ratio['mode'] == 'whole' and 'tools/train.py' in ratio['how']
    for key in ('toco', 'baseline'):
        assert ratio[key]['run_s'] > 0 and ratio[key]['run_cpu_s'] > 0
        assert (tmp_path / key).is_dir()  # each run's work dir
    assert ratio['ratio_toco_vs_baseline'] > 0
