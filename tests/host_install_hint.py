"""Test helper: the install commands that the host check's error names for
either stack, and an assertion that a message gives them all."""

#: the install commands that the error gives for either stack
UPSTREAM_INSTALL = 'pip install "mmengine>=0.10" "mmsegmentation>=1.2.2"'
ONEDL_INSTALL = 'pip install -r requirements/runtime.txt'
MIM_INSTALL = 'mim install "mmcv>=2.1.0,<2.2.0"'


def assert_install_hint(message):
    assert UPSTREAM_INSTALL in message and MIM_INSTALL in message
    assert ONEDL_INSTALL in message
    assert 'pip install onedl-mmengine onedl-mmcv onedl-mmsegmentation' in message
