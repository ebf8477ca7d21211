#!/usr/bin/env bash
# The demo behind `make demo`: train on the embedded synthetic WSSS benchmark,
# then evaluate the checkpoint with tools/test.py (prints mmseg's mIoU line).
# Usage: tools/demo.sh CONFIG WORK_DIR
set -euo pipefail
CONFIG=${1:?config}
WORK_DIR=${2:?work dir}
PYTHON=${PYTHON:-.venv/bin/python}

$PYTHON tools/train.py "$CONFIG" --work-dir "$WORK_DIR"
CKPT=$(cat "$WORK_DIR/last_checkpoint")
$PYTHON tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK_DIR/test" \
    --show-dir "$WORK_DIR/test/vis"
echo "demo: checkpoint $CKPT, pictures under $WORK_DIR/test/vis"
