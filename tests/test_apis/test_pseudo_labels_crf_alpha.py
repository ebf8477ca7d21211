"""ACR's low- / high-alpha CRF label sets (``--crf-alpha LOW HIGH``).

The background score ``(1 - max_c M_c) ** alpha`` at two powers, refined by
the dense CRF: ``generate_pseudo_labels(crf_sets=...)`` and the tool's flag.
"""

import os
import os.path as osp
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

from acr_plugin.apis import generate_pseudo_labels, read_label_png
from acr_plugin.models.utils.crf import (
    crf_available,
    crf_refine_labels,
    crf_scores,
    packed_image_for_crf,
)
from tests.test_apis import test_pseudo_labels
from tests.test_apis.test_pseudo_labels import (
    ACR,
    NUM,
    _cli_opts,
    _help_text,
    _reference_labels,
    _tool,
)

#: the tiny random ACR model, its checkpoint and a 7-image split (fixture)
setup = test_pseudo_labels.setup

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
def _dist_worker(rank, world_size, init_file, ckpt, folders, result_file):
    import pickle

    import torch.distributed as dist

    from acr_plugin.apis import build_model, build_split_dataset

    dist.init_process_group(
        'gloo', init_method=f'file://{init_file}', rank=rank, world_size=world_size
    )
    try:
        torch.set_num_threads(1)
        cfg = test_pseudo_labels._cfg(osp.dirname(result_file))
        model = build_model(cfg, ckpt, device='cpu')
        dataset = build_split_dataset(cfg, 'test_dataloader')
        main, la, ha = folders
        crf_sets = {la: dict(alpha=1.0), ha: dict(alpha=12.0)}
        out = generate_pseudo_labels(
            model, dataset, main, bg_thr=0.4, crf_sets=crf_sets, batch_size=2
        )
        if rank == 0:
            with open(result_file, 'wb') as f:
                pickle.dump(out, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@needs_crf
def test_crf_sets_under_two_gloo_processes_match_one(setup, tmp_path):
    """Each rank labels its shard of every set; the gathered mIoU of each set
    (padding positions read back from the other rank's files) is the one of
    a single process."""
    import pickle

    import torch.multiprocessing as mp

    _, model, ckpt, dataset = setup
    dist_dirs = [str(tmp_path / 'dist' / d) for d in ('main', 'la', 'ha')]
    result_file = str(tmp_path / 'result.pkl')
    mp.spawn(
        _dist_worker,
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
