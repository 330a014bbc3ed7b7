#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `imgsim model` and `imgsim embed` from the outside: exit codes, messages,
# output formats, and embed's probabilities against the TF.js oracle fixture.
# The error-handling part needs no assets; the rest needs models/*.ism
# (scripts/fetch-models) and data/food (scripts/fetch-sample-data), and skips
# (77) without them unless IMS_REQUIRE_ASSETS=1.
set -uo pipefail
CLI=${IMS_CLI:?run via ctest (IMS_CLI)}
SRC=${IMS_SOURCE_DIR:?}
MODELS=${IMS_MODELS_DIR:-$SRC/models}
DATA=${IMS_DATA_DIR:-$SRC/data}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
n=0

# expect CODE PATTERN -- CMD...: exit status CODE and stderr matching PATTERN
expect() {
  local want=$1 pat=$2
  shift 3
  n=$((n + 1))
  "$@" > "$T/out" 2> "$T/err"
  local got=$?
  if [ "$got" != "$want" ] || { [ -n "$pat" ] && ! grep -Eq -- "$pat" "$T/err"; }; then
    echo "FAIL: $* -> exit $got (want $want), stderr: $(head -c 400 "$T/err")" >&2
    fails=$((fails + 1))
  fi
}
ok() { # ok DESCRIPTION COMMAND...: the command must succeed
  local what=$1
  shift
  n=$((n + 1))
  if ! "$@"; then
    echo "FAIL: $what" >&2
    fails=$((fails + 1))
  fi
}

# ---- no assets needed ----------------------------------------------------------
expect 0 '' -- "$CLI" model --help
expect 0 '' -- "$CLI" model import --help
expect 0 '' -- "$CLI" model info --help
expect 0 '' -- "$CLI" embed --help
expect 2 'unknown subcommand' -- "$CLI" model frobnicate
expect 2 'no model file' -- "$CLI" model info
expect 2 'unknown option' -- "$CLI" model info --bogus x.ism
expect 2 'no output file' -- "$CLI" model import x.json
expect 2 'no --model' -- "$CLI" embed a.jpeg
expect 2 'no images' -- "$CLI" embed --model m.ism
expect 2 'exclude each other' -- "$CLI" embed --model m.ism --json --fvecs o.fvecs a.jpeg
expect 2 'needs a value' -- "$CLI" embed --model
expect 1 'cannot open' -- "$CLI" model info "$T/missing.ism"
printf 'hello, not a model\n' > "$T/text.ism"
expect 1 'not an imgsim model file' -- "$CLI" model info "$T/text.ism"
: > "$T/empty.ism"
expect 1 'empty.ism: not an imgsim model file' -- "$CLI" model info "$T/empty.ism"

# an unsupported layer is an error naming the layer and the option
mkdir -p "$T/tiny"
cat > "$T/tiny/model.json" <<'EOF'
{"modelTopology":{"class_name":"Model","config":{"name":"tiny","layers":[
 {"name":"in","class_name":"InputLayer","config":{"batch_input_shape":[null,4,4,3]},"inbound_nodes":[]},
 {"name":"leaky","class_name":"ReLU","config":{"negative_slope":0.2},"inbound_nodes":[[["in",0,0,{}]]]}],
 "input_layers":[["in",0,0]],"output_layers":[["leaky",0,0]]}},
 "weightsManifest":[]}
EOF
expect 1 "layer 'leaky' \(ReLU\): option 'negative_slope'" -- "$CLI" model import "$T/tiny/model.json" -o "$T/tiny.ism"
ok "no output file after a failed import" test ! -e "$T/tiny.ism"

# ---- with the fetched models and photos ------------------------------------------
skip() {
  if [ "${IMS_REQUIRE_ASSETS:-0}" = 1 ]; then
    echo "missing required asset: $1" >&2
    exit 1
  fi
  echo "skipped (after $n asset-free checks, $fails failed): $1" >&2
  [ "$fails" = 0 ] && exit 77
  exit 1
}
M=$MODELS/mobilenet_v2.ism
[ -f "$M" ] && [ -f "$MODELS/mobilenet_v2_mid.ism" ] || skip "models/*.ism (scripts/fetch-models)"
A=$(ls "$DATA"/food/*/A001.jpeg 2>/dev/null | head -n 1)
B=$(ls "$DATA"/food/*/B001.jpeg 2>/dev/null | head -n 1)
[ -n "$A" ] && [ -n "$B" ] || skip "data/food (scripts/fetch-sample-data)"
command -v node >/dev/null || skip "node (to check JSON output)"

expect 0 '' -- "$CLI" model info "$M"
ok "model info names the default tap" grep -q 'default tap: flatten_1 (dim 1280)' "$T/out"
ok "model info lists folded names" grep -q 'block_10_project .*block_10_project_BN' "$T/out"
expect 0 '' -- "$CLI" model info --json "$M"
ok "model info --json" node -e '
  const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  if (j.model !== "mobilenet_v2" || j.default_tap !== "flatten_1" || j.default_dim !== 1280 ||
      j.input.width !== 224 || j.classes.join() !== "Drawing,Hentai,Neutral,Porn,Sexy" ||
      !j.layers.some((l) => l.name === "block_13_expand_relu" && l.shape.join() === "14,14,576"))
    process.exit(1);' "$T/out"

# golden `model info` tables (layers, shapes, params, FLOPs, folded names): regenerate
# with `imgsim model info models/M.ism > tests/golden/oracle/M.info.out` on purpose only
for m in mobilenet_v2 inception_v3 mobilenet_v2_mid; do
  [ -f "$MODELS/$m.ism" ] || continue
  "$CLI" model info "$MODELS/$m.ism" > "$T/$m.info" 2>&1
  ok "model info $m matches tests/golden/oracle/$m.info.out" \
    diff -u "$SRC/tests/golden/oracle/$m.info.out" "$T/$m.info"
done

# corrupt model files: truncated, a flipped byte, a newer version
head -c 100000 "$M" > "$T/trunc.ism"
expect 1 'trunc.ism: model file truncated' -- "$CLI" model info "$T/trunc.ism"
cp "$M" "$T/flip.ism"
printf '\x5a' | dd of="$T/flip.ism" bs=1 seek=5000 conv=notrunc status=none
expect 1 'flip.ism: corrupt model file at offset [0-9]+: checksum mismatch' -- "$CLI" model info "$T/flip.ism"
cp "$M" "$T/newer.ism"
printf '\x09' | dd of="$T/newer.ism" bs=1 seek=12 conv=notrunc status=none
expect 1 'newer.ism: model file format v[0-9]* needs a reader of v9' -- "$CLI" model info "$T/newer.ism"

# embed: JSON lines against the oracle fixture
expect 0 '' -- "$CLI" embed --model "$M" --classify --json "$A" "$B"
ok "embed --json --classify matches the oracle" node -e '
  const fs = require("fs");
  const lines = fs.readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
  const fx = new Map(fs.readFileSync(process.argv[2], "utf8").trim().split("\n").map(JSON.parse).map((r) => [r.code, r]));
  if (lines.length !== 2) process.exit(1);
  for (const l of lines) {
    const code = l.file.replace(/^.*\//, "").replace(/\.jpeg$/, "");
    const r = fx.get(code);
    if (l.model !== "mobilenet_v2" || l.layer !== "flatten_1" || l.dim !== 1280 || l.vector.length !== 1280) process.exit(2);
    if (l.probs.length !== 5 || l.probs.some((p, i) => Math.abs(p - r.probs[i]) > 1e-3)) process.exit(3);
    const v = r.taps.find((t) => t.layer === "flatten_1").v;
    let s = 0, a = 0, b = 0;
    v.forEach((x, i) => { s += x * l.vector[i]; a += x * x; b += l.vector[i] ** 2; });
    if (s / Math.sqrt(a * b) < 0.9999) process.exit(4);
  }' "$T/out" "$SRC/tests/golden/oracle/mobilenet_v2.jsonl"

expect 0 '' -- "$CLI" embed --model "$M" --layer block_10_project_BN --layer block_13_expand_relu --normalize "$A"
ok "two taps concatenate, --normalize" node -e '
  const l = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const n = Math.sqrt(l.vector.reduce((a, x) => a + x * x, 0));
  if (l.layer !== "block_10_project_BN,block_13_expand_relu" || l.dim !== 672 ||
      l.vector.length !== 672 || Math.abs(n - 1) > 1e-5 || "probs" in l) process.exit(1);' "$T/out"

expect 0 '' -- "$CLI" embed --model "$MODELS/mobilenet_v2_mid.ism" --batch 1 --threads 1 "$A"
ok "mobilenet_v2_mid default tap" grep -q '"dim":1792' "$T/out"

expect 1 "--layer no_such_layer: no layer named 'no_such_layer'" -- "$CLI" embed --model "$M" --layer no_such_layer "$A"
expect 1 "layer 'block_10_project' was folded into 'block_10_project_BN'.*tap 'block_10_project_BN' instead" -- "$CLI" embed --model "$M" --layer block_10_project "$A"
expect 1 'trunc.ism: model file truncated' -- "$CLI" embed --model "$T/trunc.ism" "$A"

# a bad image among good ones: reported, the others still written, exit 1
printf 'not a jpeg' > "$T/bad.jpeg"
expect 1 "bad.jpeg: " -- "$CLI" embed --model "$M" "$A" "$T/bad.jpeg" "$B"
ok "good images still written around a bad one" test "$(grep -c '"vector"' "$T/out")" = 2
ok "in input order" bash -c "head -n 1 '$T/out' | grep -q 'A001' && tail -n 1 '$T/out' | grep -q 'B001'"

# --fvecs: TEXMEX layout, input order, failed images left out
expect 1 "bad.jpeg: " -- "$CLI" embed --model "$M" --fvecs "$T/v.fvecs" "$A" "$T/bad.jpeg" "$B"
ok ".fvecs holds 2 x (4 + 1280*4) bytes" test "$(stat -c %s "$T/v.fvecs")" = $((2 * (4 + 1280 * 4)))
ok ".fvecs dim field" test "$(od -An -t d4 -N 4 "$T/v.fvecs" | tr -d ' ')" = 1280

# writing to a device or FIFO: in place, never a rename over it (a rename
# over /dev/null once turned it into a regular file on a test machine)
mkfifo "$T/fifo"
(cat "$T/fifo" > "$T/from-fifo") &
ok "--fvecs to a FIFO" "$CLI" embed --model "$M" --fvecs "$T/fifo" "$A"
wait
ok "the FIFO is still a FIFO" test -p "$T/fifo"
ok "the FIFO carried the vector" test "$(stat -c %s "$T/from-fifo")" = $((4 + 1280 * 4))
ok "--fvecs /dev/null" "$CLI" embed --model "$M" --fvecs /dev/null "$A"
ok "/dev/null is still a character device" test -c /dev/null

echo "$n checks, $fails failed"
[ "$fails" = 0 ]
