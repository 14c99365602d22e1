"""Integration target for `record --subprocesses`: a process tree of known shape and lives.

Usage: python3.X procs_truth.py TRUTH_PATH             (the root; usually started by a shell)
       python3.X procs_truth.py --role ROLE DIR [LIFE]  (the others, started by the root)

The root (role "root") starts, and waits until each runs its own function:
  - pychild: a Python child, which starts pygrand, a Python grandchild;
  - shgrand: a Python grandchild behind `sh -c '...; true'` (the shell stays its parent).
It writes truth generation 0, then waits for SIGUSR1 ("go") and runs two workers at a time
(worker_a, worker_b), each living LIFE seconds by its own clock, respawned once when it exits,
then writes generation 1 and parks. Every Python process runs a function named proc_ROLE
(spinning) and writes DIR/PID.json with its role, pid, start and end (time.time(), comparable
with the `wall` of pyscope's raw samples; end null while it runs). Long-lived processes exit
by themselves once their parent is gone, so a killed root leaves no orphan behind.
"""

import glob
import json
import os
import signal
import subprocess
import sys
import time

WORKER_LIFE_S = 1.5
GO = []


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


def me(directory, role, **extra):
    path = os.path.join(directory, f"{os.getpid()}.json")
    rec = {"role": role, "pid": os.getpid(), "ppid": os.getppid(), "start": time.time(),
           "end": None, **extra}
    write_atomic(path, rec)
    return path, rec


def spawn(directory, role, life=None):
    argv = [sys.executable, "-I", os.path.abspath(__file__), "--role", role, directory]
    return subprocess.Popen(argv + ([str(life)] if life else []), stdin=subprocess.DEVNULL)


def wait_roles(directory, roles):
    deadline = time.monotonic() + 60
    while True:
        seen = set()
        for path in glob.glob(os.path.join(directory, "*.json")):
            try:
                with open(path, encoding="utf-8") as f:
                    seen.add(json.load(f)["role"])
            except (OSError, ValueError):
                pass
        if roles <= seen:
            return
        if time.monotonic() > deadline:
            sys.exit(f"procs_truth: {roles - seen} did not start")
        time.sleep(0.01)


def root_alive():
    """The root process still runs (PROCS_TRUTH_ROOT). A grandchild's own parent can outlive the
    root (`sh -c` waits for its command; pychild waits for pygrand), so each process also ends
    when the root is gone: nothing of the tree outlives its test."""
    try:
        with open(f"/proc/{os.environ['PROCS_TRUTH_ROOT']}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (KeyError, OSError, IndexError):
        return False


def child(role, directory, life):
    parent = os.getppid()

    def body():
        kids = [spawn(directory, "pygrand")] if role == "pychild" else []
        path, rec = me(directory, role)
        while (os.getppid() == parent and root_alive() and
               not (life and time.time() - rec["start"] >= life)):
            spin()
        rec["end"] = time.time()
        write_atomic(path, rec)
        for k in kids:
            k.wait()

    run_as(role, body)


def root(truth):
    parent = os.getppid()
    directory = truth + ".d"
    os.makedirs(directory, exist_ok=True)

    def alive():
        return os.getppid() == parent

    def body():
        os.environ["PROCS_TRUTH_ROOT"] = str(os.getpid())  # inherited by the whole tree
        me(directory, "root")
        cmd = f"{sys.executable} -I {os.path.abspath(__file__)} --role shgrand {directory}; true"
        kids = [spawn(directory, "pychild"), subprocess.Popen(["sh", "-c", cmd])]
        wait_roles(directory, {"pychild", "pygrand", "shgrand"})
        common = {"pid": os.getpid(), "dir": directory,
                  "python_version": ".".join(map(str, sys.version_info[:3]))}
        write_atomic(truth, {"generation": 0, **common})
        while not GO and alive():
            spin()
        for _ in range(2):
            workers = [spawn(directory, r, WORKER_LIFE_S) for r in ("worker_a", "worker_b")]
            while any(w.poll() is None for w in workers):
                spin()
        write_atomic(truth, {"generation": 1, **common})
        while alive():
            spin()
        del kids

    run_as("root", body)


def main():
    if sys.argv[1] == "--role":
        life = float(sys.argv[4]) if len(sys.argv) > 4 else None
        child(sys.argv[2], sys.argv[3], life)
        return
    signal.signal(signal.SIGUSR1, lambda *_: GO.append(1))
    root(sys.argv[1])


if __name__ == "__main__":
    main()
