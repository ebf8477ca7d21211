#!/usr/bin/env bash
# Usage: tools/dist_train.sh CONFIG GPUS [train.py args...]
# GPUS processes per node (torch.distributed.run); on CPU-only machines the
# gloo backend is used (env_cfg.dist_cfg.backend).
# Environment: PYTHON (interpreter; default: this repository's .venv/bin/python
# when it exists, else `python` from PATH), NNODES, NODE_RANK, PORT,
# MASTER_ADDR (torch.distributed.run's multi-node settings).
CONFIG=$1
GPUS=$2
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
    "$DIR/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
