"""Integration target: a pre-fork master (as gunicorn's) idle while its Python workers work.

Usage: python3.X prefork.py TRUTH_PATH [WORKERS]
       python3.X prefork.py --worker MASTER_PID READY_PATH   (started by the master)

The master starts WORKERS (default 3) workers of the same interpreter: all but the last
directly, the last behind a shell (`sh -c 'python ...; exit'`, so the shell stays its parent:
a non-Python process between master and worker). Each worker writes READY_PATH once running,
then raises and swallows ValueError every few milliseconds (its work), and appends to its
module-level list LEAK 100 times a second (its leak), until the master is gone.
Once every worker is ready the master writes TRUTH_PATH atomically: its pid, version, the
workers' pids and the shell's pid; then it sits in select() on a pipe nobody writes, the way an
idle arbiter does, raising nothing.
"""

import json
import os
import select
import subprocess
import sys
import time


def write_atomic(path, doc):
    with open(path + ".tmp", "w", encoding="utf-8") as out:
        json.dump(doc, out)
    os.replace(path + ".tmp", path)


LEAK = []


def worker(master, ready):
    write_atomic(ready, {"pid": os.getpid()})
    n = 0
    while True:
        try:
            raise ValueError("work")
        except ValueError:
            n += 1
        if n % 50 == 0:
            LEAK.append(n)
            try:
                os.kill(master, 0)
            except ProcessLookupError:
                return
            time.sleep(0.01)


def master(truth, count):
    me, procs, readies = os.getpid(), [], []
    for i in range(count):
        ready = f"{truth}.w{i}"
        argv = [sys.executable, "-I", __file__, "--worker", str(me), ready]
        if i == count - 1:
            argv = ["sh", "-c", " ".join(argv) + "; exit"]
        procs.append(subprocess.Popen(argv))
        readies.append(ready)
    deadline = time.monotonic() + 30
    while not all(os.path.exists(r) for r in readies) and time.monotonic() < deadline:
        time.sleep(0.01)
    workers = []
    for r in readies:
        with open(r, encoding="utf-8") as f:
            workers.append(json.load(f)["pid"])
    write_atomic(truth, {"pid": me, "version": sys.version.split()[0], "workers": workers,
                         "shell": procs[-1].pid})
    idle, _ = os.pipe()
    while True:
        select.select([idle], [], [])


if sys.argv[1] == "--worker":
    worker(int(sys.argv[2]), sys.argv[3])
else:
    master(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3)
