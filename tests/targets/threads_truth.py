"""Integration target for per-thread attribution: threads of known behaviour, each running a
function named after the thread, with their lives written down by the target's own clock.

Usage: python3.X threads_truth.py TRUTH_PATH

Steady threads (alive the whole time): MainThread (runs MainThread()), spin_a and spin_b (spin),
sleep_a, sleep_b, sleep_c and sleep_d (sleep in Event.wait). Generation 0 of the truth is written
once they all run; then the target waits for SIGUSR1 ("go"), and:
  - renames sleep_d to renamed_d (its function stays sleep_d);
  - starts `late` (spins for LIFE_S seconds of its own clock, then ends), joins it;
  - starts `reuse` (sleeps for LIFE_S, then ends; glibc usually gives it late's pthread, so the
    same threading ident with a new native id), joins it;
and writes generation 1: every thread's function, names, ident, native id, its start and end
and `joined` (when join() returned) by time.time(), i.e. CLOCK_REALTIME, comparable with the
`wall` of pyscope's raw samples (end is null while it runs). Then it parks, the steady threads going on, until killed or SIGUSR2.
A thread's start/end are taken inside its function, so every sample in that window must hold it.
"""

import json
import os
import signal
import sys
import threading
import time

LIFE_S = 0.8
TEMPLATE = '''
def {name}(rec, stop, spin):
    rec["start"] = time.time()
    while not stop.is_set():
        if spin:
            x = 0
            for i in range(20000):
                x += i
        else:
            stop.wait(0.05)
        if rec.get("life") and time.time() - rec["start"] >= rec["life"]:
            break
    rec["end"] = time.time()
'''
GO = threading.Event()
QUIT = threading.Event()


def make(name):
    """A function whose code is named `name` (so the profile shows it as `name`)."""
    ns = {"time": time}
    exec(TEMPLATE.format(name=name), ns)  # noqa: S102 - a test target, fixed template
    return ns[name]


def write_atomic(path, doc):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(doc, out)
    os.replace(tmp, path)


def start(records, name, spin, stop, life=None):
    rec = {"fn": name, "names": [name], "start": None, "end": None, "life": life}
    th = threading.Thread(target=make(name), name=name, args=(rec, stop, spin), daemon=True)
    th.start()
    while rec["start"] is None:
        time.sleep(0.001)
    rec["ident"], rec["native_id"] = th.ident, th.native_id
    records.append(rec)
    return th, rec


def MainThread(truth):  # noqa: N802 - named after the thread it runs in
    stop = threading.Event()
    records = [{"fn": "MainThread", "names": ["MainThread"], "start": time.time(), "end": None,
                "ident": threading.get_ident(), "native_id": threading.get_native_id()}]
    threads = {}
    for name, spin in (("spin_a", True), ("spin_b", True), ("sleep_a", False),
                       ("sleep_b", False), ("sleep_c", False), ("sleep_d", False)):
        threads[name] = start(records, name, spin, stop)
    common = {"pid": os.getpid(), "python_version": ".".join(map(str, sys.version_info[:3]))}
    write_atomic(truth, {"generation": 0, "threads": records, **common})
    while not GO.wait(0.05):
        pass
    th, rec = threads["sleep_d"]
    th.name = "renamed_d"
    rec["names"].append("renamed_d")
    rec["renamed"] = time.time()
    for name, spin in (("late", True), ("reuse", False)):
        th, rec = start(records, name, spin, threading.Event(), life=LIFE_S)
        th.join()
        rec["joined"] = time.time()
    write_atomic(truth, {"generation": 1, "threads": records, **common})
    while not QUIT.wait(0.05):
        pass


def main():
    signal.signal(signal.SIGUSR1, lambda *_: GO.set())
    signal.signal(signal.SIGUSR2, lambda *_: QUIT.set())
    MainThread(sys.argv[1])


if __name__ == "__main__":
    main()
