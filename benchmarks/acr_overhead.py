"""Train-step time and peak memory of ACR: naive vs memory-efficient route.

Five configurations of one randomly initialised ``ACRSegmentor`` around a
``ViTCAM`` (timm ViT, class-token classifier, multilabel soft-margin loss;
no download), each a full training step (forward, backward, SGD with
momentum) on random images:

- ``one_view``: the wrapped model's own loss on the images (fused
  attention).
- ``two_view``: no ``acr_loss``: the model's loss on the images and on
  their flip (fused attention), no consistency term.
- ``acr_naive``: ACR with ``route='naive'``: every layer captured as
  ``(B, H, N, N)`` probabilities (non-fused attention), official L1
  class-row + affinity terms, all layers, alpha 125.
- ``acr_efficient``: the same loss with ``route='efficient'`` (the
  default): fused attention, ``(q, k)`` captured, chunked recomputation in
  backward (``grad_mode='recompute'``, the default).
- ``acr_efficient_store``: the efficient route with ``grad_mode='store'``
  (gradients computed during the forward pass and kept: one chunk pass
  less, two ``(B, H, N, d)`` tensors per layer and view more).

Time: one process, one model; the configurations take turns within every
round (``--warmup`` untimed rounds, then ``--reps`` timed ones; the order
rotates), so that a machine shared with other jobs slows them alike; the
median wall time and the median process CPU time are reported.

Memory: on CPU each configuration runs ``--mem-steps`` steps in a fresh
subprocess (peak RSS is per process); the step memory is ``ru_maxrss`` at
the end minus the RSS just before the first step (the model, its weights and
the libraries are excluded, so ratios compare what the steps add; raw peak
RSS is printed too). On CUDA, in the timing process:
``torch.cuda.max_memory_allocated`` during a configuration's steps minus
the memory allocated before them.

Ratios are computed within one run. The table goes to stdout; the LAST line
is one JSON object whose top-level ratios are those of the largest setting
run (the last of ``--settings``) and whose ``settings`` hold every
measurement. Targets (issue): ACR-efficient step memory <= 1.2 x the
two-view step at ViT-B/448; step time <= 2.3 x the one-view step.

Example::

    python benchmarks/acr_overhead.py                         # CPU, ~10 min
    python benchmarks/acr_overhead.py --settings vit_s_224 --reps 5
    python benchmarks/acr_overhead.py --device cuda --batch 8
"""

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Tuple

SETTINGS = {
    'vit_s_224': ('vit_small_patch16_224', 224),
    'vit_b_448': ('vit_base_patch16_224', 448),
}
CONFIGS = ('one_view', 'two_view', 'acr_naive', 'acr_efficient', 'acr_efficient_store')
NUM_CLASSES = 20
MEM_TARGET = 1.2
TIME_TARGET = 2.3


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument(
        '--settings',
        default='vit_s_224,vit_b_448',
        help=f'comma-separated, from {sorted(SETTINGS)}; the last is the largest',
    )
    parser.add_argument(
        '--configs', default=','.join(CONFIGS), help='comma-separated subset'
    )
    parser.add_argument('--reps', type=int, default=3, help='timed rounds')
    parser.add_argument('--warmup', type=int, default=1, help='untimed rounds')
    parser.add_argument(
        '--mem-steps', type=int, default=2, help='steps per CPU memory subprocess'
    )
    parser.add_argument(
        '--batch', type=int, default=None, help='images per view (2 CPU, 8 GPU)'
    )
    parser.add_argument(
        '--chunk-size', type=int, default=None, help='efficient route rows/chunk'
    )
    parser.add_argument('--threads', type=int, default=None, help='torch threads')
    parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ------------------------------------------------------------------ model
class Bench:
    """One ``ACRSegmentor`` whose loss and capture mode switch per config."""

    def __init__(self, setting: str, device, batch: int, chunk_size=None) -> None:
        import torch
        from mmseg.registry import MODELS
        from mmseg.structures import SegDataSample
        from mmseg.utils import register_all_modules

        import acr_plugin  # noqa: F401  (registers ViTCAM, TimmViT, ACRSegmentor)

        register_all_modules(init_default_scope=False)
        torch.manual_seed(0)
        model_name, img_size = SETTINGS[setting]
        loss = dict(type='AllPairsConsistencyLoss', loss_weight=125.0)
        if chunk_size:
            loss['chunk_size'] = chunk_size
        self.losses = {
            'two_view': None,
            'acr_naive': MODELS.build(dict(loss, route='naive')),
            'acr_efficient': MODELS.build(dict(loss, route='efficient')),
            'acr_efficient_store': MODELS.build(
                dict(loss, route='efficient', grad_mode='store')
            ),
        }
        inner = dict(
            type='ViTCAM',
            num_classes=NUM_CLASSES + 1,
            backbone=dict(type='TimmViT', model_name=model_name, img_size=img_size),
        )
        self.model = MODELS.build(
            dict(type='ACRSegmentor', model=inner, view=dict(type='flip'))
        )
        self.model.to(device).train()
        self.device = device
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-4, momentum=0.9)
        self.inputs = torch.randn(batch, 3, img_size, img_size, device=device)
        self.data = []
        for i in range(batch):
            sample = SegDataSample()
            labels = torch.zeros(NUM_CLASSES)
            labels[[i % NUM_CLASSES, (3 * i + 5) % NUM_CLASSES]] = 1
            sample.img_labels = labels.to(device)
            sample.set_metainfo(dict(img_shape=(img_size, img_size)))
            self.data.append(sample)

    def configure(self, config: str) -> Callable:
        """Set the wrapper up for ``config``; return its loss callable."""
        if config == 'one_view':
            return self.model.model.loss
        loss = self.losses[config]
        self.model.acr_loss = loss
        self.model.capture_cfg['mode'] = loss.capture_mode if loss else 'probs'
        return self.model.loss

    def capture_mode(self, config: str):
        if config in ('one_view', 'two_view'):
            return None
        return self.losses[config].capture_mode

    def fused(self) -> bool:
        return all(blk.attn.fused_attn for blk in self.model.model.backbone.vit.blocks)

    def step(self, config: str) -> Tuple[float, float]:
        """One training step; ``(wall seconds, process CPU seconds)``."""
        import torch

        loss_fn = self.configure(config)
        cuda = self.device.type == 'cuda'
        if cuda:
            torch.cuda.synchronize(self.device)
        start, cpu_start = time.perf_counter(), time.process_time()
        self.optimizer.zero_grad(set_to_none=True)
        losses = loss_fn(self.inputs, self.data)
        total = sum(v for k, v in losses.items() if 'loss' in k)
        total.backward()
        self.optimizer.step()
        if cuda:
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start, time.process_time() - cpu_start


def _rss_now_mb() -> float:
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf('SC_PAGE_SIZE') / 2**20


def _rss_peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == 'darwin' else peak / 1024


def _set_threads(threads) -> int:
    import torch

    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def memory_worker(spec: dict) -> dict:
    """CPU: peak RSS of ``mem_steps`` steps of one configuration."""
    import torch

    _set_threads(spec['threads'])
    bench = Bench(
        spec['setting'], torch.device('cpu'), spec['batch'], spec['chunk_size']
    )
    bench.configure(spec['config'])
    gc.collect()
    before = _rss_now_mb()
    for _ in range(spec['mem_steps']):
        bench.step(spec['config'])
    peak = _rss_peak_mb()
    return dict(rss_before_steps_mb=before, peak_rss_mb=peak, step_mem_mb=peak - before)


def measure_memory_cpu(args, setting: str, config: str) -> dict:
    spec = dict(
        setting=setting,
        config=config,
        batch=args.batch,
        mem_steps=args.mem_steps,
        chunk_size=args.chunk_size,
        threads=args.threads,
    )
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), '--worker', json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith('{')]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr[-4000:])
        raise RuntimeError(f'acr_overhead memory worker {setting}/{config} failed')
    return json.loads(lines[-1])


def measure_setting(args, setting: str, configs: List[str]) -> Dict[str, dict]:
    """Memory (CPU: subprocesses) and interleaved timing of one setting."""
    import torch

    device = torch.device(args.device)
    results: Dict[str, dict] = {c: dict(config=c, setting=setting) for c in configs}
    if device.type == 'cpu':
        for config in configs:
            results[config].update(measure_memory_cpu(args, setting, config))
    bench = Bench(setting, device, args.batch, args.chunk_size)
    times: Dict[str, List[float]] = {c: [] for c in configs}
    cpu_times: Dict[str, List[float]] = {c: [] for c in configs}
    cuda_mem: Dict[str, float] = dict.fromkeys(configs, 0.0)
    for round_ in range(args.warmup + args.reps):
        shift = round_ % len(configs)
        for config in configs[shift:] + configs[:shift]:
            if device.type == 'cuda':
                gc.collect()
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
            seconds, cpu_seconds = bench.step(config)
            if device.type == 'cuda':
                peak = torch.cuda.max_memory_allocated(device) - before
                cuda_mem[config] = max(cuda_mem[config], peak / 2**20)
            if round_ >= args.warmup:
                times[config].append(seconds)
                cpu_times[config].append(cpu_seconds)
    for config in configs:
        res = results[config]
        res.update(
            capture=bench.capture_mode(config),
            times_s=times[config],
            median_s=statistics.median(times[config]),
            cpu_times_s=cpu_times[config],
            median_cpu_s=statistics.median(cpu_times[config]),
        )
        if device.type == 'cuda':
            res['step_mem_mb'] = res['cuda_max_allocated_mb'] = cuda_mem[config]
            res['peak_rss_mb'] = _rss_peak_mb()
    results['_meta'] = dict(
        fused_attn_kept=bench.fused(), threads=torch.get_num_threads()
    )
    return results


# ------------------------------------------------------------------ report
def ratios(results: Dict[str, dict]) -> Dict[str, float]:
    def ratio(key: str, a: str, b: str):
        if a in results and b in results:
            return results[a][key] / results[b][key]
        return None

    out = dict(
        mem_ratio_efficient_vs_two_view=ratio(
            'step_mem_mb', 'acr_efficient', 'two_view'
        ),
        mem_ratio_efficient_vs_naive=ratio('step_mem_mb', 'acr_efficient', 'acr_naive'),
        mem_ratio_naive_vs_two_view=ratio('step_mem_mb', 'acr_naive', 'two_view'),
        mem_ratio_store_vs_two_view=ratio(
            'step_mem_mb', 'acr_efficient_store', 'two_view'
        ),
        rss_ratio_efficient_vs_two_view=ratio(
            'peak_rss_mb', 'acr_efficient', 'two_view'
        ),
        time_ratio_efficient_vs_one_view=ratio('median_s', 'acr_efficient', 'one_view'),
        time_ratio_two_view_vs_one_view=ratio('median_s', 'two_view', 'one_view'),
        time_ratio_naive_vs_one_view=ratio('median_s', 'acr_naive', 'one_view'),
        time_ratio_store_vs_one_view=ratio(
            'median_s', 'acr_efficient_store', 'one_view'
        ),
        time_ratio_efficient_vs_naive=ratio('median_s', 'acr_efficient', 'acr_naive'),
        cpu_time_ratio_efficient_vs_one_view=ratio(
            'median_cpu_s', 'acr_efficient', 'one_view'
        ),
        cpu_time_ratio_two_view_vs_one_view=ratio(
            'median_cpu_s', 'two_view', 'one_view'
        ),
        cpu_time_ratio_naive_vs_one_view=ratio('median_cpu_s', 'acr_naive', 'one_view'),
        cpu_time_ratio_store_vs_one_view=ratio(
            'median_cpu_s', 'acr_efficient_store', 'one_view'
        ),
    )
    mem = out['mem_ratio_efficient_vs_two_view']
    tim = out['time_ratio_efficient_vs_one_view']
    out.update(
        mem_target=MEM_TARGET,
        time_target=TIME_TARGET,
        mem_target_met=None if mem is None else mem <= MEM_TARGET,
        time_target_met=None if tim is None else tim <= TIME_TARGET,
    )
    return out


def print_table(summary: Dict[str, dict]) -> None:
    print(
        f'{"setting":10s} {"config":20s} {"step s":>7s} {"x 1-view":>8s} '
        f'{"cpu s":>7s} {"x 1-view":>8s} {"step MB":>8s} {"x 2-view":>8s} '
        f'{"peak RSS MB":>11s} capture'
    )
    nan = float('nan')
    for setting, entry in summary.items():
        res = entry['results']
        one, two = res.get('one_view'), res.get('two_view')
        for config, r in res.items():
            if config.startswith('_'):
                continue
            t = r['median_s'] / one['median_s'] if one else nan
            c = r['median_cpu_s'] / one['median_cpu_s'] if one else nan
            m = r['step_mem_mb'] / two['step_mem_mb'] if two else nan
            print(
                f'{setting:10s} {config:20s} {r["median_s"]:7.2f} {t:8.2f} '
                f'{r["median_cpu_s"]:7.2f} {c:8.2f} {r["step_mem_mb"]:8.0f} '
                f'{m:8.2f} {r["peak_rss_mb"]:11.0f} {r["capture"]}'
            )


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps(memory_worker(json.loads(args.worker))))
        return
    if args.batch is None:
        args.batch = 8 if args.device.startswith('cuda') else 2
    settings = [s for s in args.settings.split(',') if s]
    configs = [c for c in args.configs.split(',') if c]
    for name in settings:
        if name not in SETTINGS:
            raise SystemExit(f'unknown setting {name} (one of {sorted(SETTINGS)})')
    for name in configs:
        if name not in CONFIGS:
            raise SystemExit(f'unknown config {name} (one of {CONFIGS})')
    threads = _set_threads(args.threads)
    mem_name = 'CUDA max allocated' if args.device.startswith('cuda') else 'RSS'
    print(
        f'ACR overhead, {args.device}, {threads} threads, batch {args.batch} per '
        f'view, {args.warmup} warm-up + {args.reps} timed rounds (median), step '
        f'memory = peak {mem_name} - before the first step',
        flush=True,
    )
    load_before = os.getloadavg()
    summary: Dict[str, dict] = {}
    for setting in settings:
        results = measure_setting(args, setting, configs)
        meta = results.pop('_meta')
        summary[setting] = dict(results=results, **meta, **ratios(results))
        print_table({setting: summary[setting]})
        print(flush=True)
    print_table(summary)
    largest = settings[-1]
    final = {k: v for k, v in summary[largest].items() if k != 'results'}
    final.update(
        setting=largest,
        device=args.device,
        batch=args.batch,
        reps=args.reps,
        warmup=args.warmup,
        loadavg_before=load_before,
        loadavg_after=os.getloadavg(),
        settings=summary,
    )
    print(json.dumps(final))


if __name__ == '__main__':
    main()
