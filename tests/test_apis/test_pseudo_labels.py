"""Pseudo-label generation (``acr_plugin.apis.pseudo_labels`` and its CLI)."""

import contextlib
import os
import os.path as osp
import pickle
import re
from unittest import mock

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from mmengine.dataset import pseudo_collate
from mmseg.evaluation import IoUMetric
from PIL import Image

from acr_plugin.apis import (
    build_model,
    build_split_dataset,
    generate_pseudo_labels,
    labels_from_seg_logits,
    read_label_png,
    sample_name,
    search_bg_threshold,
)
from acr_plugin.evaluation import CAMMetric
from acr_plugin.models.utils.crf import (
    crf_available,
    crf_refine_labels,
    crf_scores,
    packed_image_for_crf,
)
from tests.scripts import load_script
from tests.synthetic_runs import tiny_synthetic_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ACR = osp.join(ROOT, 'configs/acr/acr_vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py')
NUM = 7  # odd: two ranks get unequal shards


def _cfg(work_dir, num=NUM):
    cfg = tiny_synthetic_cfg(ACR, str(work_dir), num_val=num)
    cfg.test_dataloader.dataset.img_size = 32
    cfg.model.model.backbone.img_size = 32
    return cfg


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """A random-init tiny ACR model, its checkpoint and a 7-image split."""
    work = tmp_path_factory.mktemp('pl')
    torch.manual_seed(0)
    cfg = _cfg(work)
    model = build_model(cfg, device='cpu')
    ckpt = str(work / 'model.pth')
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    dataset = build_split_dataset(cfg, 'test_dataloader')
    return cfg, model, ckpt, dataset


_OUTPUTS = {}


def _reference_labels(model, dataset, bg_thr=None):
    """Labels the long way: CAMs > threshold, else background."""
    key = (id(model), id(dataset))
    if key not in _OUTPUTS:  # one batched forward per model and split
        data = pseudo_collate([dataset[i] for i in range(len(dataset))])
        with torch.no_grad():
            _OUTPUTS[key] = model.test_step(data)
    outputs = _OUTPUTS[key]
    labels = {}
    for out in outputs:
        logits = out.seg_logits.data.numpy()
        if bg_thr is None:
            labels[sample_name(out.img_path)] = out.pred_sem_seg.data[0].numpy()
            continue
        cams = logits[1:]
        fg = cams.max(axis=0) > np.float32(bg_thr)
        labels[sample_name(out.img_path)] = np.where(fg, cams.argmax(axis=0) + 1, 0)
    return labels, outputs


def _gt_maps(dataset):
    return {
        f'{i:06d}': dataset.get_data_info(i)['gt_seg_map'] for i in range(len(dataset))
    }


def _miou_from_files(folder, dataset):
    """mmseg IoUMetric over the PNG files, independent of the generator."""
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dataset.metainfo
    for name, gt in _gt_maps(dataset).items():
        pred = np.array(Image.open(osp.join(folder, name + '.png')))
        metric.process(
            {},
            [
                dict(
                    pred_sem_seg=dict(
                        data=torch.from_numpy(pred.astype(np.int64))[None]
                    ),
                    gt_sem_seg=dict(data=torch.from_numpy(gt.astype(np.int64))[None]),
                )
            ],
        )
    return metric.evaluate(len(dataset))['mIoU']


# ----------------------------------------------------------------- pure parts
def test_labels_from_seg_logits_background_wins_ties():
    logits = torch.tensor([[[0.5, 0.5, 0.5]], [[0.2, 0.6, 0.4]], [[0.4, 0.6, 0.3]]])
    np.testing.assert_array_equal(labels_from_seg_logits(logits).numpy(), [[0, 1, 0]])
    np.testing.assert_array_equal(
        labels_from_seg_logits(logits, 0.4).numpy(), [[0, 1, 0]]
    )
    np.testing.assert_array_equal(
        labels_from_seg_logits(logits, 0.1).numpy(), [[2, 1, 1]]
    )
    assert float(logits[0, 0, 0]) == 0.5  # not modified in place
    with pytest.raises(ValueError, match='C \\+ 1'):
        labels_from_seg_logits(logits[:1])


# ----------------------------------------------------------------- generation
def test_labels_are_argmax_at_threshold(setup, tmp_path):
    cfg, model, _, dataset = setup
    out = generate_pseudo_labels(
        model, dataset, str(tmp_path), bg_thr=0.4, batch_size=3
    )
    assert out['written'] == NUM and out['skipped'] == 0
    expected, _ = _reference_labels(model, dataset, 0.4)
    names = sorted(os.listdir(tmp_path))
    assert names == [f'{i:06d}.png' for i in range(NUM)]  # no temp files
    palette = [v for c in dataset.metainfo['palette'] for v in c]
    for name in names:
        with Image.open(tmp_path / name) as img:
            assert img.mode == 'P'
            assert img.getpalette()[: len(palette)] == palette
            label = np.array(img)
        np.testing.assert_array_equal(label, expected[name[:-4]])
    # labels are scored against the real masks with mmseg's IoUMetric
    assert out['metrics']['mIoU'] == pytest.approx(
        _miou_from_files(tmp_path, dataset), abs=1e-6
    )


def test_default_threshold_is_the_models_prediction(setup, tmp_path):
    _, model, _, dataset = setup
    generate_pseudo_labels(model, dataset, str(tmp_path), progress=False)
    expected, _ = _reference_labels(model, dataset, None)
    for name, label in expected.items():
        np.testing.assert_array_equal(
            read_label_png(str(tmp_path / f'{name}.png')), label
        )


def test_resume_skips_existing_files(setup, tmp_path):
    _, model, _, dataset = setup
    generate_pseudo_labels(model, dataset, str(tmp_path), bg_thr=0.3, progress=False)
    first = {n: read_label_png(str(tmp_path / n)) for n in os.listdir(tmp_path)}
    old = 1_000_000_000
    for name in first:
        os.utime(tmp_path / name, (old, old))
    os.remove(tmp_path / '000002.png')
    os.remove(tmp_path / '000005.png')
    # a different threshold shows that kept files are not recomputed
    out = generate_pseudo_labels(model, dataset, str(tmp_path), bg_thr=0.9)
    assert out['written'] == 2 and out['skipped'] == NUM - 2
    assert sorted(os.listdir(tmp_path)) == sorted(first)
    expected_new, _ = _reference_labels(model, dataset, 0.9)
    for name in first:
        path = tmp_path / name
        if name in ('000002.png', '000005.png'):
            assert os.stat(path).st_mtime > old
            np.testing.assert_array_equal(
                read_label_png(str(path)), expected_new[name[:-4]]
            )
        else:
            assert os.stat(path).st_mtime == old
            np.testing.assert_array_equal(read_label_png(str(path)), first[name])
    # the score covers kept and new files alike
    assert out['metrics']['mIoU'] == pytest.approx(
        _miou_from_files(tmp_path, dataset), abs=1e-6
    )


def test_no_ground_truth_no_metric(tmp_path):
    cfg = _cfg(tmp_path, num=3)
    model = build_model(cfg, device='cpu')
    # the training split with its own pipeline keeps no pixel labels
    cfg.train_dataloader.dataset.num_samples = 3
    cfg.train_dataloader.dataset.img_size = 32
    cfg.train_dataloader.dataset.pipeline = [dict(type='PackWSSSInputs')]
    dataset = build_split_dataset(cfg, 'train_dataloader')
    out = generate_pseudo_labels(model, dataset, str(tmp_path / 'o'), bg_thr=0.5)
    assert out['metrics'] is None and out['written'] == 3
    with pytest.raises(KeyError, match='gt_sem_seg'):
        search_bg_threshold(model, dataset)
    with pytest.raises(KeyError, match='no_such_loader'):
        build_split_dataset(cfg, 'no_such_loader')


def test_auto_threshold_is_cam_metric_best(setup):
    _, model, _, dataset = setup
    thr, metrics = search_bg_threshold(model, dataset, batch_size=4, progress=False)
    _, outputs = _reference_labels(model, dataset)
    metric = CAMMetric()
    metric.dataset_meta = dataset.metainfo
    metric.process({}, outputs)
    expected = metric.evaluate(len(dataset))
    assert thr == expected['best_thr'] and metrics == expected


def test_best_threshold_labels_reproduce_cam_miou(setup, tmp_path):
    """Pseudo labels at CAMMetric's best threshold score its best mIoU."""
    _, model, _, dataset = setup
    thr, cam = search_bg_threshold(model, dataset, progress=False)
    out = generate_pseudo_labels(model, dataset, str(tmp_path), bg_thr=thr)
    assert float(out['metrics']['mIoU']) == pytest.approx(cam['mIoU_best'], abs=0.011)


@pytest.mark.skipif(not crf_available(), reason='pydensecrf2 missing')
def test_crf_labels(setup, tmp_path):
    from acr_plugin.models.utils.crf import (
        crf_refine_labels,
        crf_scores,
        packed_image_for_crf,
    )

    _, model, _, dataset = setup
    out = generate_pseudo_labels(
        model, dataset, str(tmp_path), bg_thr=0.4, crf=dict(alpha=1.0), progress=False
    )
    assert out['written'] == NUM
    _, outputs = _reference_labels(model, dataset)
    for i, pred in enumerate(outputs[:3]):  # the CRF recomputed independently
        label = read_label_png(str(tmp_path / f'{i:06d}.png'))
        assert label.shape == tuple(pred.ori_shape)
        present = {0} | {
            int(c) + 1 for c in np.flatnonzero(dataset[i]['data_samples'].img_labels)
        }
        assert set(np.unique(label).tolist()) <= present
        img = packed_image_for_crf(dataset[i]['inputs'], pred.ori_shape)
        scores = crf_scores(pred.seg_logits.data, alpha=1.0)
        np.testing.assert_array_equal(
            label, crf_refine_labels(img, scores, num_iters=10)
        )
    # zero pairwise weights: the CRF label is the unary argmax
    shutil_dir = tmp_path / 'flat'
    generate_pseudo_labels(
        model,
        dataset,
        str(shutil_dir),
        bg_thr=0.4,
        crf=dict(gaussian_compat=0.0, bilateral_compat=0.0),
        progress=False,
    )
    expected, _ = _reference_labels(model, dataset, 0.4)
    for name, label in expected.items():
        np.testing.assert_array_equal(
            read_label_png(str(shutil_dir / f'{name}.png')), label
        )


# ----------------------------------------------------------------- CLI
def _tool():
    return load_script('tools/generate_pseudo_labels.py')


def _cli_opts(num=NUM):
    return [
        f'test_dataloader.dataset.num_samples={num}',
        'test_dataloader.dataset.img_size=32',
        'model.model.backbone.img_size=32',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False',
    ]


def test_cli_auto_threshold_and_printed_miou(setup, tmp_path, capsys):
    _, model, ckpt, dataset = setup
    out_dir = str(tmp_path / 'labels')
    result = _tool().main(
        [ACR, ckpt, '--out-dir', out_dir, '--split', 'test', '--bg-thr', 'auto']
        + ['--cfg-options', *_cli_opts()]
    )
    printed = capsys.readouterr().out
    thr, _ = search_bg_threshold(model, dataset, progress=False)
    assert result['bg_thr'] == thr
    assert f'auto background threshold: {thr:.2f}' in printed
    miou = float(re.search(r'pseudo-label mIoU: ([0-9.]+)', printed).group(1))
    assert miou == pytest.approx(_miou_from_files(out_dir, dataset), abs=1e-6)
    expected, _ = _reference_labels(model, dataset, thr)
    for name, label in expected.items():
        np.testing.assert_array_equal(
            read_label_png(osp.join(out_dir, name + '.png')), label
        )


def _train_opts(num):
    return [
        f'train_dataloader.dataset.num_samples={num}',
        'train_dataloader.dataset.img_size=32',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
    ]


def test_cli_labels_the_training_images_by_default(setup, tmp_path, capsys):
    """No split option: the training images (train_dataloader's dataset)
    with the test pipeline (no random flip, original size), i.e. the images
    the second stage trains on, not the evaluation split."""
    cfg, model, ckpt, _ = setup
    num_train = 5  # the test split has NUM = 7 images of another seed
    out_dir = tmp_path / 'labels'
    result = _tool().main(
        [ACR, ckpt, '--out-dir', str(out_dir), '--bg-thr', '0.4', '--no-progress']
        + ['--cfg-options', *_cli_opts(), *_train_opts(num_train)]
    )
    printed = capsys.readouterr().out
    assert 'images of train_dataloader, test_dataloader pipeline' in printed
    train_cfg = _cfg(tmp_path)
    train_cfg.train_dataloader.dataset.num_samples = num_train
    train_cfg.train_dataloader.dataset.img_size = 32
    train_set = build_split_dataset(train_cfg, 'train_dataloader', 'test_dataloader')
    assert train_set.seed != cfg.test_dataloader.dataset.seed
    assert result['num_samples'] == num_train
    expected, _ = _reference_labels(model, train_set, 0.4)
    assert sorted(os.listdir(out_dir)) == sorted(f'{n}.png' for n in expected)
    for name, label in expected.items():
        np.testing.assert_array_equal(
            read_label_png(str(out_dir / f'{name}.png')), label
        )
    # the test pipeline keeps the training masks: the labels are scored
    assert result['metrics']['mIoU'] == pytest.approx(
        _miou_from_files(str(out_dir), train_set), abs=1e-6
    )


def test_cli_split_options():
    tool = _tool()
    base = [ACR, 'ckpt', '--out-dir', 'x']
    assert tool.resolve_split(tool.parse_args(base)) == (
        'train_dataloader',
        'test_dataloader',
    )
    for split in ('val', 'test'):
        args = tool.parse_args(base + ['--split', split])
        assert tool.resolve_split(args) == (f'{split}_dataloader', None)
    args = tool.parse_args(base + ['--split-cfg-key', 'train_cam_dataloader'])
    assert tool.resolve_split(args) == ('train_cam_dataloader', None)
    args = tool.parse_args(base + ['--split-cfg-key', 'train_dataloader'])
    assert tool.resolve_split(args) == ('train_dataloader', 'test_dataloader')
    args = tool.parse_args(base + ['--pipeline-cfg-key', 'train_dataloader'])
    assert tool.resolve_split(args) == ('train_dataloader', 'train_dataloader')
    with pytest.raises(SystemExit):
        tool.parse_args(base + ['--split', 'val', '--split-cfg-key', 'val_dataloader'])
    with pytest.raises(SystemExit):
        tool.parse_args(base + ['--split', 'trainaug'])
    # --help says what is labelled by default
    parser_help = ' '.join(_help_text(tool).split())
    assert 'By default the training images are labelled' in parser_help
    assert 'train (default; the training images' in parser_help


def _help_text(tool):
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        tool.parse_args(['--help'])
    return out.getvalue()


def test_sweep_edge_warning_text():
    from acr_plugin.apis.pseudo_labels import sweep_edge_warning

    grid = [i / 100 for i in range(100)]
    low = sweep_edge_warning(0.0, grid)
    assert 'lowest value of the sweep 0.00..0.99' in low
    assert '(almost) no background' in low
    high = sweep_edge_warning(0.99, grid)
    assert 'highest value of the sweep 0.00..0.99' in high
    assert 'nearly all background' in high
    assert sweep_edge_warning(0.5, grid) is None
    assert sweep_edge_warning(0.01, grid) is None
    assert 'lowest' in sweep_edge_warning(0.2, [0.3, 0.2, 0.4])  # unsorted grid


def test_auto_threshold_at_the_sweep_edge_is_warned(setup, monkeypatch):
    """A best threshold at the first / last sweep value logs a WARNING."""
    import logging

    from acr_plugin.apis import pseudo_labels

    _, model, _, dataset = setup
    logged = []
    monkeypatch.setattr(
        pseudo_labels,
        'print_log',
        lambda msg, logger=None, level=logging.INFO: logged.append((level, msg)),
    )
    best, _ = search_bg_threshold(model, dataset, progress=False)
    assert 0.0 < best < 0.99  # this model's best lies inside the sweep ...
    assert logged == []  # ... so nothing is warned
    grid = [i / 100 for i in range(100)]
    above = [t for t in grid if t >= best]  # best becomes the lowest value
    thr, _ = search_bg_threshold(model, dataset, thresholds=above, progress=False)
    assert thr == best
    assert len(logged) == 1 and logged[0][0] == logging.WARNING
    assert f'background threshold {best:.2f} is the lowest value' in logged[0][1]
    below = [t for t in grid if t <= best]  # ... the highest value
    thr, _ = search_bg_threshold(model, dataset, thresholds=below, progress=False)
    assert thr == best
    assert len(logged) == 2 and logged[1][0] == logging.WARNING
    assert f'background threshold {best:.2f} is the highest value' in logged[1][1]


def test_cli_errors(setup, tmp_path, monkeypatch):
    _, _, ckpt, _ = setup
    tool = _tool()
    with pytest.raises(SystemExit):
        tool.parse_args([ACR, ckpt, '--out-dir', 'x', '--bg-thr', 'high'])
    with pytest.raises(SystemExit):
        tool.parse_args([ACR, ckpt, '--out-dir', 'x', '--crf-alpha', '1'])
    monkeypatch.setattr(tool, 'crf_available', lambda: False)
    with pytest.raises(ImportError, match='pydensecrf2'):
        tool.main([ACR, ckpt, '--out-dir', str(tmp_path), '--crf'])


# ----------------------------------------------------------------- distributed
@contextlib.contextmanager
def _gloo_rank(rank, world_size, init_file, ckpt, result_file):
    """One rank of a gloo group: the tiny model and the test split; the caller
    labels its shard, rank 0 pickles its result to ``result_file``."""
    import torch.distributed as dist

    dist.init_process_group(
        'gloo', init_method=f'file://{init_file}', rank=rank, world_size=world_size
    )
    try:
        torch.set_num_threads(1)
        cfg = _cfg(osp.dirname(result_file))
        results = {}
        yield (
            build_model(cfg, ckpt, device='cpu'),
            build_split_dataset(cfg, 'test_dataloader'),
            results,
        )
        if rank == 0:
            with open(result_file, 'wb') as f:
                pickle.dump(results['out'], f)
    finally:
        dist.destroy_process_group()


def _dist_worker(rank, world_size, init_file, ckpt, out_dir, result_file):
    with _gloo_rank(rank, world_size, init_file, ckpt, result_file) as run:
        model, dataset, results = run
        thr, cam = search_bg_threshold(model, dataset, batch_size=2, progress=False)
        out = generate_pseudo_labels(model, dataset, out_dir, bg_thr=thr, batch_size=2)
        results['out'] = dict(thr=thr, cam=cam, out=out)


@pytest.mark.slow
def test_two_gloo_processes_match_one(setup, tmp_path):
    _, model, ckpt, dataset = setup
    result_file = str(tmp_path / 'result.pkl')
    mp.spawn(
        _dist_worker,
        args=(2, str(tmp_path / 'init'), ckpt, str(tmp_path / 'dist'), result_file),
        nprocs=2,
        join=True,
    )
    with open(result_file, 'rb') as f:
        dist_result = pickle.load(f)
    thr, cam = search_bg_threshold(model, dataset, progress=False)
    single = generate_pseudo_labels(
        model, dataset, str(tmp_path / 'single'), bg_thr=thr
    )
    assert dist_result['thr'] == thr and dist_result['cam'] == cam
    assert dist_result['out']['written'] == 4  # rank 0's shard of 7
    assert sorted(os.listdir(tmp_path / 'dist')) == sorted(
        os.listdir(tmp_path / 'single')
    )
    for name in os.listdir(tmp_path / 'single'):
        np.testing.assert_array_equal(
            read_label_png(str(tmp_path / 'dist' / name)),
            read_label_png(str(tmp_path / 'single' / name)),
        )
    assert dist_result['out']['metrics'] == single['metrics']


@pytest.mark.slow
def test_cli_under_torch_distributed_run(setup, tmp_path):
    """--launcher pytorch with two CPU (gloo) processes: same files, same mIoU."""
    import subprocess
    import sys

    _, model, ckpt, dataset = setup
    out_dir = str(tmp_path / 'labels')
    cmd = [
        sys.executable,
        '-m',
        'torch.distributed.run',
        '--standalone',
        '--nproc_per_node',
        '2',
        osp.join(ROOT, 'tools/generate_pseudo_labels.py'),
        ACR,
        ckpt,
        '--out-dir',
        out_dir,
        '--split',
        'test',
        '--bg-thr',
        '0.45',
        '--launcher',
        'pytorch',
        '--no-progress',
        '--cfg-options',
        *_cli_opts(),
    ]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected, _ = _reference_labels(model, dataset, 0.45)
    assert sorted(os.listdir(out_dir)) == sorted(f'{n}.png' for n in expected)
    for name, label in expected.items():
        np.testing.assert_array_equal(
            read_label_png(osp.join(out_dir, name + '.png')), label
        )
    printed = re.findall(r'pseudo-label mIoU: ([0-9.]+)', proc.stdout)
    assert len(printed) == 1  # rank 0 only
    assert float(printed[0]) == pytest.approx(
        _miou_from_files(out_dir, dataset), abs=1e-6
    )


# ---------------------------------------------------------------------------
# ACR's low- / high-alpha CRF label sets (``--crf-alpha LOW HIGH``): the
# background score ``(1 - max_c M_c) ** alpha`` at two powers, refined by the
# dense CRF: ``generate_pseudo_labels(crf_sets=...)`` and the tool's flag.
needs_crf = pytest.mark.skipif(not crf_available(), reason='pydensecrf2 missing')


#: zero pairwise weights: the CRF label is the argmax of the (clipped) scores
FLAT = dict(gaussian_compat=0.0, bilateral_compat=0.0)


def _present(sample):
    """Label ids that may appear: background and the image's classes."""
    return {0} | {int(c) + 1 for c in np.flatnonzero(sample.img_labels)}


def _unary_labels(seg_logits, alpha, eps=1e-5):
    """The plain formula: argmax over [(1 - max M) ** alpha, M of present]."""
    cams = seg_logits[1:].numpy().astype(np.float64)
    num_classes, h, w = cams.shape
    ids = [0] + [c + 1 for c in range(num_classes) if cams[c].max() > 0]
    label = np.zeros((h, w), np.int64)
    for y in range(h):
        for x in range(w):
            m = max(cams[c, y, x] for c in range(num_classes))
            scores = [(1.0 - m) ** alpha] + [cams[k - 1, y, x] for k in ids[1:]]
            scores = [max(s, eps) for s in scores]
            label[y, x] = ids[int(np.argmax(scores))]  # first maximum wins
    return label


# ----------------------------------------------------------------- pure parts
def test_crf_scores_at_alpha_are_the_plain_formula():
    """Channels 1.. of the seg logits are the maps M; channel 0 and bg_thr
    are replaced by (1 - max_c M_c) ** alpha."""
    rng = np.random.default_rng(0)
    cams = rng.random((3, 4, 5)).astype(np.float32)
    cams[1] = 0.0  # a class absent from the image
    cams[:, 0, 0] = 0.0  # no class: background score 1
    cams[2, 0, 1] = 1.0  # a CAM peak: background score 0
    seg_logits = torch.cat([torch.full((1, 4, 5), 0.7), torch.from_numpy(cams)])
    by_alpha = {}
    for alpha in (1.0, 4.0, 12.0, 32.0):
        scores = crf_scores(seg_logits, bg_thr=0.3, alpha=alpha)
        assert scores.shape == (4, 4, 5) and scores.dtype == np.float32
        for y in range(4):
            for x in range(5):
                m = max(float(cams[c, y, x]) for c in range(3))
                assert scores[0, y, x] == pytest.approx((1.0 - m) ** alpha, rel=1e-5)
                for c in range(3):
                    assert scores[c + 1, y, x] == cams[c, y, x]
        assert scores[0, 0, 0] == 1.0 and scores[0, 0, 1] == 0.0
        by_alpha[alpha] = scores[0]
    # a higher power weakens the background (1 - max M lies in [0, 1])
    assert np.all(by_alpha[12.0] <= by_alpha[1.0])
    assert np.all(by_alpha[32.0] <= by_alpha[4.0])


def test_crf_alpha_dirs_are_named_siblings_of_the_output():
    tool = _tool()
    base = osp.abspath('data/PseudoLabels')
    assert tool.crf_alpha_dirs('data/PseudoLabels/', 1.0, 12.0) == (
        base + '_crf_la1',
        base + '_crf_ha12',
    )
    la, ha = tool.crf_alpha_dirs('x', 0.5, 32)
    assert la.endswith(f'{os.sep}x_crf_la0.5') and ha.endswith(f'{os.sep}x_crf_ha32')
    assert osp.dirname(la) == osp.dirname(ha) == osp.abspath('.')
    help_text = ' '.join(_help_text(tool).split())
    assert '--crf-alpha LOW HIGH' in help_text
    assert '<out-dir>_crf_la<LOW> and <out-dir>_crf_ha<HIGH>' in help_text


def test_cli_crf_alpha_errors(setup, tmp_path, monkeypatch, capsys):
    _, _, ckpt, _ = setup
    tool = _tool()
    base = [ACR, 'ckpt', '--out-dir', 'x']
    assert tool.parse_args(base).crf_alpha is None  # off by default
    args = tool.parse_args(base + ['--crf-alpha', '4', '32'])
    assert args.crf_alpha == [4.0, 32.0] and not args.crf
    for values, message in (
        (['12', '1'], 'LOW must be smaller than HIGH, got 12 1'),
        (['1', '1'], 'LOW must be smaller than HIGH'),
        (['0', '12'], 'must be finite numbers > 0, got 0 12'),
        (['-1', '12'], 'must be finite numbers > 0'),
        (['nan', '12'], 'must be finite numbers > 0'),
        (['1', 'inf'], 'must be finite numbers > 0'),
        (['1'], 'expected 2 arguments'),
        (['one', '12'], 'invalid float value'),
    ):
        with pytest.raises(SystemExit):
            tool.parse_args(base + ['--crf-alpha', *values])
        err = capsys.readouterr().err
        assert '--crf-alpha' in err and message in err, (values, err)
    # without pydensecrf2 the flag says what to install, before any work
    monkeypatch.setattr(tool, 'crf_available', lambda: False)
    out_dir = tmp_path / 'labels'
    with pytest.raises(ImportError, match=r'--crf-alpha: .*pip install pydensecrf2'):
        tool.main([ACR, ckpt, '--out-dir', str(out_dir), '--crf-alpha', '1', '12'])
    assert os.listdir(tmp_path) == []


def test_crf_sets_need_distinct_folders_and_dicts(setup, tmp_path):
    _, model, _, dataset = setup
    with pytest.raises(ValueError, match='distinct folders'):
        generate_pseudo_labels(
            model, dataset, str(tmp_path), crf_sets={str(tmp_path) + '/': {}}
        )
    with pytest.raises(TypeError, match='dense-CRF options'):
        generate_pseudo_labels(
            model, dataset, str(tmp_path), crf_sets={str(tmp_path / 'y'): 12.0}
        )
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------- generation
@needs_crf
def test_crf_sets_match_the_formula_with_one_forward(setup, tmp_path):
    """Without pairwise terms each set is the argmax of the plain formula;
    the main labels are unchanged and the model runs once per sample."""
    _, model, _, dataset = setup
    main, la, ha = (str(tmp_path / d) for d in ('main', 'la', 'ha'))
    crf_sets = {la: dict(alpha=1.0, **FLAT), ha: dict(alpha=12.0, **FLAT)}
    with mock.patch.object(model, 'test_step', wraps=model.test_step) as step:
        out = generate_pseudo_labels(
            model, dataset, main, bg_thr=0.4, batch_size=3, crf_sets=crf_sets
        )
    assert sum(len(c.args[0]['data_samples']) for c in step.call_args_list) == NUM
    assert out['written'] == NUM and out['out_dir'] == main
    assert list(out['crf_sets']) == [la, ha]
    for result in out['crf_sets'].values():
        assert result['written'] == NUM and result['skipped'] == 0
        assert result['metrics'] is not None  # the split has ground truth
    expected, outputs = _reference_labels(model, dataset, 0.4)
    more_foreground = 0
    for i, pred in enumerate(outputs):
        name = f'{i:06d}.png'
        np.testing.assert_array_equal(
            read_label_png(osp.join(main, name)), expected[name[:-4]]
        )
        low = read_label_png(osp.join(la, name))
        high = read_label_png(osp.join(ha, name))
        np.testing.assert_array_equal(low, _unary_labels(pred.seg_logits.data, 1.0))
        np.testing.assert_array_equal(high, _unary_labels(pred.seg_logits.data, 12.0))
        # a weaker background keeps every low-alpha foreground pixel (same
        # class) and may add more
        np.testing.assert_array_equal(high[low > 0], low[low > 0])
        more_foreground += int((high > 0).sum() - (low > 0).sum())
    assert more_foreground > 0

    # resume: only the missing file of one set is computed, by one forward
    os.remove(osp.join(ha, '000003.png'))
    with mock.patch.object(model, 'test_step', wraps=model.test_step) as step:
        again = generate_pseudo_labels(
            model, dataset, main, bg_thr=0.4, crf_sets=crf_sets, progress=False
        )
    assert [len(c.args[0]['data_samples']) for c in step.call_args_list] == [1]
    assert (again['written'], again['skipped']) == (0, NUM)
    assert again['crf_sets'][la]['written'] == 0
    assert again['crf_sets'][ha]['written'] == 1
    assert again['crf_sets'][ha]['metrics'] == out['crf_sets'][ha]['metrics']


@needs_crf
def test_cli_crf_alpha_writes_both_label_sets(setup, tmp_path, capsys):
    """``--crf-alpha 1 12``: the labels in --out-dir as without the flag, and
    one palette PNG per image in <out>_crf_la1 and <out>_crf_ha12 (dense CRF
    with the ACR kernels, background or the image's classes only)."""
    _, model, ckpt, dataset = setup
    out_dir = tmp_path / 'labels'
    result = _tool().main(
        [ACR, ckpt, '--out-dir', str(out_dir), '--split', 'test', '--bg-thr', '0.4']
        + ['--crf-alpha', '1', '12', '--no-progress', '--cfg-options', *_cli_opts()]
    )
    printed = capsys.readouterr().out
    la, ha = tmp_path / 'labels_crf_la1', tmp_path / 'labels_crf_ha12'
    assert list(result['crf_sets']) == [str(la), str(ha)]
    assert f'CRF labels at alpha 1 in {la} (rank 0 wrote {NUM}, skipped 0)' in printed
    assert f'CRF labels at alpha 12 in {ha} (rank 0 wrote {NUM}, skipped 0)' in printed
    names = [f'{i:06d}.png' for i in range(NUM)]
    for folder in (out_dir, la, ha):
        assert sorted(os.listdir(folder)) == names  # no temporary files left
    expected, outputs = _reference_labels(model, dataset, 0.4)
    palette = [v for c in dataset.metainfo['palette'] for v in c]
    for i, pred in enumerate(outputs):
        name = names[i]
        np.testing.assert_array_equal(
            read_label_png(str(out_dir / name)), expected[name[:-4]]
        )
        present = _present(dataset[i]['data_samples'])
        labels = {}
        for folder, alpha in ((la, 1.0), (ha, 12.0)):
            with Image.open(folder / name) as img:
                assert img.mode == 'P'
                assert img.getpalette()[: len(palette)] == palette
                label = np.array(img)
            assert label.shape == tuple(pred.ori_shape)
            assert set(np.unique(label).tolist()) <= present  # never 255
            if i < 3:  # the CRF recomputed from the model's output
                img = packed_image_for_crf(dataset[i]['inputs'], pred.ori_shape)
                scores = crf_scores(pred.seg_logits.data, alpha=alpha)
                np.testing.assert_array_equal(
                    label, crf_refine_labels(img, scores, num_iters=10)
                )
            labels[alpha] = label
        # the weaker high-alpha background leaves at least as much foreground
        assert (labels[12.0] > 0).sum() >= (labels[1.0] > 0).sum(), name


# ----------------------------------------------------------------- distributed
def _crf_sets_dist_worker(rank, world_size, init_file, ckpt, folders, result_file):
    with _gloo_rank(rank, world_size, init_file, ckpt, result_file) as run:
        model, dataset, results = run
        main, la, ha = folders
        crf_sets = {la: dict(alpha=1.0), ha: dict(alpha=12.0)}
        results['out'] = generate_pseudo_labels(
            model, dataset, main, bg_thr=0.4, crf_sets=crf_sets, batch_size=2
        )


@pytest.mark.slow
@needs_crf
def test_crf_sets_under_two_gloo_processes_match_one(setup, tmp_path):
    """Each rank labels its shard of every set; the gathered mIoU of each set
    (padding positions read back from the other rank's files) is the one of
    a single process."""
    _, model, ckpt, dataset = setup
    dist_dirs = [str(tmp_path / 'dist' / d) for d in ('main', 'la', 'ha')]
    result_file = str(tmp_path / 'result.pkl')
    mp.spawn(
        _crf_sets_dist_worker,
        args=(2, str(tmp_path / 'init'), ckpt, dist_dirs, result_file),
        nprocs=2,
        join=True,
    )
    with open(result_file, 'rb') as f:
        dist_out = pickle.load(f)
    main, la, ha = (str(tmp_path / 'single' / d) for d in ('main', 'la', 'ha'))
    single = generate_pseudo_labels(
        model,
        dataset,
        main,
        bg_thr=0.4,
        crf_sets={la: dict(alpha=1.0), ha: dict(alpha=12.0)},
        progress=False,
    )
    assert dist_out['written'] == 4  # rank 0's shard of 7
    assert dist_out['metrics'] == single['metrics']
    for dist_dir, single_dir in zip(dist_dirs[1:], (la, ha)):
        assert dist_out['crf_sets'][dist_dir]['written'] == 4
        assert (
            dist_out['crf_sets'][dist_dir]['metrics']
            == single['crf_sets'][single_dir]['metrics']
        )
        assert sorted(os.listdir(dist_dir)) == sorted(os.listdir(single_dir))
        for name in os.listdir(single_dir):
            np.testing.assert_array_equal(
                read_label_png(osp.join(dist_dir, name)),
                read_label_png(osp.join(single_dir, name)),
            )
