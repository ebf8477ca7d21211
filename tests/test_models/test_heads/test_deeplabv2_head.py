"""DeepLabV2Head: DeepLab-V2's ASPP-L classifier (sum of dilated 3x3 convs)."""

import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from acr_plugin.models.heads import DeepLabV2Head

DILATIONS = (6, 12, 18, 24)


def build(**kwargs):
    cfg = dict(type='DeepLabV2Head', in_channels=8, num_classes=5)
    cfg.update(kwargs)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def feats(shape=(2, 8, 9, 11), seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def randomise(head, seed=1):
    """Weights and biases away from the init (biases non-zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))


def reference(x, head):
    """The sum of four plain dilated convs with the head's parameters."""
    out = 0
    for branch, d in zip(head.conv_seg, head.dilations):
        out = out + F.conv2d(
            x, branch.weight, branch.bias, stride=1, padding=d, dilation=d
        )
    return out


def samples(labels):
    return [SegDataSample(gt_sem_seg=PixelData(data=label[None])) for label in labels]


def test_structure_and_init():
    head = build(in_channels=64, num_classes=21)
    assert isinstance(head, DeepLabV2Head)
    assert head.dilations == DILATIONS and head.channels == 64
    assert head.dropout is None
    assert len(head.conv_seg) == 4
    for branch, d in zip(head.conv_seg, DILATIONS):
        assert isinstance(branch, torch.nn.Conv2d)
        assert branch.kernel_size == (3, 3) and branch.stride == (1, 1)
        assert branch.dilation == (d, d) and branch.padding == (d, d)
        assert (branch.in_channels, branch.out_channels) == (64, 21)
        # DeepLab-V2's init through BaseDecodeHead's conv_seg init_cfg
        assert branch.bias is not None and torch.all(branch.bias == 0)
        assert branch.weight.std().item() == pytest.approx(0.01, rel=0.1)
    # no other parameters: the branches are the whole head
    names = {name for name, _ in head.named_parameters()}
    assert names == {f'conv_seg.{i}.{p}' for i in range(4) for p in ('weight', 'bias')}
    assert [b.dilation[0] for b in build(dilations=[2, 3]).conv_seg] == [2, 3]


def test_output_shape_and_equality_with_plain_convs():
    head = build()
    randomise(head)
    x = feats()
    out = head((feats((2, 4, 9, 11), seed=5), x))  # in_index=-1: the last input
    assert out.shape == (2, 5, 9, 11)
    torch.testing.assert_close(out, reference(x, head))
    # a feature map smaller than the largest dilation keeps its size too
    small = feats((1, 8, 3, 5))
    torch.testing.assert_close(head([small]), reference(small, head))
    # in_index picks the backbone level, as any mmseg head
    picked = build(in_index=0)
    picked.load_state_dict(head.state_dict())
    torch.testing.assert_close(picked([x, small]), reference(x, head))


def test_output_is_at_one_eighth_of_an_output_stride_8_input():
    """On a dilated backbone (output stride 8) the logits are (B, C, H/8, W/8)
    and predict_by_feat brings them to the image size."""
    backbone = MODELS.build(
        dict(
            type='ResNet',
            depth=18,
            base_channels=8,
            stem_channels=8,
            strides=(1, 2, 1, 1),
            dilations=(1, 1, 2, 4),
            out_indices=(3,),
        )
    )
    head = build(in_channels=64)
    image = feats((2, 3, 64, 96))
    logits = head(backbone(image))
    assert logits.shape == (2, 5, 8, 12)
    metas = [dict(img_shape=(64, 96))] * 2
    assert head.predict_by_feat(logits, metas).shape == (2, 5, 64, 96)


@pytest.mark.parametrize('index', range(4))
def test_impulse_response_of_each_branch(index):
    """One non-zero feature pixel at the centre reaches exactly the 3 x 3 grid
    {-d, 0, +d}^2 around it in branch ``index`` (dilation d)."""
    head = build(in_channels=3, num_classes=3)
    randomise(head)
    size, c = 61, 30  # the largest offset, 24, stays inside
    x = torch.zeros(1, 3, size, size)
    x[0, :, c, c] = torch.tensor([1.0, -2.0, 0.5])
    branch, d = head.conv_seg[index], DILATIONS[index]
    response = branch(x) - branch.bias[None, :, None, None]
    nonzero = {tuple(p) for p in (response[0].abs().sum(0) > 0).nonzero().tolist()}
    grid = {(c + i * d, c + j * d) for i in (-1, 0, 1) for j in (-1, 0, 1)}
    assert nonzero == grid
    # and the kernel taps land where a plain dilated conv puts them
    for i in (-1, 0, 1):
        for j in (-1, 0, 1):
            tap = branch.weight[:, :, 1 - i, 1 - j] @ x[0, :, c, c]
            torch.testing.assert_close(response[0, :, c + i * d, c + j * d], tap)


def test_receptive_field_of_the_sum_is_the_union_of_the_grids():
    """The gradient of one output pixel w.r.t. the features is non-zero on the
    33 positions {-d, 0, +d}^2, d in (6, 12, 18, 24), and nowhere else."""
    head = build(in_channels=3, num_classes=3)
    randomise(head)
    size, c = 61, 30
    x = torch.zeros(1, 3, size, size, requires_grad=True)
    head([x])[0, :, c, c].sum().backward()
    nonzero = {tuple(p) for p in (x.grad[0].abs().sum(0) > 0).nonzero().tolist()}
    expected = {
        (c + i * d, c + j * d)
        for d in DILATIONS
        for i in (-1, 0, 1)
        for j in (-1, 0, 1)
    }
    assert len(expected) == 33 and nonzero == expected


def test_gradients_reach_all_four_branches():
    head = build()
    x = feats()
    labels = torch.randint(
        0, 5, (2, 36, 44), generator=torch.Generator().manual_seed(3)
    )
    losses = head.loss([x], samples(labels), train_cfg={})
    losses['loss_ce'].backward()
    for branch in head.conv_seg:
        assert branch.weight.grad.abs().sum() > 0
        assert branch.bias.grad.abs().sum() > 0
    # DDP with find_unused_parameters=False: every parameter has a gradient
    assert all(p.grad is not None for p in head.parameters())


@pytest.mark.parametrize('avg_non_ignore', [False, True])
def test_loss_by_feat_ignores_255(avg_non_ignore):
    head = build(
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, avg_non_ignore=avg_non_ignore
        )
    )
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 5, 6, 8, generator=gen)
    labels = torch.randint(0, 5, (2, 24, 32), generator=gen)
    labels[0, :10] = 255
    labels[1, :, -7:] = 255
    losses = head.loss_by_feat(logits, samples(labels))
    assert set(losses) == {'loss_ce', 'acc_seg'}
    up = F.interpolate(logits, (24, 32), mode='bilinear', align_corners=False)
    pixel = F.cross_entropy(up, labels, ignore_index=255, reduction='none')
    valid = labels != 255
    assert torch.all(pixel[~valid] == 0)
    total = pixel.sum() / (valid.sum() if avg_non_ignore else labels.numel())
    torch.testing.assert_close(losses['loss_ce'], total)
    accuracy = (up.argmax(1) == labels)[valid].float().mean() * 100
    torch.testing.assert_close(losses['acc_seg'][0], accuracy)
    # labels at ignored pixels do not matter; all ignored: no loss
    other = labels.clone()
    other[~valid] = 255
    torch.testing.assert_close(
        head.loss_by_feat(logits, samples(other))['loss_ce'], losses['loss_ce']
    )
    nothing = head.loss_by_feat(logits, samples(torch.full_like(labels, 255)))
    assert nothing['loss_ce'].item() == 0


@pytest.mark.parametrize(
    'dilations',
    [(), [], (0, 6), (6, -12), (6.0, 12), ('6',), (True, 2), 6, '6', None],
    ids=repr,
)
def test_bad_dilations_raise(dilations):
    with pytest.raises(ValueError, match='dilations must be a'):
        build(dilations=dilations)


def test_channels_must_be_the_input_channels():
    assert build(channels=8).channels == 8
    with pytest.raises(ValueError, match=r'channels must be in_channels \(8\)'):
        build(channels=512)
    # resize_concat: the concatenated width
    concat = build(in_channels=[4, 8], in_index=[0, 1], input_transform='resize_concat')
    assert concat.channels == 12 and concat.conv_seg[0].in_channels == 12
    out = concat([feats((1, 4, 5, 6)), feats((1, 8, 5, 6))])
    assert out.shape == (1, 5, 5, 6)
    with pytest.raises(TypeError, match='in_channels'):
        MODELS.build(dict(type='DeepLabV2Head', num_classes=5))


def test_dropout_is_applied_before_the_branches_when_asked():
    head = build(dropout_ratio=0.5)
    randomise(head)
    x = feats()
    head.eval()
    torch.testing.assert_close(head([x]), reference(x, head))
    head.train()
    torch.manual_seed(0)
    assert not torch.allclose(head([x]), reference(x, head))
