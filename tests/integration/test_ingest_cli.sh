#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# test_ingest_cli.sh — `imgsim ingest` end to end on a copy of some sample
# photos (two groups) + a CSV: the --json summary, a re-run, a malformed
# CSV (exit 1, the line named, nothing imported), usage errors, --help.
set -u
CLI=${IMS_CLI:?IMS_CLI not set}
FOOD=${IMS_DATA_DIR:-data}/food
if [ ! -f "$FOOD/metadata.csv" ]; then
    if [ "${IMS_REQUIRE_ASSETS:-0}" = 1 ]; then echo "missing $FOOD"; exit 1; fi
    echo "skipped: no sample data in $FOOD"; exit 77
fi
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
json_is() { # json_is DESC KEY VALUE  (on $T/out)
    local got
    got=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); v=d
for k in sys.argv[2].split("."): v=v[k]
print(v)' "$T/out" "$2" 2>&1)
    if [ "$got" != "$3" ]; then echo "FAIL: $1: $2 = $got, want $3"; cat "$T/out"; fail=1; fi
}

# two groups, in folders named like the originals; a CSV of their rows
mkdir -p "$T/src"
n=0
for g in "$FOOD"/*/; do
    name=$(basename "$g")
    mkdir -p "$T/src/$name"
    cp "$g"/*.jpeg "$T/src/$name/"
    n=$((n + 1)); [ $n = 2 ] && break
done
first=$(ls "$T/src/$name/"*.jpeg | head -1)
head -c 6000 "$first" >"$T/src/$name/broken.jpeg"  # a truncated JPEG
python3 - "$T" "$FOOD/metadata.csv" <<'PY'
import csv, os, sys, hashlib
t, src_csv = sys.argv[1], sys.argv[2]
stems = {}
for root, _, files in os.walk(t + "/src"):
    for f in files:
        stems[os.path.splitext(f)[0]] = os.path.join(root, f)
rows = list(csv.reader(open(src_csv, newline="", encoding="utf-8-sig")))
keep = [r for r in rows[1:] if r[0] in stems]
with open(t + "/meta.csv", "w", newline="") as f:
    w = csv.writer(f)  # csv module: CRLF line ends, quotes where needed
    w.writerow(rows[0]); w.writerows(keep); w.writerow(["ZZ99", "Ghost, \"not\" here", "", "x"])
# expected: unique contents among the decodable photos
seen = set(); uniq = 0; total = 0
for s, p in stems.items():
    if s == "broken": continue
    total += 1
    h = hashlib.sha256(open(p, "rb").read()).hexdigest()
    if h not in seen: seen.add(h); uniq += 1
open(t + "/expect", "w").write("%d %d %d %d\n" % (total, uniq, total - uniq, len(keep)))
PY
read -r TOTAL UNIQ DUPS ROWS <"$T/expect"

expect 0 "ingest --json" "$CLI" ingest -c "$T/coll" "$T/src" --metadata "$T/meta.csv" \
    --id-column code --json
json_is "first run" scanned $((TOTAL + 1))
json_is "first run" accepted "$UNIQ"
json_is "first run" duplicates "$DUPS"
json_is "first run" rejected 1
json_is "first run" rejected_by_reason.truncated 1
json_is "first run" csv_rows $((ROWS + 1))
json_is "first run" rows_without_image 1
json_is "first run" images_without_row 0
json_is "first run" total_accepted "$UNIQ"
grep -q "broken.jpeg: rejected: truncated" "$T/err" || { echo "FAIL: no reject line"; cat "$T/err"; fail=1; }
grep -q "ZZ99: row_without_image" "$T/err" || { echo "FAIL: no row line"; cat "$T/err"; fail=1; }
[ -f "$T/coll/catalog.sqlite" ] || { echo "FAIL: no catalog.sqlite"; fail=1; }
[ "$(find "$T/coll/images" -type f | wc -l)" = "$UNIQ" ] || { echo "FAIL: stored images"; fail=1; }

expect 0 "re-run" "$CLI" ingest -c "$T/coll" "$T/src" --metadata "$T/meta.csv" --id-column code --json --quiet
json_is "re-run" unchanged $((TOTAL + 1))
json_is "re-run" accepted 0
[ -s "$T/err" ] && { echo "FAIL: --quiet printed"; cat "$T/err"; fail=1; }

rm "$T/src/$name/broken.jpeg"
expect 0 "text summary" "$CLI" ingest -c "$T/coll" "$T/src"
grep -q "1 vanished" "$T/out" || { echo "FAIL: text summary"; cat "$T/out"; fail=1; }
grep -q "catalogue: $UNIQ accepted items" "$T/out" || { echo "FAIL: text total"; cat "$T/out"; fail=1; }

# a malformed CSV: exit 1, one line naming the file and line, nothing imported
printf 'code,name\nA1,ok\nA2,"open\n' >"$T/bad.csv"
expect 1 "bad CSV" "$CLI" ingest -c "$T/fresh" "$T/src" --metadata "$T/bad.csv" --id-column code
grep -q "bad.csv: line 3: unterminated" "$T/err" || { echo "FAIL: bad CSV message"; cat "$T/err"; fail=1; }
[ "$(wc -l <"$T/err")" = 1 ] || { echo "FAIL: more than one line"; cat "$T/err"; fail=1; }
cnt=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from items").fetchone()[0])' "$T/fresh/catalog.sqlite")
[ "$cnt" = 0 ] || { echo "FAIL: bad CSV imported $cnt items"; fail=1; }
expect 1 "missing column" "$CLI" ingest -c "$T/coll" "$T/src" --metadata "$T/meta.csv" --id-column nope
grep -q "no column 'nope'" "$T/err" || { echo "FAIL: missing column message"; cat "$T/err"; fail=1; }
expect 1 "missing DIR" "$CLI" ingest -c "$T/coll" "$T/nodir"
printf 'not sqlite at all' >"$T/other.sqlite"; mkdir -p "$T/junk"; cp "$T/other.sqlite" "$T/junk/catalog.sqlite"
expect 1 "foreign catalogue file" "$CLI" ingest -c "$T/junk" "$T/src"
grep -q "not an SQLite database" "$T/err" || { echo "FAIL: foreign message"; cat "$T/err"; fail=1; }

expect 2 "no -c" "$CLI" ingest "$T/src"
expect 2 "no DIR" "$CLI" ingest -c "$T/coll"
expect 2 "bad option" "$CLI" ingest -c "$T/coll" "$T/src" --frobnicate
expect 2 "column without CSV" "$CLI" ingest -c "$T/coll" "$T/src" --id-column code
expect 2 "CSV without column" "$CLI" ingest -c "$T/coll" "$T/src" --metadata "$T/meta.csv"
expect 2 "bad --max-pixels" "$CLI" ingest -c "$T/coll" "$T/src" --max-pixels 12x
expect 0 "--help" "$CLI" ingest --help
grep -q "usage: imgsim ingest" "$T/out" || { echo "FAIL: help text"; fail=1; }
exit $fail
