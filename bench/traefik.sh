# Traefik as a peer (sourced by bench/run.sh after common.sh): one
# entrypoint with two routes to the same upstream, `/bare` with no
# middleware and `/key` through the Wasm api-key middleware
# (bench/traefik-api-key, loaded as a local plugin). Access log to a file,
# buffered like nginx's, unless ACCESS_LOG=off.
#
# start_traefik PORT UPSTREAM_PORT LOG_DIR: sets traefik_pid, or leaves it
# empty and says why when Traefik or its plugin cannot be had.
start_traefik() {
  local port=$1 upstream_port=$2 logs=$3 module=wasmgate-api-key access_log=""
  traefik_pid=""
  need_traefik
  if [[ -z $TRAEFIK ]]; then
    echo "traefik cases skipped: no traefik on PATH and \`pip install $TRAEFIK_PIP\` failed" >&2
    return 0
  fi
  [[ -f $TRAEFIK_PLUGIN ]] || build_traefik_plugin
  # Traefik reads local plugins from ./plugins-local/src/<moduleName>/ of
  # its working directory: the manifest and the module it names.
  local plugin_dir="$work/plugins-local/src/$module"
  mkdir -p "$plugin_dir"
  cp "$TRAEFIK_PLUGIN" "$plugin_dir/plugin.wasm"
  cp bench/traefik-api-key/.traefik.yml "$plugin_dir/"
  if [[ ${ACCESS_LOG:-on} != off ]]; then
    access_log="accessLog: { filePath: $logs/traefik-access.log, bufferingSize: 100 }"
  fi
  cat >"$work/traefik.yml" <<TRAEFIK
entryPoints:
  bench: { address: "127.0.0.1:$port" }
providers:
  file: { filename: $work/traefik-routes.yml }
experimental:
  localPlugins:
    apikey: { moduleName: $module }
global: { checkNewVersion: false, sendAnonymousUsage: false }
log: { level: ERROR, filePath: $logs/traefik.log }
$access_log
TRAEFIK
  # The key list is the gateway-key route's.
  cat >"$work/traefik-routes.yml" <<TRAEFIK
http:
  routers:
    bare: { rule: "PathPrefix(\`/bare\`)", service: echo, entryPoints: [bench] }
    key: { rule: "PathPrefix(\`/key\`)", service: echo, entryPoints: [bench], middlewares: [api-key] }
  middlewares:
    api-key:
      plugin:
        apikey:
          keys: [{ key: bench-key-0001, consumer: bench }]
  services:
    echo:
      loadBalancer: { servers: [{ url: "http://127.0.0.1:$upstream_port" }] }
TRAEFIK
  (cd "$work" && exec "$TRAEFIK" --configFile="$work/traefik.yml") >"$logs/traefik.out" 2>&1 &
  traefik_pid=$!
  pids+=("$traefik_pid")
}
