#!/usr/bin/env bash
# The demo behind `make demo`, on the embedded synthetic WSSS benchmark:
#   1. synthetic classification pretraining (the stand-in for ImageNet weights),
#   2. ACR training of the ViT-CAM host from that backbone,
#   3. tools/test.py: mmseg's mIoU line, the CAM threshold sweep, CAM pictures.
# Usage: tools/demo.sh [CONFIG] [WORK_DIR]   (PRETRAIN_ITERS=0 skips step 1)
set -euo pipefail
CONFIG=${1:-configs/acr/acr_vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py}
WORK_DIR=${2:-work_dirs/demo}
PYTHON=${PYTHON:-.venv/bin/python}
PRETRAIN_ITERS=${PRETRAIN_ITERS:-400}
PRETRAIN_CFG=configs/vit_cam/vit-cls_tiny-p8_1xb64-1200it_synthetic-pretrain-64x64.py

INIT=()
if [ "$PRETRAIN_ITERS" -gt 0 ]; then
    $PYTHON tools/train.py "$PRETRAIN_CFG" --work-dir "$WORK_DIR/pretrain" \
        --cfg-options train_cfg.max_iters="$PRETRAIN_ITERS" \
        train_cfg.val_interval="$PRETRAIN_ITERS" \
        param_scheduler.0.total_steps="$PRETRAIN_ITERS" \
        default_hooks.checkpoint.interval="$PRETRAIN_ITERS"
    PRETRAINED=$(cat "$WORK_DIR/pretrain/last_checkpoint")
    # ACR configs wrap the baseline as model.model; baselines hold the backbone
    KEY=$($PYTHON -c "from mmengine.config import Config; \
c = Config.fromfile('$CONFIG'); \
print('model.model.backbone' if c.model.type == 'ACRSegmentor' else 'model.backbone')" 2>/dev/null | tail -n 1)
    INIT=(--cfg-options "$KEY.init_cfg.type=Pretrained" "$KEY.init_cfg.checkpoint=$PRETRAINED")
fi

$PYTHON tools/train.py "$CONFIG" --work-dir "$WORK_DIR/train" "${INIT[@]}"
CKPT=$(cat "$WORK_DIR/train/last_checkpoint")
echo "demo: checkpoint $CKPT"
echo "demo: CAM pictures go to $WORK_DIR/test/vis/vis_data/vis_image"
# last: the test loop, ending with mmseg's mIoU line
$PYTHON tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK_DIR/test" \
    --show-dir "$WORK_DIR/test/vis"
