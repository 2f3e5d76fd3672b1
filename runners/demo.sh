#!/usr/bin/env bash
# The main job: on a fresh checkout, build the synthetic benchmark and run the whole pipeline on
# it on the CPU: 1-priors (ordinary classifier + P-NOC), 2-saliency (C2AM-H; PoolNet skipped), 3-rw
# (affinity labels, AffinityNet, random walk), 4-segmentation (DeepLab v3+, with and without
# dCRF); then write experiments/demo/report.md and experiments/demo/summary.json.
#
#   bash runners/demo.sh                  # full size: 2000 train / 300 val images of 128 px
#   OVERWRITE=1 bash runners/demo.sh      # redo every stage (reruns otherwise resume)
#
# Environment: DEMO_DIR [experiments/demo], DATA_ROOT [data/synthetic], GPUS [0], SEED [0],
#   SYNTHETIC_ARGS (extra make_synthetic.py arguments, e.g. "--train 32 --val 8 --size 64"),
#   OVERRIDES (key=value config overrides for every stage, e.g. "train.epochs=1"),
#   DEMO_WIDTH [16] (base width of every stage's ResNet-18; configs/synthetic's recipes use 32).
set -euo pipefail
cd "$(dirname "$0")/.."
# Expected duration: the stages of the recorded full-size run (benchmarks/results/demo_synthetic.json,
# 2 idle cores), plus the install on a fresh machine; twice that on a busy or slower machine.
if [ -z "${SYNTHETIC_ARGS:-}" ] && [ -f benchmarks/results/demo_synthetic.json ]; then
  RECORDED=$(sed -n 's/.*"total": *\([0-9]*\).*/\1/p' benchmarks/results/demo_synthetic.json | tail -n 1)
  if [ -n "$RECORDED" ]; then
    echo "[demo] expected duration: about $(( (RECORDED + 59) / 60 )) min of stages on 2 idle cores" \
      "(benchmarks/results/demo_synthetic.md), plus ~2 min of install on a fresh machine; up to twice that on a busy one"
  fi
fi
bash runners/0-setup.sh
PY=${WSSS_VENV:-.venv}/bin/python

export DATASET=synthetic
export DATA_ROOT=${DATA_ROOT:-data/synthetic}
export EXP_ROOT=${DEMO_DIR:-experiments/demo}
export GPUS=${GPUS:-0}
export METHOD=pnoc
export PRIORS=$EXP_ROOT/synthetic_pnoc
mkdir -p "$EXP_ROOT"
TIMES=$EXP_ROOT/stage_seconds.txt
# Every network of the demo is the recipes' ResNet-18 at base width 16 instead of 32, to fit the
# demo's time budget on 2 cores (benchmarks/README.md, "The demo", has the measurements and what
# it costs); benchmarks/methods_synthetic.py keeps the width-32 recipes of configs/synthetic.
export OVERRIDES="model.backbone_kwargs.width=${DEMO_WIDTH:-16} ${OVERRIDES:-}"
: > "$TIMES"

stage() {  # stage NAME COMMAND...: run a stage, record its wall time
  local name=$1; shift
  local t0; t0=$(date +%s)
  echo "=== [demo] $name"
  "$@"
  echo "$name $(( $(date +%s) - t0 ))" >> "$TIMES"
}

# shellcheck disable=SC2086
stage data "$PY" tools/make_synthetic.py --out "$DATA_ROOT" --seed "${SEED:-0}" ${SYNTHETIC_ARGS:-}
stage priors bash runners/1-priors.sh
# Affinity labels from the C2AM-H activations: on this benchmark PoolNet's maps are weaker than
# C2AM-H's (benchmarks/README.md, saliency) and the labels made from them vary from run to run,
# so the demo skips PoolNet (runner 2 alone trains it by default).
# Two trainings are shorter than their recipes in configs/synthetic, at a small cost measured on the
# same stage-1 outputs (benchmarks/README.md, "The demo"): C2AM-H 2 epochs (recipe 3), DeepLab 4 (5).
stage saliency env WITH_POOLNET=0 OVERRIDES="train.epochs=2 $OVERRIDES" bash runners/2-saliency.sh
stage rw env SALIENCY="$EXP_ROOT/synthetic_ccamh/activation/train" bash runners/3-rw.sh
stage segmentation env OVERRIDES="train.epochs=4 $OVERRIDES" bash runners/4-segmentation.sh
# pictures: pseudo masks of the val images too (not used for training), then one panel per image
stage panels bash -c "
  '$PY' tools/infer_rw.py --exp '$EXP_ROOT/synthetic_rw' --split val --data '$DATA_ROOT' \
    --cams '$PRIORS/cams/val' --out '$EXP_ROOT/synthetic_rw/pseudo/val' \
    infer.bg_threshold=\$(cat '$EXP_ROOT/synthetic_rw/threshold.txt') | tail -n 1
  '$PY' tools/visualize.py --data '$DATA_ROOT' --split val --limit 6 --cams 'CAM=$PRIORS/cams/val' \
    --masks 'pseudo=$EXP_ROOT/synthetic_rw/pseudo/val' \
    --masks 'DeepLab=$EXP_ROOT/synthetic_deeplabv3plus/pred/val/raw' --out '$EXP_ROOT/panels' | tail -n 1"
"$PY" tools/demo_report.py --demo "$EXP_ROOT" --data "$DATA_ROOT" --times "$TIMES"
