#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Durability of the HTTP write path across crashes (issues 8 and 10): a real
# `imgsim serve` (127.0.0.1, port 0, IMGSIM_API_KEY set) on a small collection
# (10 distinct photos of each of 3 groups, mobilenet_v2, no finetune) takes,
# ROUNDS times, a burst of BURST POST /v1/items (distinct images: photos of
# other groups, each made unique by a JPEG comment) and one DELETE per five
# adds (items that landed before), 8 requests in flight (one curl
# --parallel), while searches run on other connections; it is SIGKILLed at a
# random moment of the burst (after a random number of acknowledged adds)
# and restarted. After each restart:
#   - every add answered 201 is there: the catalogue holds it accepted with
#     its image's SHA-256, GET /v1/items/ID 200, /v1/images/ID gives the
#     bytes sent, /v1/items/ID/similar 200 (it is in the index);
#   - every delete answered 200 is gone: item, image and similar 404;
#   - nothing else changed and nothing is half-present: the accepted items
#     are exactly those known before plus the acknowledged adds, plus adds
#     in flight at the kill (at most 8, each whole: item, image and index
#     entry), minus deletes acknowledged or in flight; the index holds as
#     many live items as the catalogue accepted ones;
#   - searches answered 200 until the kill;
#   - `imgsim index check` and SQLite `PRAGMA integrity_check` pass.
# A clean SIGTERM restart at the end must keep everything as it was.
# env: IMS_RESTART_ROUNDS (default 5; 2 under a sanitizer), IMS_RESTART_BURST
# (default 500; 100 under a sanitizer), IMS_RESTART_SEED (default: random,
# printed). Skips (77) without the models, sample photos, jq, curl or sqlite3
# unless IMS_REQUIRE_ASSETS=1. Last line: "N passed, M failed".
set -euo pipefail
cli=${IMS_CLI:?}
src=${IMS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
food=${IMS_DATA_DIR:-$src/data}/food
model=${IMS_MODELS_DIR:-$src/models}/mobilenet_v2.ism
skip() { echo "skip: $*"; [ "${IMS_REQUIRE_ASSETS:-0}" = 1 ] && exit 1; exit 77; }
[ -r "$model" ] || skip "no $model (scripts/fetch-models)"
[ -d "$food" ] || skip "no sample photos ($food)"
for t in jq curl sqlite3; do command -v $t >/dev/null || skip "no $t"; done
san=0
ldd "$cli" 2>/dev/null | grep -qE 'lib[at]san' && san=1
rounds=${IMS_RESTART_ROUNDS:-$([ $san = 1 ] && echo 2 || echo 5)}
burst=${IMS_RESTART_BURST:-$([ $san = 1 ] && echo 100 || echo 500)}
seed=${IMS_RESTART_SEED:-$(( $(date +%s%N) % 100000 ))}
par=8
RANDOM=$seed
echo "rounds $rounds, burst $burst adds, seed $seed (IMS_RESTART_SEED to repeat)"

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
# photos to add (made distinct per request): none of them in the collection
pool=()
for g in "Poultry" "Cereals and Millets" "Grain Legumes" "Condiments and Spices"; do
  [ -d "$food/$g" ] && distinct "$g" 8
done
adds=("${pool[@]}")
[ "${#adds[@]}" -ge 16 ] || skip "fewer than 16 distinct photos to add"
# where a JPEG comment goes in each: after SOI and a leading APP0 (JFIF)
at=()
for f in "${adds[@]}"; do
  read -r b2 b3 b4 b5 < <(od -An -tu1 -j2 -N4 "$f")
  if [ "$b2" = 255 ] && [ "$b3" = 224 ]; then at+=($((4 + b4 * 256 + b5))); else at+=(2); fi
done
# variant SRC_INDEX DST TEXT: the photo with a comment segment TEXT
variant() {
  local s=${adds[$1]} o=${at[$1]} n
  printf -v n '%02x' $((${#3} + 2))
  { head -c "$o" "$s"; printf "\\xff\\xfe\\x00\\x$n%s" "$3"; tail -c +$((o + 1)) "$s"; } >"$2"
}

start() { # the server on the collection: sets pid, url
  : >"$tmp/out"
  IMGSIM_API_KEY=$key "$cli" serve -c "$coll" --listen 127.0.0.1:0 --threads 12 --quiet \
    >"$tmp/out" 2>>"$tmp/log" &
  pid=$!
  for _ in $(seq 300); do grep -q 'http://' "$tmp/out" && break; sleep 0.05; done
  url=$(grep -m1 -o 'http://127\.0\.0\.1:[0-9]*' "$tmp/out" || true)
  [ -n "$url" ] || { cat "$tmp/log"; echo "FAIL: serve did not start"; n_fail=$((n_fail + 1)); finish; }
  [ "${url##*:}" -gt 0 ] || { echo "FAIL: port ${url##*:}"; n_fail=$((n_fail + 1)); finish; }
}
code() { curl -s -o "$tmp/body" -w '%{http_code}' "$@" || true; }

# search loops on their own connections until $tmp/stop exists; one HTTP code
# a line into $tmp/s.W (the request cut by a SIGKILL answers 000)
searchers() {
  rm -f "$tmp/stop" "$tmp"/s.*
  spids=()
  local w
  for w in 1 2; do
    ( s=${seed_photos[$((w * 7 % ${#seed_photos[@]}))]}
      while [ ! -e "$tmp/stop" ]; do
        curl -s -o /dev/null -w '%{http_code}\n' -H 'Content-Type: image/jpeg' \
          --data-binary @"$s" "$url/v1/search?k=5" || true
        curl -s -o /dev/null -w '%{http_code}\n' "$url/v1/items/${keep[$w]}/similar?k=5" || true
      done >>"$tmp/s.$w" ) &
    spids+=($!)
  done
}
# all codes 200, except 000s (no connection) after the last 200
searches_ok() {
  local f
  for f in "$tmp"/s.*; do
    awk '{ c[NR] = $0 } END { n = NR; while (n > 0 && c[n] == "000") n--
      for (i = 1; i <= n; i++) if (c[i] != "200") exit 1 }' "$f" || return 1
  done
  [ "$(cat "$tmp"/s.* | grep -c '^200$' || true)" -gt 2 ]
}
# the catalogue's accepted items, "id sha256" a line, sorted by id
accepted() {
  sqlite3 -readonly "$coll/catalog.sqlite" \
    'SELECT id, sha256 FROM items WHERE status = 0 ORDER BY id' | tr '|' ' '
}
db_ok() { [ "$(sqlite3 -readonly "$coll/catalog.sqlite" 'PRAGMA integrity_check')" = ok ]; }
index_ok() { "$cli" index check "$coll/index.hnsw" >"$tmp/check.out" 2>&1; }

start
echo "serving on $url"
mapfile -t seed_photos < <(find "$tmp/photos" -name '*.jpeg' | sort)
check "healthz" [ "$(code "$url/healthz")" = 200 ]
check "30 items" [ "$(jq .items "$tmp/body")" = 30 ]
# the expected world: id -> sha256 of every accepted item; id -> file for ours
declare -A live file
while read -r id sha; do live[$id]=$sha; done < <(accepted)
check "30 accepted in the catalogue" [ "${#live[@]}" = 30 ]
mapfile -t keep < <(printf '%s\n' "${!live[@]}" | sort -n | head -n 3)
n_kill_adds=0 n_kill_dels=0 n_inflight=0

for r in $(seq 1 "$rounds"); do
  d=$tmp/r$r
  mkdir -p "$d"
  # the burst: BURST adds, and after every fifth a delete of an item that
  # landed before this round (not one of the three the searchers use)
  mapfile -t cand < <(printf '%s\n' "${!live[@]}" | sort -n | tail -n +4 | shuf --random-source=<(yes "$seed$r"))
  declare -A sha_req=() req_sha=()
  : >"$d/curl.cfg"
  nd=0
  for i in $(seq 1 "$burst"); do
    variant $((i % ${#adds[@]})) "$d/a$i.jpeg" "imgsim restart test $seed round $r add $i"
    printf 'next\nurl = "%s/v1/items"\nheader = "Authorization: Bearer %s"\nform = "image=@%s;type=image/jpeg"\nform = "category=Added"\noutput = "%s"\nwrite-out = "add %s %%{http_code}\\n"\n' \
      "$url" "$key" "$d/a$i.jpeg" "$d/a$i.json" "$i" >>"$d/curl.cfg"
    if [ $((i % 5)) = 0 ] && [ "$nd" -lt "${#cand[@]}" ]; then
      printf 'next\nurl = "%s/v1/items/%s"\nrequest = "DELETE"\nheader = "Authorization: Bearer %s"\noutput = "/dev/null"\nwrite-out = "del %s %%{http_code}\\n"\n' \
        "$url" "${cand[$nd]}" "$key" "${cand[$nd]}" >>"$d/curl.cfg"
      nd=$((nd + 1))
    fi
  done
  sed -i '1d' "$d/curl.cfg" # no "next" before the first request
  while read -r h f; do
    f=${f#a}; f=${f%.jpeg}
    sha_req[$h]=$f req_sha[$f]=$h
  done < <(cd "$d" && sha256sum a*.jpeg)

  # run it; SIGKILL once TARGET adds are answered (random, 5%..95% of BURST)
  target=$((burst / 20 + RANDOM % (burst * 9 / 10)))
  searchers
  curl -s --parallel --parallel-max "$par" --parallel-immediate -K "$d/curl.cfg" >"$d/acks" 2>/dev/null &
  cpid=$!
  for _ in $(seq 6000); do
    [ "$(grep -l '"id"' "$d"/a*.json 2>/dev/null | wc -l)" -ge "$target" ] && break
    kill -0 "$cpid" 2>/dev/null || break
    sleep 0.02
  done
  sleep "0.0$((RANDOM % 10))"
  touch "$tmp/stop"
  kill -9 "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  wait "$cpid" || true
  wait "${spids[@]}" || true
  check "round $r: every search 200 until the kill" searches_ok
  mapfile -t ack_add < <(awk '$1 == "add" && $3 == 201 { print $2 }' "$d/acks")
  mapfile -t ack_del < <(awk '$1 == "del" && $3 == 200 { print $2 }' "$d/acks")
  mapfile -t bad < <(awk '$3 != 201 && $3 != 200 && $3 != "000"' "$d/acks")
  n_kill_adds=$((n_kill_adds + ${#ack_add[@]}))
  n_kill_dels=$((n_kill_dels + ${#ack_del[@]}))
  echo "round $r: SIGKILL after $(awk '$3 != "000"' "$d/acks" | wc -l) answers (target $target adds): ${#ack_add[@]} adds, ${#ack_del[@]} deletes acknowledged"
  check "round $r: no answer but 201, 200 or none (${bad[*]:-})" [ "${#bad[@]}" = 0 ]
  check "round $r: killed mid-burst" [ "${#ack_add[@]}" -ge $((burst / 20)) -a "${#ack_add[@]}" -lt "$burst" ]
  check "round $r: index check after SIGKILL" index_ok
  check "round $r: PRAGMA integrity_check after SIGKILL" db_ok

  start
  check "round $r: restart: healthz" [ "$(code "$url/healthz")" = 200 ]
  n_index=$(jq .items "$tmp/body")
  declare -A now=() want_id=()
  while read -r id sha; do now[$id]=$sha; done < <(accepted)
  for i in "${ack_add[@]}"; do want_id[$i]=$(jq -r .id "$d/a$i.json"); done
  # acknowledged adds: accepted, with their image's hash
  lost=0
  for i in "${ack_add[@]}"; do
    id=${want_id[$i]}
    [ "${now[$id]:-}" = "${req_sha[$i]}" ] || { lost=$((lost + 1)); echo "  add $i (item $id) missing"; }
  done
  check "round $r: all ${#ack_add[@]} acknowledged adds in the catalogue" [ "$lost" = 0 ]
  # acknowledged deletes: not accepted
  back=0
  for id in "${ack_del[@]}"; do [ -z "${now[$id]:-}" ] || { back=$((back + 1)); echo "  delete $id undone"; }; done
  check "round $r: all ${#ack_del[@]} acknowledged deletes gone from the catalogue" [ "$back" = 0 ]
  # everything else: items known before stay unless a delete of this round
  # was sent for them; new items are this round's adds (acknowledged, or in
  # flight at the kill)
  vanished=0 extra=0 inflight=0
  sent_del=" $(awk '$1 == "del" { printf "%s ", $2 }' "$d/acks")"
  for id in "${!live[@]}"; do
    [ -n "${now[$id]:-}" ] && continue
    [[ "$sent_del" == *" $id "* ]] || { vanished=$((vanished + 1)); echo "  item $id vanished"; }
  done
  new=()
  for id in "${!now[@]}"; do
    [ -n "${live[$id]:-}" ] && continue
    new+=("$id")
    i=${sha_req[${now[$id]}]:-}
    if [ -z "$i" ]; then extra=$((extra + 1)); echo "  item $id is no request of this round"
    elif [ "${want_id[$i]:-}" != "$id" ]; then inflight=$((inflight + 1)); file[$id]=$d/a$i.jpeg
    else file[$id]=$d/a$i.jpeg; fi
  done
  n_inflight=$((n_inflight + inflight))
  check "round $r: no item lost" [ "$vanished" = 0 ]
  check "round $r: no item from nowhere" [ "$extra" = 0 ]
  check "round $r: at most $par unacknowledged adds landed ($inflight)" [ "$inflight" -le "$par" ]
  check "round $r: the index holds the catalogue's ${#now[@]} items ($n_index)" [ "$n_index" = "${#now[@]}" ]
  # over HTTP: each new item whole (item, image bytes, similar), each item
  # gone this round gone whole (404 x 3)
  : >"$d/v.cfg"
  gone=()
  for id in "${!live[@]}"; do [ -z "${now[$id]:-}" ] && gone+=("$id"); done
  for id in "${new[@]}"; do
    printf 'next\nurl = "%s/v1/items/%s"\noutput = "/dev/null"\nwrite-out = "item %s %%{http_code}\\n"\n' "$url" "$id" "$id"
    printf 'next\nurl = "%s/v1/images/%s"\noutput = "%s/img%s"\nwrite-out = "image %s %%{http_code}\\n"\n' "$url" "$id" "$d" "$id" "$id"
    printf 'next\nurl = "%s/v1/items/%s/similar?k=3"\noutput = "/dev/null"\nwrite-out = "similar %s %%{http_code}\\n"\n' "$url" "$id" "$id"
  done >>"$d/v.cfg"
  for id in "${gone[@]}"; do
    for p in "items/$id" "images/$id" "items/$id/similar?k=3"; do
      printf 'next\nurl = "%s/v1/%s"\noutput = "/dev/null"\nwrite-out = "gone %s %%{http_code}\\n"\n' "$url" "$p" "$id"
    done
  done >>"$d/v.cfg"
  sed -i '1d' "$d/v.cfg"
  curl -s --parallel --parallel-max "$par" -K "$d/v.cfg" >"$d/v.out" 2>/dev/null || true
  check "round $r: ${#new[@]} new items whole over HTTP (item, image, similar 200)" \
    [ "$(awk '$1 != "gone" && $3 == 200' "$d/v.out" | wc -l)" = $((3 * ${#new[@]})) ]
  check "round $r: ${#gone[@]} items gone whole over HTTP (404 x 3)" \
    [ "$(awk '$1 == "gone" && $3 == 404' "$d/v.out" | wc -l)" = $((3 * ${#gone[@]})) ]
  badimg=0
  for id in "${new[@]}"; do cmp -s "$d/img$id" "${file[$id]}" || badimg=$((badimg + 1)); done
  check "round $r: new items' image bytes as sent" [ "$badimg" = 0 ]
  # the world from now on
  unset live; declare -A live
  for id in "${!now[@]}"; do live[$id]=${now[$id]}; done
  unset now want_id sha_req req_sha
  rm -f "$d"/*.jpeg "$d"/img*
done

echo "$rounds SIGKILLs: $n_kill_adds adds and $n_kill_dels deletes acknowledged, $n_inflight unacknowledged adds landed whole"
check "writes work after the crashes" \
  [ "$(code "${auth[@]}" -F "image=@${adds[0]};type=image/jpeg" -F category=Added "$url/v1/items")" = 201 ]
id=$(jq -r .id "$tmp/body")
live[$id]=$(sha256sum <"${adds[0]}" | cut -d' ' -f1)
# clean restart: SIGTERM exits 0, everything as it was
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
pid=
check "SIGTERM exits 0" [ "$rc" = 0 ]
check "index check after SIGTERM" index_ok
check "PRAGMA integrity_check after SIGTERM" db_ok
start
check "restart after SIGTERM: healthz" [ "$(code "$url/healthz")" = 200 ]
check "restart after SIGTERM: the index holds ${#live[@]} items" [ "$(jq .items "$tmp/body")" = "${#live[@]}" ]
check "restart after SIGTERM: the same accepted items" \
  [ "$(accepted)" = "$(for id in "${!live[@]}"; do echo "$id ${live[$id]}"; done | sort -n)" ]
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
pid=
check "second SIGTERM exits 0" [ "$rc" = 0 ]
check "index check at the end" index_ok
finish
