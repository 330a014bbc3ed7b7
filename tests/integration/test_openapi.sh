#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# docs/openapi.yaml against a real `imgsim serve` (tests/integration/
# openapi_check.cjs): every route of the server is documented and every
# documented route, method, status and response shape is what the server
# does. The server serves a 12-photo collection (3 food groups, mobilenet_v2,
# --no-finetune) with IMGSIM_API_KEY set.
#
# The YAML is read with python3's yaml module when there is one, else with
# the npm package yaml (pinned), installed once under $IMS_NODE_PREFIX
# (default .cache/node, like playwright-core). Needs the models and sample
# photos: skips (77) without them unless IMS_REQUIRE_ASSETS=1.
set -euo pipefail
src=${IMS_SOURCE_DIR:?}
cli=${IMS_CLI:?}
models=${IMS_MODELS_DIR:-$src/models}
food=${IMS_DATA_DIR:-$src/data}/food
YAML_NPM=yaml@2.6.1
skip() { echo "skip: $*"; [ "${IMS_REQUIRE_ASSETS:-0}" = 1 ] && exit 1; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
[ -f "$models/mobilenet_v2.ism" ] || skip "no $models/mobilenet_v2.ism (scripts/fetch-models)"
[ -d "$food" ] || skip "no sample photos ($food)"
command -v node >/dev/null || skip "no node"

tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

# ---- the spec as JSON ------------------------------------------------------------
if python3 -c 'import yaml' 2>/dev/null; then
  python3 -c 'import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), open(sys.argv[2], "w"))' \
    "$src/docs/openapi.yaml" "$tmp/spec.json" || fail "docs/openapi.yaml does not parse"
else
  prefix=${IMS_NODE_PREFIX:-$src/.cache/node}
  if ! NODE_PATH=$prefix/node_modules node -e 'require("yaml")' 2>/dev/null; then
    npm install --silent --no-audit --no-fund --prefix "$prefix" "$YAML_NPM" >/dev/null 2>&1 \
      || skip "neither python3-yaml nor npm $YAML_NPM"
  fi
  NODE_PATH=$prefix/node_modules node -e '
    const fs = require("fs"), YAML = require("yaml");
    fs.writeFileSync(process.argv[2], JSON.stringify(YAML.parse(fs.readFileSync(process.argv[1], "utf8"))));' \
    "$src/docs/openapi.yaml" "$tmp/spec.json" || fail "docs/openapi.yaml does not parse"
fi
node -e 'const s=JSON.parse(require("fs").readFileSync(process.argv[1]));
  if (!/^3\.1\./.test(s.openapi) || !s.paths) { console.error("not OpenAPI 3.1"); process.exit(1) }' \
  "$tmp/spec.json" || fail "docs/openapi.yaml is not OpenAPI 3.1"

# ---- a small collection and its server -----------------------------------------------
for g in A B C; do
  mkdir -p "$tmp/photos/$g"
  find "$food" -name "$g*.jpeg" | sort | head -4 | xargs -r -d '\n' cp -t "$tmp/photos/$g"
done
[ "$(find "$tmp/photos" -name '*.jpeg' | wc -l)" -ge 9 ] || skip "too few photos of groups A, B, C"
"$cli" build -c "$tmp/coll" "$tmp/photos" --model "$models/mobilenet_v2.ism" --no-finetune \
  >"$tmp/build.log" 2>&1 || { tail -20 "$tmp/build.log"; fail "imgsim build"; }
in_coll=$(find "$tmp/photos/B" -name '*.jpeg' | sort | head -1)
fresh=$(find "$food" -name 'D*.jpeg' | sort | tail -1)
[ -n "$fresh" ] || skip "no photo of group D"
key=openapi-test-key
IMGSIM_API_KEY=$key "$cli" serve -c "$tmp/coll" --listen 127.0.0.1:0 --quiet >"$tmp/out" 2>"$tmp/log" &
pid=$!
for _ in $(seq 600); do grep -q 'http://' "$tmp/out" && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
url=$(grep -o 'http://[^ ]*' "$tmp/out" | head -1)
[ -n "$url" ] || { cat "$tmp/log"; fail "serve did not start"; }

rc=0
timeout 300 node "$src/tests/integration/openapi_check.cjs" "$tmp/spec.json" "$src" "$url" "$key" \
  "$in_coll" "$fresh" || rc=$?
kill -TERM "$pid"
wait "$pid" || { cat "$tmp/log"; echo "serve exit status $?"; rc=1; }
pid=
exit $rc
