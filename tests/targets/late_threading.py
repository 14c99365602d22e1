"""Integration target: a main thread that runs before `threading` is imported.

Usage: python3.X -I late_threading.py TRUTH_PATH

Writes generation 0 of its truth (no `threading` in sys.modules yet) and spins in
before_threading() until SIGUSR1; then imports threading (which names the main thread
"MainThread"), writes generation 1 with the import time (time.time()) and spins in
after_threading() until killed.
"""

import json
import os
import signal
import sys
import time

GO = []


def write_atomic(path, doc):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(doc, out)
    os.replace(tmp, path)


def spin_until(done):
    while not done():
        x = 0
        for i in range(20000):
            x += i


def before_threading(truth):
    write_atomic(truth, {"generation": 0, "threading": "threading" in sys.modules})
    spin_until(lambda: GO)


def after_threading(truth):
    import threading  # noqa: PLC0415 - the point of this target

    write_atomic(truth, {"generation": 1, "imported": time.time(),
                         "name": threading.current_thread().name})
    spin_until(lambda: False)


def main():
    signal.signal(signal.SIGUSR1, lambda *_: GO.append(1))
    before_threading(sys.argv[1])
    after_threading(sys.argv[1])


if __name__ == "__main__":
    main()
