#!/usr/bin/env bash
# Gateway throughput on 127.0.0.1: the echo upstream directly, wasmgate with
# no plugins, and wasmgate with two plugins (api-key → headers), measured
# with wrk in interleaved rounds so machine drift hits all alike.
#
#   bench/gateway.sh            # full run: 3 rounds × 10 s per case
#   bench/gateway.sh --smoke    # 1 round × 1 s per case (checks the script works)
#   SKIP_BUILD=1 bench/gateway.sh   # use the binary and plugins already built
#
# Prints a Markdown table with req/s, p50, p99 and ratios against the upstream.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=3 DURATION=10s
if [[ "${1:-}" == "--smoke" ]]; then ROUNDS=1 DURATION=1s; fi
THREADS=2 CONNECTIONS=32
GATEWAY_PORT=18080 UPSTREAM_PORT=19001

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
if [[ -z "${SKIP_BUILD:-}" ]]; then
  make -s plugins >/dev/null || { echo "make plugins failed" >&2; exit 1; }
  cargo build -q --release -p wasmgate
fi

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/bench.yaml" <<YAML
listeners: [{ address: 127.0.0.1:$GATEWAY_PORT }]
plugins: { dir: $PWD/target/plugins }
upstreams:
  echo: { targets: [127.0.0.1:$UPSTREAM_PORT] }
routes:
  - name: bare
    match: { path_prefix: /bare }
    upstream: echo
  - name: two
    match: { path_prefix: /two }
    upstream: echo
    plugins:
      - name: api-key
        config: { keys: [{ key: bench-key-0001, consumer: bench }] }
      - name: headers
        config: { request: { add: { x-gateway: wasmgate } }, response: { add: { x-served-by: wasmgate } } }
YAML
RUST_LOG=warn ./target/release/wasmgate demo --config "$work/bench.yaml" &
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$GATEWAY_PORT/bare" >/dev/null && break; sleep 0.1; done

declare -A rps p50 p99
cases=(upstream gateway-0 gateway-2)
url() {
  case $1 in
    upstream) echo "http://127.0.0.1:$UPSTREAM_PORT/bare" ;;
    gateway-0) echo "http://127.0.0.1:$GATEWAY_PORT/bare" ;;
    gateway-2) echo "http://127.0.0.1:$GATEWAY_PORT/two" ;;
  esac
}
to_ms() { # wrk prints 1.23ms / 456.00us / 1.20s
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}
for round in $(seq "$ROUNDS"); do
  for c in "${cases[@]}"; do
    out=$(wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency -H 'x-api-key: bench-key-0001' "$(url "$c")")
    r=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    errors=$(awk '/Non-2xx or 3xx responses:/ { print $5 }' <<<"$out")
    [[ -z "$errors" ]] || { echo "$c: $errors non-2xx responses" >&2; exit 1; }
    rps[$c]="${rps[$c]:-} $r"
    p50[$c]="${p50[$c]:-} $(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")"
    p99[$c]="${p99[$c]:-} $(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")"
  done
done

median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
base=$(median "${rps[upstream]}")
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS interleaved rounds (median), $(nproc) cores, $(date -u +%F)"
echo
echo "| case | req/s | p50 ms | p99 ms | req/s vs upstream |"
echo "|---|---|---|---|---|"
for c in "${cases[@]}"; do
  r=$(median "${rps[$c]}")
  printf '| %s | %.0f | %s | %s | %.2f |\n' "$c" "$r" "$(median "${p50[$c]}")" "$(median "${p99[$c]}")" "$(awk -v a="$r" -v b="$base" 'BEGIN { print a / b }')"
done
g0=$(median "${rps[gateway-0]}"); g2=$(median "${rps[gateway-2]}")
printf '\ngateway-2 / gateway-0 = %.2f\n' "$(awk -v a="$g2" -v b="$g0" 'BEGIN { print a / b }')"
