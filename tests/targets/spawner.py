"""Integration target for `record --subprocesses`: a Python parent that starts a Python child.

Usage: python3.X spawner.py TRUTH_PATH

The parent starts `python3.X spawner.py --child READY_PATH` (same interpreter), waits until the
child says it is running (READY_PATH appears), writes TRUTH_PATH atomically with both pids, then
runs parent_work() forever. The child runs child_work() forever and exits by itself as soon as
its parent is gone (it polls its parent pid), so a killed target leaves no orphan behind.
"""

import json
import os
import subprocess
import sys
import time


def spin(n):
    s = 0
    for i in range(n):
        s += i
    return s


def parent_work():
    while True:
        spin(20000)


def child_work(parent):
    while os.getppid() == parent:
        spin(20000)


def write_atomic(path, doc):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(doc, out)
    os.replace(tmp, path)


def main():
    if sys.argv[1] == "--child":
        parent = os.getppid()
        write_atomic(sys.argv[2], {"pid": os.getpid()})
        child_work(parent)
        return
    truth = sys.argv[1]
    ready = truth + ".child"
    child = subprocess.Popen([sys.executable, "-I", os.path.abspath(__file__), "--child", ready],
                             stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not os.path.exists(ready):  # the child's own signal that it runs child_work()
        if child.poll() is not None or time.monotonic() > deadline:
            sys.exit("spawner: the child did not start")
        time.sleep(0.01)
    write_atomic(truth, {"generation": 0, "pid": os.getpid(), "child_pid": child.pid,
                         "python_version": ".".join(map(str, sys.version_info[:3]))})
    parent_work()


main()
