"""Helpers to run shipped synthetic configs for a few iterations in tests."""

from mmengine.config import Config


def tiny_synthetic_cfg(
    path: str, work_dir: str, iters: int = 2, num_train: int = 16, num_val: int = 8
) -> Config:
    """Load a synthetic config and shrink data and schedule for a smoke run."""
    cfg = Config.fromfile(path)
    cfg.work_dir = work_dir
    for key, num in (
        ('train_dataloader', num_train),
        ('val_dataloader', num_val),
        ('test_dataloader', num_val),
    ):
        loader = cfg[key]
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.batch_size = min(loader.batch_size, 8)
        loader.dataset.num_samples = num
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    for sched in cfg.param_scheduler:
        if sched.get('type') == 'OneCycleLR':
            sched.total_steps = iters
    cfg.default_hooks.checkpoint.interval = iters
    cfg.default_hooks.logger.interval = 1
    cfg.log_level = 'WARNING'
    return cfg
