#!/usr/bin/env python3
"""Compares cachet-sim's hit ratios with the reference columns of ../shared/traces/README.md.

Runs cachet-sim once per trace and hash seed over the sizes the README lists, and prints a markdown
table: for each trace and size, the reference columns asked for, then each cachet policy as the
mean over the seeds with its [min-max] range, its difference from one reference column (--versus),
and the gap of each policy to the best reference column of the row (every column of the README
counts for "best", shown or not). Policy cells are "mean [min-max]" over the seeds, or one value
when every seed gave the same to two decimals. The numbers quoted in
bench/RESULTS.md come from this script; it reads the traces where they lie, never copies them.

  python3 bench/sim/compare_reference.py --sim build/release/bench/sim/cachet-sim \
      --traces ../shared/traces --policies s3fifo,w_tinylfu,w_tinylfu_adaptive --seeds 16
"""
import argparse
import csv
import io
import os
import statistics
import subprocess
import sys


def read_reference(readme):
    """{(trace, size): {column: value}} and the column names, from the README's markdown table."""
    cols, table = None, {}
    with open(readme, encoding="utf-8") as f:
        for line in f:
            if line.startswith("| trace |"):
                cols = [c.strip() for c in line.strip().strip("|").split("|")]
                continue
            if cols is None or not line.startswith("| ") or line.startswith("|---"):
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) != len(cols):
                continue
            table[(cells[0], int(cells[1]))] = {c: float(v) for c, v in zip(cols[2:], cells[2:]) if v}
    if cols is None:
        sys.exit(f"compare_reference: no '| trace |' table in {readme}")
    return table, cols[2:]


def trace_file(traces, name):
    if name == "OLTP":
        return os.path.join(traces, "arc-OLTP.lis.zst"), "arc"
    return os.path.join(traces, f"lirs-{name}.trace.gz"), "lirs"


def run_sim(sim, path, fmt, policies, sizes, seed):
    out = subprocess.run([sim, "--csv", "-q", "-f", fmt, "-p", ",".join(policies), "-c",
                          ",".join(map(str, sizes)), "--seed", str(seed), path],
                         check=True, capture_output=True, text=True).stdout
    return {(r["policy"], int(r["capacity"])): 100.0 * int(r["hits"]) / int(r["requests"])
            for r in csv.DictReader(io.StringIO(out))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sim", required=True, help="the cachet-sim executable")
    ap.add_argument("--traces", default="../shared/traces", help="folder with README.md and traces")
    ap.add_argument("--policies", default="s3fifo,w_tinylfu,w_tinylfu_adaptive")
    ap.add_argument("--seeds", type=int, default=16, help="hash seeds 1..N per run")
    ap.add_argument("--reference", default="LRU,S3-FIFO,W-TinyLFU (libCacheSim),LIRS,Caffeine 2.6.2",
                    help="reference columns to print")
    ap.add_argument("--versus", default="Caffeine 2.6.2", help="column each policy is compared with")
    args = ap.parse_args()

    table, all_cols = read_reference(os.path.join(args.traces, "README.md"))
    policies = args.policies.split(",")
    shown = args.reference.split(",")
    for c in shown + [args.versus]:
        if c not in all_cols:
            sys.exit(f"compare_reference: no column '{c}'; the README has: {', '.join(all_cols)}")

    order, sizes = [], {}
    for (t, c) in table:
        if t not in sizes:
            order.append(t)
            sizes[t] = []
        sizes[t].append(c)
    ours = {}  # (trace, policy, size) -> [hit ratio per seed]
    for t in order:
        path, fmt = trace_file(args.traces, t)
        for seed in range(1, args.seeds + 1):
            for (p, c), v in run_sim(args.sim, path, fmt, policies, sizes[t], seed).items():
                ours.setdefault((t, p, c), []).append(v)
        print(f"compare_reference: {t} done", file=sys.stderr)

    head = ["trace", "size"] + shown + ["best"] + [f"`{p}`" for p in policies] + \
           [f"`{p}` - {args.versus}" for p in policies] + [f"`{p}` - best" for p in policies]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    worst_vs = {p: (0.0, None) for p in policies}
    worst_best = {p: (0.0, None) for p in policies}
    for t in order:
        for c in sizes[t]:
            ref = table[(t, c)]
            best = max(ref.values())
            cells = [t, str(c)] + [f"{ref[k]:.2f}" if k in ref else "" for k in shown]
            cells.append(f"{best:.2f}")
            diffs_vs, diffs_best = [], []
            for p in policies:
                v = ours[(t, p, c)]
                m = statistics.mean(v)
                lo, hi = f"{min(v):.2f}", f"{max(v):.2f}"
                spread = f" [{lo}-{hi}]" if lo != hi else ""
                cells.append(f"{m:.2f}{spread}")
                if args.versus in ref:
                    d = m - ref[args.versus]
                    diffs_vs.append(f"{d:+.2f}")
                    if d < worst_vs[p][0]:
                        worst_vs[p] = (d, f"{t} {c}")
                else:
                    diffs_vs.append("")
                d = m - best
                diffs_best.append(f"{d:+.2f}")
                if d < worst_best[p][0]:
                    worst_best[p] = (d, f"{t} {c}")
            print("| " + " | ".join(cells + diffs_vs + diffs_best) + " |")
    print()
    for p in policies:
        print(f"- `{p}`: worst vs {args.versus} {worst_vs[p][0]:+.2f} ({worst_vs[p][1]}); "
              f"worst vs the best reference column {worst_best[p][0]:+.2f} ({worst_best[p][1]})")


if __name__ == "__main__":
    main()
