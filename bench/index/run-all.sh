#!/bin/sh
# SPDX-License-Identifier: MIT
# run-all.sh DATASET — every anchor, then ours, on bench/data/DATASET/,
# one after another (never two at once), outputs in bench/out/DATASET/,
# then the summary table (bench/index/summary.py).
#
# DATASET is a directory written by bench_gen_vectors (base.fvecs,
# query.fvecs, truth.ivecs, meta.txt with the metric).
#
# Environment:
#   SYSTEMS  space-separated subset of: hnswlib-M16 hnswlib-M32 annoy
#            faiss-hnsw-M32 faiss-hnsw-M32-deb faiss-hnsw-M16 faiss-ivf
#            ours-M16-f32 ours-M16-int8 ours-M32-f32 ours-M32-int8
#            (default: all of them)
#   EF       ef / efSearch sweep (default 10,16,24,32,48,64,96,128,192,256,384,512)
#   SEARCH_K Annoy search_k sweep     NPROBE  FAISS IVF nprobe sweep
#   IMGSIM   our CLI (default build/release/imgsim, else build/bench/imgsim)
#   ANCHORS  anchor binaries (default build/anchors, see bench/anchors/build.sh)
#   THREADS  build threads (default 2)     SKIP_DONE=1  keep finished outputs
#   SAVE=1   keep hnswlib's and our indexes (bench/out/DATASET/*.hnsw|*.ims) so
#            that bench/index/ab-search.sh can re-time their searches
#            back to back; ours then reports the file size as index bytes
#   SEARCH_NICE  nice value given to the process once its index is built
#            (default -10; 0 = leave it). On a machine shared with other
#            people's builds this keeps the single-thread QPS measurement
#            from being time-sliced, while builds compete at normal priority.
#            Only the main thread is reniced: every harness and
#            `imgsim bench-index` search on it.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
ds=${1:?usage: run-all.sh DATASET}
data=bench/data/$ds
out=bench/out/$ds
[ -f "$data/meta.txt" ] || { echo "run-all: no $data/meta.txt (run bench_gen_vectors)" >&2; exit 1; }
metric=$(sed -n 's/^metric=//p' "$data/meta.txt")
EF=${EF:-10,16,24,32,48,64,96,128,192,256,384,512}
SEARCH_K=${SEARCH_K:-1000,2000,5000,10000,20000,50000,100000,200000}
NPROBE=${NPROBE:-1,2,4,8,16,32,64,128,256}
if [ -z "${IMGSIM:-}" ]; then
    IMGSIM=build/release/imgsim
    [ -x "$IMGSIM" ] || IMGSIM=build/bench/imgsim
fi
ANCHORS=${ANCHORS:-build/anchors}
THREADS=${THREADS:-2}
SEARCH_NICE=${SEARCH_NICE:--10}
SYSTEMS=${SYSTEMS:-hnswlib-M16 hnswlib-M32 annoy faiss-hnsw-M32 faiss-hnsw-M32-deb faiss-hnsw-M16 faiss-ivf ours-M16-f32 ours-M16-int8 ours-M32-f32 ours-M32-int8}
mkdir -p "$out"
files="--base $data/base.fvecs --query $data/query.fvecs --truth $data/truth.ivecs --metric $metric"
saved=$out/faiss-hnsw-M32.index

# run NAME CMD...: runs CMD with a header (time, load, command) into $out/NAME.txt
run() {
    name=$1
    shift
    f=$out/$name.txt
    if [ "${SKIP_DONE:-0}" = 1 ] && grep -q '^# done' "$f" 2>/dev/null; then
        echo "== $name: kept $f"
        return 0
    fi
    echo "== $name ($(date +%H:%M:%S), load$(uptime | sed 's/.*load average//'))"
    {
        echo "# system: $name  dataset: $ds  host: $(hostname)  $(date -u +%FT%TZ)"
        echo "# load before: $(uptime)"
        echo "# cmd: $*"
    } > "$f"
    # Line-buffered so the index-size line shows up as soon as it is printed;
    # then (build threads done) the searching main thread is reniced.
    stdbuf -oL "$@" >> "$f" 2>&1 &
    pid=$!
    if [ "$SEARCH_NICE" != 0 ]; then
        while kill -0 $pid 2>/dev/null; do
            if grep -qiE '^index[_ ]bytes' "$f"; then
                renice -n "$SEARCH_NICE" -p $pid > /dev/null 2>&1 &&
                    echo "# search phase reniced to $SEARCH_NICE; load then: $(uptime)" >> "$f"
                break
            fi
            sleep 0.2
        done
    fi
    if wait $pid; then status=0; else status=$?; fi
    echo "# load after: $(uptime)" >> "$f"
    [ $status = 0 ] && echo "# done" >> "$f" || echo "# failed: exit $status" >> "$f"
    grep -E '^(build|index|ef=)' "$f" | sed 's/^/   /' || true
}

for s in $SYSTEMS; do
    case $s in
    hnswlib-M*) m=${s#hnswlib-M}
        run $s "$ANCHORS/anchor_hnswlib" $files --M $m --ef-construction 200 --threads $THREADS --ef $EF \
            $([ "${SAVE:-0}" = 1 ] && echo "--save $out/$s.hnsw") ;;
    annoy) run $s "$ANCHORS/anchor_annoy" $files --trees 100 --threads $THREADS --ef $SEARCH_K ;;
    faiss-hnsw-M32) run $s "$ANCHORS/anchor_faiss_avx2" --index hnsw $files --M 32 --ef-construction 200 \
        --threads $THREADS --ef $EF --save "$saved" ;;
    faiss-hnsw-M32-deb)
        if [ -f "$saved" ]; then
            run $s "$ANCHORS/anchor_faiss" --load "$saved" $files --threads $THREADS --ef $EF
        else
            echo "== $s: skipped (needs faiss-hnsw-M32 first)"
        fi ;;
    faiss-hnsw-M16) run $s "$ANCHORS/anchor_faiss_avx2" --index hnsw $files --M 16 --ef-construction 200 \
        --threads $THREADS --ef $EF ;;
    faiss-ivf) run $s "$ANCHORS/anchor_faiss_avx2" --index ivf $files --threads $THREADS --ef $NPROBE ;;
    ours-M*-*)
        m=${s#ours-M}; storage=${m#*-}; m=${m%%-*}
        if [ -x "$IMGSIM" ]; then
            run $s "$IMGSIM" bench-index $files --M "$m" --ef-construction 200 --threads $THREADS \
                --storage "$storage" --ef $EF --cpu-qps $([ "${SAVE:-0}" = 1 ] && echo "--save $out/$s.ims")
        else
            echo "== $s: skipped ($IMGSIM not built)"
        fi ;;
    *) echo "run-all: unknown system $s" >&2; exit 2 ;;
    esac
done
rm -f "$saved"
python3 bench/index/summary.py "$out" | tee "$out/summary.md"
