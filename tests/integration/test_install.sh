#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `cmake --install` of this build into a temporary DESTDIR + prefix, then the
# installed files used as a user would, from an unrelated directory:
#   - bin/imgsim, share/man/man1/imgsim.1, share/imgsim/{fetch-models,tfjs-unwrap.js}
#     are there; the man page renders without a warning (groff -ww, man --warnings);
#   - imgsim --version names version, revision and kernel level;
#   - the installed fetch-models writes the models to --dest DIR (from the
#     cached npm tarball, so no network; skipped if that tarball is absent)
#     and they equal the source tree's;
#   - the installed imgsim builds a small collection (3 groups of sample photos,
#     mobilenet_v2 --no-finetune), serves it on 127.0.0.1:0, answers
#     POST /v1/search with 200 and results, and exits 0 on SIGTERM.
# Needs the models and sample photos: skips (77) without them unless
# IMS_REQUIRE_ASSETS=1.
set -euo pipefail
src=${IMS_SOURCE_DIR:?}
build=$(dirname "${IMS_CLI:?}")
models=${IMS_MODELS_DIR:-$src/models}
food=${IMS_DATA_DIR:-$src/data}/food
skip() { echo "skip: $*"; [ "${IMS_REQUIRE_ASSETS:-0}" = 1 ] && exit 1; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
[ -f "$models/mobilenet_v2.ism" ] || skip "no $models/mobilenet_v2.ism (scripts/fetch-models)"
[ -d "$food" ] || skip "no sample photos ($food)"
command -v curl >/dev/null || skip "no curl"

tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
prefix=/opt/imgsim-test
DESTDIR=$tmp/dest cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" \
  || { cat "$tmp/install.log"; fail "cmake --install"; }
root=$tmp/dest$prefix
for f in bin/imgsim share/man/man1/imgsim.1 share/imgsim/fetch-models share/imgsim/tfjs-unwrap.js; do
  [ -f "$root/$f" ] || fail "not installed: $prefix/$f"
done
[ -x "$root/bin/imgsim" ] && [ -x "$root/share/imgsim/fetch-models" ] || fail "not executable"
[ -z "$(find "$tmp/dest" -path "$tmp/dest$prefix" -prune -o -type f -print)" ] \
  || fail "files installed outside the prefix"
imgsim=$root/bin/imgsim
mkdir "$tmp/elsewhere"
cd "$tmp/elsewhere" # nothing of the source or build tree is reachable from here

# ---- man page ----------------------------------------------------------------
page=$root/share/man/man1/imgsim.1
if command -v groff >/dev/null; then
  warn=$(groff -man -z -ww "$page" 2>&1) || fail "groff: $warn"
  [ -z "$warn" ] || fail "groff warnings: $warn"
else
  echo "note: no groff, man page not checked with groff"
fi
if command -v man >/dev/null; then
  warn=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null) || fail "man: $warn"
  [ -z "$warn" ] || fail "man warnings: $warn"
fi
"$imgsim" --help | awk '/^commands:/{on=1;next} on&&NF==0{exit} on{print $1}' >"$tmp/cmds"
[ -s "$tmp/cmds" ] || fail "no commands in imgsim --help"
while read -r c; do
  grep -q "^\.SS \"imgsim $(sed 's/-/\\\\-/g' <<<"$c")[ \"]" "$page" || fail "man page lacks command '$c'"
done <"$tmp/cmds"

# ---- --version -----------------------------------------------------------------
ver=$("$imgsim" --version)
echo "$ver"
grep -Eq '^imgsim [0-9]+\.[0-9]+\.[0-9]+$' <<<"$ver" || fail "--version: no version line"
grep -Eq '^revision: [0-9A-Za-z._-]+$' <<<"$ver" || fail "--version: no revision"
grep -Eq '^kernels: (ref|avx2|avx512)$' <<<"$ver" || fail "--version: no kernel level"

# ---- installed fetch-models ------------------------------------------------------
fm=$root/share/imgsim/fetch-models
"$fm" --help >/dev/null || fail "fetch-models --help"
rc=0; "$fm" >/dev/null 2>&1 || rc=$?
[ $rc = 2 ] || fail "installed fetch-models without --dest: exit $rc, want 2"
tgz=$src/.cache/npm/nsfwjs-4.3.0.tgz
if [ -f "$tgz" ]; then
  IMS_NSFWJS_TGZ=$tgz "$fm" --dest "$tmp/models" 2>"$tmp/fm.log" || { cat "$tmp/fm.log"; fail "fetch-models --dest"; }
  for m in mobilenet_v2 inception_v3 mobilenet_v2_mid; do
    cmp -s "$tmp/models/$m.ism" "$models/$m.ism" || fail "fetch-models --dest: $m.ism differs from $models/$m.ism"
  done
  echo "fetch-models --dest: 3 models, same bytes as $models"
else
  echo "note: no $tgz, installed fetch-models not run"
fi

# ---- build + serve with the installed binary -------------------------------------
for g in A B C; do
  mkdir -p "$tmp/photos/$g"
  find "$food" -name "$g*.jpeg" | sort | head -4 | xargs -r -d '\n' cp -t "$tmp/photos/$g"
done
[ "$(find "$tmp/photos" -name '*.jpeg' | wc -l)" -ge 9 ] || skip "too few photos of groups A, B, C"
"$imgsim" build -c coll "$tmp/photos" --model "$models/mobilenet_v2.ism" --no-finetune \
  >"$tmp/build.log" 2>&1 || { tail -20 "$tmp/build.log"; fail "installed imgsim build"; }
"$imgsim" serve -c coll --listen 127.0.0.1:0 --quiet >"$tmp/out" 2>"$tmp/log" &
pid=$!
for _ in $(seq 600); do grep -q 'http://' "$tmp/out" && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
url=$(grep -o 'http://[^ ]*' "$tmp/out" | head -1)
[ -n "$url" ] || { cat "$tmp/log"; fail "serve did not print its URL"; }
port=$(sed -E 's|^http://[^:/]+:([0-9]+)/?.*|\1|' <<<"$url")
[ "$port" -gt 0 ] 2>/dev/null || fail "no port in '$url'"
q=$(find "$tmp/photos/B" -name '*.jpeg' | head -1)
code=$(curl -s -o "$tmp/search.json" -w '%{http_code}' -H 'Content-Type: image/jpeg' \
            --data-binary @"$q" "http://127.0.0.1:$port/v1/search?k=3")
[ "$code" = 200 ] || fail "POST /v1/search: $code $(cat "$tmp/search.json")"
node -e 'const r=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));
  if(!Array.isArray(r.results)||r.results.length<1||typeof r.results[0].score!=="number")
    {console.error("bad search answer",JSON.stringify(r));process.exit(1)}
  console.log("search: "+r.results.length+" results, top "+r.results[0].category+" "+r.results[0].score.toFixed(3))' \
  "$tmp/search.json" || fail "POST /v1/search: answer"
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
pid=
[ $rc = 0 ] || { cat "$tmp/log"; fail "serve exit status $rc after SIGTERM"; }
echo "ok: installed imgsim works from $prefix"
