#!/usr/bin/env bash
# The comparison peer of bench/decode.py in its own virtual environment: pyctcdecode 0.5.0
# pins numpy<2, which the project's environment does not, so the two never share one.
#
#     bash bench/setup_pyctcdecode.sh [VENV]      # default bench/.venv-pyctcdecode
#
# Installs pyctcdecode==0.5.0, numpy<2 and KenLM's Python module (built from its PyPI sdist
# with the compiler here: a few minutes; needs g++, and zlib/bz2/lzma headers for compressed
# ARPA files). Idempotent: a marker file with the installed pins is written last, and a venv
# whose marker holds the same pins is left as it is. Set PYTHON to choose the interpreter.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${1:-$here/.venv-pyctcdecode}"
python="${PYTHON:-python3}"
pins=("pyctcdecode==0.5.0" "numpy<2" "kenlm==0.3.0")
marker="$venv/.pyctcdecode-peer.complete"

fail() {
    echo "setup_pyctcdecode: $*" >&2
    exit 1
}

if [[ -f "$marker" && "$(cat "$marker")" == "${pins[*]}" ]]; then
    echo "setup_pyctcdecode: $venv is ready (${pins[*]})"
    exit 0
fi

command -v "$python" >/dev/null || fail "no Python interpreter '$python' (set PYTHON=...)"
command -v g++ >/dev/null || fail "g++ not found: KenLM's Python module is compiled from source \
(Debian: apt-get install build-essential zlib1g-dev libbz2-dev liblzma-dev)"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "setup_pyctcdecode: creating $venv with $("$python" --version 2>&1)"
    "$python" -m venv "$venv" || fail "cannot create the venv $venv with $python \
(Debian: apt-get install python3-venv)"
fi
rm -f "$marker"  # a failure below leaves no marker, so the next run tries again

log="$venv/pip-install.log"
echo "setup_pyctcdecode: installing ${pins[*]} (KenLM compiles for a few minutes; log: $log)"
# MAX_ORDER: the highest n-gram order the module can load (KenLM's default is 6).
if ! MAX_ORDER="${MAX_ORDER:-6}" "$venv/bin/python" -m pip install "${pins[@]}" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    fail "pip install failed: see $log (above: its last lines)"
fi

"$venv/bin/python" - <<'EOF' || fail "the venv's packages do not import: see $log"
import kenlm  # noqa: F401
import numpy
import pyctcdecode  # noqa: F401
from importlib.metadata import version

assert numpy.__version__.startswith("1."), numpy.__version__
print(f"setup_pyctcdecode: pyctcdecode {version('pyctcdecode')}, numpy {numpy.__version__}, "
      f"kenlm {version('kenlm')}")
EOF

echo "${pins[*]}" >"$marker"
echo "setup_pyctcdecode: ready: $venv/bin/python"
