#!/usr/bin/env bash
# Where the gateway's CPU goes on one route under wrk load, as a perf
# profile: the top symbols (self and with children) and, if `inferno` is
# installed (`cargo install inferno`), a flame graph SVG.
#
#   bench/profile.sh                 # route with the api-key plugin
#   ROUTE=bare bench/profile.sh      # the plain proxy path
#   ROUTE=chain bench/profile.sh     # the realistic 4-plugin chain (bench/run.sh's)
#   OUT=/tmp/prof SECONDS_=10 bench/profile.sh
#
# Needs perf (linux-perf); hardware counters are not needed (cpu-clock).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUTE=${ROUTE:-api-key} DURATION=${SECONDS_:-8}
UPSTREAM_PORT=19101 GATEWAY_PORT=18180
OUT=${OUT:-target/profile}
source bench/common.sh
need wrk wrk
need perf linux-perf
build_unless_skipped
mkdir -p "$OUT" "$work/plugins"
cp target/plugins/*.wasm "$work/plugins/"
make_bench_token

write_demo_upstream
cat > "$work/gateway.yaml" <<YAML
listeners: [{ address: 127.0.0.1:$GATEWAY_PORT }]
plugins: { dir: $work/plugins }
$(profiled_routes)
YAML
RUST_LOG=warn "$WASMGATE" demo --config "$work/upstream.yaml" 2>/dev/null &
pids+=($!)
RUST_LOG=${GATEWAY_LOG:-info} "$WASMGATE" run --config "$work/gateway.yaml" 2>"$work/gateway.log" >/dev/null &
gateway=$!
pids+=($gateway)
for _ in $(seq 100); do
  curl -sf -H 'x-api-key: bench-key-0001' -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$GATEWAY_PORT/$ROUTE" >/dev/null && break
  sleep 0.1
done
url="http://127.0.0.1:$GATEWAY_PORT/$ROUTE"
wrk -t2 -c32 -d2s -H 'x-api-key: bench-key-0001' -H "authorization: Bearer $TOKEN" "$url" >/dev/null # warm up
perf record -e cpu-clock -F ${FREQ:-2000} --call-graph ${CALL_GRAPH:-dwarf,16384} -p "$gateway" -o "$OUT/perf.data" -- sleep "$DURATION" 2>/dev/null &
recorder=$!
wrk -t2 -c32 -d"${DURATION}s" -H 'x-api-key: bench-key-0001' -H "authorization: Bearer $TOKEN" "$url" | grep -E "Requests/sec|requests in"
wait "$recorder"
perf report -i "$OUT/perf.data" --no-children --sort symbol --stdio 2>/dev/null | grep -v '^#' | grep '%' | head -40 >"$OUT/self.txt"
perf report -i "$OUT/perf.data" --children --sort symbol --stdio -g none 2>/dev/null | grep -v '^#' | grep '%' | head -60 >"$OUT/children.txt"
if command -v inferno-collapse-perf >/dev/null; then
  perf script -i "$OUT/perf.data" 2>/dev/null | inferno-collapse-perf | inferno-flamegraph >"$OUT/$ROUTE.svg"
  echo "flame graph: $OUT/$ROUTE.svg"
fi
echo "top symbols (self): $OUT/self.txt; with children: $OUT/children.txt"
head -25 "$OUT/self.txt"
