"""Benchmark target for scripts/bench-sampler: counts its own work units.

Usage: python3.X bench_sampler_target.py COUNTER_FILE DEPTH PARKED

The main thread recurses DEPTH frames deep and then runs work units forever (a fixed small
pure-Python loop each), adding 1 per unit to an 8-byte counter in the mmap'ed COUNTER_FILE, which
the benchmark reads at window boundaries. PARKED extra threads park on a lock (idle, stack
unchanged). Work is counted by the target itself, so the benchmark measures throughput, not
elapsed time of a whole run.
"""
import mmap
import struct
import sys
import threading

HELD = threading.Lock()
HELD.acquire()


def park():
    HELD.acquire()


def work(counter):
    n = 0
    while True:
        s = 0
        for i in range(200):
            s += i
        n += 1
        struct.pack_into("<Q", counter, 0, n)


def deep(depth, counter):
    if depth <= 1:
        work(counter)
    deep(depth - 1, counter)


def main():
    path, depth, parked = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with open(path, "r+b") as f:
        counter = mmap.mmap(f.fileno(), 8)
    for _ in range(parked):
        threading.Thread(target=park, daemon=True).start()
    deep(depth, counter)


main()
