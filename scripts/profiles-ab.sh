#!/usr/bin/env bash
# Alternating A/B runs of ingest with profiles (issue 3), for comparing builds
# or settings on this noisy machine: for each argument a fresh server on an
# empty data directory, a 30 s cold batch run (every shopper new), then a 60 s
# warm run, printing the warm events/s, the server's CPU per event over it
# (from /proc/<pid>/stat) and its peak RSS.
# Usage: [FLAGS="serve flags"] scripts/profiles-ab.sh label:binary[:ENV=value] ...
#   e.g. scripts/profiles-ab.sh new:/tmp/tl-new old:/tmp/tl-old new:/tmp/tl-new old:/tmp/tl-old
# FLAGS defaults to "--profiles --recommend=false" (what the target names).
set -euo pipefail
port=18181
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
for spec in "$@"; do
  IFS=: read -r label bin envs <<<"$spec"
  dir=$(mktemp -d)
  # shellcheck disable=SC2086 # FLAGS and envs are word lists
  env $envs "$bin" serve --data-dir "$dir" --addr "127.0.0.1:$port" --regime opt_out ${FLAGS:---profiles --recommend=false} 2>"$dir.log" &
  pid=$!
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  run() { "$bin" bench --data-dir "$dir" --url "http://127.0.0.1:$port" --shape batch --batch 100 --concurrency 16 \
    --duration "$1" --warmup 3s | awk '/events\/s/{print $2}'; }
  cold=$(run 30s)
  c0=$(cpu "$pid")
  warm=$(run 60s)
  c1=$(cpu "$pid")
  rss=$(awk '/VmHWM/{print int($2/1024)}' "/proc/$pid/status")
  kill -TERM "$pid"; wait "$pid" || true
  # Clock ticks (1/100 s) over the 63 s of the warm run, warm-up included.
  us=$(awk -v c=$((c1 - c0)) -v r="$warm" 'BEGIN{printf "%.1f", c*10000/(r*63)}')
  echo "$label cold=$cold warm=$warm server_us_per_event=$us rss_mb=$rss $(date -u +%H:%M)"
  rm -rf "$dir" "$dir.log"
done
