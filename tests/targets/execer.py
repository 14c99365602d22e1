"""Integration target: a Python process that exec()s another Python program while traced.

Usage: python3.X execer.py TRUTH_PATH [new]

First image: raises and catches one ValueError per 10 ms, writes TRUTH_PATH (generation 0,
{"pid"}) and on SIGUSR1 replaces itself (os.execv, same pid) with `python -I -u execer.py
TRUTH_PATH new`. The new image raises and catches KeyError in a loop and writes generation 1
({"pid", "image": "new"}) once it runs; it runs until killed.
"""
import json
import os
import signal
import sys
import time

TRUTH = sys.argv[1]
NEW = len(sys.argv) > 2


def publish(doc):
    with open(TRUTH + ".tmp", "w", encoding="utf-8") as f:
        json.dump(doc, f)
    os.replace(TRUTH + ".tmp", TRUTH)


def main():
    if NEW:
        publish({"pid": os.getpid(), "generation": 1, "image": "new"})
        while True:
            try:
                raise KeyError("after exec")
            except KeyError:
                time.sleep(0.01)
    go = []
    signal.signal(signal.SIGUSR1, lambda *_: go.append(1))
    publish({"pid": os.getpid(), "generation": 0})
    while not go:
        try:
            raise ValueError("before exec")
        except ValueError:
            time.sleep(0.01)
    os.execv(sys.executable, [sys.executable, "-I", "-u", os.path.abspath(__file__), TRUTH, "new"])


if __name__ == "__main__":
    main()
