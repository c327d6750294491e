#!/usr/bin/env python3
"""Two builds of cachet_bench_getput (say main and a branch), run in interleaved rounds on the same
machine; prints each build's median items/s and the median of the per-round ratios new/base, and
for 2 threads each build's own 2-thread/1-thread ratio.

usage: bench/compare_builds.py BASE_BINARY NEW_BINARY FILTER ROUNDS MIN_TIME THREADS
  e.g. bench/compare_builds.py /tmp/getput_main build/release/bench/cachet_bench_getput \
         'read100/cachet_(lru|fifo)/' 5 0.2 1,2
"""
import re, subprocess, sys, os, statistics
LINE = re.compile(r"^(\w+)/(\S+?)/real_time/threads:(\d+)\s.*items_per_second=([\d.]+)([kMG]?)/s")
SCALE = {"": 1e-6, "k": 1e-3, "M": 1.0, "G": 1e3}
def run(b, filt, mt, threads):
    env = dict(os.environ, CACHET_BENCH_THREADS=threads)
    out = subprocess.run([b, f"--benchmark_filter={filt}", f"--benchmark_min_time={mt}"], check=True, capture_output=True, text=True, env=env).stdout
    r = {}
    for l in out.splitlines():
        m = LINE.match(l)
        if m:
            w, c, t, v, u = m.groups(); r[(w, c, int(t))] = float(v) * SCALE[u]
    return r
base, new, filt, rounds, mt, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
B, N = [], []
for i in range(rounds):
    B.append(run(base, filt, mt, threads)); N.append(run(new, filt, mt, threads))
keys = sorted(set(B[0]) & set(N[0]))
print(f"{'workload':16} {'cache':28} thr  base M/s  new M/s  new/base  new 2thr/1thr")
for k in keys:
    b = statistics.median(x[k] for x in B); n = statistics.median(x[k] for x in N)
    ratio = statistics.median(N[i][k] / B[i][k] for i in range(rounds))
    sc = ""
    if k[2] == 2 and (k[0], k[1], 1) in N[0]:
        sc = "%.2f (base %.2f)" % (statistics.median(N[i][k] / N[i][(k[0], k[1], 1)] for i in range(rounds)),
                                   statistics.median(B[i][k] / B[i][(k[0], k[1], 1)] for i in range(rounds)))
    print(f"{k[0]:16} {k[1]:28} {k[2]:3} {b:9.1f} {n:8.1f} {ratio:8.2f}  {sc}")
