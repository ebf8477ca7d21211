#!/usr/bin/env bash
# Usage: tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args...]
# GPUS processes per node (torch.distributed.run); on CPU-only machines the
# gloo backend is used (env_cfg.dist_cfg.backend).
# Environment: PYTHON (interpreter; default: this repository's .venv/bin/python
# when it exists, else `python` from PATH), NNODES, NODE_RANK, PORT,
# MASTER_ADDR (torch.distributed.run's multi-node settings).
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
DIR="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=select_python.sh
. "$DIR/select_python.sh"

PYTHONPATH="$DIR/..":$PYTHONPATH \
$PYTHON -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$DIR/test.py" \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher pytorch "${@:4}"
