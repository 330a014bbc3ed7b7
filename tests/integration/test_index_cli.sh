#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# test_index_cli.sh — `imgsim bench-index` and `imgsim index check` end to
# end on a tiny generated set: output format, --save + check, corrupt and
# truncated files, malformed .fvecs/.ivecs, usage errors.
set -u
CLI=${IMS_CLI:?IMS_CLI not set}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
expect() { # expect CODE DESC CMD...
    local want=$1 desc=$2
    shift 2
    "$@" >"$T/out" 2>"$T/err"
    local got=$?
    if [ "$got" != "$want" ]; then
        echo "FAIL: $desc: exit $got, want $want"; cat "$T/out" "$T/err"; fail=1
    fi
}
python3 - "$T" <<'PY'
import random, struct, sys
d = sys.argv[1]; random.seed(5); D = 16
cent = [[random.uniform(-2, 2) for _ in range(D)] for _ in range(8)]
def vec():
    c = random.choice(cent); return [x + random.gauss(0, 0.4) for x in c]
base = [vec() for _ in range(1500)]; query = [vec() for _ in range(50)]
def w(path, rows, fmt):
    with open(path, "wb") as f:
        for r in rows: f.write(struct.pack("<i", len(r)) + struct.pack("<%d%s" % (len(r), fmt), *r))
w(d + "/b.fvecs", base, "f"); w(d + "/q.fvecs", query, "f")
truth = []
for q in query:
    ds = sorted(range(len(base)), key=lambda i: (sum((a - b) ** 2 for a, b in zip(q, base[i])), i))
    truth.append(ds[:10])
w(d + "/t.ivecs", truth, "i")
with open(d + "/bad.fvecs", "wb") as f: f.write(open(d + "/b.fvecs", "rb").read()[:-3])
with open(d + "/mixed.fvecs", "wb") as f:
    f.write(struct.pack("<i", 16) + b"\0" * 64 + struct.pack("<i", 15) + b"\0" * 64)
PY
expect 0 "bench-index" "$CLI" bench-index --base "$T/b.fvecs" --query "$T/q.fvecs" \
    --truth "$T/t.ivecs" --metric l2 --ef 10,40 --threads 2 --save "$T/i.hnsw"
grep -Eq '^ef=40 recall@10=(0\.9[5-9][0-9]*|1\.0+) qps=[0-9]+ dist_q=[1-9][0-9]*$' "$T/out" ||
    { echo "FAIL: bench-index output/recall"; cat "$T/out"; fail=1; }
grep -q '^index bytes: ' "$T/out" || { echo "FAIL: no index bytes line"; fail=1; }
expect 0 "index check" "$CLI" index check "$T/i.hnsw"
grep -q "ok (deep check)" "$T/out" || { echo "FAIL: check summary"; cat "$T/out"; fail=1; }
expect 0 "index check --json" "$CLI" index check --json "$T/i.hnsw"
grep -q '"items":1500' "$T/out" || { echo "FAIL: check json"; cat "$T/out"; fail=1; }
expect 0 "bench-index --load" "$CLI" bench-index --load "$T/i.hnsw" --query "$T/q.fvecs" \
    --truth "$T/t.ivecs" --ef 20
grep -q "(mapped)" "$T/out" || { echo "FAIL: --load does not say mapped"; cat "$T/out"; fail=1; }
cp "$T/out" "$T/out.mapped"
expect 0 "bench-index --load --read" "$CLI" bench-index --load "$T/i.hnsw" --read \
    --query "$T/q.fvecs" --truth "$T/t.ivecs" --ef 20 --cpu-qps
grep -q "(read into memory)" "$T/out" || { echo "FAIL: --read not used"; cat "$T/out"; fail=1; }
# the same index answers the same, read or mapped
[ "$(grep -o '^ef=20 recall@10=[0-9.]*' "$T/out")" = "$(grep -o '^ef=20 recall@10=[0-9.]*' "$T/out.mapped")" ] &&
    grep -Eq '^ef=20 recall@10=[0-9.]+ qps=[0-9]+ cpu_qps=[0-9]+ dist_q=[0-9]+$' "$T/out" ||
    { echo "FAIL: --read recall/format"; cat "$T/out" "$T/out.mapped"; fail=1; }
# corrupt a byte in the bulk: quick check passes (lazy), deep check fails
size=$(stat -c %s "$T/i.hnsw")
cp "$T/i.hnsw" "$T/c.hnsw"
printf '\x7f' | dd of="$T/c.hnsw" bs=1 seek=$((size - 100)) conv=notrunc status=none
expect 1 "deep check of a corrupt file" "$CLI" index check "$T/c.hnsw"
grep -q "checksum" "$T/err" || { echo "FAIL: no checksum message"; cat "$T/err"; fail=1; }
head -c 200 "$T/i.hnsw" >"$T/tr.hnsw"
expect 1 "truncated file" "$CLI" index check "$T/tr.hnsw"
grep -q "offset" "$T/err" || { echo "FAIL: truncation message lacks offset"; cat "$T/err"; fail=1; }
expect 1 "foreign file" "$CLI" index check "$T/b.fvecs"
expect 1 "truncated fvecs" "$CLI" bench-index --base "$T/bad.fvecs" --query "$T/q.fvecs" \
    --truth "$T/t.ivecs" --metric l2
grep -q "not a multiple" "$T/err" || { echo "FAIL: fvecs size message"; cat "$T/err"; fail=1; }
expect 1 "mixed dims" "$CLI" bench-index --base "$T/mixed.fvecs" --query "$T/q.fvecs" \
    --truth "$T/t.ivecs" --metric l2
expect 2 "no metric" "$CLI" bench-index --base "$T/b.fvecs" --query "$T/q.fvecs" --truth "$T/t.ivecs"
expect 2 "bad metric" "$CLI" bench-index --base "$T/b.fvecs" --query "$T/q.fvecs" \
    --truth "$T/t.ivecs" --metric hamming
expect 2 "index usage" "$CLI" index check
expect 1 "index -c not yet" "$CLI" index -c /tmp/none
expect 0 "help" "$CLI" bench-index --help
exit $fail
