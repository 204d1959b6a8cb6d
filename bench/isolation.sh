#!/usr/bin/env bash
# Isolation under load (not in CI; figures go to RELIABILITY.md).
#
#   bench/isolation.sh                 # every case, 5 s each, then 1 M cache keys and 1 M rate-limit keys
#   DURATION=10 ROUNDS=3 bench/isolation.sh  # longer cases, more rounds (default 5 s, 2 rounds)
#   KEYS=200000 bench/isolation.sh     # fewer unique kv keys
#   KEYS=0 bench/isolation.sh          # skip the kv phase
#   PARTS=13 bench/isolation.sh        # only parts 1 and 3 (default 1234)
#   SKIP_BUILD=1 bench/isolation.sh    # use the binaries and plugins already built
#
# Part 1 — a faulty neighbour: a healthy route (one well-behaved plugin) is
# measured with wrk while another wrk hammers a neighbour route on the same
# gateway, in turn: a well-behaved plugin (the baseline), a looping plugin
# (100 ms deadline), a trapping plugin, a memory bomb (64 MiB cap); the
# faulty ones once with the default fault breaker and once without it. For
# each: the healthy route's req/s, p50, p99 and failures, and its req/s as a
# share of the baseline's.
#
# Part 2 — the kv budget: KEYS unique URLs through `cache` (30 s TTL), then
# KEYS unique `x-client` values through `rate-limit` (buckets refill in 1
# min), with the default 64 MiB budget (32 MiB per namespace); the gateway's
# RSS and the kv metrics after each, and once everything has expired.
#
# Part 3 — files written badly while traffic flows: keyless and keyed
# clients hammer an `api-key` route while, in turn, the config is rewritten
# in place in two writes 400 ms apart (the first half alone is a valid
# config whose `api` route has no plugins), the plugin file is overwritten
# with a truncated copy then restored, and it is deleted then restored.
# Keyless requests answered 200 (a bypass) and keyed ones not answered 200
# are counted; both must stay 0.
#
# Part 4 — slow clients and few descriptors: a second gateway started
# under `prlimit --nofile=1024:1024` with `max_connections: 10000` and
# `body_read_timeout_ms: 3000`; 600 connections dribble a request body one
# byte every 2 s to a body-reading route and 900 more connect and send
# nothing, while ordinary requests are timed one after another
# (bench/slow_clients.py).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5} ROUNDS=${ROUNDS:-2} KEYS=${KEYS:-1000000} PARTS=${PARTS:-1234}
UPSTREAM_PORT=19101 GATEWAY_PORT=18180 ADMIN_PORT=18181

source bench/common.sh
need wrk wrk
build_unless_skipped
mkdir -p "$work/plugins" "$work/logs"
cp target/plugins/*.wasm target/test-plugins/probe.wasm "$work/plugins/"

no_breaker='fault_breaker: { faults: 0 }'
cat > "$work/gateway.yaml" <<YAML
listeners: [{ address: 127.0.0.1:$GATEWAY_PORT }]
admin: { address: 127.0.0.1:$ADMIN_PORT }
plugins: { dir: $work/plugins }
upstreams:
  echo: { targets: [127.0.0.1:$UPSTREAM_PORT] }
routes:
  - { name: healthy, match: { path: /healthy }, upstream: echo, plugins: [{ name: probe, config: { tag: h } }] }
  - { name: baseline, match: { path: /baseline }, upstream: echo, plugins: [{ name: probe, config: { tag: n } }] }
  - { name: loop, match: { path: /loop }, upstream: echo, plugins: [{ name: probe, config: { fault: loop } }] }
  - { name: trap, match: { path: /trap }, upstream: echo, plugins: [{ name: probe, config: { fault: trap } }] }
  - { name: oom, match: { path: /oom }, upstream: echo, plugins: [{ name: probe, config: { fault: oom } }] }
  - { name: loop-nb, match: { path: /loop-nb }, upstream: echo, plugins: [{ name: probe, config: { fault: loop }, $no_breaker }] }
  - { name: trap-nb, match: { path: /trap-nb }, upstream: echo, plugins: [{ name: probe, config: { fault: trap }, $no_breaker }] }
  - { name: oom-nb, match: { path: /oom-nb }, upstream: echo, plugins: [{ name: probe, config: { fault: oom }, $no_breaker }] }
  - name: cache
    match: { path_prefix: /c/ }
    upstream: echo
    plugins: [{ name: cache, allow: [kv], config: { ttl_seconds: 30 } }]
  - name: limited
    match: { path: /rl }
    upstream: echo
    plugins: [{ name: rate-limit, allow: [kv], config: { rate: 1000, period: 1m, key: { source: header, name: x-client } } }]
  - name: api
    match: { path_prefix: /api }
    upstream: echo
    plugins:
      - { name: api-key, config: { keys: [{ key: bench-key-0001, consumer: bench }] } }
YAML
write_demo_upstream
RUST_LOG=warn "$WASMGATE" demo --config "$work/upstream.yaml" 2>"$work/logs/upstream.log" &
pids+=($!)
RUST_LOG=warn,wasmgate::access=off "$WASMGATE" run --config "$work/gateway.yaml" 2>"$work/logs/gateway.log" &
gateway_pid=$!
pids+=($gateway_pid)
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$GATEWAY_PORT/healthy" >/dev/null && break
  sleep 0.1
done

rss_mib() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$gateway_pid/status"; }
metric() { # metric NAME → sum over its series
  curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%.0f", s }'
}

if [[ $PARTS == *1* ]]; then
echo "## Part 1: a healthy route beside a hammered neighbour"
echo
echo "healthy: wrk -t1 -c16 -d${DURATION}s; neighbour: wrk -t1 -c4 at the same time; $ROUNDS interleaved rounds (median); $(nproc) cores, $(date -u +%F)"
echo
cases=(baseline loop trap oom loop-nb trap-nb oom-nb)
declare -A rps p50 p99 bad answers lines bytes
for round in $(seq "$ROUNDS"); do
  for case in "${cases[@]}"; do
    log_before=$(wc -c <"$work/logs/gateway.log") lines_before=$(wc -l <"$work/logs/gateway.log")
    wrk -t1 -c4 -d"${DURATION}s" "http://127.0.0.1:$GATEWAY_PORT/$case" >"$work/neighbour.out" 2>&1 &
    neighbour=$!
    out=$(wrk -t1 -c16 -d"${DURATION}s" --latency "http://127.0.0.1:$GATEWAY_PORT/healthy")
    wait "$neighbour"
    rps[$case]="${rps[$case]:-} $(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")"
    p50[$case]="${p50[$case]:-} $(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")"
    p99[$case]="${p99[$case]:-} $(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")"
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $5 }' <<<"$out")
    sockerr=$(awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' <<<"$out")
    bad[$case]=$(( ${bad[$case]:-0} + ${non2xx:-0} + ${sockerr:-0} ))
    answers[$case]=$(( ${answers[$case]:-0} + $(awk '/requests in/ { print $1 }' "$work/neighbour.out") ))
    lines[$case]=$(( ${lines[$case]:-0} + $(wc -l <"$work/logs/gateway.log") - lines_before ))
    bytes[$case]=$(( ${bytes[$case]:-0} + $(wc -c <"$work/logs/gateway.log") - log_before ))
    sleep 1
  done
done
base=$(median "${rps[baseline]}")
echo "| neighbour | healthy req/s | share of baseline | p50 ms | p99 ms | healthy failures | neighbour answers | log lines | log KiB |"
echo "|---|---|---|---|---|---|---|---|---|"
for case in "${cases[@]}"; do
  r=$(median "${rps[$case]}")
  printf '| %s | %.0f | %s | %s | %s | %d | %d | %d | %d |\n' "$case" "$r" \
    "$(awk -v a="$r" -v b="$base" 'BEGIN { printf "%.0f %%", 100 * a / b }')" \
    "$(median "${p50[$case]}")" "$(median "${p99[$case]}")" "${bad[$case]}" "${answers[$case]}" \
    "${lines[$case]}" $(( ${bytes[$case]} / 1024 ))
done
echo
echo "breaker trips: $(metric wasmgate_plugin_breaker_trips_total), calls not run (breaker open or busy): $(metric wasmgate_plugin_calls_rejected_total), faults counted: $(metric wasmgate_plugin_faults_total), backtraces logged: $(grep -c 'plugin trap backtrace' "$work/logs/gateway.log" || true)"

fi

if [[ $PARTS == *3* ]]; then
echo
echo "## Part 3: config and plugin files written badly while traffic flows"
echo
rounds3=${FILE_ROUNDS:-10}
echo "keyless and keyed clients: wrk -t1 -c8 each on /api for the whole part; $rounds3 rounds of each bad write; $(date -u +%F)"
echo
config="$work/gateway.yaml" plugin="$work/plugins/api-key.wasm"
cp "$plugin" "$work/api-key.good"
reloads() { # reloads ok|error → how many so far
  curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v r="result=\"$1\"" '/^wasmgate_reloads_total/ && index($0, r) { s += $2 } END { printf "%.0f", s }'
}
reloads_before=$(reloads ok) failed_before=$(reloads error)
seconds=$(( rounds3 * 3 + 2 ))
wrk -t1 -c8 -d"${seconds}s" "http://127.0.0.1:$GATEWAY_PORT/api/x" >"$work/keyless.out" 2>&1 &
keyless=$!
wrk -t1 -c8 -d"${seconds}s" -H 'x-api-key: bench-key-0001' "http://127.0.0.1:$GATEWAY_PORT/api/x" >"$work/keyed.out" 2>&1 &
keyed=$!
sleep 1
cut=$(grep -n '^      - { name: api-key' "$config" | cut -d: -f1)
for _ in $(seq "$rounds3"); do
  # The config in two writes through one open file, 400 ms apart.
  python3 - "$config" "$cut" <<'PY'
import sys, time
path, cut = sys.argv[1], int(sys.argv[2])
lines = open(path).read().splitlines(keepends=True)
with open(path, "w") as f:
    f.write("".join(lines[:cut - 1])); f.flush(); time.sleep(0.4)
    f.write("".join(lines[cut - 1:]))
PY
  sleep 0.5
  # A truncated plugin written in place, then the good one renamed back.
  head -c 20000 "$work/api-key.good" >"$plugin"
  sleep 0.5
  cp "$work/api-key.good" "$plugin.tmp" && mv -f "$plugin.tmp" "$plugin"
  sleep 0.5
  # Deleted, then restored.
  rm -f "$plugin"
  sleep 0.5
  cp "$work/api-key.good" "$plugin.tmp" && mv -f "$plugin.tmp" "$plugin"
  sleep 0.5
done
wait "$keyless" "$keyed"
total() { awk '/requests in/ { print $1 }' "$1"; }
non2xx() { awk '/Non-2xx or 3xx responses:/ { n = $5 } END { print n + 0 }' "$1"; }
sockerr() { awk '/Socket errors:/ { gsub(",", ""); n = $4 + $6 + $8 + $10 } END { print n + 0 }' "$1"; }
keyless_total=$(total "$work/keyless.out") keyless_denied=$(non2xx "$work/keyless.out")
keyed_total=$(total "$work/keyed.out") keyed_bad=$(( $(non2xx "$work/keyed.out") + $(sockerr "$work/keyed.out") ))
echo "| clients | requests | answered 200 | not 200 or socket errors |"
echo "|---|---|---|---|"
echo "| keyless | $keyless_total | $(( keyless_total - ${keyless_denied:-0} )) | ${keyless_denied:-0} |"
echo "| keyed | $keyed_total | $(( keyed_total - keyed_bad )) | $keyed_bad |"
echo
echo "reloads applied: $(( $(reloads ok) - reloads_before )), refused (old version kept): $(( $(reloads error) - failed_before )), plugin file removals logged: $(grep -c 'plugin file removed' "$work/logs/gateway.log" || true)"
fi

if [[ $PARTS == *4* ]]; then
echo
echo "## Part 4: slow clients under a 1024 open-file limit"
echo
SLOW_PORT=18190
cat > "$work/slow.yaml" <<YAML
listeners: [{ address: 127.0.0.1:$SLOW_PORT }]
plugins: { dir: $work/plugins }
limits: { max_connections: 10000, body_read_timeout_ms: 3000 }
upstreams:
  echo: { targets: [127.0.0.1:$UPSTREAM_PORT] }
routes:
  - { name: reads-body, match: { path: /body }, upstream: echo, plugins: [{ name: probe, config: { upper_body: true } }] }
YAML
RUST_LOG=warn,wasmgate::access=off prlimit --nofile=1024:1024 "$WASMGATE" run --config "$work/slow.yaml" 2>"$work/logs/slow.log" &
slow_pid=$!
pids+=($slow_pid)
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$SLOW_PORT/body" >/dev/null && break
  sleep 0.1
done
echo "clamp: $(grep -o 'limits.max_connections.*' "$work/logs/slow.log" | head -1)"
echo
python3 bench/slow_clients.py 127.0.0.1 "$SLOW_PORT" /body 600 900 30 20
echo "'Too many open files' in the log: $(grep -c 'Too many open files' "$work/logs/slow.log" || true)"
kill "$slow_pid" 2>/dev/null || true
fi

[[ $KEYS == 0 || $PARTS != *2* ]] && exit 0

# Every request carries a unique path or x-client value; wrk is stopped
# once the route has answered KEYS requests.
cat > "$work/unique.lua" <<'LUA'
local counter = 0
id = 0
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  mode = args[1]
end
function request()
  counter = counter + 1
  local key = id .. "-" .. counter
  if mode == "path" then
    return wrk.format("GET", "/c/" .. key)
  end
  return wrk.format("GET", "/rl", { ["x-client"] = key })
end
LUA
answered() { # answered ROUTE → requests the route answered so far
  curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v r="route=\"$1\"" '/^wasmgate_requests_total/ && index($0, r) { s += $2 } END { printf "%.0f", s }'
}
echo
echo "## Part 2: kv budget (kv.max_bytes 64 MiB, 32 MiB per namespace)"
echo
echo "| phase | keys sent | seconds | RSS MiB | kv bytes | kv entries | evicted (lru) | expired |"
echo "|---|---|---|---|---|---|---|---|"
kv_row() {
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$(rss_mib)" \
    "$(metric wasmgate_kv_bytes)" "$(metric wasmgate_kv_entries)" \
    "$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^wasmgate_kv_evictions_total/ && /reason="lru"/ { s += $2 } END { printf "%.0f", s }')" \
    "$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^wasmgate_kv_evictions_total/ && /reason="expired"/ { s += $2 } END { printf "%.0f", s }')"
}
kv_row "start" 0 0
for mode in path header; do
  route=$([[ $mode == path ]] && echo cache || echo limited)
  started=$(date +%s)
  wrk -t2 -c32 -d3600s -s "$work/unique.lua" "http://127.0.0.1:$GATEWAY_PORT/" -- "$mode" >/dev/null &
  loader=$!
  while (( $(answered "$route") < KEYS )); do sleep 1; done
  kill "$loader"; wait "$loader" 2>/dev/null || true
  label=$([[ $mode == path ]] && echo "cache, unique URLs" || echo "rate-limit, unique clients")
  kv_row "$label" "$(answered "$route")" $(( $(date +%s) - started ))
done
sleep 65
kv_row "65 s later (cache TTL 30 s, buckets refill in 1 min)" - -
echo
echo "gateway peak RSS: $(awk '/VmHWM/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$gateway_pid/status")"
