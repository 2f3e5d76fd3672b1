#!/usr/bin/env bash
# Stage 4, segmentation: DeepLab trained on the stage-3 pseudo masks (model selection on a held-out
# part of them, no ground truth), multi-scale + flip inference with and without dCRF, mIoU of both
# against the ground truth, and colour panels of a few images.
#
#   bash runners/4-segmentation.sh                                  # synthetic benchmark on the CPU
#   DATASET=voc DATA_ROOT=/data/VOC2012 MASKS=experiments/voc_rw/pseudo/train_aug GPUS=4 WORKERS=16 \
#     bash runners/4-segmentation.sh
#
# Environment (defaults in brackets):
#   DATASET      synthetic | voc | coco                                   [synthetic]
#   MODEL        deeplabv3plus | deeplabv2 | deeplabv1 (SEAM / ICAM / CPN) [deeplabv3plus]
#   DATA_ROOT    dataset root                                             [data/$DATASET]
#   GPUS         0 = CPU, 1 = one GPU, N > 1 = torchrun with N processes   [0]
#   WORKERS      CRF processes                                            [2]
#   EXP_ROOT     experiments folder                                       [experiments]
#   AFFINITY     the stage-3 recipe whose pseudo masks are the default MASKS (runners/3-rw.sh) [irn]
#   MASKS        pseudo masks of the training split (or "gt": supervised upper bound)
#                             [$EXP_ROOT/${DATASET}_rw/pseudo/<train split>, or ${DATASET}_rw_$AFFINITY/...]
#   PRIORS       stage-1 experiment; on synthetic (no ImageNet weights) the segmentation backbone
#                starts from its CAM network (net.backbone.) when $PRIORS/checkpoints/last.pth
#                exists; its cams/<split> are drawn in the panels     [$EXP_ROOT/${DATASET}_${METHOD:-pnoc}] (runner 1's folder)
#   SELECT_ON    pseudo | gt | none (gt = optimistic protocol, recorded in the report)  [pseudo]
#   EXP          this stage's folder                                      [$EXP_ROOT/${DATASET}_$MODEL]
#   EVAL_SPLITS  splits predicted and scored                              [val]
#   PANELS       number of images drawn per split by tools/visualize.py   [6]
#   OVERRIDES    extra key=value config overrides, space-separated
# Outputs: $EXP/checkpoints/best.pth, $EXP/report.md, $EXP/pred/<split>/{raw,crf_<preset>},
# $EXP/eval_{raw,crf}_<split>.json, $EXP/panels/<split>/. Reruns skip finished work; OVERWRITE=1 redoes it.
set -euo pipefail
cd "$(dirname "$0")/.."

DATASET=${DATASET:-synthetic}
MODEL=${MODEL:-deeplabv3plus}
DATA_ROOT=${DATA_ROOT:-data/$DATASET}
GPUS=${GPUS:-0}
WORKERS=${WORKERS:-2}
EXP_ROOT=${EXP_ROOT:-experiments}
PRIORS=${PRIORS:-$EXP_ROOT/${DATASET}_${METHOD:-pnoc}}
SELECT_ON=${SELECT_ON:-pseudo}
EXP=${EXP:-$EXP_ROOT/${DATASET}_$MODEL}
EVAL_SPLITS=${EVAL_SPLITS:-val}
PANELS=${PANELS:-6}
OVERRIDES=${OVERRIDES:-}
OVERWRITE=${OVERWRITE:-0}
CONFIG=configs/$DATASET/$MODEL.yaml
[ -f "$CONFIG" ] || { echo "[4-segmentation] no config $CONFIG (MODEL=$MODEL, DATASET=$DATASET)" >&2; exit 2; }

source runners/common.sh

TRAIN_SPLIT=$(config_value "$CONFIG" data.train_split)
TRAIN_SPLIT=${TRAIN_SPLIT:-train}
AFFINITY=${AFFINITY:-irn}
RW_EXP=$EXP_ROOT/${DATASET}_rw; [ "$AFFINITY" = irn ] || RW_EXP=${RW_EXP}_$AFFINITY
MASKS=${MASKS:-$RW_EXP/pseudo/$TRAIN_SPLIT}
if [ "$MASKS" != gt ] && [ ! -d "$MASKS" ]; then
  echo "[4-segmentation] no pseudo masks in $MASKS: run runners/3-rw.sh first (or set MASKS)" >&2
  exit 2
fi
CRF_PRESET=$("$PY" -c "import sys; from wsss.config import load_config, get_dotted; \
c = get_dotted(load_config(sys.argv[1]), 'infer.crf') or 'deeplab'; \
print(c if isinstance(c, str) else c.get('preset', 'irn'))" "$CONFIG")
INIT=()
if [ "$DATASET" = synthetic ] && [ -f "$PRIORS/checkpoints/last.pth" ]; then
  INIT=("model.backbone_init=$PRIORS/checkpoints/last.pth" "model.backbone_init_prefix=net.backbone.")
fi

echo "[4-segmentation] train $MODEL on $MASKS (selection on $SELECT_ON) -> $EXP"
"${LAUNCH[@]}" tools/train_seg.py --config "$CONFIG" --data "$DATA_ROOT" --masks "$MASKS" --exp "$EXP" \
  --select-on "$SELECT_ON" "${FORCE[@]}" "${INIT[@]}" "${EXTRA[@]}"

RESULTS=()
for split in $EVAL_SPLITS; do
  echo "[4-segmentation] predict $split (multi-scale + flip, raw and dCRF)"
  "${LAUNCH[@]}" tools/infer_seg.py --exp "$EXP" --split "$split" --data "$DATA_ROOT" --crf config \
    --workers "$WORKERS" "${FORCE[@]}" | tail -n 1
  CRF_DIR=$EXP/pred/$split/crf_$CRF_PRESET
  for kind in raw crf; do
    pred=$EXP/pred/$split/raw; [ "$kind" = crf ] && pred=$CRF_DIR
    "$PY" tools/evaluate.py --data "$DATA_ROOT" --split "$split" --pred "$pred" --mode png \
      --out "$EXP/eval_${kind}_$split.json" "${FORCE[@]}" | tail -n 1
    RESULTS+=("$EXP/eval_${kind}_$split.json")
  done
  CAMS=(); [ -d "$PRIORS/cams/$split" ] && CAMS=(--cams "CAM=$PRIORS/cams/$split")
  "$PY" tools/visualize.py --data "$DATA_ROOT" --split "$split" --limit "$PANELS" "${CAMS[@]}" \
    --masks "$MODEL=$EXP/pred/$split/raw" --masks "$MODEL+CRF=$CRF_DIR" --out "$EXP/panels/$split" \
    "${FORCE[@]}" | tail -n 1
done
"$PY" - "${RESULTS[@]}" <<'EOF'
import json, sys
from pathlib import Path
print(f"{'predictions':34s} {'split':8s} {'mIoU':>7s}")
for p in map(Path, sys.argv[1:]):
    r = json.loads(p.read_text())
    print(f"{p.stem:34s} {r.get('split', ''):8s} {r['miou']:7.2f}")
EOF
echo "[4-segmentation] report: $EXP/report.md; panels: $EXP/panels/"
