# Sourced by the numbered runners after they set GPUS, OVERRIDES and OVERWRITE. Defines:
#   PY        the project's python (.venv, or $WSSS_VENV, else $PYTHON / python)
#   LAUNCH    how to start a training/inference tool: python, or torchrun with $GPUS processes,
#             through `resumable` (a stage stopped by SIGTERM/SIGUSR1 exits 75 after its checkpoint)
#   EXTRA     the $OVERRIDES key=value words;  FORCE  (--overwrite) when OVERWRITE=1
#   config_value CONFIG dotted.key   the value of a key after _base_ inheritance (empty if unset)
#   json_value JSON KEY                 a top-level value of a JSON file (empty if absent)
#   save_best_threshold EVAL_JSON TXT   the sweep's best threshold of a tools/evaluate.py result -> TXT
#                                       ("stored" for maps scored against their stored background)
VENV=${WSSS_VENV:-.venv}
if [ -x "$VENV/bin/python" ]; then PY=$VENV/bin/python; else PY=${PYTHON:-python}; fi
EXIT_PREEMPTED=75  # wsss.errors.EXIT_PREEMPTED: stopped by SIGTERM/SIGUSR1, state saved, rerun resumes

# resumable COMMAND...: run a stage; when it exits 75 (preempted), rerun it (without --overwrite,
# which would discard the checkpoint) if RESUME=1, else print how to resume and exit 75.
resumable() {
  local rc=0 args=("$@")
  while :; do
    rc=0; "${args[@]}" || rc=$?
    [ "$rc" -eq "$EXIT_PREEMPTED" ] || return "$rc"
    if [ "${RESUME:-0}" != 1 ]; then
      echo "[runner] stage stopped by a signal after saving its state; rerun the same command" \
           "(without OVERWRITE=1) to resume, or set RESUME=1 to rerun such stages automatically" >&2
      exit "$EXIT_PREEMPTED"
    fi
    echo "[runner] stage stopped by a signal (exit $rc); RESUME=1: resuming it" >&2
    local kept=() a
    for a in "${args[@]}"; do [ "$a" = --overwrite ] || kept+=("$a"); done
    args=("${kept[@]}")
  done
}

if [ "$GPUS" -gt 1 ]; then
  LAUNCH=(resumable "$PY" -m torch.distributed.run --standalone --nproc_per_node="$GPUS")
else
  LAUNCH=(resumable "$PY")
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

save_best_threshold() {  # atomically, so an interrupted run never leaves a half-written threshold;
  # "stored" when the evaluation swept nothing (its maps carry their method's own background)
  "$PY" -c "import json, sys; t = json.load(open(sys.argv[1])).get('threshold'); print('stored' if t is None else t)" \
    "$1" > "$2.tmp"
  mv "$2.tmp" "$2"
}
