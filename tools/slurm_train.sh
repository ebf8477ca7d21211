#!/usr/bin/env bash
# Usage: tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
# Runs tools/train.py CONFIG --work-dir=WORK_DIR --launcher slurm as GPUS Slurm
# tasks (one process per GPU) with srun on partition PARTITION. On CPU-only
# nodes the gloo backend is used (env_cfg.dist_cfg.backend).
# Environment: GPUS (tasks in all, default 4), GPUS_PER_NODE (tasks and GPUs
# per node, default min(GPUS, 8)), CPUS_PER_TASK (default 5), SRUN_ARGS (more
# srun options, split at spaces, e.g. "--time=2-00:00:00 --mem=64G"), PYTHON
# (interpreter; default: this repository's .venv/bin/python when it exists,
# else `python` from PATH), MASTER_PORT (default 29500; give each job that
# shares a node its own).
set -eu
if [ $# -lt 4 ]; then
    echo "usage: [GPUS=4] [GPUS_PER_NODE=N] [CPUS_PER_TASK=5] [SRUN_ARGS=...]" \
        "$0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-4}
case $GPUS in
    '' | *[!0-9]* | 0)
        echo "$0: GPUS must be a positive integer, got '$GPUS'" >&2
        exit 2
        ;;
esac
GPUS_PER_NODE=${GPUS_PER_NODE:-$((GPUS < 8 ? GPUS : 8))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-}
DIR="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=select_python.sh
. "$DIR/select_python.sh"

# srun passes the environment (PYTHONPATH, MASTER_PORT, ...) to every task
# shellcheck disable=SC2086  # SRUN_ARGS: several options
PYTHONPATH="$DIR/..${PYTHONPATH:+:$PYTHONPATH}" \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$DIR/train.py" "$CONFIG" --work-dir="$WORK_DIR" \
    --launcher slurm "${@:5}"
