#!/usr/bin/env bash
# User-space instructions per request on each route, counted by callgrind.
# CPU time per request on two shared cores moves with whatever else the
# machine does; an instruction count does not, so this is the figure to
# A/B a change to the request path or the plugin call with. It leaves out
# the kernel (about half of the plain route's CPU, see BENCHMARKS.md) and
# cache misses: confirm a win on the wire with bench/run.sh.
#
#   bench/instructions.sh                        # routes bare, api-key, chain
#   ROUTES="bare api-key" N=1000 bench/instructions.sh
#   ROUTES="only-jwt-auth only-rate-limit" bench/instructions.sh   # one chain step alone
#   BASELINE=/tmp/wasmgate-before bench/instructions.sh   # both builds, same routes
#   BASELINE=target/dist/wasmgate BASELINE_PLUGINS=/tmp/old-plugins bench/instructions.sh
#                                               # the baseline loads these plugin files instead
#   TOP=1 bench/instructions.sh                  # and each route's costliest call paths (inclusive)
#   KEEP=/tmp/cg bench/instructions.sh           # keep the dumps (callgrind_annotate, kcachegrind)
#
# One client, one keep-alive connection, N requests per route after a
# warm-up; logs off unless GATEWAY_LOG says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
UPSTREAM_PORT=19201 GATEWAY_PORT=18280
N=${N:-1000} WARMUP=${WARMUP:-200}
read -ra routes <<<"${ROUTES:-bare api-key chain}"
source bench/common.sh
need callgrind_control valgrind
build_unless_skipped
mkdir -p "$work/plugins"
cp target/plugins/*.wasm "$work/plugins/"
make_bench_token

write_demo_upstream
# Only the measured routes (and `bare`, the readiness probe): each route
# entry holds an instance slot, and valgrind has room for few.
configured=(bare)
for route in "${routes[@]}"; do
  route_entry "$route" >/dev/null || exit 1
  [[ $route == bare ]] || configured+=("$route")
done
# gateway_config PLUGIN_DIR: the gateway's config, loading plugins from PLUGIN_DIR.
gateway_config() {
  cat <<YAML
listeners: [{ address: 127.0.0.1:$GATEWAY_PORT }]
# Few instance slots: valgrind reserves at most ~64 GiB; a long call
# deadline: under valgrind a call runs ~50x slower.
plugins: { dir: $1, max_instances: 8, call_timeout_ms: 10000 }
$(profiled_routes "${configured[@]}")
YAML
}
gateway_config "$work/plugins" > "$work/head.yaml"
if [[ -n "${BASELINE:-}" ]]; then
  mkdir -p "$work/baseline-plugins"
  cp "${BASELINE_PLUGINS:-target/plugins}/"*.wasm "$work/baseline-plugins/"
  gateway_config "$work/baseline-plugins" > "$work/baseline.yaml"
fi
RUST_LOG=warn "$WASMGATE" demo --config "$work/upstream.yaml" 2>/dev/null &
pids+=($!)

# N keep-alive requests to one route, failing on any answer but 200.
requests() {
  python3 - "$GATEWAY_PORT" "/$1" "$2" "$TOKEN" <<'PY'
import http.client, sys
port, path, n, token = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
headers = {"x-api-key": "bench-key-0001", "authorization": f"Bearer {token}"}
connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
for _ in range(n):
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        sys.exit(f"{path} answered {response.status}")
PY
}

# count BINARY LABEL: runs the gateway under callgrind and prints, per
# route, the instructions of N requests divided by N.
count() {
  local binary=$1 label=$2 out="$work/callgrind-$2"
  RUST_LOG=${GATEWAY_LOG:-warn} valgrind --tool=callgrind --callgrind-out-file="$out.%p" \
    "$binary" run --config "$work/$label.yaml" 2>"$work/$label.log" >/dev/null &
  local pid=$!
  pids+=($pid)
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$GATEWAY_PORT/bare" >/dev/null && break
    sleep 0.2
  done
  for route in "${routes[@]}"; do
    requests "$route" "$WARMUP"
    callgrind_control -z "$pid" >/dev/null 2>&1
    requests "$route" "$N"
    callgrind_control -d "$route" "$pid" >/dev/null 2>&1
    local dump
    dump=$(ls -t "$out.$pid".* | head -1)
    local total
    total=$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")
    printf '%-10s %-8s %10.0f instructions per request\n' "$label" "$route" "$(awk -v t="$total" -v n="$N" 'BEGIN { print t / n }')"
    if [[ -n "${TOP:-}" ]]; then
      callgrind_annotate --inclusive=yes "$dump" 2>/dev/null | grep -E '^ *[0-9,]+ ' | head -40 | sed 's/^/    /'
    fi
    if [[ -n "${KEEP:-}" ]]; then mkdir -p "$KEEP" && cp "$dump" "$KEEP/$label-$route.callgrind"; fi
  done
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

count "$WASMGATE" head
if [[ -n "${BASELINE:-}" ]]; then count "$BASELINE" baseline; fi
