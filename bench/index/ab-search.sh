#!/bin/sh
# SPDX-License-Identifier: MIT
# ab-search.sh DATASET ROUNDS NAME... — re-time the searches of indexes saved
# by `SAVE=1 run-all.sh` (bench/out/DATASET/NAME.hnsw or NAME.ims), no
# builds: each round runs every NAME's ef sweep once, one after another
# (A B A B ...), reniced to SEARCH_NICE (default -10). On a shared machine
# single runs of 1,000 queries swing by 2x; alternating rounds expose both
# systems to the same conditions. Ours also prints cpu_qps (queries per
# CPU-second of its thread), as the anchors do. Prints, per system and ef, the recall and
# the best and median QPS over the rounds (bench/index/summary.py reads the
# best-of file bench/out/DATASET/ab/NAME-best.txt like any other output).
#   e.g. bench/index/ab-search.sh sift-like 3 hnswlib-M16 ours-M16-f32
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
ds=${1:?usage: ab-search.sh DATASET ROUNDS NAME...}
rounds=${2:?rounds}
shift 2
data=bench/data/$ds
out=bench/out/$ds
ab=$out/ab
mkdir -p "$ab"
metric=$(sed -n 's/^metric=//p' "$data/meta.txt")
EF=${EF:-10,16,24,32,48,64,96,128,192,256,384,512}
IMGSIM=${IMGSIM:-build/release/imgsim}
[ -x "$IMGSIM" ] || IMGSIM=build/bench/imgsim
ANCHORS=${ANCHORS:-build/anchors}
SEARCH_NICE=${SEARCH_NICE:--10}
# OPEN=read (default): ours reads its file into memory (ims_hnsw_load), as
# hnswlib's loadIndex does; OPEN=mmap maps it (ims_hnsw_open, the old way)
OPEN=${OPEN:-read}
read=
[ "$OPEN" = read ] && read=--read
files="--base $data/base.fvecs --query $data/query.fvecs --truth $data/truth.ivecs --metric $metric"
r=1
while [ $r -le "$rounds" ]; do
    for name in "$@"; do
        f=$ab/$name-r$r.txt
        echo "# $name round $r; load before: $(uptime)" > "$f"
        if [ -f "$out/$name.hnsw" ]; then
            nice -n "$SEARCH_NICE" "$ANCHORS/anchor_hnswlib" --load "$out/$name.hnsw" $files --ef $EF >> "$f" 2>&1
        elif [ -f "$out/$name.ims" ]; then
            nice -n "$SEARCH_NICE" "$IMGSIM" bench-index --load "$out/$name.ims" $read $files --ef $EF --cpu-qps >> "$f" 2>&1
        else
            echo "ab-search: no saved index for $name in $out" >&2
            exit 1
        fi
        echo "# load after: $(uptime)" >> "$f"
        echo "$name round $r: $(grep -c '^ef=' "$f") points, $(tail -1 "$f")"
    done
    r=$((r + 1))
done
python3 - "$ab" "$rounds" "$@" <<'PY'
import re, statistics, sys
ab, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
pt = re.compile(r"ef=(\d+)\s+recall@10=([0-9.]+)\s+qps=([0-9.]+)(?:\s+cpu_qps=([0-9.]+))?")
for n in names:
    runs = {}
    for r in range(1, rounds + 1):
        for line in open(f"{ab}/{n}-r{r}.txt"):
            m = pt.search(line)
            if m:
                runs.setdefault(int(m.group(1)), []).append(
                    (float(m.group(2)), float(m.group(3)), float(m.group(4) or 0)))
    with open(f"{ab}/{n}-best.txt", "w") as f:
        f.write(f"# {n}: best of {rounds} alternating search-only rounds (ab-search.sh)\n")
        for ef, v in sorted(runs.items()):
            f.write(f"ef={ef} recall@10={v[0][0]:.4f} qps={max(x[1] for x in v):.1f}"
                    f" cpu_qps={max(x[2] for x in v):.1f}\n")
        f.write("# done\n")
    print(f"{n}: ef: recall best/median QPS [best CPU-time QPS]")
    print("  " + ", ".join(f"{ef}: {v[0][0]:.4f} {max(x[1] for x in v):.0f}/"
                           f"{statistics.median(x[1] for x in v):.0f} [{max(x[2] for x in v):.0f}]"
                           for ef, v in sorted(runs.items())))
PY
