# Sourced by the numbered runners after they set GPUS, OVERRIDES and OVERWRITE. Defines:
#   PY        the project's python (.venv, or $WSSS_VENV, else $PYTHON / python)
#   LAUNCH    how to start a training/inference tool: python, or torchrun with $GPUS processes
#   EXTRA     the $OVERRIDES key=value words;  FORCE  (--overwrite) when OVERWRITE=1
#   config_value CONFIG dotted.key   the value of a key after _base_ inheritance (empty if unset)
#   json_value JSON KEY                 a top-level value of a JSON file (empty if absent)
#   save_best_threshold EVAL_JSON TXT   the sweep's best threshold of a tools/evaluate.py result -> TXT
VENV=${WSSS_VENV:-.venv}
if [ -x "$VENV/bin/python" ]; then PY=$VENV/bin/python; else PY=${PYTHON:-python}; fi
if [ "$GPUS" -gt 1 ]; then
  LAUNCH=("$PY" -m torch.distributed.run --standalone --nproc_per_node="$GPUS")
else
  LAUNCH=("$PY")
  if [ "$GPUS" -eq 0 ]; then export CUDA_VISIBLE_DEVICES=""; fi
fi
# shellcheck disable=SC2206
EXTRA=($OVERRIDES)
FORCE=(); [ "$OVERWRITE" = 1 ] && FORCE=(--overwrite)

config_value() {
  "$PY" -c "import sys; from wsss.config import load_config, get_dotted; \
v = get_dotted(load_config(sys.argv[1]), sys.argv[2]); print('' if v is None else v)" "$1" "$2"
}

json_value() {
  "$PY" -c "import json, sys; v = json.load(open(sys.argv[1])).get(sys.argv[2]); print('' if v is None else v)" "$1" "$2"
}

save_best_threshold() {  # atomically, so an interrupted run never leaves a half-written threshold
  "$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['threshold'])" "$1" > "$2.tmp"
  mv "$2.tmp" "$2"
}
