#!/usr/bin/env python3
"""Issue 18's target, row by row: w_tinylfu_adaptive against the best of lru, sieve and s3fifo.

For every shared trace and size tracked in bench/RESULTS.md, plus OLTP at 20,000 to 150,000
entries, runs cachet-sim with lru, sieve, s3fifo and w_tinylfu_adaptive, once with one shard and
once with the shard count sharded_store picks by default on a machine with --hw hardware threads
(32 per thread, halved while a shard would hold under 256 entries). Prints each row with the mean
over --seeds hash seeds and marks the rows where the adaptive policy is more than 0.5 below
max(lru, sieve, s3fifo). Reads the traces where they lie (about 20 s with 2 seeds on 2 cores).

  python3 bench/sim/check_adaptive.py --sim build/release/bench/sim/cachet-sim \
      --traces ../shared/traces --seeds 2
"""
import argparse
import csv
import io
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

ROWS = {
    "gli": [250, 500, 1000, 1500, 2000],
    "cs": [100, 200, 300, 400, 500, 1000],
    "cpp": [100, 200, 300, 500, 1000],
    "ps": [100, 500, 1000, 2000],
    "sprite": [100, 500, 1000, 2000],
    "multi2": [500, 1000, 2000, 3000],
    "2_pools": [100, 500, 1000, 2000],
    "loop": [256, 512, 1000],
    "OLTP": [1000, 2000, 5000, 10000, 15000, 20000, 50000, 100000, 150000],
}
POLICIES = ["lru", "sieve", "s3fifo", "w_tinylfu_adaptive"]


def default_shards(capacity, hw):
    """sharded_store::default_shards() for max_entries = capacity on `hw` hardware threads."""
    n = min(1 << (32 * hw - 1).bit_length(), 1024)
    while n > 1 and capacity // n < 256:
        n //= 2
    return n


def trace_file(traces, name):
    if name == "OLTP":
        return os.path.join(traces, "arc-OLTP.lis.zst"), "arc"
    return os.path.join(traces, f"lirs-{name}.trace.gz"), "lirs"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sim", required=True, help="the cachet-sim executable")
    ap.add_argument("--traces", default="../shared/traces")
    ap.add_argument("--seeds", type=int, default=2, help="hash seeds 1..N, averaged")
    ap.add_argument("--hw", type=int, default=2, help="hardware threads for the default shards")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()

    jobs = []
    for trace, sizes in ROWS.items():
        for mode in ("one", "default"):
            for c in sizes:
                shards = 1 if mode == "one" else default_shards(c, args.hw)
                for seed in range(1, args.seeds + 1):
                    jobs.append((trace, mode, c, shards, seed))

    def run(job):
        trace, _, c, shards, seed = job
        path, fmt = trace_file(args.traces, trace)
        if not os.path.exists(path):
            sys.exit(f"check_adaptive: {path} not found")
        out = subprocess.run([args.sim, "--csv", "-q", "-j", "1", "-f", fmt, "-p", ",".join(POLICIES),
                              "-c", str(c), "--shards", str(shards), "--seed", str(seed), path],
                             check=True, capture_output=True, text=True).stdout
        return job, {r["policy"]: 100.0 * int(r["hits"]) / int(r["requests"])
                     for r in csv.DictReader(io.StringIO(out))}

    results = {}
    with ThreadPoolExecutor(args.jobs) as ex:
        for (trace, mode, c, shards, _), r in ex.map(run, jobs):
            results.setdefault((trace, mode, c, shards), []).append(r)

    print("| trace | size | shards | lru | sieve | s3fifo | w_tinylfu_adaptive | vs best of the three |")
    print("|---|---|---|---|---|---|---|---|")
    below, worst = 0, 0.0
    for (trace, mode, c, shards), rs in results.items():
        m = {p: statistics.mean(r[p] for r in rs) for p in POLICIES}
        d = m["w_tinylfu_adaptive"] - max(m["lru"], m["sieve"], m["s3fifo"])
        mark = " **below**" if d < -0.5 else ""
        below += d < -0.5
        worst = min(worst, d)
        print(f"| {trace} | {c} | {shards} | {m['lru']:.2f} | {m['sieve']:.2f} | {m['s3fifo']:.2f} "
              f"| {m['w_tinylfu_adaptive']:.2f} | {d:+.2f}{mark} |")
    print(f"\nrows more than 0.5 below: {below} of {len(results)}; worst {worst:+.2f}")


if __name__ == "__main__":
    main()
