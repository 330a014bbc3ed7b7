#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# HTTP benchmarks of `imgsim serve` on loopback (issue 8), bounded in time:
#  (a) GET /v1/items/{id}/similar?k=10 at 64 connections, per --threads value
#  (b) POST /v1/search (one 307x173 sample JPEG, raw body) at 1 and 4 connections,
#      against the decode+encode time of that image alone (imgsim embed,
#      batch 1, 1 thread: includes file I/O and JSON output) and the encoder
#      alone (bench_encode, batch 1 and 16, 1 and 2 threads)
#  (c) POST /v1/items with distinct images (bench_variants): durable 201s/s
#      at ADD_CONNS connections (default "4 16"), serve --threads
#      ADD_SERVE_THREADS (default 8; at least the connections, for that many
#      writers at once)
#  (d) restart to first answered POST /v1/search (ms, 5 tries)
# usage: bench/http/run.sh [MODEL_NAME] (default mobilenet_v2_mid)
# env: DUR (wrk seconds, default 10), SERVE_THREADS (default "2 4 8 16"),
#      WRK_THREADS (default 2), WORK (default /tmp/imgsim-bench-http),
#      BUILD (default build/release; its imgsim, bench_variants, bench_encode),
#      CLI (default $BUILD/imgsim: another server binary, e.g. a "before"
#      build), SKIP (letters of parts to skip, e.g. "cd")
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
model=${1:-mobilenet_v2_mid}
dur=${DUR:-10}
wt=${WRK_THREADS:-2}
work=${WORK:-/tmp/imgsim-bench-http}
build=${BUILD:-build/release}
cli=${CLI:-$build/imgsim}
here=bench/http
img=$(find data/food/Fruits -name '*.jpeg' | sort | head -n1)
mkdir -p "$work"
coll=$work/coll_$model
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; true' EXIT
echo "# $(date -u +%FT%TZ) model=$model $(lscpu | grep 'Model name' | sed 's/  */ /g'); nproc $(nproc)"
load() { echo "load: $(uptime | sed 's/.*load average: //')"; }
skip() { [[ "${SKIP:-}" == *$1* ]]; }

if [ ! -f "$coll/index.hnsw" ]; then
  "$cli" build -c "$coll" data/food --metadata data/food/metadata.csv --id-column code \
    --model "models/$model.ism" >"$work/build_$model.log" 2>&1
fi
serve() { # serve THREADS [ENV...]: sets pid, url
  local t=$1; shift
  env "$@" "$cli" serve -c "$coll" --listen 127.0.0.1:0 --threads "$t" --quiet >"$work/out" 2>"$work/log" &
  pid=$!
  for _ in $(seq 400); do grep -q http:// "$work/out" && break; sleep 0.025; done
  url=$(grep -m1 -o 'http://127\.0\.0\.1:[0-9]*' "$work/out")
}
stop() { kill -TERM "$pid"; wait "$pid" || true; pid=; }
wrkline() { grep -E "Requests/sec|^ +50%|^ +99%|Non-2xx|Socket errors|adds201" | tr -s ' ' | tr '\n' ';'; echo; }

id=7
if ! skip a; then
  for t in ${SERVE_THREADS:-2 4 8 16}; do
    serve "$t"
    curl -fs "$url/v1/items/$id" >/dev/null || id=1
    curl -fs "$url/v1/items/$id/similar?k=10" >/dev/null
    load
    echo "(a) similar k=10, -c64 -t$wt, serve --threads $t: $(wrk -t"$wt" -c64 -d"${dur}s" --latency "$url/v1/items/$id/similar?k=10" | wrkline)"
    stop
  done
fi

if ! skip b; then
  # the image alone: embed 1 copy vs 41 copies, difference / 40 (model load cancels)
  tm() { local s; s=$(date +%s%N); "$@" >/dev/null; echo $(( ($(date +%s%N) - s) / 1000 )); }
  copies=(); for _ in $(seq 40); do copies+=("$img"); done
  best1=; best41=
  for _ in 1 2 3; do
    a=$(tm "$cli" embed --model "models/$model.ism" --batch 1 --threads 1 "$img")
    b=$(tm "$cli" embed --model "models/$model.ism" --batch 1 --threads 1 "$img" "${copies[@]}")
    d=$(( (b - a) / 40 ))
    [ -z "$best1" ] || [ "$d" -lt "$best1" ] && best1=$d
  done
  # batch throughput: 8 per run, all CPUs, 160 copies
  many=(); for _ in $(seq 4); do many+=("${copies[@]}"); done
  for _ in 1 2; do
    a=$(tm "$cli" embed --model "models/$model.ism" --batch 8 "$img")
    b=$(tm "$cli" embed --model "models/$model.ism" --batch 8 "$img" "${many[@]}")
    d=$(( (b - a) / 160 ))
    [ -z "$best41" ] || [ "$d" -lt "$best41" ] && best41=$d
  done
  load
  echo "(b) embed alone (decode+encode, batch 1, 1 thread): $((best1 / 1000)).$(( (best1 % 1000) / 100 )) ms/img (best of 3)"
  echo "(b) embed batch 8, all CPUs: $((best41 / 1000)).$(( (best41 % 1000) / 100 )) ms/img = $(( 1000000 / best41 )) img/s"
  # the encoder alone, no decode (bench_encode, batch 1 and 16, 1 and 2 threads)
  mkdir -p "$work/m_$model"; ln -sf "$root/models/$model.ism" "$work/m_$model/"
  "$build/bench_encode" --models "$work/m_$model" --runs 20 --batch 1,16 --threads 1,2 2>&1 |
    grep -E "^ +$model |^# model" | sed 's/^/(b) bench_encode: /'
  for t in ${SEARCH_THREADS:-8}; do
    serve "$t"
    curl -fs -H 'Content-Type: image/jpeg' --data-binary @"$img" "$url/v1/search?k=10" >/dev/null
    for c in ${SEARCH_CONNS:-1 4}; do
      load
      echo "(b) search upload k=10, -c$c -t$((c < wt ? c : wt)), serve --threads $t: $(wrk -t$((c < wt ? c : wt)) -c"$c" -d"${dur}s" --latency -s $here/post.lua "$url/v1/search?k=10" -- "$img" | wrkline)"
    done
    stop
  done
fi

if ! skip c; then
  nv=${VARIANTS:-3000}
  if [ ! -f "$work/variants.list" ]; then
    "$build/bench_variants" data/food "$work/variants" "$nv" >"$work/variants.log" 2>&1
    find "$work/variants" -name '*.jpeg' -o -name '*.jpg' | sort >"$work/variants.list"
  fi
  for c in ${ADD_CONNS:-4 16}; do
    rm -rf "$work/coll_add"; cp -a "$coll" "$work/coll_add"
    c0=$coll; coll=$work/coll_add
    ast=${ADD_SERVE_THREADS:-8}
    serve "$ast" IMGSIM_API_KEY=benchkey
    load
    t=$((c < wt ? c : wt))
    out=$(wrk -t"$t" -c"$c" -d"${dur}s" --latency -s $here/add.lua "$url/v1/items" -- "$work/variants.list" benchkey "$t")
    n=$(echo "$out" | awk '/adds201/ { print $2 }')
    # writes and group commits (servers that count them)
    gc=$(curl -s "$url/metrics" | awk '/^imgsim_writes_total/ { w = $2 } /^imgsim_write_batches_total/ { b = $2 }
      END { if (b) printf " (%d writes in %d batches)", w, b }')
    echo "(c) add, $(wc -l <"$work/variants.list") distinct JPEGs, -c$c -t$t, serve --threads $ast: $(echo "$out" | wrkline) => $(awk -v n="$n" -v d="$dur" 'BEGIN { printf "%.1f", n / d }') durable items/s$gc"
    stop
    coll=$c0
  done
fi

if ! skip d; then
  ms=()
  for _ in 1 2 3 4 5; do
    s=$(date +%s%N)
    "$cli" serve -c "$coll" --listen 127.0.0.1:0 --quiet >"$work/out" 2>"$work/log" &
    pid=$!
    until u=$(grep -m1 -o 'http://127\.0\.0\.1:[0-9]*' "$work/out") &&
      [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: image/jpeg' --data-binary @"$img" "$u/v1/search?k=10")" = 200 ]; do
      sleep 0.005
    done
    ms+=($(( ($(date +%s%N) - s) / 1000000 )))
    stop
  done
  load
  echo "(d) start to first 200 search (ms, 5 runs): ${ms[*]}"
fi
