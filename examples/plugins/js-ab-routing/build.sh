#!/usr/bin/env bash
# Builds this plugin from a clean machine with only node and npm: installs the
# pinned toolchain (package-lock.json) into node_modules/, then componentizes.
#
#   ./build.sh [out.wasm]   (default ../../../target/plugins-polyglot/js-ab-routing.wasm)
#
# Outside this repo, point WASMGATE_WIT at the gateway's wit/ folder.
set -euo pipefail
out="$(realpath -m "${1:-$(dirname "$0")/../../../target/plugins-polyglot/js-ab-routing.wasm}")"
cd "$(dirname "$0")"
if [ ! node_modules/.package-lock.json -nt package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
node build.mjs "$out"
