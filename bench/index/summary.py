#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""summary.py OUTDIR [--curves] [--cpu] — summary table of a run-all.sh directory.

Reads OUTDIR/*.txt (anchor harness or `imgsim bench-index` output: a build
time line, an index bytes line, and `ef=<p> recall@10=<r> qps=<q>` lines)
and prints a markdown table: for recall@10 thresholds 0.95 and 0.99, the QPS
at the FIRST sweep point reaching the threshold ("first-reaching", what the
sweep actually measured) and, in brackets, a log-linear interpolation
between the two points around it. Ratios: ours / hnswlib with the same M,
and ours / the FAISS AVX2 HNSW M=32 figure given in the issue (the real bar;
our own FAISS builds are Debian's generic library, see bench/README.md).
--cpu: use the cpu_qps figures (queries per CPU-second of the searching
thread, printed by `imgsim bench-index --cpu-qps` and the anchors) instead
of wall-clock QPS; points without one are skipped.
"""
import math
import os
import re
import sys

# FAISS IndexHNSWFlat M=32, AVX2 build, single thread, this machine (issue).
FAISS_AVX2 = {"embed": {0.95: 3221, 0.99: 2086}, "sift": {0.95: 3799, 0.99: 2591}}
THRESHOLDS = (0.95, 0.99)
POINT = re.compile(r"ef=(\d+)\s+recall@10=([0-9.]+)\s+qps=([0-9.]+)(?:\s+cpu_qps=([0-9.]+))?")
CPU = "--cpu" in sys.argv
BUILD = [re.compile(p, re.I) for p in (r"^build_s=([0-9.]+)", r"^build:.*:\s*([0-9.]+)\s*s$", r"build[ _a-z]*[:=]\s*([0-9.]+)\s*s\b",
                                       r"build[ _a-z]*\s([0-9.]+)\s*s\b")]
BYTES = [re.compile(p, re.I) for p in (r"^index_bytes=(\d+)", r"index[ _]bytes[:=\s]+(\d+)",
                                       r"index[ _a-z]*[:=]\s*(\d+)\s*bytes")]


def parse(path):
    r = {"build": None, "bytes": None, "points": [], "ok": False, "load": None}
    for line in open(path, errors="replace"):
        line = line.strip()
        m = re.search(r"(?:reniced|load before).*load average: ([0-9.]+)", line)
        if m and (r["load"] is None or "reniced" in line):
            r["load"] = float(m.group(1))  # at the search phase if known
        if line.startswith("# done"):
            r["ok"] = True
        if line.startswith("#"):
            continue
        m = POINT.search(line)
        if m:
            if CPU and m.group(4) is None:
                continue
            q = float(m.group(4) if CPU else m.group(3))
            r["points"].append((int(m.group(1)), float(m.group(2)), q))
            continue
        for rx in BUILD:
            m = rx.search(line)
            if m and r["build"] is None:
                r["build"] = float(m.group(1))
                break
        for rx in BYTES:
            m = rx.search(line)
            if m and r["bytes"] is None:
                r["bytes"] = int(m.group(1))
                break
    return r


def at(points, thr):
    """(ef, qps) of the first point with recall >= thr, and interpolated qps."""
    prev = None
    for ef, rec, qps in points:
        if rec >= thr:
            interp = qps
            if prev and prev[1] < thr:
                t = (thr - prev[1]) / (rec - prev[1])
                interp = math.exp(math.log(prev[2]) + t * (math.log(qps) - math.log(prev[2])))
            return ef, qps, interp
        prev = (ef, rec, qps)
    return None


def fmt(x, f="{:.0f}"):
    return "—" if x is None else f.format(x)


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: summary.py OUTDIR [--curves] [--cpu]")
    out = sys.argv[1]
    ds = os.path.basename(os.path.normpath(out))
    if ds.startswith("ab"):  # ab-search.sh output inside bench/out/<set>/ab*
        ds = os.path.basename(os.path.dirname(os.path.normpath(out))) + " (ab-search best-of rounds)"
    fig = next((v for k, v in FAISS_AVX2.items() if k in ds), None)
    names = sorted(f[:-4] for f in os.listdir(out) if f.endswith(".txt"))
    res = {n: parse(os.path.join(out, n + ".txt")) for n in names}
    res = {n: r for n, r in res.items() if r["points"]}
    # ab-search.sh directories: show the best-of rows, not every round
    if any(n.endswith("-best") for n in res):
        res = {n: r for n, r in res.items() if not re.search(r"-r\d+$", n)}
    print(f"### {ds}\n")
    print(("CPU-time QPS (queries per CPU-second of the searching thread)" if CPU else "QPS") +
          ": first sweep point reaching the recall (interpolated in brackets); one thread, one query at a time.")
    print("load: 1-min load average when the search phase began (else before the run).\n")
    hdr = ["system", "load", "build s", "index MiB"]
    for t in THRESHOLDS:
        hdr += [f"ef@{t}", f"QPS@{t}"]
    hdr += ["max recall", "ours/hnswlib @.95/.99", "ours/FAISS-AVX2 @.95/.99"]
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for n, r in res.items():
        row = [n + ("" if r["ok"] else " (unfinished)"), fmt(r["load"], "{:.1f}"), fmt(r["build"], "{:.1f}"),
               fmt(r["bytes"] / 2**20 if r["bytes"] else None, "{:.0f}")]
        hits = {}
        for t in THRESHOLDS:
            h = at(r["points"], t)
            hits[t] = h
            row += [fmt(h[0] if h else None), f"{h[1]:.0f} ({h[2]:.0f})" if h else "—"]
        row.append(f"{max(p[1] for p in r['points']):.4f}")
        ratio_h, ratio_f = "", ""
        if n.startswith("ours-"):
            m = re.match(r"ours-(M\d+)-[a-z0-9]+(.*)$", n)
            ref = (res.get(f"hnswlib-{m.group(1)}{m.group(2)}") or res.get(f"hnswlib-{m.group(1)}")) if m else None
            parts_h, parts_f = [], []
            for t in THRESHOLDS:
                hr = at(ref["points"], t) if ref else None
                parts_h.append(f"{hits[t][1] / hr[1]:.2f}" if hits[t] and hr else "—")
                parts_f.append(f"{hits[t][1] / fig[t]:.2f}" if hits[t] and fig else "—")
            ratio_h, ratio_f = " / ".join(parts_h), " / ".join(parts_f)
        row += [ratio_h, ratio_f]
        print("| " + " | ".join(row) + " |")
    if fig:
        print(f"\nFAISS HNSW M=32 AVX2 figures from the issue: {fig[0.95]} QPS @0.95, {fig[0.99]} QPS @0.99.")
    if "--curves" in sys.argv:
        print("\n#### Curves (ef or search_k or nprobe: recall@10 / QPS)\n")
        for n, r in res.items():
            pts = ", ".join(f"{ef}: {rec:.4f}/{qps:.0f}" for ef, rec, qps in r["points"])
            print(f"- **{n}**: {pts}")


main()
