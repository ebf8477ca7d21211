"""Import and run the repository's command-line scripts (tools/, benchmarks/)
in tests."""

import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys
from types import ModuleType
from typing import List

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_script(path: str) -> ModuleType:
    """The script at ``path`` (relative to the repository root) as a module."""
    name = osp.splitext(osp.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: the smallest run of the synthetic-ablation protocol (also the Fashion-MNIST
#: pilot's): 2 fine-tuning iterations at batch 4, 1 pretraining iteration,
#: 8 training and 4 validation images
TINY_PROTOCOL_ARGS = [
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
]


def run_benchmark(path: str, args: List[str], timeout: float) -> dict:
    """Run the benchmark script at ``path`` (relative to the repository root)
    with ``args`` on one thread; the JSON object of its last printed line."""
    cmd = [sys.executable, osp.join(ROOT, path), *args]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
