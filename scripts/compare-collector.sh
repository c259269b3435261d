#!/usr/bin/env bash
# Compares the collector's batch throughput of an earlier commit with the working
# tree, alternating fresh servers of each, PAIRS times (docs/performance.md,
# "Collector throughput with consent enforcement").
# Usage: scripts/compare-collector.sh REF [PAIRS] [DURATION]
# Servers of the working tree run with --profiles=false --regime opt_out (collector
# only; the load sends no consent update per visitor); REF's servers with no extra
# flag, or the same two where REF has profiles on by default.
set -euo pipefail
cd "$(dirname "$0")/.."
ref=${1:?usage: scripts/compare-collector.sh REF [PAIRS] [DURATION]}
pairs=${2:-4}
duration=${3:-30s}
work=$(mktemp -d)
git worktree add -q "$work/old" "$ref"
(cd "$work/old" && go build -o "$work/tl-old" ./cmd/trustloop)
git worktree remove --force "$work/old"
go build -o "$work/tl-new" ./cmd/trustloop
port=18191
run() {
  local bin=$1; shift
  local dir; dir=$(mktemp -d)
  "$bin" serve --data-dir "$dir" --addr "127.0.0.1:$port" "$@" 2>"$dir.log" &
  local pid=$!
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  echo "--- $(basename "$bin") $*"
  "$work/tl-new" bench --data-dir "$dir" --url "http://127.0.0.1:$port" --shape batch --batch 100 \
    --concurrency 16 --duration "$duration" --warmup 10s | grep -E "events/s|p99"
  kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$dir" "$dir.log"
}
# Both collector only: profiles are on by default since 2026-12-07, so a REF
# from then on is told, as its help shows (older ones were collector only, and
# took every event, by default).
old_flags=()
if "$work/tl-old" serve --help 2>&1 | grep -A1 -- '^  -profiles$' | grep -q 'default true'; then
  old_flags=(--profiles=false --regime opt_out)
fi
for _ in $(seq 1 "$pairs"); do
  run "$work/tl-old" ${old_flags[@]+"${old_flags[@]}"} # bash 3.2 and set -u
  run "$work/tl-new" --profiles=false --regime opt_out
done
rm -rf "$work"
