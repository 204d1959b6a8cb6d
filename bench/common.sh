# Shared by the bench scripts (sourced, from the repository root): tools,
# the release build, a work directory cleaned up with the processes started.

# need COMMAND PACKAGE: installs PACKAGE with apt-get if COMMAND is missing.
need() { command -v "$1" >/dev/null || { apt-get update -qq >/dev/null && apt-get install -y -qq "$2" >/dev/null; }; }

# Builds the plugins and the gateway unless SKIP_BUILD is set.
build_unless_skipped() {
  if [[ -z "${SKIP_BUILD:-}" ]]; then
    make -s plugins >/dev/null
    cargo build -q --release -p wasmgate
  fi
}

WASMGATE="${CARGO_TARGET_DIR:-target}/release/wasmgate"
work=$(mktemp -d)
# Processes to kill on exit; scripts append what they start.
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# wrk prints 1.23ms / 456.00us / 1.20s; prints milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}

# The median of space-separated numbers.
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
