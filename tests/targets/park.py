"""Integration target: the smallest parked Python process, for error-path tests.

Usage: python3.X park.py READY_PATH

Starts one extra thread parked on a lock held forever, writes READY_PATH atomically (tmp + rename)
with {"pid", "python_version", "executable", "native_ids"} once both threads are parked, then
parks the main thread in time.sleep() until killed. Deliberately plain (no 3.11+ features) so it
also runs under interpreters pyscope refuses, such as 3.10.
"""

import json
import os
import sys
import threading
import time

HELD = threading.Lock()
HELD.acquire()


def worker(started):
    started.set()
    HELD.acquire()


def main():
    started = threading.Event()
    thread = threading.Thread(target=worker, args=(started,), name="parked-worker", daemon=True)
    thread.start()
    started.wait()
    doc = {"pid": os.getpid(),
           "python_version": ".".join(map(str, sys.version_info[:3])),
           "executable": sys.executable,
           "native_ids": [threading.main_thread().native_id, thread.native_id]}
    tmp = sys.argv[1] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(doc, out)
    os.replace(tmp, sys.argv[1])
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
