#!/usr/bin/env bash
# Stage 3, random walk: affinity labels from the stage-1 CAMs (+ the stage-2 saliency when it is
# there), AffinityNet (IRN boundary head on a frozen backbone, or psa's), pseudo masks by the sparse
# random walk; the pseudo masks are scored against the ground truth next to the CAMs they came from.
#
#   bash runners/3-rw.sh                                        # synthetic benchmark on the CPU
#   AFFINITY=psa bash runners/3-rw.sh                           # psa's AffinityNet and walk
#   DATASET=voc DATA_ROOT=/data/VOC2012 PRIORS=experiments/voc_pnoc \
#     SALIENCY=experiments/voc_poolnet/saliency/train_aug GPUS=4 WORKERS=16 bash runners/3-rw.sh
#
# Environment (defaults in brackets):
#   DATASET      synthetic | voc | coco                                   [synthetic]
#   AFFINITY     the recipe: irn = configs/$DATASET/affinity.yaml, else configs/$DATASET/affinity_$AFFINITY.yaml:
#                psa (psa's network), icam, aeft (psa's network; voc, coco), cpn (CPN's IRN recipe; voc)  [irn]
#   CONFIG       another config file                                      [as AFFINITY says]
#   DATA_ROOT    dataset root                                             [data/$DATASET]
#   GPUS         0 = CPU, 1 = one GPU, N > 1 = torchrun with N processes   [0]
#   WORKERS      CRF processes (affinity labels, pseudo-mask CRF)          [2]
#   EXP_ROOT     experiments folder                                       [experiments]
#   PRIORS       stage-1 experiment (cams/<split>, checkpoints/)          [$EXP_ROOT/${DATASET}_${METHOD:-pnoc}] (runner 1's folder)
#   SALIENCY     saliency maps of the training split; unset: stage 2's PoolNet maps if present,
#                else the saliency-free rule (method.labels_fallback)
#   EXP          this stage's folder                    [$EXP_ROOT/${DATASET}_rw, or ${DATASET}_rw_$AFFINITY]
#   LABELS       affinity-label folder (made there unless complete; share it between recipes
#                that use the same label rule)                            [$EXP/aff_labels]
#   TRAIN_SPLIT  split of the labels, the training and the pseudo masks  [the config's data.train_split]
#   EVAL_SPLITS  splits whose pseudo masks are scored (must be in TRAIN_SPLIT or get CAMs)  [train]
#   RW_THRESHOLD background score of the pseudo masks, or "best" = the best threshold of a sweep of
#                the walked scores on TRAIN_SPLIT's ground truth (tuned on ground truth, as the CAM
#                thresholds are; P-NOC sweeps it too before fixing 0.3; CAMs that store their own
#                background have no sweep: their walked background decides)  [the config's infer.bg_threshold]
#   OVERRIDES    extra key=value config overrides, space-separated
#   POSTPROCESS  rw = the above; none = pseudo masks straight from the CAMs (their stored background,
#                else CAM_THRESHOLD), for methods whose inference is their post-processing (SP-CAM's
#                superpixel walk)                                         [none for METHOD=spcam, else rw]
#   CAM_THRESHOLD  POSTPROCESS=none: background score for CAM files without a stored background
# Outputs: $LABELS, $EXP (checkpoints), $EXP/pseudo/<split> (index PNGs for stage 4);
# with RW_THRESHOLD=best also $EXP/rw/<split> (walked scores), eval_rwscores_<split>.json, threshold.txt.
# Reruns skip finished work; OVERWRITE=1 redoes everything.
set -euo pipefail
cd "$(dirname "$0")/.."

DATASET=${DATASET:-synthetic}
DATA_ROOT=${DATA_ROOT:-data/$DATASET}
GPUS=${GPUS:-0}
WORKERS=${WORKERS:-2}
EXP_ROOT=${EXP_ROOT:-experiments}
PRIORS=${PRIORS:-$EXP_ROOT/${DATASET}_${METHOD:-pnoc}}
AFFINITY=${AFFINITY:-irn}
if [ "$AFFINITY" = irn ]; then
  CONFIG=${CONFIG:-configs/$DATASET/affinity.yaml}
  EXP=${EXP:-$EXP_ROOT/${DATASET}_rw}
else
  CONFIG=${CONFIG:-configs/$DATASET/affinity_$AFFINITY.yaml}
  EXP=${EXP:-$EXP_ROOT/${DATASET}_rw_$AFFINITY}
fi
[ -f "$CONFIG" ] || { echo "[3-rw] no config $CONFIG (AFFINITY=$AFFINITY, DATASET=$DATASET)" >&2; exit 2; }
LABELS=${LABELS:-$EXP/aff_labels}
EVAL_SPLITS=${EVAL_SPLITS:-train}
OVERRIDES=${OVERRIDES:-}
OVERWRITE=${OVERWRITE:-0}

source runners/common.sh

TRAIN_SPLIT=${TRAIN_SPLIT:-$(config_value "$CONFIG" data.train_split)}
TRAIN_SPLIT=${TRAIN_SPLIT:-train}
CAMS=$PRIORS/cams/$TRAIN_SPLIT
if [ ! -d "$CAMS" ]; then
  echo "[3-rw] no CAMs in $CAMS: run runners/1-priors.sh first (or set PRIORS)" >&2
  exit 2
fi
POSTPROCESS=${POSTPROCESS:-$([ "${METHOD:-pnoc}" = spcam ] && echo none || echo rw)}
if [ "$POSTPROCESS" = none ]; then
  CAM_THRESHOLD=${CAM_THRESHOLD:-}
  echo "[3-rw] pseudo masks of $TRAIN_SPLIT straight from $CAMS -> $EXP/pseudo/$TRAIN_SPLIT"
  "$PY" tools/make_pseudo_masks.py --data "$DATA_ROOT" --split "$TRAIN_SPLIT" --scores "$CAMS" \
    --out "$EXP/pseudo/$TRAIN_SPLIT" --workers "$WORKERS" "${FORCE[@]}" ${CAM_THRESHOLD:+--threshold "$CAM_THRESHOLD"} | tail -n 1
elif [ "$POSTPROCESS" = rw ]; then
  SALIENCY=${SALIENCY:-}
  if [ -z "$SALIENCY" ] && [ -d "$EXP_ROOT/${DATASET}_poolnet/saliency/$TRAIN_SPLIT" ]; then
    SALIENCY=$EXP_ROOT/${DATASET}_poolnet/saliency/$TRAIN_SPLIT
  fi
  SAL=(); [ -n "$SALIENCY" ] && SAL=(--saliency "$SALIENCY")
  echo "[3-rw] affinity labels of $TRAIN_SPLIT from $CAMS ${SALIENCY:+and $SALIENCY}$([ -n "$SALIENCY" ] || echo "(no saliency)")"
  "$PY" tools/make_affinity_labels.py --config "$CONFIG" --data "$DATA_ROOT" --split "$TRAIN_SPLIT" --cams "$CAMS" \
    "${SAL[@]}" --out "$LABELS" --workers "$WORKERS" "${FORCE[@]}" "${EXTRA[@]}" | tail -n 1

  # Without ImageNet weights (synthetic), the frozen backbone is the CAM network's.
  INIT=(); [ "$DATASET" = synthetic ] && INIT=("model.backbone_init=$PRIORS/checkpoints/last.pth" "model.backbone_init_prefix=net.backbone.")
  echo "[3-rw] train AffinityNet ($AFFINITY) -> $EXP"
  "${LAUNCH[@]}" tools/train_affinity.py --config "$CONFIG" --data "$DATA_ROOT" --labels "$LABELS" \
    --exp "$EXP" "${FORCE[@]}" "data.train_split=$TRAIN_SPLIT" "${INIT[@]}" "${EXTRA[@]}"

  # The trained experiment's effective config: $CONFIG with the OVERRIDES given to its training.
  RW_THRESHOLD=${RW_THRESHOLD:-$(config_value "$EXP/config.yaml" infer.bg_threshold)}
  [ "$OVERWRITE" = 1 ] && rm -f "$EXP/threshold.txt"
  if [ "$RW_THRESHOLD" = best ]; then
    echo "[3-rw] walked scores of $TRAIN_SPLIT -> $EXP/rw/$TRAIN_SPLIT"
    "${LAUNCH[@]}" tools/infer_rw.py --exp "$EXP" --split "$TRAIN_SPLIT" --data "$DATA_ROOT" --cams "$CAMS" \
      --save-rw "$EXP/rw/$TRAIN_SPLIT" --scores-only "${FORCE[@]}" "${EXTRA[@]}"
    if [ ! -f "$EXP/threshold.txt" ]; then
      "$PY" tools/evaluate.py --data "$DATA_ROOT" --split "$TRAIN_SPLIT" --pred "$EXP/rw/$TRAIN_SPLIT" --mode cam \
        --no-contour --out "$EXP/eval_rwscores_$TRAIN_SPLIT.json" --overwrite | tail -n 1
      save_best_threshold "$EXP/eval_rwscores_$TRAIN_SPLIT.json" "$EXP/threshold.txt"
    fi
    RW_THRESHOLD=$(cat "$EXP/threshold.txt")
    CRF=$(config_value "$EXP/config.yaml" infer.crf.preset)
    if [ "$RW_THRESHOLD" = stored ]; then  # the CAMs' own background was walked with the classes (ICAM, ...)
      THRESHOLD=()
      echo "[3-rw] pseudo masks of $TRAIN_SPLIT against the walked stored background -> $EXP/pseudo/$TRAIN_SPLIT"
    else
      THRESHOLD=(--threshold "$RW_THRESHOLD")
      echo "[3-rw] pseudo masks of $TRAIN_SPLIT at the sweep's threshold $RW_THRESHOLD -> $EXP/pseudo/$TRAIN_SPLIT"
    fi
    "$PY" tools/make_pseudo_masks.py --data "$DATA_ROOT" --split "$TRAIN_SPLIT" --scores "$EXP/rw/$TRAIN_SPLIT" \
      "${THRESHOLD[@]}" --crf "${CRF:-none}" --out "$EXP/pseudo/$TRAIN_SPLIT" --workers "$WORKERS" "${FORCE[@]}"
  else
    echo "[3-rw] pseudo masks of $TRAIN_SPLIT -> $EXP/pseudo/$TRAIN_SPLIT"
    "${LAUNCH[@]}" tools/infer_rw.py --exp "$EXP" --split "$TRAIN_SPLIT" --data "$DATA_ROOT" --cams "$CAMS" \
      --out "$EXP/pseudo/$TRAIN_SPLIT" --workers "$WORKERS" "${FORCE[@]}" "${EXTRA[@]}" \
      ${RW_THRESHOLD:+"infer.bg_threshold=$RW_THRESHOLD"}
  fi
else
  echo "[3-rw] unknown POSTPROCESS=$POSTPROCESS (rw | none)" >&2
  exit 2
fi

RESULTS=()
for split in $EVAL_SPLITS; do
  echo "[3-rw] evaluate $split: CAMs and pseudo masks"
  "$PY" tools/evaluate.py --data "$DATA_ROOT" --split "$split" --pred "$CAMS" --mode cam --no-contour \
    --out "$EXP/eval_cam_$split.json" "${FORCE[@]}" | tail -n 1
  "$PY" tools/evaluate.py --data "$DATA_ROOT" --split "$split" --pred "$EXP/pseudo/$TRAIN_SPLIT" --mode png \
    --no-contour --out "$EXP/eval_rw_$split.json" "${FORCE[@]}" | tail -n 1
  RESULTS+=("$EXP/eval_cam_$split.json" "$EXP/eval_rw_$split.json")
done
"$PY" - "${RESULTS[@]}" <<'EOF'
import json, sys
from pathlib import Path
print(f"{'masks':34s} {'split':8s} {'mIoU':>7s} {'thr':>5s}")
for p in map(Path, sys.argv[1:]):
    r = json.loads(p.read_text())
    thr = r.get("threshold")
    print(f"{p.stem:34s} {r.get('split', ''):8s} {r['miou']:7.2f} {'-' if thr is None else f'{thr:.2f}':>5s}")
EOF
echo "[3-rw] pseudo masks for stage 4: $EXP/pseudo/$TRAIN_SPLIT"
