#!/usr/bin/env bash
# The peer of bench/inference.py in its own virtual environment: pocketsphinx 5 from PyPI,
# whose wheel carries its own US English acoustic model, dictionary and language model.
#
#     bash bench/setup_pocketsphinx.sh [VENV]      # default bench/.venv-pocketsphinx
#
# Idempotent: a marker file with the installed pins is written last, and a venv whose marker
# holds the same pins is left as it is. Set PYTHON to choose the interpreter.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${1:-$here/.venv-pocketsphinx}"
python="${PYTHON:-python3}"
pins=("pocketsphinx==5.0.4" "soundfile" "soxr")
marker="$venv/.pocketsphinx-peer.complete"

fail() {
    echo "setup_pocketsphinx: $*" >&2
    exit 1
}

if [[ -f "$marker" && "$(cat "$marker")" == "${pins[*]}" ]]; then
    echo "setup_pocketsphinx: $venv is ready (${pins[*]})"
    exit 0
fi

command -v "$python" >/dev/null || fail "no Python interpreter '$python' (set PYTHON=...)"
if [[ ! -x "$venv/bin/python" ]]; then
    echo "setup_pocketsphinx: creating $venv with $("$python" --version 2>&1)"
    "$python" -m venv "$venv" || fail "cannot create the venv $venv with $python \
(Debian: apt-get install python3-venv)"
fi
rm -f "$marker"  # a failure below leaves no marker, so the next run tries again

log="$venv/pip-install.log"
echo "setup_pocketsphinx: installing ${pins[*]} (log: $log)"
if ! "$venv/bin/python" -m pip install "${pins[@]}" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    fail "pip install failed: see $log (above: its last lines)"
fi

"$venv/bin/python" - <<'PY' || fail "the venv's packages do not import: see $log"
import os
from importlib.metadata import version

from pocketsphinx import get_model_path

model = get_model_path("en-us")
assert os.path.isdir(os.path.join(model, "en-us")), model
print(f"setup_pocketsphinx: pocketsphinx {version('pocketsphinx')}, model {model}")
PY

echo "${pins[*]}" >"$marker"
echo "setup_pocketsphinx: ready: $venv/bin/python"
