"""Integration target for `--subprocesses` across exec(): children that replace their image.

Usage: python3.X exec_truth.py TRUTH_PATH

The root (runs proc_root) starts two children and spins until its parent is gone:
  - pyexec: a Python child that spins in proc_pyexec_before for BEFORE_S seconds of its own
    clock, then os.execv()s this interpreter on this script as the role pyexec_after (same pid,
    new image and runtime), which spins in proc_pyexec_after;
  - shexec: a shell that sleeps for BEFORE_S seconds, then `exec`s this interpreter as the role
    shexec_after (same pid), which spins in proc_shexec_after.
Each image writes DIR/<role>.json once it runs its function: its pid, role and start time
(time.time(), comparable with the `wall` of raw samples); the role before an exec also writes
its end just before exec. Generation 0 of the truth (pid, dir) is written once both children's
first images run; the post-exec images follow BEFORE_S seconds later.
"""

import json
import os
import signal
import subprocess
import sys
import time

BEFORE_S = 1.5


def write_atomic(path, doc):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(doc, out)
    os.replace(tmp, path)


def spin():
    x = 0
    for i in range(20000):
        x += i


def run_as(role, body):
    """Call body() inside a function named proc_ROLE (the stack shows whose sample it is)."""
    ns = {"body": body}
    exec(f"def proc_{role}():\n    return body()\n", ns)  # noqa: S102 - fixed template
    return ns[f"proc_{role}"]()


def parent_alive(parent):
    return os.getppid() == parent


def me(directory, role):
    rec = {"role": role, "pid": os.getpid(), "start": time.time(), "end": None}
    write_atomic(os.path.join(directory, f"{role}.json"), rec)
    return rec


def child(role, directory, parent):
    """One image of a child: spin in proc_ROLE; pyexec_before then execs pyexec_after."""
    def body():
        rec = me(directory, role)
        while parent_alive(parent):
            spin()
            if role == "pyexec_before" and time.time() - rec["start"] >= BEFORE_S:
                rec["end"] = time.time()
                write_atomic(os.path.join(directory, f"{role}.json"), rec)
                argv = [sys.executable, "-I", os.path.abspath(__file__), "--role",
                        "pyexec_after", directory, str(parent)]
                os.execv(sys.executable, argv)

    run_as(role, body)


def root(truth):
    parent = os.getppid()
    directory = truth + ".d"
    os.makedirs(directory, exist_ok=True)
    me_args = [sys.executable, "-I", os.path.abspath(__file__), "--role"]

    def body():
        me(directory, "root")
        pid = str(os.getpid())
        kids = [subprocess.Popen(me_args + ["pyexec_before", directory, pid]),
                subprocess.Popen(["sh", "-c", f'sleep {BEFORE_S}; exec "$@"', "sh",
                                  *me_args, "shexec_after", directory, pid])]
        while not os.path.exists(os.path.join(directory, "pyexec_before.json")):
            time.sleep(0.01)
        write_atomic(truth, {"generation": 0, "pid": os.getpid(), "dir": directory,
                             "shexec_pid": kids[1].pid, "before_s": BEFORE_S,
                             "python_version": ".".join(map(str, sys.version_info[:3]))})
        while parent_alive(parent):
            spin()
        del kids

    run_as("root", body)


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if sys.argv[1] == "--role":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    root(sys.argv[1])


if __name__ == "__main__":
    main()
