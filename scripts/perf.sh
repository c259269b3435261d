#!/usr/bin/env bash
# Reproduces the collector figures of docs/performance.md: for each shape, a fresh
# server on an empty data directory (durable commits and encryption on, as always)
# and `trustloop bench` beside it on the same machine, run RUNS times.
# Usage: scripts/perf.sh [RUNS] [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
duration=${2:-30s}
bin=$(mktemp -d)/trustloop
go build -o "$bin" ./cmd/trustloop
port=18181

run_shape() {
  local shape=$1; shift
  local dir; dir=$(mktemp -d)
  "$bin" serve --data-dir "$dir" --addr "127.0.0.1:$port" 2>"$dir.log" &
  local pid=$!
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  for i in $(seq 1 "$runs"); do
    echo "--- $shape run $i: trustloop bench --shape $shape $* --duration $duration --warmup 10s"
    "$bin" bench --data-dir "$dir" --url "http://127.0.0.1:$port" --shape "$shape" "$@" \
      --duration "$duration" --warmup 10s
  done
  kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$dir" "$dir.log"
}

run_shape batch --batch 100 --concurrency 16
run_shape track --concurrency 64
