#!/usr/bin/env bash
# Measures recommendation serving end to end over HTTP against the target
# "p99 ≤ 3 ms and ≥ 5,000 requests/s on a 100,000-interaction model": RUNS
# times, each on a fresh data directory,
#   1. `trustloop serve --profiles` (the default opt_in regime; the recommender
#      is on with --profiles), as the README's quick start;
#   2. `trustloop bench --shape load-interactions`: 10,000 users, each with a
#      consent update (Analytics and Personalization) before their first event,
#      then 100,000 Product Viewed / Product Added / Order Completed events over
#      5,000 items (Zipf-like popularity, 2–3 favourite categories per user),
#      seed 1 (not measured);
#   3. waits until GET /v1/recommender/model shows the model (subjects and
#      pairs, nothing pending, the same twice in a row);
#   4. `trustloop bench --shape recommend` (profiles of the 10,000 users, then
#      GET /v1/profiles/{id}/recommendations?limit=10 of random ones) at each
#      concurrency in CONCURRENCY, DURATION after WARMUP;
# and prints one line per run, the server's RSS (process_resident_memory_bytes
# of /metrics) after the run, then the medians.
#   5. with RATES set, `trustloop bench --shape recommend --rate R` at each rate
#      R in RATES: open loop, R requests/s offered from up to 64 workers, each
#      request timed from when it was due (so a server, or a load generator,
#      that falls behind shows in the latencies).
# Usage: scripts/rec-bench.sh [RUNS]
# Environment: DURATION (30s), WARMUP (5s), CONCURRENCY ("8 32"), RATES (""),
# PORT (18191), BIN (a trustloop binary to measure instead of building this
# checkout's: for comparing two builds, run alternately).
# The load generator runs on the same machine as the server and shares its
# cores. PPROF=1 adds --debug-addr 127.0.0.1:6061 to the server and takes a CPU
# profile over the middle of each measurement into PPROF_DIR
# (/tmp/rec-bench-pprof; read it with `go tool pprof -top BIN FILE`); its
# figures are then not for the record.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
duration=${DURATION:-30s}
warmup=${WARMUP:-5s}
concurrency=${CONCURRENCY:-8 32}
rates=${RATES:-}
port=${PORT:-18191}
for tool in curl jq; do
  command -v "$tool" >/dev/null || { echo "rec-bench: needs $tool" >&2; exit 1; }
done
work=$(mktemp -d)
bin=$work/trustloop
if [ -n "${BIN:-}" ]; then cp "$BIN" "$bin"; else go build -o "$bin" ./cmd/trustloop; fi
base=http://127.0.0.1:$port
pid=
dir=
pprof_dir=${PPROF_DIR:-/tmp/rec-bench-pprof}
[ "${PPROF:-}" = 1 ] && mkdir -p "$pprof_dir" && cp "$bin" "$pprof_dir/trustloop"

cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "rec-bench: ${BIN:-$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- '*.go' || echo ' (Go files changed since)')}," \
  "$(date -u '+%Y-%m-%d %H:%M UTC'), $runs runs, $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "rec-bench: trustloop bench --shape recommend --concurrency C --duration $duration --warmup $warmup, C in $concurrency"

start_server() {
  local extra=()
  [ "${PPROF:-}" = 1 ] && extra=(--debug-addr 127.0.0.1:6061)
  "$bin" serve --profiles --addr "127.0.0.1:$port" --data-dir "$dir" "${extra[@]}" 2>>"$dir.log" &
  pid=$!
  for _ in $(seq 1 300); do
    curl -sf "$base/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "rec-bench: the server did not start; its log:" >&2
  cat "$dir.log" >&2
  exit 1
}

stop_server() {
  kill -TERM "$pid"
  wait "$pid" || true
  pid=
}

# wait_model: until the model has subjects and pairs, nothing pending, and
# the same size twice in a row (a second apart); leaves its JSON in $model.
model=
wait_model() {
  local prev= cur
  for _ in $(seq 1 120); do
    model=$(curl -sS -H "Authorization: Bearer $ak" "$base/v1/recommender/model")
    cur=$(jq -r '"\(.subjects) \(.items) \(.pairs) \(.pending)"' <<<"$model" 2>/dev/null || echo)
    if [[ $cur =~ ^[1-9][0-9]*\ [0-9]+\ [1-9][0-9]*\ 0$ ]] && [ "$cur" = "$prev" ]; then
      return 0
    fi
    prev=$cur
    sleep 1
  done
  echo "rec-bench: the model did not settle: $model" >&2
  exit 1
}

rss_mb() {
  curl -sS "$base/metrics" | awk '$1 == "process_resident_memory_bytes" { printf "%.0f", $2 / 1048576 }'
}

# median [FORMAT]: the median of the numbers on stdin (separated by spaces).
median() {
  tr ' ' '\n' | grep -v '^$' | sort -g | awk -v f="${1:-%.2f}" '{ v[NR] = $1 }
    END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf f, m }'
}

declare -A all
record() { all[$1]="${all[$1]:-} $2"; }
secs() { local d=$1; case $d in *ms) echo "0.${d%ms}";; *m) echo $((${d%m} * 60));; *s) echo "${d%s}";; *) echo "$d";; esac; }

for run in $(seq 1 "$runs"); do
  dir=$(mktemp -d -p "$work")
  start_server
  ak=$(sed -n 's/^admin_api_key=//p' "$dir/credentials")
  "$bin" bench --shape load-interactions --url "$base" --data-dir "$dir" --batch 500 --concurrency 4 --json >"$work/load.json"
  wait_model
  line="run $run ($(date -u +%T))  model $(jq -r '"\(.subjects) subjects, \(.items) items, \(.pairs) pairs"' <<<"$model")"
  line+=" (loaded $(jq -r '"\(.load.interactions) interactions + \(.load.consents) consents in \(.seconds | . * 10 | round / 10) s"' "$work/load.json"))"
  for c in $concurrency; do
    profiler=
    if [ "${PPROF:-}" = 1 ]; then
      # the middle of the measurement: after the warm-up and the profile lookups
      (sleep "$(awk -v w="$(secs "$warmup")" 'BEGIN { print w + 12 }')"
       curl -sS -o "$pprof_dir/run$run-c$c.pprof" "http://127.0.0.1:6061/debug/pprof/profile?seconds=$(awk -v d="$(secs "$duration")" 'BEGIN { s = int(d / 2); print (s > 0 ? s : 1) }')") &
      profiler=$!
    fi
    "$bin" bench --shape recommend --url "$base" --data-dir "$dir" --concurrency "$c" --duration "$duration" \
      --warmup "$warmup" --json >"$work/rec.json"
    [ -n "$profiler" ] && wait "$profiler"
    read -r rps p50 p90 p99 max non200 pers n profiles < <(jq -r \
      '"\(.requests_per_sec|round) \(.p50_ms) \(.p90_ms) \(.p99_ms) \(.max_ms) \(.non_200) \(.personalized) \(.requests) \(.profiles)"' "$work/rec.json")
    errs=$(jq -r '[.errors | to_entries[] | "\(.key): \(.value)"] | join(", ")' "$work/rec.json")
    line+=";  C=$c: $rps req/s, p50 $p50 ms, p90 $p90 ms, p99 $p99 ms, max $max ms, non-200 $non200, personalized $pers/$n ($profiles profiles), load average after $(cut -d' ' -f1 /proc/loadavg)${errs:+ [errors: $errs]}"
    record "rps_$c" "$rps"
    record "p50_$c" "$p50"
    record "p99_$c" "$p99"
    record "peak_rss_$c" "$(jq -r '.server_max_rss_mb' "$work/rec.json")"
  done
  for r in $rates; do
    "$bin" bench --shape recommend --url "$base" --data-dir "$dir" --rate "$r" --concurrency 64 --duration "$duration" \
      --warmup "$warmup" --json >"$work/rec.json"
    read -r rps p50 p90 p99 max non200 late n unsent < <(jq -r \
      '"\(.requests_per_sec|round) \(.p50_ms) \(.p90_ms // 0) \(.p99_ms) \(.max_ms) \(.non_200 // 0) \(.late // 0) \(.requests) \(.unsent // 0)"' "$work/rec.json")
    line+=";  rate $r: $rps req/s, p50 $p50 ms, p90 $p90 ms, p99 $p99 ms, max $max ms, non-200 $non200, sent late $late/$n, never sent $unsent"
    record "rps_r$r" "$rps"
    record "p50_r$r" "$p50"
    record "p99_r$r" "$p99"
  done
  rss=$(rss_mb)
  record rss "$rss"
  record pairs "$(jq -r .pairs <<<"$model")"
  echo "$line;  server RSS $rss MB"
  stop_server
  rm -rf "$dir" "$dir.log"
done

echo "--- medians of $runs runs (target: p99 ≤ 3 ms and ≥ 5,000 requests/s)"
for c in $concurrency; do
  rps=$(median %.0f <<<"${all[rps_$c]}")
  p99=$(median <<<"${all[p99_$c]}")
  verdict=$(awk -v r="$rps" -v p="$p99" 'BEGIN { print (r >= 5000 && p <= 3) ? "met" : "missed" }')
  printf 'C=%-3s %6s req/s  p50 %s ms  p99 %s ms  peak RSS during it %s MB  target %s\n' "$c" "$rps" \
    "$(median <<<"${all[p50_$c]}")" "$p99" "$(median %.0f <<<"${all[peak_rss_$c]}")" "$verdict"
done
for r in $rates; do
  rps=$(median %.0f <<<"${all[rps_r$r]}")
  p99=$(median <<<"${all[p99_r$r]}")
  # Open loop: the target's throughput is the rate offered, so only a rate of
  # 5,000 or more can meet it.
  verdict=$(awk -v o="$r" -v r="$rps" -v p="$p99" 'BEGIN { print o < 5000 ? "n/a (rate below 5,000)" : (r >= 0.99 * o && p <= 3) ? "met" : "missed" }')
  printf 'rate %-5s %6s req/s  p50 %s ms  p99 %s ms  target %s\n' "$r" "$rps" "$(median <<<"${all[p50_r$r]}")" "$p99" "$verdict"
done
echo "server RSS after the runs: $(median %.0f <<<"${all[rss]}") MB; model pairs: $(median %.0f <<<"${all[pairs]}")"
