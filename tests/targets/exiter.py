"""Integration target: a Python process that exits on its own while being dumped.

Usage: python3.X exiter.py READY_PATH LIFETIME_SECONDS

Starts a churning thread (recursion that grows and unwinds, generators created and finished, so
frames are pushed and popped while pyscope reads them) and a parked thread, writes READY_PATH
atomically once both run, then the main thread sleeps LIFETIME_SECONDS and returns: a normal
interpreter shutdown with the daemon threads still live. The test dumps it in a loop until it is
gone and checks that pyscope never crashes and says the target exited.
"""

import json
import os
import sys
import threading
import time

HELD = threading.Lock()
HELD.acquire()


def numbers(n):
    for i in range(n):
        yield i


def churn_down(depth):
    if depth == 0:
        return sum(numbers(50))
    return churn_down(depth - 1) + 1


def churn(started):
    started.set()
    depth = 0
    while True:
        churn_down(depth)
        depth = (depth + 7) % 90


def parked(started):
    started.set()
    HELD.acquire()


def main():
    ready_path, lifetime = sys.argv[1], float(sys.argv[2])
    for target in (churn, parked):
        started = threading.Event()
        threading.Thread(target=target, args=(started,), name=target.__name__,
                         daemon=True).start()
        started.wait()
    tmp = ready_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump({"pid": os.getpid()}, out)
    os.replace(tmp, ready_path)
    time.sleep(lifetime)


if __name__ == "__main__":
    main()
