#!/usr/bin/env bash
# Stage 1, CAM priors: train a CAM method, infer multi-scale CAMs of the training split and the
# evaluation splits, score them against the ground truth (and the trivial baselines), print a table.
#
#   bash runners/1-priors.sh                                   # synthetic benchmark on the CPU
#   METHOD=icam bash runners/1-priors.sh                       # ICAM: both protocols (stored background, sweep)
#   DATASET=voc DATA_ROOT=/data/VOC2012 GPUS=4 METHOD=puzzle bash runners/1-priors.sh
#   METHOD=aeft bash runners/1-priors.sh                        # AEFT-GPP (configs/$DATASET/aeft.yaml)
#
# The default method is P-NOC: the ordinary classifier (configs/$DATASET/oc.yaml: vanilla CAM
# with RandAugment + label smoothing) is trained first into $OC_EXP (skipped when finished), then
# P-NOC (or P-OC) reads it through method.oc_exp.
# On the synthetic benchmark no ImageNet weights exist: the OC is trained first for every method
# and its backbone stands in for them (model.backbone_init), so every method but P-OC / P-NOC
# starts from the same trained backbone, as the published ones start from ImageNet's.
#
# METHOD=spcam (SP-CAM) needs saliency maps and an association network before its own training:
# a first vanilla CAM (configs/$DATASET/cam.yaml -> $FIRST_EXP) and its CAMs of the training split,
# then, unless SALIENCY names a folder of <id>.png maps, runners/2-saliency.sh on that CAM
# (C2AM-H, then PoolNet unless WITH_POOLNET=0), then the association network
# (configs/$DATASET/superpixel.yaml -> $SP_EXP) on that saliency and those CAMs, then SP-CAM.
# Its CAM files store its constant background (method.bg_threshold): the scores below use it,
# no threshold is swept.
#
# Environment (defaults in brackets):
#   DATASET      synthetic | voc | coco                          [synthetic]
#   DATA_ROOT    dataset root                                    [data/$DATASET]
#   METHOD       CAM method, configs/$DATASET/$METHOD.yaml       [pnoc]
#   OC_EXP       ordinary classifier of poc/pnoc, and on synthetic of every method (trained first)
#                                                                [$EXP_ROOT/${DATASET}_oc]
#   OC_INIT      synthetic: 1 = start the method from the OC's backbone  [1, but 0 for poc/pnoc]
#   FIRST_EXP    spcam: the first CAM (vanilla cam)               [$EXP_ROOT/${DATASET}_cam]
#   SALIENCY     spcam: saliency of the training split            [runner 2's last maps]
#   SP_EXP       spcam: association network                       [$EXP_ROOT/${DATASET}_superpixel]
#   SAL_OVERRIDES, SP_OVERRIDES  spcam: overrides of runner 2's trainings / of the association network
#   BACKBONE     overrides model.backbone (e.g. resnet50)        [the config's]
#   GPUS         0 = CPU, 1 = one GPU, N > 1 = torchrun with N processes   [0]
#   EXP_ROOT     experiments folder                              [experiments]
#   EXP          this run's folder                               [$EXP_ROOT/${DATASET}_$METHOD]
#   TRAIN_SPLIT  training split (CAMs are inferred for it too)   [the config's data.train_split]
#   EVAL_SPLITS  splits whose CAMs are scored                    [train val]
#   OVERRIDES    extra key=value config overrides, space-separated (method.* ones reach $METHOD only)
# A method whose config names its own threshold sweep (infer.thresholds, e.g. CPN's 0.20:0.59:0.01
# on its halved maps) is scored with it too (eval_cam_<split>_method.json), next to the toolkit's.
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

# train_method METHOD CONFIG EXP [overrides...]: train (resumes; skips a finished run). A helper
# training of another method (the OC, SP-CAM's first CAM) gets OVERRIDES without its method.* keys,
# which belong to $METHOD.
train_method() {
  local method=$1 config=$2 exp=$3 extra=() w; shift 3
  for w in "${EXTRA[@]}"; do
    if [ "$method" = "$METHOD" ] || [[ "$w" != method.* ]]; then extra+=("$w"); fi
  done
  echo "[1-priors] train $method ($config) -> $exp"
  "${LAUNCH[@]}" tools/train_cam.py --method "$method" --config "$config" --data "$DATA_ROOT" --exp "$exp" \
    "${FORCE[@]}" "${extra[@]}" "$@"
}

# infer_cams EXP SPLIT: multi-scale CAMs of SPLIT into EXP/cams/SPLIT
infer_cams() {
  echo "[1-priors] CAMs of $2 <- $1"
  "${LAUNCH[@]}" tools/infer_cam.py --exp "$1" --split "$2" --out "$1/cams/$2" "${FORCE[@]}"
}

# evaluate_cams EXP SPLIT CAM_DIR [THRESHOLDS SUFFIX]: score CAM_DIR on SPLIT ->
# EXP/eval_cam_SPLIT[SUFFIX].json (the toolkit's sweep, or THRESHOLDS); CAM files that store their
# method's background map (ICAM) are scored against it there, and by the threshold sweep of their
# foreground channels in EXP/eval_cam_SPLIT[SUFFIX]_sweep.json
evaluate_cams() {
  local sweep=(); [ -n "${4:-}" ] && sweep=(--thresholds "$4")
  local out="$1/eval_cam_$2${5:-}"
  echo "[1-priors] evaluate CAMs of $2${4:+ (sweep $4)}"
  "$PY" tools/evaluate.py --data "$DATA_ROOT" --split "$2" --pred "$3" --mode cam "${sweep[@]}" \
    --out "$out.json" "${FORCE[@]}" | tail -n 3
  if [ "$(json_value "$out.json" protocol)" = stored-background ]; then
    "$PY" tools/evaluate.py --data "$DATA_ROOT" --split "$2" --pred "$3" --mode cam --ignore-stored-background \
      "${sweep[@]}" --out "${out}_sweep.json" "${FORCE[@]}" | tail -n 1
  fi
}

print_table() {  # print_table EXP SPLIT...: mIoU / threshold / contour F per split and protocol, and the baselines
  "$PY" - "$@" <<'EOF'
import json, sys
from pathlib import Path
exp, splits = Path(sys.argv[1]), sys.argv[2:]
rows = []
for s in splits:
    for path, tag in ((exp / f"eval_cam_{s}.json", ""), (exp / f"eval_cam_{s}_sweep.json", ""),
                      (exp / f"eval_cam_{s}_method.json", " (method sweep)"),
                      (exp / f"eval_cam_{s}_method_sweep.json", " (method sweep)")):
        if not path.is_file():
            continue
        r = json.loads(path.read_text())
        thr, cf = r.get("threshold"), (r.get("contour_f") or {}).get("mean_f")
        rows.append((exp.name + tag, s, r.get("protocol", "sweep"), f"{r['miou']:.2f}", "-" if thr is None else f"{thr:.2f}",
                     "-" if cf is None else f"{cf:.2f}"))

    b = exp / f"baselines_{s}.json"
    if b.is_file():
        for name, res in json.loads(b.read_text()).items():
            rows.append((f"baseline:{name}", s, "-", f"{res['miou']:.2f}", "-", "-"))
m = [l for l in (exp / "metrics.jsonl").read_text().splitlines() if '"kind": "epoch"' in l]
secs = sum(json.loads(l)["seconds"] for l in m)
print(f"{'run':28s} {'split':10s} {'protocol':18s} {'mIoU':>7s} {'thr':>5s} {'contour F':>9s}")
for r in rows:
    print(f"{r[0]:28s} {r[1]:10s} {r[2]:18s} {r[3]:>7s} {r[4]:>5s} {r[5]:>9s}")
print(f"training: {len(m)} epochs, {secs:.0f}s")
EOF
}

if [ "$DATASET" = synthetic ] && [ ! -f "$DATA_ROOT/class_names.txt" ]; then
  "$PY" tools/make_synthetic.py --out "$DATA_ROOT"
fi

CONFIG=${CONFIG:-configs/$DATASET/$METHOD.yaml}
METHOD_THRESHOLDS=$(config_value "$CONFIG" infer.thresholds)
TRAIN_SPLIT=${TRAIN_SPLIT:-$(config_value "$CONFIG" data.train_split)}
TRAIN_SPLIT=${TRAIN_SPLIT:-train}
EXTRA+=("data.train_split=$TRAIN_SPLIT")

OC_EXP=${OC_EXP:-$EXP_ROOT/${DATASET}_oc}
case "$METHOD" in poc|pnoc) NEED_OC=1 ;; *) NEED_OC=0 ;; esac  # P-OC / P-NOC erase against an OC
if [ "$NEED_OC" = 1 ] || [ "$DATASET" = synthetic ]; then
  train_method cam "configs/$DATASET/oc.yaml" "$OC_EXP"
fi
if [ "$NEED_OC" = 1 ]; then EXTRA+=("method.oc_exp=$OC_EXP"); fi
# P-OC / P-NOC, which erase against the OC, train from scratch on synthetic (OC_INIT=1 starts them
# from its backbone too; configs/synthetic/poc.yaml has the measurement)
OC_INIT=${OC_INIT:-$([ "$NEED_OC" = 1 ] && echo 0 || echo 1)}
if [ "$DATASET" = synthetic ] && [ "$OC_INIT" = 1 ]; then  # the OC's backbone stands in for ImageNet weights
  EXTRA+=("model.backbone_init=$OC_EXP/checkpoints/last.pth" "model.backbone_init_prefix=net.backbone.")
fi
case "$METHOD" in
  spcam)  # first CAM -> saliency -> association network (see the header)
    FIRST_EXP=${FIRST_EXP:-$EXP_ROOT/${DATASET}_cam}
    SP_EXP=${SP_EXP:-$EXP_ROOT/${DATASET}_superpixel}
    train_method cam "configs/$DATASET/cam.yaml" "$FIRST_EXP"
    infer_cams "$FIRST_EXP" "$TRAIN_SPLIT"
    SALIENCY=${SALIENCY:-}
    if [ -z "$SALIENCY" ]; then
      DATASET=$DATASET DATA_ROOT=$DATA_ROOT GPUS=$GPUS EXP_ROOT=$EXP_ROOT PRIORS=$FIRST_EXP TRAIN_SPLIT=$TRAIN_SPLIT \
        EVAL_SPLITS="" OVERRIDES="${SAL_OVERRIDES:-}" OVERWRITE=$OVERWRITE bash runners/2-saliency.sh
      if [ "${WITH_POOLNET:-1}" = 1 ]; then SALIENCY=$EXP_ROOT/${DATASET}_poolnet/saliency/$TRAIN_SPLIT
      else SALIENCY=$EXP_ROOT/${DATASET}_ccamh/saliency/$TRAIN_SPLIT; fi
    fi
    echo "[1-priors] train the association network (saliency $SALIENCY) -> $SP_EXP"
    "${LAUNCH[@]}" tools/train_superpixel.py --config "configs/$DATASET/superpixel.yaml" --data "$DATA_ROOT" \
      --exp "$SP_EXP" "${FORCE[@]}" "data.train_split=$TRAIN_SPLIT" "method.sal_dir=$SALIENCY" \
      "method.cam_dir=$FIRST_EXP/cams/$TRAIN_SPLIT" ${SP_OVERRIDES:-}
    EXTRA+=("method.sal_dir=$SALIENCY" "method.superpixel_exp=$SP_EXP")
    ;;
esac
train_method "$METHOD" "$CONFIG" "$EXP"
infer_cams "$EXP" "$TRAIN_SPLIT"
for split in $EVAL_SPLITS; do
  cam_dir=$EXP/cams/$split
  # VOC's train (1464) is a subset of train_aug: score it from the train_aug CAMs.
  if [ "$split" = train ] && [ "$TRAIN_SPLIT" != train ]; then cam_dir=$EXP/cams/$TRAIN_SPLIT; fi
  [ "$cam_dir" = "$EXP/cams/$TRAIN_SPLIT" ] || infer_cams "$EXP" "$split"
  evaluate_cams "$EXP" "$split" "$cam_dir"
  [ -z "$METHOD_THRESHOLDS" ] || evaluate_cams "$EXP" "$split" "$cam_dir" "$METHOD_THRESHOLDS" _method
  "$PY" tools/baselines.py --data "$DATA_ROOT" --split "$split" --no-contour --out "$EXP/baselines_$split.json" \
    "${FORCE[@]}" | tail -n 1
done
# shellcheck disable=SC2086
print_table "$EXP" $EVAL_SPLITS
