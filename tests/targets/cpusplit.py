"""Integration target for the sampling profiler: a known CPU split between two functions.

Usage: python3.X cpusplit.py TRUTH_PATH [--seconds S] [--helper]

The main thread runs alpha() three times for every beta() call, forever (or for S seconds, then
returns normally). Both are pure-Python loops of the same shape, and the target measures the
split itself: it adds the thread CPU time spent inside each function to its own counters.
TRUTH_PATH is written atomically (tmp + rename) at start (generation 0) and again on every
SIGUSR1 (generation + 1) with the cumulative counters, so a test can take the counters before
and after a recording and compare the shares with the profile's. SIGUSR2 makes the target exit
at once with status 0 (a "target exits mid-recording" test); so does Ctrl-C (SIGINT).
With --helper a second thread named "helper" runs gamma() forever, for thread filter tests.
"""

import json
import os
import signal
import sys
import threading
import time

COUNTERS = {"alpha_s": 0.0, "beta_s": 0.0, "generation": 0}
ROUNDS = 20000


def alpha(n):
    s = 0
    for i in range(n):
        s += i * i
    return s


def beta(n):
    s = 0
    for i in range(n):
        s += i * i
    return s


def gamma():
    while True:
        s = 0
        for i in range(ROUNDS):
            s += i
        time.sleep(0)


def write_truth(path):
    doc = dict(COUNTERS, pid=os.getpid(),
               python_version=".".join(map(str, sys.version_info[:3])),
               executable=sys.executable)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(doc, out)
    os.replace(tmp, path)


def timed(fn, key):
    start = time.thread_time()
    fn(ROUNDS)
    COUNTERS[key] += time.thread_time() - start


def main():
    path = sys.argv[1]
    seconds = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 0

    def on_usr1(signum, frame):
        COUNTERS["generation"] += 1
        write_truth(path)

    signal.signal(signal.SIGUSR1, on_usr1)
    signal.signal(signal.SIGUSR2, lambda signum, frame: os._exit(0))
    if "--helper" in sys.argv:
        threading.Thread(target=gamma, name="helper", daemon=True).start()
    end = time.monotonic() + seconds
    try:
        write_truth(path)
        while not seconds or time.monotonic() < end:
            timed(alpha, "alpha_s")
            timed(alpha, "alpha_s")
            timed(alpha, "alpha_s")
            timed(beta, "beta_s")
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
