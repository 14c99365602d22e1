"""Integration target: a pre-fork master whose workers raise known exceptions on request.

Usage: python3.X exc_tree.py TRUTH_PATH ROUNDS
       (the workers are forks of the master, as gunicorn's; one more runs behind a shell:
        python3.X exc_tree.py --worker MASTER_PID DIR ROUNDS)

Every process of the tree (master and workers) writes DIR/ready.PID once running, then waits
for DIR/go.PID; it then raises and catches ROUNDS ValueError("tree PID I") (I = 0..ROUNDS-1),
writes DIR/done.PID, and idles until the master is gone; a worker that finds DIR/bye.PID
exits (status 0). Nothing raises before its go file (the waits list directories): a worker
forked while the master is traced with bpf inherits the probe's int3 until its first raise. The
master writes TRUTH_PATH atomically (generation 0: its pid, the forked
workers' pids, the shell's pid and the shell worker's pid); when the first forked worker has
exited and DIR/respawn exists it forks a replacement and writes generation 1 with "respawned":
its pid.
"""

import json
import os
import subprocess
import sys
import time


def write_atomic(path, doc):
    with open(path + ".tmp", "w", encoding="utf-8") as out:
        json.dump(doc, out)
    os.replace(path + ".tmp", path)


def exists(path):
    """Whether path exists, without raising (a raise would clear a uprobe's int3 inherited from
    a traced master before the worker's own tracer starts, which the test must not miss)."""
    directory, name = os.path.split(path)
    return name in os.listdir(directory)


def master_alive(master):
    return str(master) in os.listdir("/proc")


def wait_file(path, master):
    """Wait for path; False when the master is gone first."""
    while not exists(path):
        if master and not master_alive(master):
            return False
        time.sleep(0.05)
    return True


def rounds(directory, count, master):
    me = os.getpid()
    write_atomic(f"{directory}/ready.{me}", {"pid": me})
    if not wait_file(f"{directory}/go.{me}", master):
        return
    for i in range(count):
        try:
            raise ValueError(f"tree {me} {i}")
        except ValueError:
            pass
    write_atomic(f"{directory}/done.{me}", {"pid": me, "raised": count})


def worker(directory, count, master):
    rounds(directory, count, master)
    me = os.getpid()
    while master_alive(master) and not exists(f"{directory}/bye.{me}"):
        time.sleep(0.05)


def fork_worker(directory, count, master):
    pid = os.fork()
    if pid == 0:
        try:
            worker(directory, count, master)
        finally:
            os._exit(0)
    return pid


def wait_ready(directory, pid):
    while not exists(f"{directory}/ready.{pid}"):
        time.sleep(0.01)


def master(truth, count):
    me, directory = os.getpid(), os.path.dirname(truth)
    forked = [fork_worker(directory, count, me) for _ in range(2)]
    argv = [sys.executable, "-I", __file__, "--worker", str(me), directory, str(count)]
    shell = subprocess.Popen(["sh", "-c", " ".join(argv) + "; exit"])
    for pid in forked:
        wait_ready(directory, pid)
    shell_worker = None
    while shell_worker is None:
        kids = open(f"/proc/{shell.pid}/task/{shell.pid}/children").read().split()
        shell_worker = int(kids[0]) if kids else None
        time.sleep(0.01)
    wait_ready(directory, shell_worker)
    write_atomic(truth, {"generation": 0, "pid": me, "workers": forked, "shell": shell.pid,
                         "shell_worker": shell_worker})
    os.waitpid(forked[0], 0)
    wait_file(f"{directory}/respawn", None)
    respawned = fork_worker(directory, count, me)
    wait_ready(directory, respawned)
    write_atomic(truth, {"generation": 1, "pid": me, "workers": forked, "shell": shell.pid,
                         "shell_worker": shell_worker, "respawned": respawned})
    rounds(directory, count, None)
    while True:
        time.sleep(1)


if sys.argv[1] == "--worker":
    worker(sys.argv[3], int(sys.argv[4]), int(sys.argv[2]))
else:
    master(sys.argv[1], int(sys.argv[2]))
