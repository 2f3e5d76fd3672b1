#!/usr/bin/env bash
# Stage 2, saliency (P-NOC pipeline): C2AM-H trained with the stage-1 CAMs as hints; its
# activations (multi-scale + flip, 0..255) of the training split, scored over a threshold sweep
# against the training split's ground truth (P-NOC's evaluation step); its 0/255 masks (threshold
# SAL_THRESHOLD, 2-label dCRF; of the training split only for PoolNet); PoolNet trained on those
# masks; PoolNet maps (0..255) of the
# training and evaluation splits; binary fg/bg mIoU of all of them against the ground truth next
# to the trivial baselines (all foreground, all background, max CAM thresholded).
#
#   bash runners/2-saliency.sh                                  # synthetic benchmark on the CPU
#   DATASET=voc DATA_ROOT=/data/VOC2012 PRIORS=experiments/voc_pnoc GPUS=4 bash runners/2-saliency.sh
#   SALIENCY=/path/to/maps bash runners/2-saliency.sh           # only score saliency made elsewhere
#
# Environment (defaults in brackets):
#   DATASET      synthetic | voc | coco                                   [synthetic]
#   DATA_ROOT    dataset root                                             [data/$DATASET]
#   GPUS         0 = CPU, 1 = one GPU, N > 1 = torchrun with N processes   [0]
#   WORKERS      processes for the C2AM-H masks' dCRF                     [2]
#   EXP_ROOT     experiments folder                                       [experiments]
#   PRIORS       stage-1 experiment whose cams/<split> are the hints      [$EXP_ROOT/${DATASET}_${METHOD:-pnoc}] (runner 1's folder)
#   TRAIN_SPLIT  training split                                           [the config's data.train_split]
#   EVAL_SPLITS  splits whose saliency is scored                          [val]
#   SAL_THRESHOLD  C2AM-H mask threshold on the max-normalised activation, or "best" = the best
#                threshold of the training split's sweep (tuned on ground truth, as CAM thresholds
#                are; the synthetic config's choice)          [the config's infer.threshold]
#   SALIENCY     a folder of <id>.png 0..255 maps made elsewhere: score it, train nothing
#   WITH_POOLNET 0 = stop after C2AM-H (no PoolNet training, maps or score)   [1]
#   OVERRIDES    extra key=value overrides for both trainings, space-separated
# Outputs: $EXP_ROOT/${DATASET}_ccamh/activation/<split> (0..255),
# $EXP_ROOT/${DATASET}_ccamh/saliency/<split> (0/255 masks), $EXP_ROOT/${DATASET}_poolnet/saliency/<split>
# (the maps stage 3 reads; any folder of <id>.png 0..255 maps works there too).
# Reruns skip finished work; OVERWRITE=1 redoes everything.
set -euo pipefail
cd "$(dirname "$0")/.."

DATASET=${DATASET:-synthetic}
DATA_ROOT=${DATA_ROOT:-data/$DATASET}
GPUS=${GPUS:-0}
WORKERS=${WORKERS:-2}
EXP_ROOT=${EXP_ROOT:-experiments}
PRIORS=${PRIORS:-$EXP_ROOT/${DATASET}_${METHOD:-pnoc}}
EVAL_SPLITS=${EVAL_SPLITS:-val}
SALIENCY=${SALIENCY:-}
OVERRIDES=${OVERRIDES:-}
OVERWRITE=${OVERWRITE:-0}
CCAMH=$EXP_ROOT/${DATASET}_ccamh
POOLNET=$EXP_ROOT/${DATASET}_poolnet

source runners/common.sh

infer() {  # infer EXP SPLIT [args...]: saliency PNGs of SPLIT into EXP/saliency/SPLIT
  local exp=$1 split=$2; shift 2
  echo "[2-saliency] saliency of $split <- $exp"
  "${LAUNCH[@]}" tools/infer_saliency.py --exp "$exp" --split "$split" --data "$DATA_ROOT" \
    --out "$exp/saliency/$split" "${FORCE[@]}" "$@"
}

ccamh_activations() {  # ccamh_activations SPLIT: C2AM-H activations of SPLIT (0..255 PNGs)
  echo "[2-saliency] C2AM-H activations of $1"
  "${LAUNCH[@]}" tools/infer_saliency.py --exp "$CCAMH" --split "$1" --data "$DATA_ROOT" \
    --out "$CCAMH/activation/$1" "${FORCE[@]}" infer.binarize=false
}

ccamh_masks() {  # ccamh_masks SPLIT: C2AM-H masks of SPLIT at $SAL_THRESHOLD (its activations must exist)
  if [ "$SAL_THRESHOLD" = best ] && [ ! -f "$CCAMH/threshold.txt" ]; then
    evaluate "C2AM-H activation" "$TRAIN_SPLIT" "$CCAMH/activation/$TRAIN_SPLIT" \
      "$CCAMH/eval_activation_$TRAIN_SPLIT.json"
    save_best_threshold "$CCAMH/eval_activation_$TRAIN_SPLIT.json" "$CCAMH/threshold.txt"
  fi
  local t=$SAL_THRESHOLD
  [ "$t" = best ] && t=$(cat "$CCAMH/threshold.txt")
  echo "[2-saliency] C2AM-H masks of $1 (threshold $t)"
  "${LAUNCH[@]}" tools/infer_saliency.py --method threshold --config "configs/$DATASET/ccam.yaml" --split "$1" \
    --data "$DATA_ROOT" --out "$CCAMH/saliency/$1" --workers "$WORKERS" "${FORCE[@]}" "method.act_dir=$CCAMH/activation/$1" \
    "infer.threshold=$t" | tail -n 1
}

evaluate() {  # evaluate NAME SPLIT PRED OUT_JSON: binary fg/bg mIoU of a folder of PNGs
  echo "[2-saliency] evaluate $1 on $2"
  "$PY" tools/evaluate.py --data "$DATA_ROOT" --split "$2" --pred "$3" --mode saliency \
    --out "$4" "${FORCE[@]}" | tail -n 1
}

print_table() {  # print_table JSON...: one line per evaluation
  "$PY" - "$@" <<'EOF'
import json, sys
from pathlib import Path
print(f"{'saliency':44s} {'split':8s} {'mIoU':>7s} {'thr':>5s}")
for p in map(Path, sys.argv[1:]):
    r = json.loads(p.read_text())
    print(f"{str(p.parent.name) + '/' + p.stem:44s} {r['split']:8s} {r['miou']:7.2f} {r['threshold']:5.2f}")
EOF
}

if [ -n "$SALIENCY" ]; then  # plug-in: score external maps only
  RESULTS=()
  for split in $EVAL_SPLITS; do
    evaluate "$SALIENCY" "$split" "$SALIENCY" "$SALIENCY/eval_saliency_$split.json"
    RESULTS+=("$SALIENCY/eval_saliency_$split.json")
  done
  print_table "${RESULTS[@]}"
  exit 0
fi

TRAIN_SPLIT=${TRAIN_SPLIT:-$(config_value "configs/$DATASET/ccam.yaml" data.train_split)}
TRAIN_SPLIT=${TRAIN_SPLIT:-train}
SAL_THRESHOLD=${SAL_THRESHOLD:-$(config_value "configs/$DATASET/ccam.yaml" infer.threshold)}
[ "$OVERWRITE" = 1 ] && rm -f "$CCAMH/threshold.txt"
if [ ! -d "$PRIORS/cams/$TRAIN_SPLIT" ]; then
  echo "[2-saliency] no CAMs in $PRIORS/cams/$TRAIN_SPLIT: run runners/1-priors.sh first (or set PRIORS)" >&2
  exit 2
fi

# Without ImageNet weights (synthetic), C2AM-H starts from the stage-1 CAM network's backbone
# and PoolNet from C2AM-H's, as the published ones start from ImageNet weights.
CC_INIT=(); PN_INIT=()
if [ "$DATASET" = synthetic ]; then
  CC_INIT=("model.backbone_init=$PRIORS/checkpoints/last.pth" "model.backbone_init_prefix=net.backbone.")
  PN_INIT=("model.backbone_init=$CCAMH/checkpoints/last.pth")
fi

echo "[2-saliency] train C2AM-H (hints: $PRIORS/cams/$TRAIN_SPLIT) -> $CCAMH"
"${LAUNCH[@]}" tools/train_saliency.py --method ccam --config "configs/$DATASET/ccam.yaml" --data "$DATA_ROOT" \
  --exp "$CCAMH" "${FORCE[@]}" "data.train_split=$TRAIN_SPLIT" "method.cam_dir=$PRIORS/cams/$TRAIN_SPLIT" \
  "${CC_INIT[@]}" "${EXTRA[@]}"
ccamh_activations "$TRAIN_SPLIT"

WITH_POOLNET=${WITH_POOLNET:-1}
if [ "$WITH_POOLNET" = 1 ]; then  # PoolNet learns from the masks of the training split
  ccamh_masks "$TRAIN_SPLIT"
  echo "[2-saliency] train PoolNet on $CCAMH/saliency/$TRAIN_SPLIT -> $POOLNET"
  "${LAUNCH[@]}" tools/train_saliency.py --method poolnet --config "configs/$DATASET/poolnet.yaml" \
    --data "$DATA_ROOT" --exp "$POOLNET" "${FORCE[@]}" "data.train_split=$TRAIN_SPLIT" \
    "method.sal_dir=$CCAMH/saliency/$TRAIN_SPLIT" "${PN_INIT[@]}" "${EXTRA[@]}"
  infer "$POOLNET" "$TRAIN_SPLIT"
fi

RESULTS=()
for split in $EVAL_SPLITS; do
  [ "$split" = "$TRAIN_SPLIT" ] || ccamh_activations "$split"
  ccamh_masks "$split"
  evaluate "C2AM-H activation" "$split" "$CCAMH/activation/$split" "$CCAMH/eval_activation_$split.json"
  evaluate C2AM-H "$split" "$CCAMH/saliency/$split" "$CCAMH/eval_saliency_$split.json"
  RESULTS+=("$CCAMH/eval_activation_$split.json" "$CCAMH/eval_saliency_$split.json")
  if [ "$WITH_POOLNET" = 1 ]; then
    [ "$split" = "$TRAIN_SPLIT" ] || infer "$POOLNET" "$split"
    evaluate PoolNet "$split" "$POOLNET/saliency/$split" "$POOLNET/eval_saliency_$split.json"
    RESULTS+=("$POOLNET/eval_saliency_$split.json")
  fi
  for trivial in all-fg all-bg; do  # trivial baselines: everything salient, nothing salient
    dir=$EXP_ROOT/${DATASET}_saliency_$trivial
    "$PY" tools/infer_saliency.py --method "$trivial" --split "$split" --data "$DATA_ROOT" --out "$dir/$split" \
      "${FORCE[@]}" | tail -n 1
    evaluate "$trivial" "$split" "$dir/$split" "$dir/eval_saliency_$split.json"
    RESULTS+=("$dir/eval_saliency_$split.json")
  done
  if [ -d "$PRIORS/cams/$split" ]; then  # baseline: the max foreground CAM, thresholded
    "$PY" tools/infer_saliency.py --method cam-max --split "$split" --data "$DATA_ROOT" \
      --out "$PRIORS/cam_max/$split" "method.cam_dir=$PRIORS/cams/$split" "${FORCE[@]}" | tail -n 1
    evaluate cam-max "$split" "$PRIORS/cam_max/$split" "$PRIORS/cam_max/eval_saliency_$split.json"
    RESULTS+=("$PRIORS/cam_max/eval_saliency_$split.json")
  fi
done
print_table "${RESULTS[@]}"
if [ "$WITH_POOLNET" = 1 ]; then
  echo "[2-saliency] saliency for stage 3: $POOLNET/saliency/$TRAIN_SPLIT (C2AM-H masks: $CCAMH/saliency/$TRAIN_SPLIT)"
else
  echo "[2-saliency] saliency for stage 3 (no PoolNet): C2AM-H activations $CCAMH/activation/$TRAIN_SPLIT"
fi
