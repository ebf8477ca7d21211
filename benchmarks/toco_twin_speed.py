"""Speed of the ToCo synthetic twin: per-part step profile and run-time ratio.

Two measurements, one JSON object:

1. **Step profile** of the ToCo twin (``--toco-config``): one randomly
   initialised model, one batch of the config's training set at the config's
   batch size, every loss switched on with the weights of the last
   ``TrainPhaseHook`` phase (90 % of a run: seg and dense-energy losses on),
   the config's optimiser wrapper (gradient clipping included). After
   ``--warmup`` untimed steps, ``--profile-steps`` steps are timed with
   ``time.perf_counter`` around the parts of ``ToCo.loss`` and of the update;
   the median per part is reported in ms and as a share of the median step.
   Top-level parts partition the step (``other`` is the rest: classifier
   losses, label masks, loss parsing); nested calls are reported under
   ``subparts`` as ``part/sub`` and are included in their part.
2. **Run-time ratio** of the ToCo twin to the ViT-CAM twin
   (``--baseline-config``). ``--mode whole`` (default) runs both whole
   training runs one after the other through ``tools/train.py`` with the
   shipped configs (every iteration, the final validation, checkpointing:
   wall time of the process); ``--mode steps`` times ``--steps`` training
   steps of each (after one untimed step; the ToCo twin with all its losses
   on) and extrapolates each to its config's ``max_iters``: a cheaper
   estimate without start-up, data loading and validation.

Both use ``--threads`` torch threads (default 1; ``OMP_NUM_THREADS`` for the
training processes). On 2 cores shared with other jobs, 2 threads made every
step 10-20x slower and erratic (each small operation waits for a thread whose
core is busy elsewhere), so the ratio would measure the machine's load; the
process CPU time is reported beside the wall time. Compare numbers from one
run only.

Example::

    python benchmarks/toco_twin_speed.py                         # whole runs
    python benchmarks/toco_twin_speed.py --mode steps --steps 5  # estimate
    python benchmarks/toco_twin_speed.py --mode none             # profile only

The last line printed is one JSON object.
"""

import argparse
import copy
import json
import os
import os.path as osp
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Callable, Dict, List

import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS, MODELS

import acr_plugin  # noqa: F401  (registers the models)
from acr_plugin.hosts.toco import toco_training_step as toco_module

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOCO_CFG = 'configs/toco/toco_tiny-p8_1xb32-600it_synthetic-64x64.py'
VIT_CAM_CFG = 'configs/vit_cam/vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--toco-config', default=TOCO_CFG)
    parser.add_argument('--baseline-config', default=VIT_CAM_CFG)
    parser.add_argument(
        '--mode',
        choices=('whole', 'steps', 'none'),
        default='whole',
        help='whole training runs (tools/train.py), timed steps extrapolated '
        'to max_iters, or no ratio (profile only)',
    )
    parser.add_argument('--steps', type=int, default=5, help='--mode steps: timed')
    parser.add_argument('--profile-steps', type=int, default=3, help='timed steps')
    parser.add_argument('--warmup', type=int, default=1, help='untimed steps')
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch threads of the profile and of both runs (1: see the module doc)',
    )
    parser.add_argument(
        '--batch', type=int, default=None, help='override the batch (tests only)'
    )
    parser.add_argument(
        '--work-dir', default=None, help='--mode whole: run folders (default: tmp)'
    )
    parser.add_argument(
        '--cfg-options',
        nargs='*',
        default=[],
        help='key=value passed to both training runs (--mode whole; tests only)',
    )
    return parser.parse_args(argv)


def _path(config: str) -> str:
    return config if osp.isabs(config) else osp.join(ROOT, config)


# ----------------------------------------------------------------- profile
class PartTimer:
    """Wall time of wrapped callables, by nesting path (``part/sub``)."""

    def __init__(self) -> None:
        self.stack: List[str] = []
        self.times: Dict[str, float] = defaultdict(float)
        self._originals: list = []

    @contextmanager
    def scope(self, label: str):
        path = '/'.join(self.stack + [label])
        self.stack.append(label)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.times[path] += time.perf_counter() - start
            self.stack.pop()

    def wrap(self, owner, name: str, label: str) -> None:
        """Replace ``owner.name`` by a timed call (instance or module attr)."""
        inner: Callable = getattr(owner, name)
        self._originals.append((owner, name, owner.__dict__.get(name)))

        def timed(*args, **kwargs):
            with self.scope(label):
                return inner(*args, **kwargs)

        setattr(owner, name, timed)

    def restore(self) -> None:
        """Undo every :meth:`wrap` (module functions are shared)."""
        for owner, name, original in reversed(self._originals):
            if original is None:
                delattr(owner, name)  # an instance attribute over the method
            else:
                setattr(owner, name, original)
        self._originals.clear()


def last_phase_weights(cfg: Config) -> Dict[str, float]:
    """Loss weights of the last ``TrainPhaseHook`` phase (all losses on)."""
    weights: Dict[str, float] = {}
    for hook in cfg.get('custom_hooks', []):
        if hook.get('type') == 'TrainPhaseHook':
            phases = sorted(hook['phases'], key=lambda p: p.get('begin', 0))
            for phase in phases:
                weights.update(phase.get('loss_weights', {}))
    return weights


def build_step(config: str, batch_size=None, all_losses: bool = True):
    """Model, optimiser wrapper and one collated batch of ``config``."""
    cfg = Config.fromfile(_path(config))
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    if all_losses and hasattr(model, 'set_train_phase'):
        model.set_train_phase(loss_weights=last_phase_weights(cfg))
    optim_wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    dataset_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    size = batch_size or cfg.train_dataloader.batch_size
    dataset_cfg['num_samples'] = size
    dataset = DATASETS.build(dataset_cfg)
    batch = pseudo_collate([dataset[i] for i in range(size)])
    return cfg, model, optim_wrapper, batch


def instrument_toco(model, optim_wrapper, timer: PartTimer) -> None:
    """Timed scopes around the parts of one ToCo training step."""
    timer.wrap(model.data_preprocessor, 'forward', 'data_preprocessor')
    timer.wrap(model, 'forward_outputs', 'forward_outputs')
    timer.wrap(model, 'multi_scale_cams', 'multi_scale_cams')
    timer.wrap(toco_module, 'token_band_labels', 'ptc')
    if model.loss_ptc is not None:
        timer.wrap(model.loss_ptc, 'forward', 'ptc')
    timer.wrap(model, '_ctc_loss', 'ctc')
    timer.wrap(toco_module, 'ctc_global_view', 'global_view_augment')
    timer.wrap(toco_module, 'roi_map', 'roi_map')
    timer.wrap(toco_module, 'sample_local_crops', 'sample_local_crops')
    timer.wrap(toco_module, 'ctc_local_view', 'local_view_augment')
    timer.wrap(model.backbone, 'forward', 'backbone')
    if model.ctc_head is not None:
        timer.wrap(model.ctc_head, 'forward', 'head')
        timer.wrap(model.ctc_head, 'forward_teacher', 'head')
        timer.wrap(model.loss_ctc, 'forward', 'loss')
    timer.wrap(toco_module, 'refine_cams_with_par', 'par_pseudo_labels')
    timer.wrap(model.par, 'forward', 'par')
    timer.wrap(model.decode_head, 'forward', 'decoder')
    timer.wrap(model, '_seg_loss', 'seg_loss')
    if model.loss_reg is not None:
        timer.wrap(model.loss_reg, 'forward', 'dense_energy')
    timer.wrap(optim_wrapper, 'backward', 'backward')
    timer.wrap(optim_wrapper, 'step', 'optimizer_step')


def profile_toco(args: argparse.Namespace) -> dict:
    """Median per-part times of ToCo training steps (all losses on)."""
    _, model, optim_wrapper, batch = build_step(args.toco_config, args.batch)
    timer = PartTimer()
    instrument_toco(model, optim_wrapper, timer)
    steps, cpu_steps, records = [], [], []
    try:
        for i in range(args.warmup + args.profile_steps):
            timer.times.clear()
            start, cpu_start = time.perf_counter(), time.process_time()
            model.train_step(batch, optim_wrapper)
            elapsed = time.perf_counter() - start
            if i >= args.warmup:
                steps.append(elapsed)
                cpu_steps.append(time.process_time() - cpu_start)
                records.append(dict(timer.times))
    finally:
        timer.restore()
    step = statistics.median(steps)
    paths = sorted({p for r in records for p in r})
    median = {p: statistics.median(r.get(p, 0.0) for r in records) for p in paths}
    top = {p: t for p, t in median.items() if '/' not in p}
    top['other'] = max(0.0, step - sum(top.values()))

    def entry(seconds: float) -> dict:
        return dict(ms=round(1e3 * seconds, 1), share=round(seconds / step, 3))

    parts = {p: entry(t) for p, t in sorted(top.items(), key=lambda kv: -kv[1])}
    subparts = {p: entry(t) for p, t in median.items() if '/' in p}
    return dict(
        step_ms=round(1e3 * step, 1),
        step_cpu_ms=round(1e3 * statistics.median(cpu_steps), 1),
        batch=len(batch['inputs']),
        parts=parts,
        subparts=subparts,
    )


# ------------------------------------------------------------------ ratio
def time_steps(config: str, args: argparse.Namespace) -> dict:
    """Median train-step time of ``config`` and its ``max_iters`` estimate."""
    cfg, model, optim_wrapper, batch = build_step(config, args.batch)
    times, cpu_times = [], []
    for i in range(1 + args.steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        model.train_step(batch, optim_wrapper)
        if i >= 1:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    step, cpu = statistics.median(times), statistics.median(cpu_times)
    max_iters = int(cfg.train_cfg.max_iters)
    return dict(
        step_s=round(step, 4),
        step_cpu_s=round(cpu, 4),
        max_iters=max_iters,
        run_s=step * max_iters,
        run_cpu_s=cpu * max_iters,
    )


def time_whole_run(config: str, work_dir: str, args: argparse.Namespace) -> dict:
    """Wall time of ``tools/train.py config`` (a fresh process)."""
    cmd = [sys.executable, osp.join(ROOT, 'tools/train.py'), _path(config)]
    cmd += ['--work-dir', work_dir]
    if args.cfg_options:
        cmd += ['--cfg-options', *args.cfg_options]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    cpu_start = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    cpu = _children_cpu() - cpu_start
    if proc.returncode != 0:
        raise RuntimeError(
            f'{" ".join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}'
        )
    cfg = Config.fromfile(_path(config))
    return dict(run_s=elapsed, run_cpu_s=cpu, max_iters=int(cfg.train_cfg.max_iters))


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes (and theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_ratio(args: argparse.Namespace) -> dict:
    configs = dict(toco=args.toco_config, baseline=args.baseline_config)
    if args.mode == 'steps':
        runs = {key: time_steps(cfg, args) for key, cfg in configs.items()}
        how = (
            f'median of {args.steps} timed train steps (after 1 untimed; ToCo with '
            'all its losses on) x max_iters of the config: training steps only, '
            'no start-up, data loading or validation (an extrapolation)'
        )
    else:
        work_dir = args.work_dir or tempfile.mkdtemp(prefix='toco_twin_speed_')
        runs = {}
        for key, cfg in configs.items():  # ViT-CAM second: any warm-up helps it
            runs[key] = time_whole_run(cfg, osp.join(work_dir, key), args)
            print(f'{key}: whole run {runs[key]["run_s"]:.1f} s', flush=True)
        how = (
            'wall time of each whole training run through tools/train.py with '
            'the shipped config (all iterations, final validation, checkpoint), '
            'one after the other in this process'
        )
    for run in runs.values():
        run['run_s'] = round(run['run_s'], 1)
        run['run_cpu_s'] = round(run['run_cpu_s'], 1)
    ratio = runs['toco']['run_s'] / runs['baseline']['run_s']
    cpu_ratio = runs['toco']['run_cpu_s'] / runs['baseline']['run_cpu_s']
    return dict(
        mode=args.mode,
        how=how,
        toco=dict(config=configs['toco'], **runs['toco']),
        baseline=dict(config=configs['baseline'], **runs['baseline']),
        ratio_toco_vs_baseline=round(ratio, 2),
        cpu_ratio_toco_vs_baseline=round(cpu_ratio, 2),
        target_ratio=4.0,
        meets_target=ratio <= 4.0,
    )


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    report = dict(threads=torch.get_num_threads())
    profile = profile_toco(args)
    print(f'ToCo twin step (batch {profile["batch"]}): {profile["step_ms"]:.0f} ms')
    for name, part in profile['parts'].items():
        print(f'  {name:<22} {part["ms"]:>9.1f} ms  {100 * part["share"]:5.1f} %')
    report['profile'] = profile
    if args.mode != 'none':
        report['ratio'] = run_ratio(args)
        ratio = report['ratio']
        print(
            f'run time ({args.mode}): ToCo {ratio["toco"]["run_s"]:.1f} s, '
            f'ViT-CAM {ratio["baseline"]["run_s"]:.1f} s, ratio '
            f'{ratio["ratio_toco_vs_baseline"]:.2f} (target <= 4)'
        )
    print(json.dumps(report))
    return report


if __name__ == '__main__':
    main()
