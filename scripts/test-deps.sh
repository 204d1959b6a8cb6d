#!/usr/bin/env bash
# Installs what `make test` needs beyond Rust, and only what is missing,
# saying what it installs: nginx (the adversarial suite's real backend and
# the benchmark's peer), redis-server and redis-cli (the kv backend shared by
# replicas: the e2e tests and the benchmark start their own), wrk (the
# benchmark), chromium (the dashboard's
# browser test), node + npm, python3 with venv
# and clang with wasi-libc (the example plugins in other languages build
# their own pinned toolchains with them). Debian/Ubuntu (apt-get); elsewhere
# it names what to install and stops.
set -euo pipefail

missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk)
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || missing+=(redis-server redis-tools)
command -v openssl >/dev/null || missing+=(openssl)
command -v chromium >/dev/null || missing+=(chromium)
command -v prlimit >/dev/null || missing+=(util-linux)
command -v npm >/dev/null || missing+=(nodejs npm)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3 python3-venv)
[ -e /usr/lib/wasm32-wasi/libc.a ] || missing+=(clang lld wasi-libc libclang-rt-dev-wasm32)

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "test-deps: installing ${missing[*]}" >&2
if ! command -v apt-get >/dev/null; then
    echo "test-deps: no apt-get here; install these yourself: ${missing[*]}" >&2
    exit 1
fi
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
