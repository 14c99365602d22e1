"""Benchmark target for scripts/bench-exceptions: raise and catch at a paced rate.

Usage: python3.X bench_raiser.py RATE SECONDS READY_PATH RESULT_PATH [DEPTH]

Writes READY_PATH, waits for SIGUSR1 (so a tracer can attach first), then for SECONDS raises
and catches a ValueError RATE times per second (paced with a busy wait: no sleep noise), timing
only the raise+catch part. Writes RESULT_PATH as JSON: raises, seconds spent raising, wall time,
and the raising thread's CPU time in the raise+catch part (kernel time included: what a uprobe
and its BPF program cost the thread, without the scheduling noise of a loaded machine).
DEPTH (default 1): the Python stack depth the raises happen at (a kernel-side reader's cost
grows with the frames it copies).

SECONDS 0: raise until killed, without waiting for SIGUSR1 (a long-running target for
alternating windows); RESULT_PATH is then a 32-byte file the same figures are published in
every millisecond, as "<Qddd" (raises, raise seconds, wall, raise CPU seconds) written whole.
"""

import json
import mmap
import signal
import struct
import sys
import time


def at_depth(depth, fn):
    """Call fn with depth - 1 Python frames below it (this function's)."""
    return fn() if depth <= 1 else at_depth(depth - 1, fn)


def main():
    depth = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    at_depth(depth, run)


def publisher():
    """A function publishing (n, spent, wall, cpu) into RESULT_PATH's mapping (stream mode)."""
    with open(sys.argv[4], "wb") as f:
        f.write(bytes(32))
    with open(sys.argv[4], "r+b") as f:
        shared = mmap.mmap(f.fileno(), 32)
    return lambda *figures: struct.pack_into("<Qddd", shared, 0, *figures)


def run():
    rate, seconds = float(sys.argv[1]), float(sys.argv[2])
    publish = publisher() if seconds == 0 else None
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    with open(sys.argv[3], "w", encoding="utf-8") as ready:
        ready.write("ready")
    if not publish:
        signal.sigwait({signal.SIGUSR1})
    clock = time.perf_counter
    start = clock()
    end = start + seconds if seconds else float("inf")
    step, spent, cpu, n, next_pub = 1.0 / rate, 0.0, 0.0, 0, start
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
        if publish and slot >= next_pub:
            publish(n, spent, clock() - start, cpu)
            next_pub = slot + 0.001
        while clock() < slot:
            pass
    with open(sys.argv[4], "w", encoding="utf-8") as out:
        json.dump({"raises": n, "raise_seconds": spent, "wall": clock() - start,
                   "raise_cpu_seconds": cpu}, out)


if __name__ == "__main__":
    main()
