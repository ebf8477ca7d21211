"""ToCoTrainingStep (acr_plugin/hosts/toco/toco_training_step.py): ToCo's
losses of one batch, their schedule and the pseudo labels they train on."""

import pytest
import torch
from mmseg.registry import MODELS

from tests.toco_models import (
    LABELS,
    build,
    record_seg_pseudo_labels,
    samples,
    tiny_model_cfg,
)


def test_losses_finite_and_gradients_reach_every_trained_part():
    model = build()
    model.set_train_phase(loss_weights=dict(loss_seg=0.1, loss_reg=0.05))
    inputs = torch.randn(2, 3, 32, 32)
    losses = model.loss(inputs, samples(LABELS))
    for key in (
        'loss_cls',
        'loss_cls_aux',
        'loss_ptc',
        'loss_ctc',
        'loss_seg',
        'loss_reg',
    ):
        assert key in losses and torch.isfinite(losses[key]), key
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    for name in (
        'classifier.weight',
        'aux_classifier.weight',
        'decode_head.conv_seg.weight',
    ):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    blocks = model.backbone.vit.blocks
    assert blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    student = [p for n, p in model.ctc_head.named_parameters() if p.requires_grad]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student)
    teacher = [p for p in model.ctc_head.parameters() if not p.requires_grad]
    assert teacher and all(p.grad is None for p in teacher)
    # frozen, interpolated position embedding
    assert model.backbone.vit.pos_embed.grad is None


def test_zero_weight_skips_a_loss_and_phase_switches():
    model = build()
    model.set_train_phase(loss_weights=dict(loss_seg=0.0, loss_reg=0.0, loss_ctc=0.0))
    calls = []
    handle = model.decode_head.register_forward_hook(lambda *a: calls.append(1))
    losses = model.loss(torch.randn(2, 3, 32, 32), samples(LABELS))
    handle.remove()
    assert not calls  # decoder not run when seg and reg are off
    for key in ('loss_seg', 'loss_reg', 'loss_ctc'):
        assert float(losses[key]) == 0.0
    assert model.decode_head.loss_decode.loss_weight == 0.0
    model.set_train_phase(loss_weights=dict(loss_seg=0.1), seg_label_source='aux')
    assert model.decode_head.loss_decode.loss_weight == 0.1
    assert model.seg_label_source == 'aux'
    with pytest.raises(KeyError, match='loss_nope'):
        model.set_train_phase(loss_weights=dict(loss_nope=1.0))
    with pytest.raises(ValueError, match='seg_label_source'):
        model.set_train_phase(seg_label_source='middle')


def test_first_backbone_forward_is_the_input_view():
    """ACRSegmentor compares the attention of the first forward of loss()."""
    model = build()
    model.set_train_phase(loss_weights=dict(loss_seg=0.1))
    seen = []
    handle = model.backbone.register_forward_hook(
        lambda mod, args, out: seen.append(
            (args[0].detach().clone(), torch.is_grad_enabled())
        )
    )
    inputs = torch.randn(2, 3, 32, 32)
    model.loss(inputs, samples(LABELS))
    handle.remove()
    assert len(seen) > 3  # main view, multi-scale CAMs, global view, crops
    torch.testing.assert_close(seen[0][0], inputs)
    assert seen[0][1]


def test_training_cams_reuse_the_input_view_forward():
    """The multi-scale CAMs of loss() take the input view's own CAMs at scale
    1 (only the mirrored batch is run there) and equal a fresh computation."""
    model = build()
    model.set_train_phase(loss_weights=dict(loss_seg=0.1))
    inputs = torch.randn(2, 3, 32, 32)
    shapes, cams = [], []
    handle = model.backbone.register_forward_hook(
        lambda mod, args, out: shapes.append(tuple(args[0].shape))
    )
    original = model.multi_scale_cams
    model.multi_scale_cams = lambda *a, **k: cams.append(original(*a, **k)) or cams[-1]
    model.loss(inputs, samples(LABELS))
    handle.remove()
    # input view, then the flip CAMs: mirrored only at x1, both views at x0.5, x1.5
    assert shapes[:4] == [
        (2, 3, 32, 32),
        (2, 3, 32, 32),
        (4, 3, 16, 16),
        (4, 3, 48, 48),
    ]
    with torch.no_grad():
        fresh = original(inputs, model.pseudo_cfg['cam_scales'])
    for got, expected in zip(cams[0], fresh):
        torch.testing.assert_close(got, expected)


def test_ctc_students_are_both_global_views_then_the_local_crops(monkeypatch):
    """ToCo's CTC: teachers = the 2 global views; students = the same 2 views
    (always positive, the second one run with gradients) followed by the
    local crops, which are cut from an independently augmented copy of the
    whole image."""
    from acr_plugin.hosts.toco import toco_training_step as toco_module

    model = build()
    inputs = torch.randn(2, 3, 32, 32)
    calls = {}
    local_view = toco_module.ctc_local_view

    def spy_local_view(images, *args, **kwargs):
        calls['local_view_in'] = images.shape
        calls['local_view_out'] = local_view(images, *args, **kwargs)
        return calls['local_view_out']

    sample = toco_module.sample_local_crops

    def spy_sample(images, *args, **kwargs):
        calls['crop_source'] = images
        return sample(images, *args, **kwargs)

    monkeypatch.setattr(toco_module, 'ctc_local_view', spy_local_view)
    monkeypatch.setattr(toco_module, 'sample_local_crops', spy_sample)
    loss_forward = model.loss_ctc.forward

    def spy_loss(student, teacher, positive):
        calls.update(student=student, teacher=teacher, positive=positive)
        return loss_forward(student, teacher, positive)

    model.loss_ctc.forward = spy_loss
    seen = []
    handle = model.backbone.register_forward_hook(
        lambda mod, args, out: seen.append((args[0].shape, torch.is_grad_enabled()))
    )
    losses = model.loss(inputs, samples(LABELS))
    handle.remove()

    assert calls['local_view_in'] == (2, 3, 32, 32)  # the whole image
    assert calls['crop_source'] is calls['local_view_out']
    num_local = model.ctc_cfg['num_local']
    out = model.ctc_head.out_channels
    assert calls['student'].shape == (2, 2 + num_local, out)
    assert calls['teacher'].shape == (2, 2, out)
    assert calls['positive'][:, :2].all()
    assert calls['student'].requires_grad and not calls['teacher'].requires_grad
    # backbone calls with gradients: input view, second global view, crops
    with_grad = [shape for shape, grad in seen if grad]
    size = model.ctc_cfg['local_size']
    assert with_grad == [(2, 3, 32, 32), (2, 3, 32, 32), (2 * num_local, 3, size, size)]
    # the students' global rows are the student head on the views' class
    # tokens, the teachers' the EMA head on the same tokens
    torch.testing.assert_close(calls['student'][:, :2], calls['teacher'])
    losses['loss_ctc'].backward()
    with torch.no_grad():  # the student moves away from its EMA teacher
        for param in model.ctc_head.student.parameters():
            param.add_(0.05 * torch.randn_like(param))
    model.loss(inputs, samples(LABELS))
    assert not torch.allclose(calls['student'][:, :2], calls['teacher'])


def test_pseudo_labels_follow_the_configured_cam():
    """seg_label_source selects the CAM that the decoder's labels come from."""
    model = build()
    model.set_train_phase(loss_weights=dict(loss_seg=0.1, loss_reg=0.0))
    captured = {}
    original = model._seg_loss

    def spy(seg_logits, pseudo):
        captured.setdefault(model.seg_label_source, pseudo.clone())
        return original(seg_logits, pseudo)

    model._seg_loss = spy
    inputs = torch.randn(2, 3, 32, 32)
    torch.manual_seed(1)
    model.loss(inputs, samples(LABELS))
    model.set_train_phase(seg_label_source='aux')
    torch.manual_seed(1)
    model.loss(inputs, samples(LABELS))
    final, aux = captured['final'], captured['aux']
    assert final.shape == aux.shape == (2, 32, 32)
    assert not torch.equal(final, aux)
    for labels in (final, aux):
        values = set(labels.unique().tolist())
        # only present classes (1-based), background or ignore
        assert values <= {0, 1, 4, 2, 255}
        assert not (labels[1] == 1).any() and not (labels[0] == 2).any()


def test_padding_is_ignored_by_the_pseudo_labels():
    model = build()
    model.set_train_phase(loss_weights=dict(loss_seg=0.1, loss_reg=0.0))
    captured = record_seg_pseudo_labels(model)
    data = samples(LABELS)
    data[0].set_metainfo(dict(img_shape=(24, 16)))
    model.loss(torch.randn(2, 3, 32, 32), data)
    pseudo = captured[0]
    assert (pseudo[0, 24:] == 255).all() and (pseudo[0, :, 16:] == 255).all()


def test_dense_energy_gets_the_pseudo_label_ignore_band():
    """loss_reg receives the un-padded roi and, for its uncertainty gate, the
    ignore band of the decoder's pseudo labels (None while seg is off)."""
    cfg = tiny_model_cfg()
    cfg['loss_reg'].update(gate='uncertainty', scale_factor=1.0)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    model.set_train_phase(loss_weights=dict(loss_seg=0.1, loss_reg=0.05))
    pseudo_seen, reg_calls = record_seg_pseudo_labels(model), []
    reg_forward = model.loss_reg.forward

    def reg_spy(seg_logits, images, roi=None, ignore=None):
        reg_calls.append((roi, ignore))
        return reg_forward(seg_logits, images, roi, ignore=ignore)

    model.loss_reg.forward = reg_spy
    data = samples(LABELS)
    data[0].set_metainfo(dict(img_shape=(24, 16)))
    losses = model.loss(torch.randn(2, 3, 32, 32), data)
    assert torch.isfinite(losses['loss_reg'])
    (roi, ignore), pseudo = reg_calls[0], pseudo_seen[0]
    assert torch.equal(ignore, pseudo == 255) and ignore.any()
    assert not roi[0, 24:].any() and roi[1].all()
    model.set_train_phase(loss_weights=dict(loss_seg=0.0, loss_reg=0.05))
    model.loss(torch.randn(2, 3, 32, 32), samples(LABELS))
    assert reg_calls[1][1] is None
