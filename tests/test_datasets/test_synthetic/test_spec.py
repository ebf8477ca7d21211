"""SyntheticSpec, head_style and class_names: the synthetic designs."""

import pytest

from acr_plugin.datasets.synthetic import (
    SyntheticSpec,
    generate_sample,
    head_style,
)


def test_heads_have_class_hue_in_bgr():
    """Heads of class 1 (hue 0, red) are red in the *last* channel (BGR)."""
    assert head_style('wsss', 0, 6).hue == 0.0
    spec = SyntheticSpec()
    found = 0
    for index in range(60):
        sample = generate_sample(spec, 5, index)
        head = (sample['gt_seg_map'] == 1) & (sample['gt_part_map'] == 2)
        if head.any():
            mean = sample['img'][head].astype(float).mean(0)
            assert mean[2] > mean[0] + 40 and mean[2] > mean[1] + 40
            found += 1
    assert found >= 5


def test_spec_errors():
    with pytest.raises(ValueError, match='design'):
        SyntheticSpec(design='imagenet')
    with pytest.raises(ValueError, match='img_size'):
        SyntheticSpec(img_size=16)
    with pytest.raises(ValueError, match='min_objects'):
        SyntheticSpec(min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match='seed and index'):
        generate_sample(SyntheticSpec(), -1, 0)
