#!/usr/bin/env python3
"""Median throughput ratios from repeated runs of cachet_bench_getput.

The machines we measure on are shared and noisy, so a single run's ratio can be off by 2x. This runs
the benchmark binary ROUNDS times (each round one process, cachet and baselines back to back),
computes every ratio within its own round, and reports the median over rounds, with the min-max
range so the spread is visible.

usage: bench/ratios.py BINARY [--rounds 5] [--min-time 0.3] [--threads 1,2] [--workloads read100]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

LINE = re.compile(r"^(\w+)/(\S+?)/real_time/threads:(\d+)\s.*items_per_second=([\d.]+)([kMG]?)/s")
SCALE = {"": 1e-6, "k": 1e-3, "M": 1.0, "G": 1e3}


def one_round(binary, pattern, min_time, thread_list):
    # The binary registers 1, 2 and 4 threads unless CACHET_BENCH_THREADS names others.
    env = dict(os.environ, CACHET_BENCH_THREADS=thread_list)
    out = subprocess.run([binary, f"--benchmark_filter={pattern}", f"--benchmark_min_time={min_time}"],
                         check=True, capture_output=True, text=True, env=env).stdout
    result = {}
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            workload, cache, threads, value, unit = m.groups()
            result[(workload, int(threads), cache)] = float(value) * SCALE[unit]
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-time", default="0.3")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--workloads", default="read100,read75_write25")
    ap.add_argument("--caches", default="",
                    help="comma-separated caches to run (the baselines are always run); default all")
    args = ap.parse_args()
    threads = args.threads.split(",")
    caches = ".*"
    if args.caches:
        caches = "(" + "|".join(args.caches.split(",") +
                                ["sharded_map", "mutex_lru", "tbb_lru", "cuckoo_map"]) + ")"
    pattern = (f"^({'|'.join(args.workloads.split(','))})/{caches}/real_time/"
               f"threads:({'|'.join(threads)})$")
    rounds = [one_round(args.binary, pattern, args.min_time, args.threads)
              for _ in range(args.rounds)]
    keys = sorted(rounds[0], key=lambda k: (k[0], k[1], not k[2].startswith("cachet"), k[2]))
    baselines = ["sharded_map", "mutex_lru", "tbb_lru", "cuckoo_map"]
    print(f"{args.rounds} rounds, min_time {args.min_time}s; M ops/s median [min-max]; "
          "ratios are medians of per-round ratios")
    header = (f"{'workload':<16}{'thr':>4} {'cache':<18}{'M ops/s':>22}" +
              "".join(f"{'x ' + b:>14}" for b in baselines) + f"{'x own 1 thr':>14}")
    print(header)
    for key in keys:
        workload, thr, cache = key
        vals = [r[key] for r in rounds if key in r]
        cells = f"{statistics.median(vals):8.1f} [{min(vals):5.1f}-{max(vals):5.1f}]"
        ratios = ""
        for b in baselines:
            bk = (workload, thr, b)
            rs = [r[key] / r[bk] for r in rounds if key in r and bk in r and r[bk] > 0]
            ratios += f"{statistics.median(rs):14.2f}" if rs and cache != b else f"{'':>14}"
        # Against the same cache at 1 thread, where the run had 1 thread: the scaling.
        one = (workload, 1, cache)
        rs = [r[key] / r[one] for r in rounds if key in r and one in r and r[one] > 0]
        ratios += f"{statistics.median(rs):14.2f}" if rs and thr != 1 else f"{'':>14}"
        print(f"{workload:<16}{thr:>4} {cache:<18}{cells:>22}{ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
