#!/usr/bin/env bash
# Stage 1, CAM priors: train a CAM method, infer multi-scale CAMs of the training split and the
# evaluation splits, score them against the ground truth (and the trivial baselines), print a table.
#
#   bash runners/1-priors.sh                                   # synthetic benchmark on the CPU
#   DATASET=voc DATA_ROOT=/data/VOC2012 GPUS=4 METHOD=puzzle bash runners/1-priors.sh
#
# The default method is P-NOC: the ordinary classifier (configs/$DATASET/oc.yaml: vanilla CAM
# with RandAugment + label smoothing) is trained first into $OC_EXP (skipped when finished), then
# P-NOC (or P-OC) reads it through method.oc_exp.
# On the synthetic benchmark no ImageNet weights exist: the OC is trained first for every method
# and its backbone stands in for them (model.backbone_init), so every method starts from the same
# trained backbone, as the published ones start from ImageNet's.
#
# Environment (defaults in brackets):
#   DATASET      synthetic | voc | coco                          [synthetic]
#   DATA_ROOT    dataset root                                    [data/$DATASET]
#   METHOD       CAM method, configs/$DATASET/$METHOD.yaml       [pnoc]
#   OC_EXP       ordinary classifier of poc/pnoc, and on synthetic of every method (trained first)
#                                                                [$EXP_ROOT/${DATASET}_oc]
#   BACKBONE     overrides model.backbone (e.g. resnet50)        [the config's]
#   GPUS         0 = CPU, 1 = one GPU, N > 1 = torchrun with N processes   [0]
#   EXP_ROOT     experiments folder                              [experiments]
#   EXP          this run's folder                               [$EXP_ROOT/${DATASET}_$METHOD]
#   TRAIN_SPLIT  training split (CAMs are inferred for it too)   [the config's data.train_split]
#   EVAL_SPLITS  splits whose CAMs are scored                    [train val]
#   OVERRIDES    extra key=value config overrides, space-separated
# Reruns skip finished work (checkpoints, CAM files, scores); set OVERWRITE=1 to redo everything.
set -euo pipefail
cd "$(dirname "$0")/.."

DATASET=${DATASET:-synthetic}
DATA_ROOT=${DATA_ROOT:-data/$DATASET}
METHOD=${METHOD:-pnoc}
BACKBONE=${BACKBONE:-}
GPUS=${GPUS:-0}
EXP_ROOT=${EXP_ROOT:-experiments}
EXP=${EXP:-$EXP_ROOT/${DATASET}_$METHOD}
EVAL_SPLITS=${EVAL_SPLITS:-train val}
OVERRIDES=${OVERRIDES:-}
OVERWRITE=${OVERWRITE:-0}

source runners/common.sh

# train_method METHOD CONFIG EXP [overrides...]: train (resumes; skips a finished run)
train_method() {
  local method=$1 config=$2 exp=$3; shift 3
  echo "[1-priors] train $method ($config) -> $exp"
  "${LAUNCH[@]}" tools/train_cam.py --method "$method" --config "$config" --data "$DATA_ROOT" --exp "$exp" \
    "${FORCE[@]}" "${EXTRA[@]}" "$@"
}

# infer_cams EXP SPLIT: multi-scale CAMs of SPLIT into EXP/cams/SPLIT
infer_cams() {
  echo "[1-priors] CAMs of $2 <- $1"
  "${LAUNCH[@]}" tools/infer_cam.py --exp "$1" --split "$2" --out "$1/cams/$2" "${FORCE[@]}"
}

# evaluate_cams EXP SPLIT CAM_DIR: score CAM_DIR on SPLIT -> EXP/eval_cam_SPLIT.json
evaluate_cams() {
  echo "[1-priors] evaluate CAMs of $2"
  "$PY" tools/evaluate.py --data "$DATA_ROOT" --split "$2" --pred "$3" --mode cam \
    --out "$1/eval_cam_$2.json" "${FORCE[@]}" | tail -n 3
}

print_table() {  # print_table EXP SPLIT...: mIoU / threshold per split, and the baselines
  "$PY" - "$@" <<'EOF'
import json, sys
from pathlib import Path
exp, splits = Path(sys.argv[1]), sys.argv[2:]
rows = []
for s in splits:
    r = json.loads((exp / f"eval_cam_{s}.json").read_text())
    rows.append((exp.name, s, f"{r['miou']:.2f}", f"{r['threshold']:.2f}"))
    b = exp / f"baselines_{s}.json"
    if b.is_file():
        for name, res in json.loads(b.read_text()).items():
            rows.append((f"baseline:{name}", s, f"{res['miou']:.2f}", "-"))
m = [l for l in (exp / "metrics.jsonl").read_text().splitlines() if '"kind": "epoch"' in l]
secs = sum(json.loads(l)["seconds"] for l in m)
print(f"{'run':28s} {'split':10s} {'mIoU':>7s} {'thr':>5s}")
for r in rows:
    print(f"{r[0]:28s} {r[1]:10s} {r[2]:>7s} {r[3]:>5s}")
print(f"training: {len(m)} epochs, {secs:.0f}s")
EOF
}

if [ "$DATASET" = synthetic ] && [ ! -f "$DATA_ROOT/class_names.txt" ]; then
  "$PY" tools/make_synthetic.py --out "$DATA_ROOT"
fi

CONFIG=${CONFIG:-configs/$DATASET/$METHOD.yaml}
TRAIN_SPLIT=${TRAIN_SPLIT:-$(config_value "$CONFIG" data.train_split)}
TRAIN_SPLIT=${TRAIN_SPLIT:-train}
EXTRA+=("data.train_split=$TRAIN_SPLIT")

OC_EXP=${OC_EXP:-$EXP_ROOT/${DATASET}_oc}
case "$METHOD" in poc|pnoc) NEED_OC=1 ;; *) NEED_OC=0 ;; esac  # P-OC / P-NOC erase against an OC
if [ "$NEED_OC" = 1 ] || [ "$DATASET" = synthetic ]; then
  train_method cam "configs/$DATASET/oc.yaml" "$OC_EXP"
fi
if [ "$NEED_OC" = 1 ]; then EXTRA+=("method.oc_exp=$OC_EXP"); fi
if [ "$DATASET" = synthetic ]; then  # the OC's backbone stands in for ImageNet weights (see above)
  EXTRA+=("model.backbone_init=$OC_EXP/checkpoints/last.pth" "model.backbone_init_prefix=net.backbone.")
fi
train_method "$METHOD" "$CONFIG" "$EXP"
infer_cams "$EXP" "$TRAIN_SPLIT"
for split in $EVAL_SPLITS; do
  cam_dir=$EXP/cams/$split
  # VOC's train (1464) is a subset of train_aug: score it from the train_aug CAMs.
  if [ "$split" = train ] && [ "$TRAIN_SPLIT" != train ]; then cam_dir=$EXP/cams/$TRAIN_SPLIT; fi
  [ "$cam_dir" = "$EXP/cams/$TRAIN_SPLIT" ] || infer_cams "$EXP" "$split"
  evaluate_cams "$EXP" "$split" "$cam_dir"
  "$PY" tools/baselines.py --data "$DATA_ROOT" --split "$split" --no-contour --out "$EXP/baselines_$split.json" \
    "${FORCE[@]}" | tail -n 1
done
# shellcheck disable=SC2086
print_table "$EXP" $EVAL_SPLITS
