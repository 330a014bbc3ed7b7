#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# test_readme.sh — the README's command blocks, run as written (a README
# whose commands rot is a bug). The "Your own photos" and "HTTP API" blocks
# are extracted from README.md and executed line by line in a scratch
# directory prepared with what they name (photos/ with category folders,
# products.csv, photo.jpg, new.jpg, coll); `imgsim` is the built binary and
# servers run in the background until the block is done. Each line must
# exit 0 (curl with --fail-with-body). The "Commands" block is a synopsis;
# the two top commands are scripts/demo (which ends in a server) and
# scripts/test (which runs this test); the install command is run by
# test_install.sh.
set -euo pipefail
: "${IMS_CLI:?}" "${IMS_SOURCE_DIR:?}" "${IMS_MODELS_DIR:?}" "${IMS_DATA_DIR:?}"
food=$IMS_DATA_DIR/food
if [ ! -f "$IMS_MODELS_DIR/mobilenet_v2.ism" ] || [ ! -d "$food" ]; then
  echo "test_readme: models or sample photos missing" >&2
  [ "${IMS_REQUIRE_ASSETS:-}" = 1 ] && exit 1 || exit 77
fi
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! port_free 8080; then
  echo "test_readme: port 8080 is taken; the README's commands use it" >&2
  exit 77
fi
T=$(mktemp -d /tmp/ims-readme-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT
mkdir -p "$T/bin"
ln -s "$IMS_CLI" "$T/bin/imgsim"
export PATH="$T/bin:$PATH"
export IMGSIM_MODEL=$IMS_MODELS_DIR/mobilenet_v2.ism # fast backbone for the test
cd "$T"

# what the blocks name
mkdir -p photos/shoes photos/bags
first() { local n=$1; shift; printf '%s\n' "${@:1:n}"; } # the first N of the arguments, no SIGPIPE
first 6 "$food/Fruits"/*.jpeg | xargs -I{} cp {} photos/shoes/
first 6 "$food/Marine Fish"/*.jpeg | xargs -I{} cp {} photos/bags/
{
  echo 'sku,image,name'
  for f in photos/*/*; do b=$(basename "$f"); echo "${b%.*},$b,\"Product ${b%.*}, sample\""; done
} > products.csv
cp "$(first 1 "$food/Fruits"/*.jpeg)" photo.jpg
cp "$(first 1 "$food/Poultry"/*.jpeg)" new.jpg
# coll: two groups, byte-identical copies left out so that item 42 exists
mkdir -p collphotos
for g in Fruits "Marine Fish"; do
  mkdir -p "collphotos/$g"
  for f in "$food/$g"/*.jpeg; do
    h=$(sha256sum "$f" | cut -c1-64)
    [ -e "seen-$h" ] && continue
    : > "seen-$h"
    cp "$f" "collphotos/$g/"
  done
done
rm -f seen-*
imgsim build -c coll collphotos --model "$IMS_MODELS_DIR/mobilenet_v2.ism" --no-finetune \
  --metadata "$food/metadata.csv" --id-column code 2>/dev/null

# README block after a "## <title>" heading: the first ```sh fence's lines
block() {
  awk -v t="$1" '
    $0 ~ "^## " t { s = 1; next }
    s == 1 && /^```sh/ { s = 2; next }
    s == 2 && /^```/ { exit }
    s == 2 { print }' "$IMS_SOURCE_DIR/README.md"
}

# Run one block: continuation lines joined, comments stripped; a line that
# starts a server runs in the background until /healthz answers.
run_block() {
  local title=$1 line cmd n=0
  local joined
  joined=$(block "$title" | sed -e ':a' -e '/\\$/N; s/\\\n//; ta')
  [ -n "$joined" ] || { echo "FAIL: README has no sh block under '$title'"; return 1; }
  while IFS= read -r line; do
    cmd=${line%%#*}
    cmd=$(echo "$cmd" | sed 's/[[:space:]]*$//')
    [ -z "$cmd" ] && continue
    case "$cmd" in
      photos/* | "  "*) continue ;; # the folder-layout sketch
    esac
    n=$((n + 1))
    cmd=${cmd//curl /curl -sS --fail-with-body -o \/dev\/null }
    if [[ "$cmd" == *"imgsim serve"* ]]; then
      for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
      pids=()
      bash -c "$cmd" >"$T/serve.log" 2>&1 &
      pids+=($!)
      for _ in $(seq 1 300); do
        curl -sf -o /dev/null http://127.0.0.1:8080/healthz && break
        sleep 0.1
      done
      curl -sf -o /dev/null http://127.0.0.1:8080/healthz ||
        { echo "FAIL ($title): server did not start: $cmd"; cat "$T/serve.log"; return 1; }
      echo "ok ($title): $cmd"
      continue
    fi
    if bash -c "$cmd" >"$T/out.txt" 2>&1; then
      echo "ok ($title): $cmd"
    else
      echo "FAIL ($title): $cmd"
      cat "$T/out.txt"
      return 1
    fi
  done <<<"$joined"
  echo "$title: $n commands ran"
}

run_block "Your own photos"
run_block "HTTP API"
echo "2 passed, 0 failed"
