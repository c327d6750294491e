#!/bin/bash
# bench/device_curve.sh — the thread-scaling curve (issue 15: read 100%, Zipf, 1 2 4 8 16 threads)
# on a lent many-core machine that reaches no package registry, in one short call.
#
#   bench/device_curve.sh prepare build/device     # here: builds GetPut and concurrent_hit_ratio
#                                                  # (-O3 -DNDEBUG, no -march) and copies the
#                                                  # shared libraries they load beside them
#   bench/device_curve.sh run build/device [ROUNDS] [THREADS]
#                                                  # there (carry build/device): the GetPut ratios
#                                                  # per thread count, then the hit ratio of lru and
#                                                  # w_tinylfu_adaptive with 1 thread and the most
#
# ROUNDS defaults to 3, THREADS to 1,2,4,8,16. With the device tool:
#   run(command="bench/device_curve.sh run build/device 3", carry=["build/device"], timeout_s=420)
# The run takes about 3 minutes on 16 cores with 3 rounds. Only the C library comes from the
# machine itself; the rest (Abseil, Google Benchmark, TBB, xxHash, libstdc++) travels in DIR/lib.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-}
dir=${2:-}
if [[ -z "$mode" || -z "$dir" ]]; then
  echo "usage: $0 prepare DIR | run DIR [ROUNDS] [THREADS]" >&2
  exit 2
fi

caches=cachet_lru,cachet_fifo,cachet_sieve,cachet_s3fifo,cachet_lfu,cachet_w_tinylfu,cachet_w_tinylfu_adaptive

case "$mode" in
  prepare)
    mkdir -p "$dir/lib"
    libs="$(pkg-config --libs libxxhash) -labsl_hash -labsl_city -labsl_low_level_hash -labsl_raw_hash_set -lpthread"
    # shellcheck disable=SC2086
    g++ -std=c++20 -O3 -DNDEBUG -I"$here/include" -I"$here/bench" "$here/bench/get_put_bench.cpp" \
      -o "$dir/getput" -lbenchmark -ltbb $libs
    # shellcheck disable=SC2086
    g++ -std=c++20 -O2 -DNDEBUG -I"$here/include" -I"$here/bench" \
      "$here/bench/concurrent_hit_ratio.cpp" -o "$dir/chr" $libs
    # Every library the two load, but the C library and the loader, which must be the machine's.
    for b in "$dir/getput" "$dir/chr"; do
      ldd "$b" | awk '$3 ~ /^\// {print $3}' |
        grep -v -E '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*)\.so' |
        while read -r l; do cp -L "$l" "$dir/lib/"; done
    done
    cp "$here/bench/ratios.py" "$dir/"
    (cd "$here" && git rev-parse --short HEAD) > "$dir/commit" 2>/dev/null || true
    du -sh "$dir"
    ;;
  run)
    rounds=${3:-3}
    threads=${4:-1,2,4,8,16}
    export LD_LIBRARY_PATH="$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "commit $(cat "$dir/commit" 2>/dev/null || echo unknown); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo || true)"
    python3 "$dir/ratios.py" "$dir/getput" --rounds "$rounds" --min-time 0.2 --threads "$threads" \
      --workloads read100 --caches "$caches"
    most=${threads##*,}
    for p in lru w_tinylfu_adaptive; do
      for t in 1 "$most"; do timeout 120 "$dir/chr" "$p" 16384 "$t"; done
    done
    ;;
  *)
    echo "usage: $0 prepare DIR | run DIR [ROUNDS] [THREADS]" >&2
    exit 2
    ;;
esac
