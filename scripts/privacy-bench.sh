#!/usr/bin/env bash
# Reproduces the privacy-request figures of docs/performance.md ("Privacy
# requests (issue 5)"): RUNS times, each on fresh data directories,
#   1. erasure of a profile with 10,000 events: end to end (POST until a poll,
#      every 10 ms, sees "completed") and the server's own result.seconds;
#   2. the access package of another profile with 10,000 events: the access
#      request (POST until completed), then the download as JSON and as HTML;
#   3. the JSON access package of a profile with 100,000 events on a server
#      restarted after the ingest: download time and the server's RSS (VmRSS
#      sampled every 20 ms, and VmHWM reset just before), baseline and peak,
#      during the access request and during the download; then (no target)
#      the erasure of those 100,000 events, and how long a /v1/track of another
#      user sent meanwhile waits.
# Usage: scripts/privacy-bench.sh [RUNS]
# The servers run as the README's quick start with --profiles --regime opt_out;
# beside the measured profiles each store holds 10,000 events of 1,000 other
# users. Ingest (batches of 2,500 events, four curls at a time) is not measured.
# After it the script waits past the profiles' flush delay (5 s), as for a real
# request that comes long after the customer's last event.
# PPROF=1 adds --debug-addr 127.0.0.1:6061 to every server (go tool pprof
# http://127.0.0.1:6061/debug/pprof/profile?seconds=N while a step runs).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
for tool in curl jq python3; do
  command -v "$tool" >/dev/null || { echo "privacy-bench: needs $tool" >&2; exit 1; }
done
work=$(mktemp -d)
bin=$work/trustloop
go build -o "$bin" ./cmd/trustloop
echo "privacy-bench: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- '*.go' || echo ' (Go files changed since)'), $(date -u '+%Y-%m-%d %H:%M UTC'), $runs runs"
port=18181
base=http://127.0.0.1:$port
wk=privacy-bench-write-key-0123
ak=privacy-bench-admin-key-0123
pid=
dir=

cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

now() { echo "$EPOCHREALTIME"; }                      # seconds, microsecond resolution, no fork
ms_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }

start_server() {
  local extra=()
  [ "${PPROF:-}" = 1 ] && extra=(--debug-addr 127.0.0.1:6061)
  TRUSTLOOP_BOOTSTRAP_WRITE_KEY=$wk TRUSTLOOP_BOOTSTRAP_ADMIN_KEY=$ak "$bin" serve --addr "127.0.0.1:$port" \
    --data-dir "$dir" --profiles --regime opt_out "${extra[@]}" 2>>"$dir.log" &
  pid=$!
  for _ in $(seq 1 300); do
    curl -sf "$base/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "privacy-bench: the server did not start; its log:" >&2
  cat "$dir.log" >&2
  exit 1
}

stop_server() {
  kill -TERM "$pid"
  wait "$pid" || true
  pid=
}

# gen OUT PREFIX USER N: an identify (email, name) in OUT/PREFIX-identify.json,
# then N-1 product views and orders of USER in batches of 2,500, with unique
# messageIds. USER "-" makes 10,000 events of 1,000 other users instead.
gen() {
  python3 - "$@" <<'EOF'
import json, os, sys
out, prefix, user, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cats = ["Shoes", "Shirts", "Bags", "Hats", "Socks", "Jackets"]
def track(u, i):
    if i % 50 == 0:
        return {"type": "track", "userId": u, "event": "Order Completed", "messageId": f"{prefix}-{u}-{i}",
                "properties": {"order_id": f"o-{i}", "revenue": 10 + i % 90, "currency": "EUR"}}
    return {"type": "track", "userId": u, "event": "Product Viewed", "messageId": f"{prefix}-{u}-{i}",
            "properties": {"product_id": f"p-{i % 997}", "category": cats[i % len(cats)], "price": 5 + i % 200}}
def identify(u):
    return {"type": "identify", "userId": u, "messageId": f"{prefix}-{u}-id",
            "traits": {"email": f"{u}@example.com", "name": f"Customer {u}"}}
if user == "-":
    firsts = [identify(f"bg-{prefix}-{k}") for k in range(1000)]
    rest = [track(f"bg-{prefix}-{k}", i) for i in range(1, 10) for k in range(1000)]
else:
    firsts = [identify(user)]
    rest = [track(user, i) for i in range(1, n)]
def write(name, evs):
    body = json.dumps({"batch": evs}, separators=(",", ":"))
    assert len(body) < 500_000 and len(evs) <= 2500, (name, len(body))
    with open(os.path.join(out, name), "w") as f:
        f.write(body)
write(f"{prefix}-identify.json", firsts)
for k in range(0, len(rest), 2500):
    write(f"{prefix}-batch-{k // 2500:04d}.json", rest[k:k + 2500])
EOF
}

post_batch() {
  local r
  r=$(curl -sS -u "$wk:" -H 'Content-Type: application/json' --data-binary "@$1" "$base/v1/batch")
  [[ $r == *'"success":true'* ]] || { echo "privacy-bench: ingest of $1 failed: $r" >&2; return 1; }
}
export -f post_batch
export wk base

# ingest PREFIX: the identify first (the profile has identities), then the
# batches four at a time.
ingest() {
  post_batch "$work/batches/$1-identify.json"
  find "$work/batches" -name "$1-batch-*.json" | sort | xargs -P 4 -I{} bash -c 'post_batch "$1"' _ {}
}

# request TYPE IDENTIFIER: files a request and prints its id.
request() {
  local r
  r=$(curl -sS -H "Authorization: Bearer $ak" -d "{\"type\":\"$1\",\"identifier\":\"$2\"}" "$base/v1/privacy-requests")
  jq -er .request_id <<<"$r" || { echo "privacy-bench: request failed: $r" >&2; exit 1; }
}

# poll ID: every 10 ms until completed; leaves the request's JSON in $polled.
polled=
poll() {
  while :; do
    polled=$(curl -sS -H "Authorization: Bearer $ak" "$base/v1/privacy-requests/$1")
    [[ $polled == *'"status":"completed"'* ]] && return 0
    if [[ $polled == *'"status":"rejected"'* || $polled == *'"error"'* ]]; then
      echo "privacy-bench: request $1: $polled" >&2
      exit 1
    fi
    sleep 0.01
  done
}

rss_kb() { local k v _; while read -r k v _; do [ "$k" = "$1:" ] && { echo "$v"; return; }; done <"/proc/$pid/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }

# sample OUT: VmRSS every 20 ms into OUT (largest seen), until killed.
sample() {
  local max=0 k v _
  while :; do
    while read -r k v _; do
      if [ "$k" = VmRSS: ]; then
        [ "$v" -gt "$max" ] && { max=$v; echo "$max" >"$1"; }
        break
      fi
    done <"/proc/$pid/status" || return 0
    sleep 0.02
  done
}
sampler=
start_sampling() {
  echo 0 >"$work/peak"
  echo 5 >"/proc/$pid/clear_refs" # VmHWM := VmRSS now
  sample "$work/peak" &
  sampler=$!
}
stop_sampling() {
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  peak_kb=$(cat "$work/peak")
  local hwm; hwm=$(rss_kb VmHWM)
  [ "$hwm" -gt "$peak_kb" ] && hwm_kb=$hwm || hwm_kb=$peak_kb
}

# logged_seconds ID: the seconds of the server's "erasure completed" log line
# (measured after the commit and the WAL truncation; result.seconds is taken
# inside the transaction, before its commit).
logged_seconds() {
  grep '"msg":"erasure completed"' "$dir.log" | grep -F "\"request\":\"$1\"" | jq -r .seconds | awk '{ printf "%.3f", $1 }'
}

# median [FORMAT]: the median of the numbers on stdin (separated by spaces).
median() {
  tr ' ' '\n' | grep -v '^$' | sort -g | awk -v f="${1:-%.3f}" '{ v[NR] = $1 }
    END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf f, m }'
}

declare -A all
record() { all[$1]="${all[$1]:-} $2"; }

mkdir -p "$work/batches"
for run in $(seq 1 "$runs"); do
  rm -f "$work"/batches/*
  gen "$work/batches" "r$run-bg" - 0
  gen "$work/batches" "r$run-e" "erase-$run" 10000
  gen "$work/batches" "r$run-x" "export-$run" 10000
  gen "$work/batches" "r$run-big" "big-$run" 100000

  # 1 and 2: one store with a profile to erase and another to export.
  dir=$(mktemp -d -p "$work")
  start_server
  ingest "r$run-bg"
  ingest "r$run-e"
  ingest "r$run-x"
  sleep 7

  t0=$(now)
  id=$(request access "user_id:export-$run")
  poll "$id"
  access_ms=$(ms_since "$t0")
  n=$(jq -r .result.events <<<"$polled")
  for fmt in json html; do
    read -r secs bytes code < <(curl -sS -o "$work/package.$fmt" -w '%{time_total} %{size_download} %{http_code}\n' \
      -H "Authorization: Bearer $ak" "$base/v1/privacy-requests/$id/export?format=$fmt")
    [ "$code" = 200 ] || { echo "privacy-bench: export $fmt: HTTP $code" >&2; head -c 500 "$work/package.$fmt" >&2; exit 1; }
    if [ "$fmt" = json ]; then
      got=$(jq -r '.event_count' "$work/package.json")
    else
      # event rows only (the data-use table lists the JSON download just made)
      got=$(grep -cE '^<tr><td>[^<]*</td><td>(track|identify|page|screen|group|alias)</td>' "$work/package.html" || true)
    fi
    echo "run $run  export 10k $fmt: download $(awk -v s="$secs" 'BEGIN { printf "%.3f", s }') s, $(mb $((bytes / 1024))) MB, $got events (access request before it: $access_ms ms, $n events counted)"
    record "export10k_$fmt" "$secs"
  done
  record export10k_request "$(awk -v m="$access_ms" 'BEGIN { print m / 1000 }')"

  t0=$(now)
  id=$(request erasure "user_id:erase-$run")
  poll "$id"
  e2e_ms=$(ms_since "$t0")
  server_s=$(jq -r .result.seconds <<<"$polled")
  erased=$(jq -r .result.counts.events <<<"$polled")
  echo "run $run  erasure 10k: end to end $e2e_ms ms, server result.seconds $(awk -v s="$server_s" 'BEGIN { printf "%.3f", s }')," \
    "log $(logged_seconds "$id") s, events erased $erased, found $(jq -r .result.found <<<"$polled") ($(jq -c .result.counts <<<"$polled"))"
  record erasure_e2e "$(awk -v m="$e2e_ms" 'BEGIN { print m / 1000 }')"
  record erasure_server "$server_s"
  stop_server
  rm -rf "$dir" "$dir.log"

  # 3: 100,000 events, exported by a server started again on the store.
  dir=$(mktemp -d -p "$work")
  start_server
  ingest "r$run-bg"
  ingest "r$run-big"
  sleep 7
  stop_server
  start_server
  sleep 1
  base_req=$(rss_kb VmRSS)
  start_sampling
  t0=$(now)
  id=$(request access "user_id:big-$run")
  poll "$id"
  access_ms=$(ms_since "$t0")
  stop_sampling
  req_peak=$peak_kb req_hwm=$hwm_kb
  base_dl=$(rss_kb VmRSS)
  start_sampling
  read -r secs bytes code < <(curl -sS -o "$work/package.json" -w '%{time_total} %{size_download} %{http_code}\n' \
    -H "Authorization: Bearer $ak" "$base/v1/privacy-requests/$id/export?format=json")
  stop_sampling
  [ "$code" = 200 ] || { echo "privacy-bench: export: HTTP $code" >&2; head -c 500 "$work/package.json" >&2; exit 1; }
  got=$(jq -r '.event_count' "$work/package.json")
  echo "run $run  export 100k json: download $(awk -v s="$secs" 'BEGIN { printf "%.3f", s }') s, $(mb $((bytes / 1024))) MB, $got events;" \
    "RSS baseline $(mb "$base_dl") MB, peak $(mb "$peak_kb") MB sampled, $(mb "$hwm_kb") MB VmHWM" \
    "(access request before it: $access_ms ms, RSS $(mb "$base_req") -> $(mb "$req_peak") MB sampled, $(mb "$req_hwm") MB VmHWM)"
  record export100k_s "$secs"
  record export100k_base_mb "$(mb "$base_dl")"
  record export100k_peak_mb "$(mb "$hwm_kb")"
  record export100k_request "$(awk -v m="$access_ms" 'BEGIN { print m / 1000 }')"

  # No target: the erasure of these 100,000 events, with one /v1/track of
  # another user sent 200 ms after it was filed (the erasure holds the
  # collector's writer while it runs).
  t0=$(now)
  id=$(request erasure "user_id:big-$run")
  (sleep 0.2; curl -sS -o /dev/null -w '%{time_total}\n' -u "$wk:" -H 'Content-Type: application/json' \
    -d "{\"userId\":\"probe-$run\",\"event\":\"Probe\",\"messageId\":\"probe-$run\"}" "$base/v1/track" >"$work/probe") &
  probe=$!
  poll "$id"
  e2e_ms=$(ms_since "$t0")
  wait "$probe"
  echo "run $run  erasure 100k (no target): end to end $e2e_ms ms, server result.seconds" \
    "$(jq -r '.result.seconds * 1000 | round / 1000' <<<"$polled"), log $(logged_seconds "$id") s," \
    "events erased $(jq -r .result.counts.events <<<"$polled"); a /v1/track sent 200 ms in took $(cat "$work/probe") s"
  record erasure100k_e2e "$(awk -v m="$e2e_ms" 'BEGIN { print m / 1000 }')"
  record erasure100k_track "$(cat "$work/probe")"
  stop_server
  rm -rf "$dir" "$dir.log"
done

echo "--- medians of $runs runs"
printf '%-45s %s\n' \
  "erasure 10k, end to end (s)" "$(median <<<"${all[erasure_e2e]}")" \
  "erasure 10k, server result.seconds" "$(median <<<"${all[erasure_server]}")" \
  "access request 10k, POST to completed (s)" "$(median <<<"${all[export10k_request]}")" \
  "export 10k json download (s)" "$(median <<<"${all[export10k_json]}")" \
  "export 10k html download (s)" "$(median <<<"${all[export10k_html]}")" \
  "access request 100k, POST to completed (s)" "$(median <<<"${all[export100k_request]}")" \
  "export 100k json download (s)" "$(median <<<"${all[export100k_s]}")" \
  "export 100k RSS baseline (MB)" "$(median %.0f <<<"${all[export100k_base_mb]}")" \
  "export 100k RSS peak, VmHWM (MB)" "$(median %.0f <<<"${all[export100k_peak_mb]}")" \
  "erasure 100k, end to end (s; no target)" "$(median <<<"${all[erasure100k_e2e]}")" \
  "a /v1/track during it (s)" "$(median <<<"${all[erasure100k_track]}")"
