"""Option dicts merged with their defaults refuse unknown keys."""

import pytest

from acr_plugin.utils.config_utils import merge_with_defaults


def test_given_values_override_the_defaults_in_a_new_dict():
    defaults = dict(bg_thr=0.5, flip=True)
    merged = merge_with_defaults(defaults, dict(bg_thr=0.4), 'X test_cfg')
    assert merged == dict(bg_thr=0.4, flip=True)
    assert defaults == dict(bg_thr=0.5, flip=True)
    assert merge_with_defaults(defaults, None, 'X test_cfg') == defaults


def test_unknown_keys_are_named_with_the_allowed_ones():
    with pytest.raises(ValueError) as info:
        merge_with_defaults(
            dict(bg_thr=0.5, flip=True), dict(bg_tresh=0.4, flipp=False), 'X test_cfg'
        )
    assert str(info.value) == (
        'X test_cfg: unknown key(s) bg_tresh, flipp; allowed: bg_thr, flip'
    )
