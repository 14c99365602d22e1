"""Integration target: threads parked in code compiled with filenames of our choosing.

Usage: python3.X named_park.py NAME...

For each NAME, starts a thread running PARK_SOURCE compiled with co_filename NAME (the name is
never opened by the target: it is what a hostile target would claim), parked in its loop
(every line it can be on ends with "# parked-here"). Once every thread runs it prints one JSON
line on stdout, {"pid", "threads": {name: native_id}}, and parks the main thread until killed.
Runs under any uid and inside a chroot (stdlib only, no file written), so tests can drop it to
uid 65534 or jail it.
"""

import json
import os
import sys
import threading
import time

PARK_SOURCE = (
    "def park(ready):\n"
    "    ready.release()  # parked-here\n"
    "    while True:  # parked-here\n"
    "        time.sleep(3600)  # parked-here\n"
)


def start(name):
    scope = {"time": time}
    exec(compile(PARK_SOURCE, name, "exec"), scope)
    ready = threading.Semaphore(0)
    thread = threading.Thread(target=scope["park"], args=(ready,), daemon=True)
    thread.start()
    ready.acquire()
    return thread.native_id


def main():
    threads = {name: start(name) for name in sys.argv[1:]}
    sys.stdout.write(json.dumps({"pid": os.getpid(), "threads": threads}) + "\n")
    sys.stdout.flush()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
