"""The Fashion-MNIST twin command trains and validates its candidates."""

import os.path as osp

import pytest

from acr_plugin.datasets.fashion_mnist import make_tiny_fashion_mnist
from tests.scripts import load_script, run_benchmark


@pytest.mark.slow
def test_twin_reports_accuracy_per_candidate(tmp_path):
    data_root = make_tiny_fashion_mnist(str(tmp_path / 'idx'))
    names = ['vit_p8_600it_6k', 'hybrid_600it_6k']
    args = ['--work-dir', str(tmp_path / 'work'), '--data-root', data_root]
    args += ['--candidates', *names, '--iters', '1']
    report = run_benchmark('benchmarks/fashion_mnist_twin.py', args, timeout=600)
    assert list(report['candidates']) == names
    for name in names:
        res = report['candidates'][name]
        assert 0 <= res['top1'] <= 100 and 0 <= res['f1'] <= 100
        assert res['iters'] == 1 and res['num_train'] == 6000


def test_the_shipped_config_is_a_candidate():
    """The candidate without overrides at the config's length and size is the
    pretraining config as shipped (what the benchmark's command trains)."""
    from mmengine.config import Config

    twin = load_script('benchmarks/fashion_mnist_twin.py')
    protocol = twin.load_protocol()
    cfg = Config.fromfile(osp.join(protocol.ROOT, protocol.FM_PRETRAIN_CFG))
    shipped = (
        {},
        cfg.train_cfg.max_iters,
        cfg.train_dataloader.dataset.num_samples,
    )
    assert shipped in twin.CANDIDATES.values()
    assert cfg.train_cfg.max_iters == protocol.PRETRAIN_ITERS['fashion_mnist']
