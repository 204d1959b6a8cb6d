#!/usr/bin/env bash
# Builds {{name}}.wasm with only python3 (>= 3.10, with venv): installs the
# pinned componentize-py (requirements.txt) into .venv/ once, then
# componentizes app.py against wit/.
#
#   ./build.sh [out.wasm]   (default {{name}}.wasm)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:-$here/{{name}}.wasm}")"
venv="${PLUGIN_VENV:-$here/.venv}"
if [ ! "$venv/.installed" -nt "$here/requirements.txt" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    touch "$venv/.installed"
fi
cd "$here"
export PYTHONDONTWRITEBYTECODE=1
"$venv/bin/componentize-py" --quiet -d wit -w plugin componentize app -o "$out.tmp"
mv -f "$out.tmp" "$out"
echo "wrote $out ($(stat -c %s "$out") bytes)"
