#!/usr/bin/env bash
# Collection pipeline benchmark (issue 7), run by hand:
#   bench/collection/run.sh [MODEL...]      default: all three backbones
# For each backbone, on the food sample (data/food, 463 distinct photos):
#   - encoder batch speed (bench_encode, batch 16, all threads)
#   - imgsim build from nothing: wall time and peak RSS, against the time to
#     encode every image once at that batch speed (goal: build <= 1.3x)
#   - embed-all images/s on images without cached features (--no-finetune
#     build, so every vector comes from a decode + backbone pass), against
#     the encoder's own batch speed (goal >= 90%): embed% against
#     bench_encode's full model, taps% against the same session embed-all
#     runs (the collection's taps, nothing after them: bench_encode --child
#     ... TAPS; needs the sqlite3 tool to read them, else nan) — the figure
#     that says how much of the decoding is hidden
# Then embed-all peak RSS at 500 and 5,000 images (bench_variants photos,
# mobilenet_v2): memory must be flat in the number of images.
# Prints the CPU model first: compare only runs made side by side.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-build/release}
IMGSIM=$B/imgsim
OUT=${OUT:-bench/out/collection}
mkdir -p "$OUT"
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(mobilenet_v2_mid mobilenet_v2 inception_v3)
lscpu | sed -n 's/^Model name: *//p'
threads=$(nproc)
timed() { # LABEL CMD...: wall seconds and peak RSS of CMD
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$OUT/time.txt" "$@" >"$OUT/$label.out" 2>"$OUT/$label.err"
  read -r wall rss < "$OUT/time.txt"
  echo "$wall $((rss / 1024))"
}
printf '%-18s %10s %10s %10s %8s %10s %10s %8s %10s %8s\n' model enc_img/s encode1x_s build_s ratio build_MB embed_img/s embed% taps_img/s taps%
"$B/bench_encode" --models models --runs 3 --batch 16 --threads "$threads" > "$OUT/encode.txt" 2>/dev/null
for m in "${models[@]}"; do
  enc=$(awk -v m="$m" '$1 == m && $2 == 16 {print $4; exit}' "$OUT/encode.txt")
  [ -z "$enc" ] && enc=nan
  rm -rf "$OUT/c-$m" "$OUT/r-$m"
  read -r bwall brss < <(timed "build-$m" "$IMGSIM" build -c "$OUT/c-$m" data/food \
      --model "models/$m.ism" --metadata data/food/metadata.csv --id-column code)
  read -r rwall rrss < <(timed "raw-$m" "$IMGSIM" build -c "$OUT/r-$m" data/food \
      --model "models/$m.ism" --no-finetune)
  rate=$(grep -oE '\(([0-9.]+) images/s\)' "$OUT/raw-$m.err" | tr -d '(' | cut -d' ' -f1)
  taps=$(sqlite3 "$OUT/r-$m/catalog.sqlite" "select value from meta where key = 'backbone_taps'" \
         2>/dev/null || true)
  tenc=nan
  [ -n "$taps" ] && tenc=$("$B/bench_encode" --child "models/$m.ism" 16 "$threads" 3 "$taps" \
      2>/dev/null | grep -oE '"best_img_per_s":[0-9.]+' | cut -d: -f2)
  n=463
  awk -v m="$m" -v enc="$enc" -v bw="$bwall" -v brss="$brss" -v rate="$rate" -v n="$n" \
      -v tenc="${tenc:-nan}" 'BEGIN {
    once = enc > 0 ? n / enc : 0
    ratio = (once > 0) ? bw / once : 0; pct = (enc > 0) ? 100 * rate / enc : 0
    tpct = (tenc > 0) ? 100 * rate / tenc : 0
    printf "%-18s %10.1f %10.1f %10.1f %8.2f %10d %10.1f %7.0f%% %10.1f %7.0f%%\n", m, enc, once,
           bw, ratio, brss, rate, pct, tenc, tpct }'
done
echo "== embed-all peak RSS, mobilenet_v2"
for n in 500 5000; do
  [ -d "$OUT/var$n" ] || "$B/bench_variants" data/food "$OUT/var$n" "$n" >/dev/null
  rm -rf "$OUT/v$n"
  "$IMGSIM" ingest -c "$OUT/v$n" "$OUT/var$n" >/dev/null 2>&1
  "$IMGSIM" finetune -c "$OUT/v$n" --model models/mobilenet_v2.ism --no-finetune 2>/dev/null
  read -r w rss < <(timed "embed-$n" "$IMGSIM" embed-all -c "$OUT/v$n")
  echo "images $n: embed-all ${w} s, peak RSS ${rss} MB"
done
