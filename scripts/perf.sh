#!/usr/bin/env bash
# Reproduces the collector figures of docs/performance.md: for each shape, a fresh
# collector-only server (--profiles=false) on an empty data directory (durable
# commits and encryption on, as always) and `trustloop bench` beside it on the
# same machine, run RUNS times.
# Usage: scripts/perf.sh [RUNS] [DURATION] [profiles]
# With "profiles", the batch shape runs three times, back to back so that they
# are compared on the same machine state: on a collector-only server; with
# --profiles --recommend=false (identity resolution and profiles at ingest:
# issue 3's target, 75 % of collector-only); and with --profiles alone, the
# default, whose recommender also learns from every event.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
duration=${2:-30s}
bin=$(mktemp -d)/trustloop
go build -o "$bin" ./cmd/trustloop
port=18181

# Collector only unless told: profiles are on by default since 2026-12-07.
serve_flags=(--profiles=false)
run_shape() {
  local shape=$1; shift
  local dir; dir=$(mktemp -d)
  # opt_out: the load carries no consent update per visitor, and the figures are
  # about storing events (under opt_in without consent they would all be dropped).
  "$bin" serve --data-dir "$dir" --addr "127.0.0.1:$port" --regime opt_out "${serve_flags[@]}" 2>"$dir.log" &
  local pid=$!
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  for i in $(seq 1 "$runs"); do
    echo "--- $shape ${serve_flags[*]} run $i: trustloop bench --shape $shape $* --duration $duration --warmup 10s"
    "$bin" bench --data-dir "$dir" --url "http://127.0.0.1:$port" --shape "$shape" "$@" \
      --duration "$duration" --warmup 10s
  done
  kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$dir" "$dir.log"
}

if [ "${3:-}" = profiles ]; then
  run_shape batch --batch 100 --concurrency 16
  serve_flags=(--profiles --recommend=false)
  run_shape batch --batch 100 --concurrency 16
  serve_flags=(--profiles)
  run_shape batch --batch 100 --concurrency 16
  exit 0
fi
run_shape batch --batch 100 --concurrency 16
run_shape track --concurrency 64
