"""Benchmark target for scripts/bench-exceptions: raise and catch at a paced rate.

Usage: python3.X bench_raiser.py RATE SECONDS READY_PATH RESULT_PATH [DEPTH]

Writes READY_PATH, waits for SIGUSR1 (so a tracer can attach first), then for SECONDS raises
and catches a ValueError RATE times per second (paced with a busy wait: no sleep noise), timing
only the raise+catch part. Writes RESULT_PATH as JSON: raises, seconds spent raising, wall time,
and the raising thread's CPU time in the raise+catch part (kernel time included: what a uprobe
and its BPF program cost the thread, without the scheduling noise of a loaded machine).
DEPTH (default 1): the Python stack depth the raises happen at (a kernel-side reader's cost
grows with the frames it copies).
"""

import json
import signal
import sys
import time


def at_depth(depth, fn):
    """Call fn with depth - 1 Python frames below it (this function's)."""
    return fn() if depth <= 1 else at_depth(depth - 1, fn)


def main():
    depth = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    at_depth(depth, run)


def run():
    rate, seconds = float(sys.argv[1]), float(sys.argv[2])
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    with open(sys.argv[3], "w", encoding="utf-8") as ready:
        ready.write("ready")
    signal.sigwait({signal.SIGUSR1})
    clock = time.perf_counter
    start = clock()
    end, step, spent, cpu, n = start + seconds, 1.0 / rate, 0.0, 0.0, 0
    slot = start
    while slot < end:
        c0 = time.thread_time()
        t0 = clock()
        try:
            raise ValueError("bench")
        except ValueError:
            pass
        spent += clock() - t0
        cpu += time.thread_time() - c0
        n += 1
        slot += step
        while clock() < slot:
            pass
    with open(sys.argv[4], "w", encoding="utf-8") as out:
        json.dump({"raises": n, "raise_seconds": spent, "wall": clock() - start,
                   "raise_cpu_seconds": cpu}, out)


if __name__ == "__main__":
    main()
