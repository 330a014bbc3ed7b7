#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `imgsim serve` on a real collection (sample photos, mobilenet_v2, no
# finetune), on 127.0.0.1 with an ephemeral port, driven with curl: every
# route, the error codes with real images (415 text, 422 garbage and a
# decompression bomb, 413, 401 with IMGSIM_API_KEY, 409 duplicate),
# IMGSIM_API_KEY_READS / IMGSIM_MAX_QUEUE and the limit options,
# searches while adding and deleting, and SIGTERM with uploads in flight
# (all answered, exit 0). Skips (77) without the models or sample photos
# unless IMS_REQUIRE_ASSETS=1.
set -euo pipefail
cli=${IMS_CLI:?}
src=${IMS_SOURCE_DIR:?}
food=${IMS_DATA_DIR:-$src/data}/food
model=${IMS_MODELS_DIR:-$src/models}/mobilenet_v2.ism
skip() { echo "skip: $*"; [ "${IMS_REQUIRE_ASSETS:-0}" = 1 ] && exit 1; exit 77; }
[ -r "$model" ] || skip "no $model (scripts/fetch-models)"
[ -d "$food" ] || skip "no sample photos ($food)"
command -v jq >/dev/null || skip "no jq"

tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fail=0
check() { # check WHAT CONDITION...
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fail=1; fi
}
jqe() { jq -e "$@" "$tmp/body" >/dev/null; } # jqe FILTER [jq args]: true if FILTER holds on the last body

# jpegs DIR N: the first N photos of DIR, sorted, into the array `got`
# (no `| head` under pipefail: an early-closed pipe would fail the test)
jpegs() { mapfile -t got < <(find "$1" -name '*.jpeg' | sort); got=("${got[@]:0:$2}"); }
# a small collection: 10 photos of each of 4 groups
for g in "Fruits" "Marine Fish" "Animal Meat" "Other Vegetables"; do
  mkdir -p "$tmp/photos/$g"
  jpegs "$food/$g" 10
  cp "${got[@]}" "$tmp/photos/$g/"
done
coll=$tmp/coll
"$cli" build -c "$coll" "$tmp/photos" --model "$model" --no-finetune --threads 2 >"$tmp/build.log" 2>&1 ||
  { cat "$tmp/build.log"; echo "FAIL: build"; exit 1; }

start() { # start [ENV=VALUE...] -- [serve options]: sets pid, url
  : >"$tmp/out"
  env "$@" >"$tmp/out" 2>>"$tmp/log" &
  pid=$!
  for _ in $(seq 300); do grep -q 'http://' "$tmp/out" && break; sleep 0.1; done
  url=$(grep -m1 -o 'http://[^ ]*' "$tmp/out")
  [ -n "$url" ] || { cat "$tmp/log"; echo "FAIL: serve did not start"; exit 1; }
  url=${url%/}
}
stop() { kill -TERM "$pid"; local rc=0; wait "$pid" || rc=$?; pid=; return $rc; }
code() { curl -s -o "$tmp/body" -w '%{http_code}' "$@"; }
errcode() { jq -r .error.code "$tmp/body"; }

start IMGSIM_API_KEY=k3y IMGSIM_COLLECTION="$coll" "$cli" serve --listen 127.0.0.1:0 \
  --max-body 1000000 --threads 4
echo "serving on $url"
jpegs "$tmp/photos/Fruits" 1; photo=${got[0]}
jpegs "$food/Poultry" 1; other=${got[0]}

check "healthz" [ "$(code "$url/healthz")" = 200 ]
n_items=$(jq .items "$tmp/body")
check "healthz items (40 photos less exact duplicates)" [ "$n_items" -gt 30 -a "$n_items" -le 40 ]
check "page" [ "$(code "$url/")" = 200 ]
check "categories" [ "$(code "$url/v1/categories")" = 200 ]
check "4 categories, counts add up" jqe "[.categories[].count] | length == 4 and add == $n_items"

# search with the item's own image: itself first, score ~1, self_id set
check "search raw" [ "$(code -H 'Content-Type: image/jpeg' --data-binary @"$photo" "$url/v1/search?k=5")" = 200 ]
self=$(jq .self_id "$tmp/body")
check "self_id found" [ "$self" -gt 0 ]
check "itself first" [ "$(jq .results[0].id "$tmp/body")" = "$self" ]
check "score ~1" jqe '.results[0].score > 0.999'
check "5 results" [ "$(jq '.results | length' "$tmp/body")" = 5 ]
check "result fields" jqe '.results[0] | has("id") and has("score") and has("name") and has("category") and has("product_id") and has("metadata") and has("image_url")'
check "image_url is an id" [ "$(jq -r .results[0].image_url "$tmp/body")" = "/v1/images/$self" ]
check "search multipart + category" [ "$(code -F "image=@$photo;type=image/jpeg" "$url/v1/search?k=3&category=Marine%20Fish")" = 200 ]
check "only Marine Fish" [ "$(jq -c '[.results[].category] | unique' "$tmp/body")" = '["Marine Fish"]' ]
check "similar" [ "$(code "$url/v1/items/$self/similar?k=4")" = 200 ]
check "similar excludes itself" jqe "[.results[].id] | length == 4 and (index($self) == null)"
check "item" [ "$(code "$url/v1/items/$self")" = 200 ]
check "item category" [ "$(jq -r .category "$tmp/body")" = Fruits ]
curl -s -D "$tmp/hdr" -o "$tmp/img" "$url/v1/images/$self"
check "image bytes identical" cmp -s "$tmp/img" "$photo"
check "image/jpeg" grep -qi '^Content-Type: image/jpeg' "$tmp/hdr"

# errors, with real images
check "415 text" [ "$(code -H 'Content-Type: text/plain' --data-binary 'hello' "$url/v1/search")" = 415 ]
check "415 code" [ "$(errcode)" = unsupported_media_type ]
printf 'some notes\n' >"$tmp/notes.txt"
check "415 text file as the image part" [ "$(code -F "image=@$tmp/notes.txt" "$url/v1/search")" = 415 ]
check "422 garbage" [ "$(code -H 'Content-Type: image/jpeg' --data-binary 'not a jpeg at all' "$url/v1/search")" = 422 ]
# a 1-bit 40000x40000 PNG: 200 KB on the wire, 1.6 G pixels decoded
python3 - "$tmp/bomb.png" <<'EOF'
import struct, sys, zlib
w = h = 40000
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
raw = zlib.compress(b"".join(b"\0" + b"\0" * (w // 8) for _ in range(h)), 9)
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)) + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
EOF
check "422 decompression bomb" [ "$(code -H 'Content-Type: image/png' --data-binary @"$tmp/bomb.png" "$url/v1/search")" = 422 ]
head -c 1200000 /dev/zero >"$tmp/big"
check "413 body over --max-body" [ "$(code -H 'Content-Type: image/jpeg' --data-binary @"$tmp/big" "$url/v1/search")" = 413 ]
check "400 k=0" [ "$(code "$url/v1/items/$self/similar?k=0")" = 400 ]
check "400 k=1001" [ "$(code "$url/v1/items/$self/similar?k=1001")" = 400 ]
check "400 id" [ "$(code "$url/v1/items/abc")" = 400 ]
check "404 item" [ "$(code "$url/v1/items/99999")" = 404 ]
check "404 route" [ "$(code "$url/v2/nothing")" = 404 ]
check "405 + Allow" [ "$(curl -s -o /dev/null -D - -X PUT "$url/v1/search" | grep -ci '^Allow: POST')" = 1 ]

# writes need the key
check "401 add without key" [ "$(code -F "image=@$other" "$url/v1/items")" = 401 ]
check "401 wrong key" [ "$(code -H 'Authorization: Bearer nope' -F "image=@$other" "$url/v1/items")" = 401 ]
check "201 add" [ "$(code -H 'Authorization: Bearer k3y' -F "image=@$other;type=image/jpeg" \
  -F 'metadata={"price":12,"name":"hen"}' -F category=Poultry -F name=hen "$url/v1/items")" = 201 ]
new=$(jq .id "$tmp/body")
check "added item" jqe '.category == "Poultry" and .name == "hen" and .metadata.price == 12'
check "409 duplicate" [ "$(code -H 'Authorization: Bearer k3y' -F "image=@$other" "$url/v1/items")" = 409 ]
# plain `curl --data-binary @photo` (form-urlencoded content type) works too
check "new item finds itself" [ "$(code --data-binary @"$other" "$url/v1/search?k=1")" = 200 ]
check "... first" [ "$(jq .results[0].id "$tmp/body")" = "$new" ]
check "Poultry category now" [ "$(code "$url/v1/categories")" = 200 ]
check "... listed" jqe '[.categories[] | select(.name == "Poultry" and .count == 1)] | length == 1'
check "401 delete without key" [ "$(code -X DELETE "$url/v1/items/$new")" = 401 ]
check "delete" [ "$(code -H 'Authorization: Bearer k3y' -X DELETE "$url/v1/items/$new")" = 200 ]
check "404 after delete" [ "$(code "$url/v1/items/$new")" = 404 ]
check "key never logged" bash -c "! grep -q k3y '$tmp/log' '$tmp/out'"

# searches and similar-by-id while adding and deleting
mapfile -t ids < <(curl -s "$url/v1/items/$self/similar?k=20" | jq -r '.results[].id')
for w in 1 2 3 4; do
  ( for i in $(seq 15); do
      id=${ids[$(( (w * 7 + i) % ${#ids[@]} ))]}
      curl -s -o /dev/null -w '%{http_code}\n' "$url/v1/items/$id/similar?k=5"
      curl -s -o /dev/null -w '%{http_code}\n' --data-binary @"$photo" "$url/v1/search?k=5"
    done >"$tmp/load.$w" ) &
done
jpegs "$food/Sugars" 12
n_writes=${#got[@]}
( for f in "${got[@]}"; do
    r=$(curl -s -H 'Authorization: Bearer k3y' -F "image=@$f" "$url/v1/items")
    id=$(echo "$r" | jq -r '.id // .error.id')
    curl -s -o /dev/null -w '%{http_code}\n' -H 'Authorization: Bearer k3y' -X DELETE "$url/v1/items/$id"
  done >"$tmp/load.w" ) &
wait $(jobs -p | grep -v "^$pid\$") 2>/dev/null || true
sleep 0.2
n_ok=$(cat "$tmp"/load.* | grep -c '^200$' || true)
n_bad=$(cat "$tmp"/load.* | grep -vc '^200$' || true)
echo "concurrent: $n_ok answers 200, $n_bad other"
check "concurrent requests all 200" [ "$n_bad" = 0 -a "$n_ok" = $((120 + n_writes)) ]

# metrics after all that
check "metrics" [ "$(code "$url/metrics")" = 200 ]
check "metrics: search 200 counted" grep -q '^imgsim_http_requests_total{route="/v1/search",status="200"} ' "$tmp/body"
check "metrics: 422 counted" grep -q '^imgsim_http_requests_total{route="/v1/search",status="422"} 2$' "$tmp/body"
check "metrics: histogram" grep -q '^imgsim_http_request_duration_seconds_bucket{route="/v1/items/{id}/similar",le="+Inf"}' "$tmp/body"
check "metrics: encodes" grep -Eq '^imgsim_encodes_total [1-9]' "$tmp/body"
check "metrics: index size" grep -q "^imgsim_index_items $n_items\$" "$tmp/body"
check "metrics: index read into memory by default" grep -q '^imgsim_index_mapped 0$' "$tmp/body"
check "one log line per request" grep -Eq '^GET /v1/items/[0-9]+/similar 200 [0-9.]+ms$' "$tmp/log"

# SIGTERM with uploads in flight (sent slowly, so they are mid-request)
for i in 1 2 3; do
  curl -s -o "$tmp/slow.$i" -w '%{http_code}' --limit-rate 8k -H 'Content-Type: image/jpeg' \
    --data-binary @"$photo" "$url/v1/search?k=3" >"$tmp/slow.$i.code" &
done
sleep 0.7
t0=$(date +%s.%N)
rc=0; stop || rc=$?
wait
check "SIGTERM: exit 0" [ "$rc" = 0 ]
check "SIGTERM: in-flight uploads answered 200" [ "$(cat "$tmp"/slow.*.code | tr -d '\n')" = 200200200 ]
check "SIGTERM: their results" bash -c "jq -e '.results | length == 3' '$tmp/slow.1' >/dev/null"
check "SIGTERM: no longer listening" [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/healthz" || true)" = 000 ]
echo "SIGTERM drained in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s"

# settings from options and --readonly
start "$cli" serve -c "$coll" --listen 127.0.0.1:0 --readonly --quiet --map-index
check "readonly: add refused" [ "$(code -F "image=@$other" "$url/v1/items")" = 403 ]
code "$url/metrics" >/dev/null
check "--map-index: the index is mapped" grep -q '^imgsim_index_mapped 1$' "$tmp/body"
check "--map-index: searches answer" \
  [ "$(code -H 'Content-Type: image/jpeg' --data-binary @"$photo" "$url/v1/search?k=2")" = 200 ]
kill -INT "$pid"; rc=0; wait "$pid" || rc=$?; pid=
check "SIGINT exits 0" [ "$rc" = 0 ]
# reads behind the key too (env), and the new limits from the environment
start IMGSIM_API_KEY=k3y IMGSIM_API_KEY_READS=1 IMGSIM_MAX_QUEUE=2 "$cli" serve -c "$coll" \
  --listen 127.0.0.1:0 --quiet --max-connections 64 --timeout 5
check "reads locked: the banner says so" grep -q 'every route but /healthz needs the API key' "$tmp/out"
check "reads locked: healthz open" [ "$(code "$url/healthz")" = 200 ]
check "reads locked: categories 401" [ "$(code "$url/v1/categories")" = 401 ]
check "reads locked: page 401" [ "$(code "$url/")" = 401 ]
check "reads locked: categories with the key" [ "$(code -H 'Authorization: Bearer k3y' "$url/v1/categories")" = 200 ]
check "reads locked: search with the key" \
  [ "$(code -H 'Authorization: Bearer k3y' -H 'Content-Type: image/jpeg' --data-binary @"$photo" "$url/v1/search?k=2")" = 200 ]
code -H 'Authorization: Bearer k3y' "$url/metrics" >/dev/null
check "metrics: --max-connections" grep -q '^imgsim_http_connections_max 64$' "$tmp/body"
stop
check "usage error exits 2" bash -c "'$cli' serve >/dev/null 2>&1; [ \$? = 2 ]"
check "--max-queue 0 exits 2" bash -c "'$cli' serve -c '$coll' --max-queue 0 >/dev/null 2>&1; [ \$? = 2 ]"
check "IMGSIM_MAX_QUEUE=x exits 2" bash -c "IMGSIM_MAX_QUEUE=x '$cli' serve -c '$coll' >/dev/null 2>&1; [ \$? = 2 ]"
check "--api-key-reads without a key exits 2" \
  bash -c "env -u IMGSIM_API_KEY '$cli' serve -c '$coll' --api-key-reads >/dev/null 2>&1; [ \$? = 2 ]"
check "--timeout 0 exits 2" bash -c "'$cli' serve -c '$coll' --timeout 0 >/dev/null 2>&1; [ \$? = 2 ]"
check "bad listen exits 1" bash -c "'$cli' serve -c '$coll' --listen nowhere >/dev/null 2>&1; [ \$? = 1 ]"
exit $fail
