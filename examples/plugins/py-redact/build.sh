#!/usr/bin/env bash
# Builds this plugin from a clean machine with only python3 (>= 3.10, with
# venv): installs the pinned componentize-py (requirements.txt) into a venv,
# then componentizes redact.py against the gateway's WIT.
#
#   ./build.sh [out.wasm]   (default ../../../target/plugins-polyglot/py-redact.wasm)
#
# Outside this repo, point WASMGATE_WIT at the gateway's wit/ folder and
# POLYGLOT_VENV where the toolchain may live (default ../../../target/polyglot-venv/py-redact).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:-$here/../../../target/plugins-polyglot/py-redact.wasm}")"
wit="$(realpath "${WASMGATE_WIT:-$here/../../../wit}")"
venv="$(realpath -m "${POLYGLOT_VENV:-$here/../../../target/polyglot-venv/py-redact}")"
if [ ! "$venv/.installed" -nt "$here/requirements.txt" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    touch "$venv/.installed"
fi
mkdir -p "$(dirname "$out")"
cd "$here"
export PYTHONDONTWRITEBYTECODE=1
"$venv/bin/componentize-py" --quiet -d "$wit" -w plugin componentize redact -o "$out.tmp"
mv -f "$out.tmp" "$out"
echo "wrote $out ($(stat -c %s "$out") bytes)"
