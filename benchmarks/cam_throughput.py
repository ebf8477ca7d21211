"""Throughput of the class-token-gradient CAM: per-class loop vs batched.

Builds a randomly initialised ``ViTCAM`` (timm ViT, no download) and times
``ClsTokenGradCAMHead.compute_cams`` with every image explaining 1, 2 and 3
classes, once with one backward per class (``batched=False``) and once with
all classes in one vmapped backward (``batched=True``). Each setting is run
``--warmup`` times untimed and ``--reps`` times timed, the two heads taking
turns; the median gives images/s. Prints a table and, as its last line, one JSON object.

Example::

    python benchmarks/cam_throughput.py                      # ViT-S/16, 224
    python benchmarks/cam_throughput.py --batch-size 4 --reps 10 \\
        --model vit_base_patch16_224 --img-size 384 --device cuda
"""

import argparse
import json
import statistics
import time
from typing import Dict, List

import torch
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules

import acr_plugin  # noqa: F401  (registers ViTCAM, TimmViT)
from acr_plugin.acr import ClsTokenGradCAMHead

CLASS_COUNTS = (1, 2, 3)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default='vit_small_patch16_224', help='timm ViT')
    parser.add_argument('--img-size', type=int, default=224, help='input side')
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--num-classes', type=int, default=20, help='foreground')
    parser.add_argument('--reps', type=int, default=5, help='timed repetitions')
    parser.add_argument('--warmup', type=int, default=1, help='untimed runs')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=None, help='torch threads')
    parser.add_argument('--variant', default='grad')
    parser.add_argument('--start-layer', type=int, default=-2)
    parser.add_argument('--refine', action='store_true')
    parser.add_argument('--no-flip', action='store_true', help='disable flip TTA')
    return parser.parse_args()


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_heads(
    heads: Dict[str, ClsTokenGradCAMHead],
    model: torch.nn.Module,
    inputs: torch.Tensor,
    class_sets: List[List[int]],
    reps: int,
    warmup: int,
) -> Dict[str, float]:
    """Median seconds of one ``compute_cams`` call per head.

    The heads take turns within each repetition, so that a machine shared
    with other work slows them alike.
    """
    times: Dict[str, List[float]] = {name: [] for name in heads}
    for i in range(warmup + reps):
        for name, head in heads.items():
            synchronize(inputs.device)
            start = time.perf_counter()
            with torch.no_grad():
                head.compute_cams(model, inputs, class_sets)
            synchronize(inputs.device)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    register_all_modules(init_default_scope=True)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = MODELS.build(
        dict(
            type='ViTCAM',
            num_classes=args.num_classes + 1,
            backbone=dict(
                type='TimmViT', model_name=args.model, img_size=args.img_size
            ),
        )
    )
    model.to(device).eval()
    inputs = torch.randn(
        args.batch_size, 3, args.img_size, args.img_size, device=device
    )
    common = dict(
        variant=args.variant,
        start_layer=args.start_layer,
        refine=args.refine,
        flip=not args.no_flip,
    )
    heads = {
        'loop': ClsTokenGradCAMHead(batched=False, **common),
        'batched': ClsTokenGradCAMHead(batched=True, **common),
    }
    images_per_s: Dict[str, Dict[str, float]] = {name: {} for name in heads}
    print(
        f'{args.model} {args.img_size}px, batch {args.batch_size}, flip '
        f'{not args.no_flip}, refine {args.refine}, {args.device}, '
        f'{torch.get_num_threads()} threads, median of {args.reps}'
    )
    print(f'{"classes":>8} {"loop img/s":>12} {"batched img/s":>14} {"speedup":>8}')
    for count in CLASS_COUNTS:
        class_sets = [list(range(count))] * args.batch_size
        seconds = time_heads(heads, model, inputs, class_sets, args.reps, args.warmup)
        for name in heads:
            images_per_s[name][str(count)] = args.batch_size / seconds[name]
        loop, batched = (
            images_per_s['loop'][str(count)],
            images_per_s['batched'][str(count)],
        )
        print(f'{count:>8} {loop:>12.3f} {batched:>14.3f} {batched / loop:>7.2f}x')
    if heads['batched']._vmap_failed:
        print('note: the batched backward fell back to the per-class loop')
    summary = dict(
        model=args.model,
        img_size=args.img_size,
        batch_size=args.batch_size,
        device=args.device,
        threads=torch.get_num_threads(),
        reps=args.reps,
        flip=not args.no_flip,
        refine=args.refine,
        variant=args.variant,
        start_layer=args.start_layer,
        vmap_fallback=heads['batched']._vmap_failed,
        images_per_s=images_per_s,
    )
    for count in CLASS_COUNTS:
        summary[f'speedup_batched_vs_loop_{count}cls'] = (
            images_per_s['batched'][str(count)] / images_per_s['loop'][str(count)]
        )
    print(json.dumps(summary))


if __name__ == '__main__':
    main()
