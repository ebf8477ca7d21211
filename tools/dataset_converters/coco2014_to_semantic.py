"""Convert COCO 2014 instance annotations to WSSS semantic PNG masks.

Usage::

    python tools/dataset_converters/coco2014_to_semantic.py data/coco2014 --nproc 8

``COCO_PATH`` holds ``annotations/instances_{train,val}2014.json`` (and the
``train2014``/``val2014`` image folders). Written under ``--out-dir``
(default ``COCO_PATH``): ``SegmentationClass/{train,val}2014/*.png``,
``ImageSets/{train,val}.txt`` and ``cls_labels.npy``. Existing masks are
kept, so an interrupted run resumes. The rules (label order, overlaps, crowd
regions) are in :mod:`acr_plugin.datasets.coco_conversion`.
"""

import argparse
import os.path as osp
import time

from acr_plugin.datasets.coco_conversion import COCO_THING_CLASSES, convert_coco_split


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='COCO 2014 instances -> WSSS semantic masks'
    )
    parser.add_argument('coco_path', help='folder with annotations/instances_*.json')
    parser.add_argument('-o', '--out-dir', help='output root (default: coco_path)')
    parser.add_argument(
        '--splits',
        nargs='+',
        default=['train', 'val'],
        choices=['train', 'val'],
        help='splits to convert',
    )
    parser.add_argument('--nproc', type=int, default=1, help='worker processes')
    parser.add_argument(
        '--overwrite', action='store_true', help='rewrite existing masks'
    )
    parser.add_argument(
        '--keep-empty',
        action='store_true',
        help='also list images without any visible foreground class',
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    out_root = args.out_dir or args.coco_path
    for split in args.splits:
        image_dir_name = f'{split}2014'
        ann_file = osp.join(
            args.coco_path, 'annotations', f'instances_{image_dir_name}.json'
        )
        start = time.time()
        info = convert_coco_split(
            ann_file,
            out_root,
            split=split,
            image_dir_name=image_dir_name,
            nproc=args.nproc,
            overwrite=args.overwrite,
            keep_empty=args.keep_empty,
        )
        if tuple(info['class_names']) != COCO_THING_CLASSES:
            print(
                f'WARNING: {ann_file} has categories {info["class_names"]}, '
                'not the 80 COCO thing classes WSSSCOCODataset expects'
            )
        print(
            f'{split}: {info["num_images"]} images, {info["num_written"]} masks '
            f'written, {info["num_listed"]} listed in {info["split_file"]} '
            f'({time.time() - start:.0f} s)'
        )
    print(f'image-level labels: {osp.join(out_root, "cls_labels.npy")}')


if __name__ == '__main__':
    main()
