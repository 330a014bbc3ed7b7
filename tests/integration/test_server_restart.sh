#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Durability of the HTTP write path across a crash (issue 8): a real
# `imgsim serve` (127.0.0.1, port 0, IMGSIM_API_KEY set) on a small collection
# (10 distinct photos of each of 3 groups, mobilenet_v2, no finetune) takes
# adds (photos of other groups) and deletes while searches run on other
# connections, and is SIGKILLed in the middle of a burst of writes. After the
# restart every add answered 201 must be there (item 200, image bytes
# identical, a search with its photo finds it first) and every delete
# answered 200 must be gone (404, in no search result); writes in flight at
# the kill may land either way and are not checked. `imgsim index check`
# passes on the index file after the crash and after a clean SIGTERM restart,
# which must keep everything as it was. Skips (77) without the models or
# sample photos unless IMS_REQUIRE_ASSETS=1. Last line: "N passed, M failed".
set -euo pipefail
cli=${IMS_CLI:?}
src=${IMS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
food=${IMS_DATA_DIR:-$src/data}/food
model=${IMS_MODELS_DIR:-$src/models}/mobilenet_v2.ism
skip() { echo "skip: $*"; [ "${IMS_REQUIRE_ASSETS:-0}" = 1 ] && exit 1; exit 77; }
[ -r "$model" ] || skip "no $model (scripts/fetch-models)"
[ -d "$food" ] || skip "no sample photos ($food)"
command -v jq >/dev/null || skip "no jq"
command -v curl >/dev/null || skip "no curl"

tmp=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  touch "$tmp/stop" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
n_pass=0 n_fail=0
check() { # check WHAT CONDITION...
  local what=$1; shift
  if "$@"; then n_pass=$((n_pass + 1)); else echo "FAIL: $what"; n_fail=$((n_fail + 1)); fi
}
finish() { echo "$n_pass passed, $n_fail failed"; [ "$n_fail" = 0 ]; exit $?; }
key=r3start
auth=(-H "Authorization: Bearer $key")

# distinct PHOTOS of GROUP (the samples hold byte-identical copies, which an
# add would answer 409): "distinct GROUP N" appends up to N paths to `pool`
declare -A seen
pool=()
distinct() {
  local f h n=0
  while IFS= read -r f; do
    h=$(cksum <"$f")
    [ -n "${seen[$h]:-}" ] && continue
    seen[$h]=1
    pool+=("$f")
    n=$((n + 1))
    [ "$n" -ge "$2" ] && break
  done < <(find "$food/$1" -name '*.jpeg' | sort)
  return 0
}
for g in "Fruits" "Marine Fish" "Other Vegetables"; do
  pool=()
  distinct "$g" 10
  mkdir -p "$tmp/photos/$g"
  cp "${pool[@]}" "$tmp/photos/$g/"
done
coll=$tmp/coll
"$cli" build -c "$coll" "$tmp/photos" --model "$model" --no-finetune --threads 2 >"$tmp/build.log" 2>&1 ||
  { cat "$tmp/build.log"; echo "FAIL: build"; n_fail=1; finish; }
# photos to add: none of them in the collection
pool=()
for g in "Poultry" "Cereals and Millets" "Grain Legumes" "Condiments and Spices"; do
  [ -d "$food/$g" ] && distinct "$g" 8
done
adds=("${pool[@]}")
[ "${#adds[@]}" -ge 16 ] || skip "fewer than 16 distinct photos to add"

start() { # the server on the collection: sets pid, url
  : >"$tmp/out"
  IMGSIM_API_KEY=$key "$cli" serve -c "$coll" --listen 127.0.0.1:0 --threads 6 --quiet \
    >"$tmp/out" 2>>"$tmp/log" &
  pid=$!
  for _ in $(seq 300); do grep -q 'http://' "$tmp/out" && break; sleep 0.05; done
  url=$(grep -m1 -o 'http://127\.0\.0\.1:[0-9]*' "$tmp/out" || true)
  [ -n "$url" ] || { cat "$tmp/log"; echo "FAIL: serve did not start"; n_fail=$((n_fail + 1)); finish; }
  [ "${url##*:}" -gt 0 ] || { echo "FAIL: port ${url##*:}"; n_fail=$((n_fail + 1)); finish; }
}
jqt() { jq -e "$1" "$tmp/body" >/dev/null; } # jqt FILTER: true if FILTER holds on the last body
code() { curl -s -o "$tmp/body" -w '%{http_code}' "$@" || true; }

# search loops on their own connections until $tmp/stop exists; one HTTP code
# a line into $tmp/s.W (the request cut by a SIGKILL answers 000)
searchers() {
  rm -f "$tmp/stop"
  local w
  for w in 1 2 3; do
    ( s=${seed[$((w % ${#seed[@]}))]}
      while [ ! -e "$tmp/stop" ]; do
        curl -s -o /dev/null -w '%{http_code}\n' -H 'Content-Type: image/jpeg' \
          --data-binary @"$s" "$url/v1/search?k=5" || true
        curl -s -o /dev/null -w '%{http_code}\n' "$url/v1/items/${keep[$((w - 1))]}/similar?k=5" || true
      done >>"$tmp/s.$w" ) &
    spids+=($!)
  done
}
# all codes 200, except 000s (no connection) after the last 200 when KILLED=1
searches_ok() {
  local f
  for f in "$tmp"/s.*; do
    awk -v killed="$1" '{ c[NR] = $0 } END {
      n = NR; if (killed) while (n > 0 && c[n] == "000") n--
      for (i = 1; i <= n; i++) if (c[i] != "200") exit 1 }' "$f" || return 1
  done
  [ "$(cat "$tmp"/s.* | grep -c '^200$' || true)" -gt 10 ]
}
count() { grep -c "$1" "$tmp/acks" || true; }

# writer: add FILE..., and after every second add delete the add before last
# (a "try" line before the request, the ack after a 200/201), into $tmp/acks
writer() {
  local f i=0 last=() r c id
  for f in "$@"; do
    [ -e "$tmp/stop" ] && break
    r=$(curl -s -w '\n%{http_code}' "${auth[@]}" -F "image=@$f;type=image/jpeg" \
      -F 'metadata={"test":"restart"}' -F category=Added "$url/v1/items" || true)
    c=${r##*$'\n'}
    if [ "$c" = 201 ]; then
      id=$(printf '%s' "${r%$'\n'*}" | jq -r .id)
      echo "add $id $f" >>"$tmp/acks"
      last+=("$id")
    fi
    i=$((i + 1))
    if [ $((i % 2)) = 0 ] && [ "${#last[@]}" -ge 2 ]; then
      id=${last[-2]}
      echo "try $id" >>"$tmp/acks"
      c=$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" -X DELETE "$url/v1/items/$id" || true)
      [ "$c" = 200 ] && echo "del $id" >>"$tmp/acks"
      unset 'last[-2]'
      last=("${last[@]}")
    fi
  done
  return 0
}

start
echo "serving on $url"
mapfile -t seed < <(find "$tmp/photos" -name '*.jpeg' | sort)
check "healthz" [ "$(code "$url/healthz")" = 200 ]
n0=$(jq .items "$tmp/body")
check "30 items" [ "$n0" = 30 ]
selfid() { code -H 'Content-Type: image/jpeg' --data-binary @"$1" "$url/v1/search?k=1" >/dev/null; jq .self_id "$tmp/body"; }
keep=("$(selfid "${seed[0]}")" "$(selfid "${seed[10]}")" "$(selfid "${seed[20]}")")
check "built items found by their photos" [ "${keep[0]}" -gt 0 -a "${keep[1]}" -gt 0 -a "${keep[2]}" -gt 0 ]
: >"$tmp/acks"
# delete two items of the build too (their photo gives the id: self_id)
for s in "${seed[3]}" "${seed[17]}"; do
  id=$(selfid "$s")
  echo "try $id" >>"$tmp/acks"
  check "delete a built item" [ "$(code "${auth[@]}" -X DELETE "$url/v1/items/$id")" = 200 ]
  echo "del $id $s" >>"$tmp/acks"
done

# round 1: writes while searching, all answered, then a clean look
spids=()
searchers
writer "${adds[@]:0:6}"
touch "$tmp/stop"
wait "${spids[@]}"
check "round 1: every search 200 while writing" searches_ok 0
check "round 1: 6 adds acknowledged" [ "$(count '^add ')" = 6 ]

# round 2: a burst of writes, SIGKILL once 3 more adds are acknowledged
rm -f "$tmp"/s.*
spids=()
searchers
before=$(count '^add ')
writer "${adds[@]:6:${#adds[@]}-7}" &
wpid=$!
for _ in $(seq 600); do
  [ "$(count '^add ')" -ge $((before + 3)) ] && break
  sleep 0.02
done
sleep 0.05
touch "$tmp/stop"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
pid=
wait "$wpid" "${spids[@]}" || true
check "round 2: every search 200 until the kill" searches_ok 1
n_add=$(count '^add ')
n_del=$(count '^del ')
n_try=$(count '^try ')
echo "SIGKILL after $n_add adds and $n_del deletes acknowledged"
check "killed mid-burst (adds acknowledged after round 1)" [ "$n_add" -ge $((before + 3)) ]
check "index check after SIGKILL" "$cli" index check "$coll/index.hnsw" --json >"$tmp/check.json" 2>&1

# verify the acknowledged writes: LABEL
verify() {
  local l=$1 id f
  # adds acknowledged whose delete was not tried: present, same bytes, found first
  while read -r _ id f; do
    grep -qx "try $id" "$tmp/acks" && continue
    check "$l: added $id: item 200" [ "$(code "$url/v1/items/$id")" = 200 ]
    check "$l: added $id: category" [ "$(jq -r .category "$tmp/body")" = Added ]
    check "$l: added $id: image bytes" bash -c "curl -sf '$url/v1/images/$id' | cmp -s - '$f'"
    check "$l: added $id: search finds it first" \
      [ "$(code -H 'Content-Type: image/jpeg' --data-binary @"$f" "$url/v1/search?k=3")" = 200 ]
    check "$l: added $id: ... first" [ "$(jq .results[0].id "$tmp/body")" = "$id" ]
  done < <(grep '^add ' "$tmp/acks")
  # deletes acknowledged: 404, never in a search result (searched with their photo)
  while read -r _ id; do
    f=$(grep -m1 -E "^(add|del) $id " "$tmp/acks" | cut -d' ' -f3-)
    check "$l: deleted $id: item 404" [ "$(code "$url/v1/items/$id")" = 404 ]
    check "$l: deleted $id: image 404" [ "$(code "$url/v1/images/$id")" = 404 ]
    check "$l: deleted $id: search" \
      [ "$(code -H 'Content-Type: image/jpeg' --data-binary @"$f" "$url/v1/search?k=20")" = 200 ]
    check "$l: deleted $id: in no result" jqt "[.results[].id] | index($id) == null"
    check "$l: deleted $id: not similar to anything" \
      [ "$(code "$url/v1/items/${keep[0]}/similar?k=50")" = 200 ]
    check "$l: deleted $id: ... absent" jqt "[.results[].id] | index($id) == null"
  done < <(grep '^del ' "$tmp/acks" | cut -d' ' -f1,2)
  return 0
}

t0=$(date +%s%N)
start
check "restart after SIGKILL: healthz" [ "$(code "$url/healthz")" = 200 ]
echo "restart after SIGKILL answered in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
n1=$(jq .items "$tmp/body")
check "items: 30 + acknowledged adds - deletes, give or take the writes in flight" \
  [ "$n1" -ge $((30 + n_add - n_try)) -a "$n1" -le $((30 + n_add + 1 - n_del)) ]
verify "after SIGKILL"
check "writes work after the crash" \
  [ "$(code "${auth[@]}" -F "image=@${adds[-1]};type=image/jpeg" -F category=Added "$url/v1/items")" = 201 ]

# clean restart: SIGTERM exits 0, everything as it was
code "$url/healthz" >/dev/null
n2=$(jq .items "$tmp/body")
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
pid=
check "SIGTERM exits 0" [ "$rc" = 0 ]
check "index check after SIGTERM" "$cli" index check "$coll/index.hnsw" --json >"$tmp/check.json" 2>&1
start
check "restart after SIGTERM: healthz" [ "$(code "$url/healthz")" = 200 ]
check "restart after SIGTERM: same item count" [ "$(jq .items "$tmp/body")" = "$n2" ]
verify "after SIGTERM"
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
pid=
check "second SIGTERM exits 0" [ "$rc" = 0 ]
check "index check at the end" "$cli" index check "$coll/index.hnsw" >/dev/null 2>&1
finish
