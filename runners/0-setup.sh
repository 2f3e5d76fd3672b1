#!/usr/bin/env bash
# Create ./.venv (or $WSSS_VENV) and install wsss with everything it needs, from this checkout.
# Idempotent: reinstalls only when requirements.txt or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${WSSS_VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.wsss-installed"
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "[0-setup] creating $VENV and installing requirements (a few minutes the first time)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -r requirements.txt
"$VENV/bin/python" -m pip install -q --no-deps -e .
echo "$want" > "$stamp"
echo "[0-setup] done: $VENV"
