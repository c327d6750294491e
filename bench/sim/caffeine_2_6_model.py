#!/usr/bin/env python3
"""A model of Caffeine 2.6.2's eviction, replayed on the shared traces beside its published column.

Why: issue 4 asks `w_tinylfu` for at least Caffeine 2.6.2's hit ratio minus 0.5 on every row of
../shared/traces/README.md. That column is one run of Caffeine as a Java client. This script
re-implements, independently of cachet's code, the rules Caffeine 2.6.2 applies when one thread
gets and, on a miss, puts, and prints how close a model of Caffeine itself comes to the column:
how much of a per-row difference is the policy, and how much is the run.

What it models (written from Caffeine 2.6.2's documented behaviour and source, not copied):
  - BoundedLocalCache with maximumSize(C): an LRU eden of C - (long)(C * 0.99) entries, a main
    space split into probation and protected, protected at most (long)((C - eden) * 0.8);
  - a read moves its entry to the back of its queue, a probation read promotes it to protected,
    demoting protected's oldest entries to probation while protected is over its share;
  - a put of a new key enters eden; eden's overflow moves to probation; while the cache is over C,
    the newest entry of probation (the candidate) duels the oldest (the victim): the candidate is
    admitted when its frequency is above the victim's, rejected when it is 5 or less, and
    otherwise admitted one time in 128;
  - the FrequencySketch: 4-bit counters in ceilingPowerOfTwo(C) longs, a key's hashCode spread by
    two multiply-xorshift rounds, four counters in four words picked by seeded multiplications,
    halving after 10 x C additions with Caffeine 2's count of additions afterwards (the 2.x
    source's (size >>> 1) - (odd counters >>> 2)); it is allocated only when a put
    finds the cache at least half full, and until then reads are not recorded at all (no sketch
    count, no reordering: Caffeine skips its read buffer while the sketch is absent);
  - keys are the traces' integers as Java Integer/Long keys (hashCode = the value).
  - --lossy: the read buffer as when maintenance runs on the calling thread: 16 reads are held,
    the 17th since the last write or drain is dropped and triggers the drain.
What it cannot model: maintenance on the ForkJoinPool (asynchronous eviction, reads dropped while
it lags) and ThreadLocalRandom's draws. Those are part of the published column.

  python3 bench/sim/caffeine_2_6_model.py --traces ../shared/traces [--lossy]
  python3 bench/sim/caffeine_2_6_model.py --lossy --salts 16 --rows ps:100,multi2:500,sprite:1000
  python3 bench/sim/caffeine_2_6_model.py --eager --salts 8 --rows ps:100,multi2:500,gli:500

--salts N replaces Caffeine's hash of each key by N other hashes (the mean and range are printed);
--eager allocates the sketch up front and --halving 3 keeps the addition count as Caffeine 3
does: two of the rules where cachet's w_tinylfu departs from Caffeine 2.6.2 (the others: its
sketch's layout, no dropped reads, correlated accesses counted once; see
include/cachet/eviction/w_tinylfu.hpp); --rows picks rows.
Prints one markdown row per trace and size: the model's hit ratio, the column's, the difference.
Pure Python: the whole table takes about 20 s, 16 salts of three rows about a minute.
"""
import argparse
import collections
import gzip
import os
import random
import sys

M32 = (1 << 32) - 1
M64 = (1 << 64) - 1
SEEDS = (0xC3A5C85C97CB3127, 0xB492B66FBE98F273, 0x9AE16A3B2F90404F, 0xCBF29CE484222325)
RESET_MASK = 0x7777777777777777
ONE_MASK = 0x1111111111111111


def ceiling_power_of_two(x):
    return 1 << (x - 1).bit_length()


class FrequencySketch:
    def __init__(self, key_salt=0, halving=2):
        self.table = None
        self.key_salt = key_salt  # 0: the key's own hashCode, as Caffeine
        self.halving = halving  # 2: Caffeine 2's addition count after a reset; 3: Caffeine 3's

    def ensure_capacity(self, maximum):
        if self.table is not None and len(self.table) >= maximum:
            return
        self.table = [0] * (1 if maximum == 0 else ceiling_power_of_two(maximum))
        self.mask = len(self.table) - 1
        self.sample_size = 10 if maximum == 0 else 10 * maximum
        self.size = 0

    @staticmethod
    def spread(x):
        x &= M32
        x = (((x >> 16) ^ x) * 0x45D9F3B) & M32
        x = (((x >> 16) ^ x) * 0x45D9F3B) & M32
        return (x >> 16) ^ x

    def index_of(self, item, i):
        signed = item - (1 << 32) if item >= 1 << 31 else item  # Java's int, widened to long
        h = ((signed + SEEDS[i]) * SEEDS[i]) & M64
        h = (h + (h >> 32)) & M64
        return (h & M32) & self.mask

    def _counters(self, key):
        h = self.spread(key ^ self.key_salt)
        start = (h & 3) << 2
        return [(self.index_of(h, i), (start + i) << 2) for i in range(4)]

    def frequency(self, key):
        if self.table is None:
            return 0
        return min((self.table[w] >> s) & 0xF for w, s in self._counters(key))

    def increment(self, key):
        if self.table is None:
            return
        added = False
        for w, s in self._counters(key):
            if (self.table[w] >> s) & 0xF != 0xF:
                self.table[w] += 1 << s
                added = True
        if added:
            self.size += 1
            if self.size == self.sample_size:
                self.reset()

    def reset(self):
        odd = 0
        for i, v in enumerate(self.table):
            odd += bin(v & ONE_MASK).count("1")
            self.table[i] = (v >> 1) & RESET_MASK
        if self.halving == 2:
            self.size = (self.size >> 1) - (odd >> 2)
        else:  # Caffeine 3, and cachet: the lost halves are subtracted before halving
            self.size = (self.size - (odd >> 2)) >> 1


class Caffeine26:
    def __init__(self, maximum, lossy, rng, key_salt=0, eager=False, halving=2):
        self.maximum = maximum
        self.eden_maximum = maximum - int(maximum * 0.99)
        self.protected_maximum = int((maximum - self.eden_maximum) * 0.8)
        self.eden = collections.OrderedDict()  # first = least recent
        self.probation = collections.OrderedDict()
        self.protected = collections.OrderedDict()
        self.sketch = FrequencySketch(key_salt, halving)
        if eager:  # not Caffeine 2.6.2: the sketch counts, and reads reorder, from the start
            self.sketch.ensure_capacity(maximum)
        self.lossy = lossy
        self.pending = []  # buffered reads (lossy mode)
        self.rng = rng

    def size(self):
        return len(self.eden) + len(self.probation) + len(self.protected)

    def get(self, key):
        if key in self.eden or key in self.probation or key in self.protected:
            if self.sketch.table is None:
                return True  # the read buffer is skipped: nothing recorded
            if not self.lossy:
                self.on_access(key)
            elif len(self.pending) == 16:
                self.drain_reads()  # this read is dropped
            else:
                self.pending.append(key)
            return True
        return False

    def drain_reads(self):
        for key in self.pending:
            if key in self.eden or key in self.probation or key in self.protected:
                self.on_access(key)
        self.pending.clear()

    def on_access(self, key):
        self.sketch.increment(key)
        if key in self.eden:
            self.eden.move_to_end(key)
        elif key in self.probation:
            del self.probation[key]
            self.protected[key] = None
            while len(self.protected) > self.protected_maximum:
                demoted, _ = self.protected.popitem(last=False)
                self.probation[demoted] = None
        else:
            self.protected.move_to_end(key)

    def put(self, key):  # a new key: AddTask, then maintenance
        self.drain_reads()
        if self.size() >= self.maximum >> 1:
            self.sketch.ensure_capacity(self.maximum)
        self.sketch.increment(key)
        self.eden[key] = None
        candidates = 0
        while len(self.eden) > self.eden_maximum:
            moved, _ = self.eden.popitem(last=False)
            self.probation[moved] = None
            candidates += 1
        while self.size() > self.maximum:
            if candidates > 0 and len(self.probation) >= 2:
                candidates -= 1
                victim = next(iter(self.probation))
                candidate = next(reversed(self.probation))
                del self.probation[victim if self.admit(candidate, victim) else candidate]
            else:
                queue = self.probation or self.protected or self.eden
                queue.popitem(last=False)

    def admit(self, candidate, victim):
        victim_freq = self.sketch.frequency(victim)
        candidate_freq = self.sketch.frequency(candidate)
        if candidate_freq > victim_freq:
            return True
        if candidate_freq <= 5:
            return False
        return (self.rng.getrandbits(32) & 127) == 0


def read_caffeine_column(readme):
    rows, cols = [], None
    with open(readme, encoding="utf-8") as f:
        for line in f:
            if line.startswith("| trace |"):
                cols = [c.strip() for c in line.strip().strip("|").split("|")]
            elif cols and line.startswith("| ") and not line.startswith("|---"):
                cells = dict(zip(cols, (c.strip() for c in line.strip().strip("|").split("|"))))
                if cells.get("Caffeine 2.6.2"):
                    rows.append((cells["trace"], int(cells["cache size"]),
                                 float(cells["Caffeine 2.6.2"])))
    return rows


def read_keys(path):
    with gzip.open(path, "rt", newline="") as f:
        return [int(s) for s in (line.strip() for line in f) if s and s != "*"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--traces", default="../shared/traces")
    ap.add_argument("--lossy", action="store_true", help="drop the 17th buffered read (see above)")
    ap.add_argument("--seed", type=int, default=1, help="for the 1-in-128 admissions")
    ap.add_argument("--salts", type=int, default=0,
                    help="N > 0: the mean [min-max] over N runs whose sketch hashes key ^ salt "
                         "(salts from --seed) instead of the key: how much the column owes to "
                         "how Caffeine's hash happens to fall on these keys")
    ap.add_argument("--eager", action="store_true",
                    help="not Caffeine: allocate the sketch up front, so every access counts and "
                         "reads reorder from the first (as cachet's w_tinylfu does)")
    ap.add_argument("--halving", type=int, choices=(2, 3), default=2,
                    help="the addition count after a reset: 2 = Caffeine 2's (size >>> 1) - "
                         "(odd >>> 2), 3 = Caffeine 3's (size - (odd >>> 2)) >>> 1, as cachet")
    ap.add_argument("--rows", default="", help="only these rows, as trace:size,trace:size")
    args = ap.parse_args()
    readme = os.path.join(args.traces, "README.md")
    if not os.path.isfile(readme):
        sys.exit(f"caffeine_2_6_model: no {readme}; point --traces at the shared traces folder")
    rows = read_caffeine_column(readme)
    if args.rows:
        try:
            wanted = {(t, int(c)) for t, c in (r.split(":") for r in args.rows.split(","))}
        except ValueError:
            sys.exit(f"caffeine_2_6_model: --rows wants trace:size,trace:size, not '{args.rows}'")
        rows = [r for r in rows if (r[0], r[1]) in wanted]
        if not rows:
            sys.exit(f"caffeine_2_6_model: no row of the Caffeine 2.6.2 column matches '{args.rows}'")
    salts = [0] if args.salts == 0 else \
        [random.Random(args.seed * 1000 + n).getrandbits(32) for n in range(args.salts)]
    print("| trace | size | model | Caffeine 2.6.2 | model - Caffeine |")
    print("|---|---|---|---|---|")
    keys, loaded, diffs = None, None, []
    for trace, size, published in rows:
        if trace != loaded:
            keys, loaded = read_keys(os.path.join(args.traces, f"lirs-{trace}.trace.gz")), trace
        ratios = []
        for salt in salts:
            cache = Caffeine26(size, args.lossy, random.Random(args.seed), salt, args.eager,
                               args.halving)
            hits = 0
            for k in keys:
                if cache.get(k):
                    hits += 1
                else:
                    cache.put(k)
            ratios.append(100.0 * hits / len(keys))
        ratio = sum(ratios) / len(ratios)
        spread = f" [{min(ratios):.2f}-{max(ratios):.2f}]" if len(ratios) > 1 else ""
        diffs.append(ratio - published)
        print(f"| {trace} | {size} | {ratio:.2f}{spread} | {published:.2f} | "
              f"{ratio - published:+.2f} |")
        sys.stdout.flush()
    within = sum(1 for d in diffs if abs(d) <= 0.5)
    below = sum(1 for d in diffs if d < -0.5)
    print(f"\n{len(diffs)} rows: {within} within 0.5 of the column, {below} more than 0.5 below; "
          f"mean |difference| {sum(abs(d) for d in diffs) / len(diffs):.2f}, "
          f"mean {sum(diffs) / len(diffs):+.2f}")


if __name__ == "__main__":
    main()
