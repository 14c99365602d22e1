"""Integration target: a thread parked in a library whose path then names a FIFO.

Usage: unshare --mount --propagation private python3.X fifo_lib.py LIB FIFO

Loads LIB (a shared library exporting `void park(void)`, which never returns) with ctypes, parks
a thread in it, then bind-mounts the FIFO over LIB's path in its own mount namespace: the
library stays mapped under its path in /proc/PID/maps, but opening that path through
/proc/PID/root now opens a FIFO with no writer, which blocks a plain open() forever. Prints one
JSON line {"pid", "native_id"} on stdout once the thread is in park() and the mount is made.
"""

import ctypes
import json
import os
import subprocess
import sys
import threading
import time


def main():
    lib = ctypes.CDLL(sys.argv[1])
    started = threading.Event()

    def run():
        started.set()
        lib.park()                     # ctypes releases the GIL; never returns
    thread = threading.Thread(target=run, name="in-lib", daemon=True)
    thread.start()
    started.wait()
    subprocess.run(["mount", "--bind", sys.argv[2], sys.argv[1]], check=True)
    sys.stdout.write(json.dumps({"pid": os.getpid(), "native_id": thread.native_id}) + "\n")
    sys.stdout.flush()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
