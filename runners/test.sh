#!/usr/bin/env bash
# Run the test suite (slow end-to-end tests included) in the project's virtualenv.
# Extra arguments go to pytest, e.g. `bash runners/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash runners/0-setup.sh
exec "${WSSS_VENV:-.venv}/bin/python" -m pytest -q "$@"
