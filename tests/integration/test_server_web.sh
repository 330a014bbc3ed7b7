#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The web page in real headless Chromium (tests/web/webpage.cjs): upload a
# sample photo, k results with loaded images, click one for its similar
# items, category filter, a text file and garbage bytes refused with the
# server's message, a phone-sized viewport. Screenshots go to
# <build dir>/webpage.png and webpage-phone.png.
#
# Server: `imgsim serve -c $IMS_TEST_COLLECTION` when that is set (a built
# collection), else test_server_api --serve (the sample photos through the
# in-memory fake collection: same HTTP layer, fake similarity).
# Needs chromium + playwright-core (scripts/install-browser-test) and the
# sample photos; skips (77) without them unless IMS_REQUIRE_ASSETS=1.
set -euo pipefail
src=${IMS_SOURCE_DIR:?}
bin=$(dirname "${IMS_CLI:?}")
food=${IMS_DATA_DIR:-$src/data}/food
skip() { echo "skip: $*"; [ "${IMS_REQUIRE_ASSETS:-0}" = 1 ] && exit 1; exit 77; }
command -v chromium >/dev/null || skip "no chromium (scripts/install-browser-test)"
[ -d "$src/.cache/node/node_modules/playwright-core" ] || skip "no playwright-core (scripts/install-browser-test)"
[ -d "$food" ] || skip "no sample photos ($food)"
mapfile -t photos < <(find "$food" -name '*.jpeg' | sort | head -40)
[ ${#photos[@]} -ge 2 ] || skip "too few sample photos"

tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
if [ -n "${IMS_TEST_COLLECTION:-}" ]; then
  "$IMS_CLI" serve -c "$IMS_TEST_COLLECTION" --listen 127.0.0.1:0 >"$tmp/out" 2>"$tmp/log" &
else
  IMGSIM_LISTEN=127.0.0.1:0 "$bin/test_server_api" --serve "$food" >"$tmp/out" 2>"$tmp/log" &
fi
pid=$!
for _ in $(seq 600); do grep -q 'http://' "$tmp/out" && break; sleep 0.1; done
url=$(grep -o 'http://[^ ]*' "$tmp/out" | head -1)
[ -n "$url" ] || { cat "$tmp/log"; echo "server did not start"; exit 1; }
echo "server: $(head -1 "$tmp/out")"
rc=0
IMS_NODE_PREFIX="$src/.cache/node" timeout 120 node "$src/tests/web/webpage.cjs" "$url" \
  "${photos[0]}" "${photos[${#photos[@]}-1]}" "$bin" || rc=$?
kill -TERM "$pid"; wait "$pid" || { echo "server exit status $?"; rc=1; }
pid=
echo "screenshots: $bin/webpage.png $bin/webpage-phone.png"
exit $rc
