#!/usr/bin/env bash
# Builds this plugin: C bindings from the gateway's WIT with wit-bindgen (pinned,
# `cargo install` into target/polyglot-tools), clang for wasm32-wasi with
# wasi-libc (Debian: clang lld wasi-libc libclang-rt-dev-wasm32), then
# wasm-tools (pinned wheel in requirements.txt, in a venv) makes the component.
#
#   ./build.sh [out.wasm]   (default ../../../target/plugins-polyglot/c-path-guard.wasm)
#
# Outside this repo, point WASMGATE_WIT at the gateway's wit/ folder.
set -euo pipefail
WIT_BINDGEN_VERSION=0.46.0
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../../.."
out="$(realpath -m "${1:-$root/target/plugins-polyglot/c-path-guard.wasm}")"
wit="$(realpath "${WASMGATE_WIT:-$root/wit}")"
tools="$(realpath -m "${POLYGLOT_TOOLS:-$root/target/polyglot-tools}")"
venv="$(realpath -m "${POLYGLOT_VENV:-$root/target/polyglot-venv/c-path-guard}")"
gen="$(realpath -m "$root/target/polyglot-build/c-path-guard")"

if ! "$tools/bin/wit-bindgen" --version 2>/dev/null | grep -q " $WIT_BINDGEN_VERSION"; then
    cargo install --quiet --locked --root "$tools" "wit-bindgen-cli@$WIT_BINDGEN_VERSION"
fi
if [ ! "$venv/.installed" -nt "$here/requirements.txt" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    touch "$venv/.installed"
fi
if [ ! -e /usr/lib/wasm32-wasi/libc.a ]; then
    echo "c-path-guard: needs clang for wasm32 and wasi-libc:" >&2
    echo "  apt-get install clang lld wasi-libc libclang-rt-dev-wasm32" >&2
    exit 1
fi

rm -rf "$gen" && mkdir -p "$gen" "$(dirname "$out")"
"$tools/bin/wit-bindgen" c "$wit" --world plugin --out-dir "$gen" >/dev/null
clang --target=wasm32-wasi -O2 -Wall -Wextra -Werror -mexec-model=reactor -I "$gen" \
    "$here/path_guard.c" "$gen/plugin.c" "$gen/plugin_component_type.o" -o "$gen/core.wasm"
"$venv/bin/wasm-tools" component new "$gen/core.wasm" -o "$out.tmp"
mv -f "$out.tmp" "$out"
echo "wrote $out ($(stat -c %s "$out") bytes)"
