#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Soak of `imgsim serve` (issue 10): DURATION seconds (default 600) at CONNS
# connections (default 128) of 90% GET /v1/items/{id}/similar?k=10 (random
# existing ids), 9% POST /v1/search?k=10 (photos pre-loaded by soak.lua, raw
# body) and 1% POST /v1/items (multipart; each a sample photo made distinct
# by a JPEG comment), against one server on a fresh copy of a collection of
# data/food built with models/$MODEL.ism (default mobilenet_v2: the fast
# backbone; metadata CSV, default fine-tune).
# wrk runs in consecutive SEGMENT-second segments (default 60) on the same
# server, one line of counts each; VmRSS and the open fd count of the server
# are sampled every 10 s. Prints a per-segment table and checks the claims:
#   zero errors (socket errors, timeouts, non-2xx) and zero 5xx;
#   p99 of the last segment <= 1.5 x p99 of the first;
#   VmRSS growth after warm-up (end of segment 1 -> end) < 10%;
#   open fds that are not sockets not growing (end <= end of segment 1;
#   sockets, wrk's connections closing at each segment's end, are shown).
# usage: bench/soak/run.sh   env: DURATION, CONNS, SEGMENT, MODEL,
#   SERVE_THREADS (16), WRK_THREADS (2), WRK_TIMEOUT (wrk --timeout, 2s:
#   wrk's default; a slower answer counts as a timeout), WORK (/tmp/imgsim-soak), BUILD
#   (build/release), MAX_QUEUE (passed as --max-queue if serve has it),
#   ADDS_PERMILLE (10: the adds' share in 1/1000; 0 leaves the collection's
#   size fixed, to tell data growth from a leak; 9% uploads stay 9%).
# Exit 0 when every claim holds. wrk shares the machine with the server.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
dur=${DURATION:-600}
conns=${CONNS:-128}
seglen=${SEGMENT:-60}
model=${MODEL:-mobilenet_v2}
wt=${WRK_THREADS:-2}
st=${SERVE_THREADS:-16}
work=${WORK:-/tmp/imgsim-soak}
build=${BUILD:-build/release}
cli=$build/imgsim
here=bench/soak
key=soakkey
mkdir -p "$work"
pid=
spid=
trap '[ -n "$spid" ] && kill "$spid" 2>/dev/null; [ -n "$pid" ] && kill "$pid" 2>/dev/null; true' EXIT
cpu=$(lscpu | grep 'Model name' | sed 's/.*: *//')
echo "# $(date -u +%FT%TZ) soak ${dur}s at $conns connections, model $model; CPU $cpu; nproc $(nproc)"
echo "# load before: $(uptime | sed 's/.*load average: //')"

base=$work/base_$model
if [ ! -f "$base/index.hnsw" ]; then
  echo "# building $base"
  "$cli" build -c "$base" data/food --metadata data/food/metadata.csv --id-column code \
    --model "models/$model.ism" >"$work/build.log" 2>&1
fi
coll=$work/coll
rm -rf "$coll"
cp -a "$base" "$coll"
sqlite3 "$coll/catalog.sqlite" 'SELECT id FROM items WHERE status = 0 ORDER BY id' >"$work/ids"
find data/food -name '*.jpeg' | sort | awk 'NR % 10 == 1' >"$work/photos"
echo "# $(wc -l <"$work/ids") items, $(wc -l <"$work/photos") upload photos"

extra=()
if [ -n "${MAX_QUEUE:-}" ] && "$cli" serve --help 2>&1 | grep -q -- --max-queue; then
  extra=(--max-queue "$MAX_QUEUE")
fi
IMGSIM_API_KEY=$key "$cli" serve -c "$coll" --listen 127.0.0.1:0 --threads "$st" --quiet \
  "${extra[@]}" >"$work/out" 2>"$work/log" &
pid=$!
for _ in $(seq 400); do grep -q http:// "$work/out" && break; sleep 0.025; done
url=$(grep -m1 -o 'http://127\.0\.0\.1:[0-9]*' "$work/out")
curl -fs "$url/v1/items/$(head -n1 "$work/ids")/similar?k=10" >/dev/null

# VmRSS (kB) and open fds (all, and of them sockets) every 10 s:
# "seconds rss_kb fds sockets"
: >"$work/samples"
( t0=$(date +%s)
  while kill -0 "$pid" 2>/dev/null; do
    rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    fds=$( (find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null || true) | wc -l)
    socks=$( (find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 -lname 'socket:*' 2>/dev/null || true) | wc -l)
    echo "$(( $(date +%s) - t0 )) $rss $fds $socks" >>"$work/samples"
    sleep 10
  done ) &
spid=$!

n_seg=$(( (dur + seglen - 1) / seglen ))
: >"$work/segments"
: >"$work/seg_mem"
for s in $(seq 1 "$n_seg"); do
  d=$(( s * seglen <= dur ? seglen : dur - (s - 1) * seglen ))
  wrk -t"$wt" -c"$conns" -d"${d}s" --timeout "${WRK_TIMEOUT:-2s}" --latency -s $here/soak.lua "$url" -- \
    "$work/ids" "$work/photos" "$key" "$s" "$wt" "${ADDS_PERMILLE:-10}" >"$work/wrk.$s" 2>&1 || true
  line=$(grep '^soak ' "$work/wrk.$s" || echo "soak seg=$s failed")
  non2xx=$(awk '/Non-2xx/ { print $NF }' "$work/wrk.$s")
  echo "$line non2xx=${non2xx:-0} load=$(uptime | sed 's/.*load average: //; s/,.*//')" |
    tee -a "$work/segments"
  # the RSS/fd sample at the end of this segment
  rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
  # files: fds that are not sockets (client connections come and go with wrk)
  # (a connection closing while find reads its link is "No such file": not counted)
  fds=$( (find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 -not -lname 'socket:*' 2>/dev/null || true) | wc -l)
  socks=$( (find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 -lname 'socket:*' 2>/dev/null || true) | wc -l)
  echo "seg=$s rss_kb=$rss fds=$fds socks=$socks" >>"$work/seg_mem"
done
kill "$spid" 2>/dev/null || true
spid=
metrics=$(curl -s "$url/metrics" | grep -E '^imgsim_(items|writes_total|write_batches_total) ' | tr '\n' ' ')
kill -TERM "$pid"; rc=0; wait "$pid" || rc=$?; pid=
echo "# server: SIGTERM exit $rc; $metrics"
echo "# load after: $(uptime | sed 's/.*load average: //')"

# the table and the claims
awk -v memf="$work/seg_mem" -v seglen="$seglen" '
  function val(k,   i, a) { for (i = 1; i <= NF; i++) { split($i, a, "="); if (a[1] == k) return a[2] } return "" }
  BEGIN { while ((getline l < memf) > 0) { split(l, f, /[ =]/); rss[f[2]] = f[4]; fd[f[2]] = f[6]; so[f[2]] = f[8] } }
  /^soak / {
    s = val("seg"); n++
    err = val("sock_connect") + val("sock_read") + val("sock_write") + val("timeouts") + val("non2xx")
    e5 = val("s5xx"); p99[s] = val("p99_ms")
    if (n == 1) print "| min | requests | req/s | p50 ms | p99 ms | socket errors | timeouts | non-2xx | 5xx | adds 201 | VmRSS MiB | file fds | sockets | load |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    printf "| %d | %d | %.0f | %s | %s | %d | %d | %d | %d | %d | %.1f | %d | %d | %s |\n", s, val("requests"), val("requests") / seglen, val("p50_ms"), val("p99_ms"), val("sock_connect") + val("sock_read") + val("sock_write"), val("timeouts"), val("non2xx"), e5, val("add201"), rss[s] / 1024, fd[s], so[s], val("load")
    errs += err; e5s += e5; last = s
  }
  END {
    ok = 1
    printf "claim: zero errors (socket, timeout, non-2xx): %d -> %s\n", errs, errs == 0 ? "PASS" : "FAIL"; ok = ok && errs == 0
    printf "claim: zero 5xx: %d -> %s\n", e5s, e5s == 0 ? "PASS" : "FAIL"; ok = ok && e5s == 0
    r = p99[1] > 0 ? p99[last] / p99[1] : 99
    printf "claim: p99 last / first <= 1.5: %s / %s ms = %.2f -> %s\n", p99[last], p99[1], r, r <= 1.5 ? "PASS" : "FAIL"; ok = ok && r <= 1.5
    g = rss[1] > 0 ? (rss[last] - rss[1]) / rss[1] : 99
    printf "claim: VmRSS growth seg 1 -> %d < 10%%: %.1f -> %.1f MiB = %+.1f%% -> %s\n", last, rss[1] / 1024, rss[last] / 1024, 100 * g, g < 0.10 ? "PASS" : "FAIL"; ok = ok && g < 0.10
    printf "claim: file fds (not sockets) not growing: %d -> %d -> %s\n", fd[1], fd[last], fd[last] <= fd[1] ? "PASS" : "FAIL"; ok = ok && fd[last] <= fd[1]
    exit ok ? 0 : 1
  }' "$work/segments"
