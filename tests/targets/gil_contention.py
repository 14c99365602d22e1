"""Integration target: four threads competing for the GIL in pure-Python loops.

Usage: python3.X gil_contention.py TRUTH_PATH
Writes {"pid", "spinners": {native_id: name}} once every spinner has started, then spins until
killed. At any moment one spinner holds the GIL and the others wait for it in a futex on the
GIL's condition variable: the state pyscope reports as "waiting for the GIL".
"""
import json
import os
import sys
import threading

TRUTH = sys.argv[1]
started = threading.Barrier(4)
ids = {}


def spin():
    ids[threading.get_native_id()] = threading.current_thread().name
    started.wait()
    x = 0
    while True:
        x += 1


for i in range(3):
    threading.Thread(target=spin, name=f"spinner-{i}", daemon=True).start()
ids[threading.get_native_id()] = "MainThread"
started.wait()
with open(TRUTH + ".tmp", "w") as f:
    json.dump({"pid": os.getpid(), "spinners": ids}, f)
os.rename(TRUTH + ".tmp", TRUTH)
x = 0
while True:
    x += 1
