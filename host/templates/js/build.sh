#!/usr/bin/env bash
# Builds {{name}}.wasm with only node and npm: installs the pinned
# toolchain (package.json) into node_modules/ once, then componentizes.
#
#   ./build.sh [out.wasm]   (default {{name}}.wasm)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:-$here/{{name}}.wasm}")"
cd "$here"
if [ ! -d node_modules/@bytecodealliance/componentize-js ]; then
    npm install --no-audit --no-fund --loglevel=error
fi
node build.mjs "$out"
