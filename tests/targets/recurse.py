"""Integration target: a thread recursing fast, so its stack changes under every read.

Usage: python3.X recurse.py TRUTH_PATH

Thread "recurser" runs forever: spin() -> climb(n) recursing 1..40 deep and back, with no I/O.
The main thread parks. Writes TRUTH_PATH atomically once the recurser runs (its native id and
the frames that stay put while it climbs: spin, run, _bootstrap_inner, _bootstrap).
"""

import json
import os
import sys
import threading
import time

DEPTH = 40


def climb(n):
    if n:
        climb(n - 1)


def spin(started):
    started.set()
    while True:
        for depth in range(DEPTH):
            climb(depth)


def main():
    started = threading.Event()
    worker = threading.Thread(target=spin, args=(started,), name="recurser", daemon=True)
    worker.start()
    started.wait()
    doc = {"pid": os.getpid(), "native_id": worker.native_id,
           "stable": ["spin", "run", "_bootstrap_inner", "_bootstrap"], "moving": "climb"}
    tmp = sys.argv[1] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(doc, out)
    os.replace(tmp, sys.argv[1])
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
