"""Integration target: a rare raise site beside a storm from another site, counting both.

Usage: python3.X rare_storm.py TRUTH_PATH STORM_RATE RARE_COUNT [same]

Writes TRUTH_PATH (generation 0) once started, then waits for SIGUSR1 (a tracer attaches
first). Then: a storm thread raises and swallows ValueError at storm_site, paced at STORM_RATE
per second (busy wait), while the rare raiser raises and swallows KeyError at rare_site once a
second, RARE_COUNT times, in its own thread, or with `same` inside the storm thread's loop
(once a second of its time). When the rare raises are done the storm stops; generation 1 gives
both counts as the target itself counted them ({"storm": n, "rare": n, "seconds": s}), and the
process parks (raising nothing) until killed.
"""

import json
import os
import signal
import sys
import threading
import time

TRUTH, RATE, RARE = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
SAME = len(sys.argv) > 4 and sys.argv[4] == "same"
counts = {"storm": 0, "rare": 0}
done = threading.Event()


def publish(doc):
    with open(TRUTH + ".tmp", "w", encoding="utf-8") as f:
        json.dump(doc, f)
    os.rename(TRUTH + ".tmp", TRUTH)


def storm_site():
    try:
        raise ValueError("storm")
    except ValueError:
        pass


def rare_site(i):
    try:
        raise KeyError(f"rare {i}")
    except KeyError:
        pass


def storm(start):
    clock, step, n, next_rare = time.perf_counter, 1.0 / RATE, 0, 1.0
    while not done.is_set():
        now = clock()
        if SAME and now - start >= next_rare:
            rare_site(counts["rare"])
            counts["rare"] += 1
            next_rare += 1.0
            if counts["rare"] >= RARE:
                done.set()
        if (now - start) >= n * step:
            storm_site()
            n += 1
    counts["storm"] = n


def rare(start):
    for i in range(RARE):
        time.sleep(max(0.0, start + i + 1.0 - time.perf_counter()))
        rare_site(i)
        counts["rare"] += 1
    done.set()


def main():
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    publish({"generation": 0, "pid": os.getpid()})
    signal.sigwait({signal.SIGUSR1})
    start = time.perf_counter()
    threads = [threading.Thread(target=storm, args=(start,))]
    if not SAME:
        threads.append(threading.Thread(target=rare, args=(start,)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    publish({"generation": 1, "pid": os.getpid(), "seconds": time.perf_counter() - start,
             **counts})
    while True:
        time.sleep(3600)


main()
