#!/usr/bin/env bash
# The classic research stack, built once in its own venv and tested:
# Python 3.10 + torch 2.1.2 / torchvision 0.16.2 + upstream mmcv 2.1.0 (its ops
# compiled) + mmengine 0.10.7 + mmsegmentation 1.2.2 + timm 1.0.16
# (requirements/upstream.txt), acr_plugin installed into it with its abstract
# dependencies (requirements/install.txt), then
#   * the fast test suite,
#   * tests/test_tools/test_host_tools.py: the synthetic ACR config trained and
#     tested through mmseg's own tools/train.py and tools/test.py (the ones
#     installed inside mmseg, mmseg/.mim/tools), and a user config on
#     `mmseg::` bases + custom_imports.
#
# Usage: bash tools/upstream_stack.sh        (or: make test-upstream)
# Environment:
#   UPSTREAM_PYTHON  the Python 3.10 to build the venv from (default: python3.10
#                    on PATH, else pyenv's 3.10)
#   UPSTREAM_VENV    the venv (default .venv-upstream; reused while
#                    requirements/upstream.txt, requirements/install.txt and
#                    setup.py are unchanged)
#   UPSTREAM_MMCV    the mmcv requirement (default mmcv==2.1.0: a source package
#                    whose ops compile in ~6-16 min on 2 cores, once; pip caches
#                    the wheel). Not mmcv-lite: upstream mmsegmentation imports
#                    mmcv.ops (compiled) when mmseg.datasets is imported.
#   MAX_JOBS         parallel compile jobs for mmcv (default: all cores)
#   PYTEST_ARGS      extra pytest arguments
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${UPSTREAM_VENV:-.venv-upstream}
MMCV=${UPSTREAM_MMCV:-mmcv==2.1.0}
PY=$VENV/bin/python
STAMP=$VENV/.acr_plugin-upstream-installed

find_python() {
    if [ -n "${UPSTREAM_PYTHON:-}" ]; then
        echo "$UPSTREAM_PYTHON"
        return
    fi
    local candidate root
    root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
    for candidate in python3.10 "$root/versions/3.10"*/bin/python3.10; do
        if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
            echo "$candidate"
            return
        fi
    done
    echo "upstream_stack.sh: no Python 3.10 found; set UPSTREAM_PYTHON" >&2
    exit 1
}

# the stamp records the interpreter and the mmcv requirement: another one, or a
# newer requirements file, rebuilds the venv
PYTHON310=$(find_python)
WANTED="$PYTHON310 $MMCV"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANTED" ] \
    || [ -n "$(find requirements/upstream.txt requirements/tests.txt requirements/install.txt setup.py -newer "$STAMP")" ]; then
    rm -rf "$VENV"
    "$PYTHON310" -m venv "$VENV"
    "$PY" -m pip install -q -r requirements/upstream.txt -r requirements/tests.txt
    # mmcv's setup.py imports torch (and pkg_resources: setuptools < 81)
    MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" -m pip install -q --no-build-isolation "$MMCV"
    "$PY" -m pip freeze --exclude-editable | sort > "$VENV/stack-before.txt"
    # acr_plugin with its dependencies resolved against the stack: pip must
    # install nothing else and change nothing
    "$PY" -m pip install -q --no-build-isolation -e .
    "$PY" -m pip freeze --exclude-editable | sort > "$VENV/stack-after.txt"
    if ! diff "$VENV/stack-before.txt" "$VENV/stack-after.txt"; then
        echo "upstream_stack.sh: installing acr_plugin changed the stack (diff above)" >&2
        exit 1
    fi
    echo "$WANTED" > "$STAMP"
fi

"$PY" - <<'EOF'
import importlib.metadata as md
import sys

import mmcv
import mmengine
import mmseg
import timm
import torch
import torchvision

import acr_plugin

dists = {d.metadata['Name'].lower() for d in md.distributions()}
forks = sorted(name for name in dists if name.startswith('onedl-'))
assert not forks, f'onedl forks in the upstream venv: {forks}'
try:
    from mmcv.ops import nms  # noqa: F401 (needs the compiled ops)
    ops = 'compiled ops'
except (ImportError, ModuleNotFoundError):
    ops = 'no compiled ops'
print(
    f'classic stack: Python {sys.version.split()[0]}, torch {torch.__version__}, '
    f'torchvision {torchvision.__version__}, timm {timm.__version__}, '
    f'mmcv {mmcv.__version__} ({ops}), mmengine {mmengine.__version__}, '
    f'mmseg {mmseg.__version__}, acr_plugin {acr_plugin.__version__}'
)
EOF

# shellcheck disable=SC2086
"$PY" -m pytest -q -m "not slow" ${PYTEST_ARGS:-} tests
# shellcheck disable=SC2086
"$PY" -m pytest -q ${PYTEST_ARGS:-} tests/test_tools/test_host_tools.py
