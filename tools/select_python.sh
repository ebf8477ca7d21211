# shellcheck shell=bash
# Sourced by the launch scripts of tools/ (dist_*.sh, slurm_*.sh): sets PYTHON,
# the interpreter they run. PYTHON when set; else this repository's
# .venv/bin/python when it exists (`make install` creates it; `python` on PATH
# may have no mmengine); else `python` from PATH.
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$(dirname "${BASH_SOURCE[0]}")/../.venv/bin/python" ]; then
        PYTHON="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv/bin/python"
    else
        PYTHON=python
    fi
fi
