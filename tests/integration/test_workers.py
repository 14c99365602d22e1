"""`pyscope ps` and the workers note, against a pre-fork master and its Python workers.

tests/targets/prefork.py is a master idle in select() with three Python workers (one behind a
shell) that raise in a loop; its truth names them. `ps` must list the master with exactly those
workers (text and JSON); `dump`, `exceptions`, `growth` and `attach` on the master must say in
one sentence that the work may happen in those workers, with their pids.
"""

import json
import os
import re
import signal

import pytest

from conftest import (PYSCOPE_TIMEOUT_S, RC_OK, assert_not_stopped_or_traced, children,
                      is_zombie_or_gone, python_target, wait_for)
from test_attach import screen  # noqa: F401 - the fixture
from test_pod import one_python  # noqa: F401 - the fixture


@pytest.fixture
def prefork(python, launch):
    """On every interpreter of the matrix: for `ps`, which reads each one's version."""
    return launch(python_target(python, "prefork.py"))


@pytest.fixture
def prefork_one(one_python, launch):  # noqa: F811
    """On the first interpreter of the matrix: the notes, growth and attach do not depend on
    the version, and each takes seconds."""
    return launch(python_target(one_python, "prefork.py"))


def ps_json(pyscope):
    result = pyscope("ps", "--json")
    assert result.rc == RC_OK, result
    return {p["pid"]: p for p in result.json()["processes"]}


def test_ps_lists_the_master_with_its_workers(prefork, pyscope):
    truth = prefork.truth
    procs = ps_json(pyscope)
    master = procs[truth["pid"]]
    assert master["python_version"] == truth["version"] and master["version_read"], master
    assert sorted(master["workers"]) == sorted(truth["workers"]), master
    assert master["threads"] >= 1 and master["rss_bytes"] > 1 << 20, master
    assert "prefork.py" in master["cmdline"]
    assert master["master"] == os.getpid()                       # pytest started it
    for pid in truth["workers"]:
        worker = procs[pid]
        assert worker["master"] == truth["pid"], worker          # through the shell, too
        assert worker["python_version"] == truth["version"], worker
        assert "--worker" in worker["cmdline"] and worker["workers"] == [], worker
    assert truth["shell"] not in procs                           # sh is not Python

    text = pyscope("ps")
    assert text.rc == RC_OK, text
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["PID", "PPID", "PYTHON", "THREADS", "RSS", "CPU", "s", "COMMAND"]
    at = next(i for i, l in enumerate(lines) if l.split()[0] == str(truth["pid"]))
    assert lines[at].rstrip().endswith("[master of 3 workers]"), lines[at]
    under = [int(l.split()[0]) for l in lines[at + 1:at + 4]]
    assert sorted(under) == sorted(truth["workers"]), lines
    assert all("\\_ " in l for l in lines[at + 1:at + 4]), lines


class note_re:  # noqa: N801 - used like the compiled pattern it was
    """The workers note, its pids in any order (pyscope lists them as it finds them: children
    in fork order, then theirs; after a pid wrap that is not numeric order)."""

    def __init__(self, truth, command):
        self.want = sorted(truth["workers"])
        self.pattern = re.compile(
            rf"pid {truth['pid']} has 3 Python worker processes \(([\d, ]+)\) that may do the "
            rf"work: `pyscope ps` lists them, `pyscope {command} \d+` looks at one")

    def search(self, text):
        m = self.pattern.search(text)
        return m if m and sorted(int(p) for p in m.group(1).split(", ")) == self.want else None


@pytest.mark.parametrize("command", ["dump", "exceptions", "growth"])
def test_commands_on_the_master_name_its_workers(prefork_one, pyscope, command):
    extra = {"dump": [], "exceptions": ["--duration", "1"],
             "growth": ["--duration", "0.5", "--interval", "0.1"]}[command]
    result = pyscope(command, *extra, prefork_one.pid)
    assert result.rc == RC_OK, result
    assert note_re(prefork_one.truth, command).search(result.stderr), result.stderr
    # ... and not on a worker, which has none
    worker = pyscope("dump", prefork_one.truth["workers"][0])
    assert worker.rc == RC_OK and "worker process" not in worker.stderr, worker


def test_attach_on_the_master_names_its_workers(prefork_one, screen):  # noqa: F811
    s = screen(prefork_one.pid)
    pids = ", ".join(str(p) for p in sorted(prefork_one.truth["workers"]))
    s.wait_text(f"has 3 Python worker processes ({pids})", "the workers note in the status line")
    s.keys("q")
    assert s.wait_exit() == 0


def test_growth_subprocesses_watches_every_worker(prefork_one, pyscope):
    truth = prefork_one.truth
    result = pyscope("growth", "--subprocesses", "--json", "--duration", "2", "--interval", "0.1",
                     "--report", "0", "--top", "0", prefork_one.pid)
    assert result.rc == RC_OK, result
    summaries = {d["pid"]: d for d in map(json.loads, result.stdout.splitlines())
                 if d["event"] == "summary"}
    assert set(summaries) == {truth["pid"], *truth["workers"]}, result
    for pid in truth["workers"]:                # each worker's own LEAK grows
        leak = [r for r in summaries[pid]["containers"] if r["name"] == "__main__.LEAK"]
        assert leak and leak[0]["growth_per_min"] > 0, (pid, summaries[pid]["containers"][:3])
    master = [r for r in summaries[truth["pid"]]["containers"] if r["name"] == "__main__.LEAK"]
    assert all(r["growth_per_min"] == 0 for r in master), master
    assert "worker process" not in result.stderr    # it watches them: no note to look there


def header_pid(s):
    m = re.match(r"pid (\d+) ", s.lines()[0])
    return int(m.group(1)) if m else None


def test_attach_w_switches_through_master_and_workers(prefork_one, screen):  # noqa: F811
    truth = prefork_one.truth
    s = screen(prefork_one.pid)
    s.wait(lambda _: header_pid(s) == truth["pid"], "the master in the header")
    previous = truth["pid"]
    for want in sorted(truth["workers"]) + [truth["pid"]]:   # master, workers, back to master
        s.keys("w")
        s.wait(lambda _: header_pid(s) == want, f"w to switch to pid {want}")
        assert_not_stopped_or_traced(previous)              # the last session released it
        previous = want
    s.keys("q")
    assert s.wait_exit() == 0
    for pid in [truth["pid"], *truth["workers"]]:
        assert_not_stopped_or_traced(pid)


def tree_starts(records):
    return {e["pid"] for e in records if e["event"] == "start"}


def tree_raises(records, pid):
    return [e for e in records if e["event"] == "raise" and e["pid"] == pid
            and (e["message"] or "").startswith("tree ")]


def go(directory, what):
    with open(os.path.join(directory, f"go.{what}" if what != "respawn" else what), "w",
              encoding="utf-8"):
        pass


@pytest.mark.parametrize("mechanism", ["bpf", "perf"])
def test_exceptions_subprocesses_traces_every_worker(one_python, launch, mechanism):  # noqa: F811
    """tests/targets/exc_tree.py: a master, two forked workers and one behind a shell, each
    raising ROUNDS known exceptions when told (after its tracer started); the first worker then
    exits and the master forks a replacement, which is followed too. Each process's raises are
    reported exactly once, under its own pid; nothing stays traced or stopped."""
    from test_exceptions import Tracer

    rounds = 25
    target = launch(python_target(one_python, "exc_tree.py"), extra=[rounds])
    truth, directory = target.truth, os.path.dirname(target.truth_path)
    first = [*truth["workers"], truth["shell_worker"]]
    tracer = Tracer(truth["pid"], "--subprocesses", "--max-rate", 0, "--mechanism", mechanism)
    try:
        tracer.wait_events(lambda r: {truth["pid"], *first} <= tree_starts(r),
                           "start records of the master and its three workers")
        for pid in first:
            go(directory, pid)
        tracer.wait_events(lambda r: all(len(tree_raises(r, p)) >= rounds for p in first),
                           "every raise of the first workers")
        with open(os.path.join(directory, f"bye.{truth['workers'][0]}"), "w", encoding="utf-8"):
            pass                                            # the first worker exits ...
        tracer.wait_events(lambda r: any(e["event"] == "stop" and e["pid"] == truth["workers"][0]
                                         for e in r), "the exited worker's stop record")
        # ... its tracer is gone (with bpf, its probe too, which would have cleared the int3 the
        # new worker inherits from the traced master: that worker must be traced all the same)
        go(directory, "respawn")
        respawned = target.wait_truth(1)["respawned"]       # ... and the master forks another
        tracer.wait_events(lambda r: respawned in tree_starts(r), "the respawned worker's start")
        go(directory, respawned)
        go(directory, truth["pid"])
        every = [truth["pid"], *first, respawned]
        tracer.wait_events(lambda r: all(len(tree_raises(r, p)) >= rounds for p in every),
                           "every raise of the respawned worker and the master")
    finally:
        rc, err = tracer.finish(signal.SIGINT)
    assert rc == 0, err
    records = tracer.lines
    for pid in every:
        messages = sorted(e["message"] for e in tree_raises(records, pid))
        assert messages == sorted(f"tree {pid} {i}" for i in range(rounds)), (pid, messages)
        assert all(e["mechanism"] == mechanism for e in records
                   if e["event"] == "start" and e["pid"] == pid)
    events = [e for e in records if e["event"] in ("raise", "handled", "propagating")]
    assert all(e["pid"] in every for e in events)       # each event names its process
    assert truth["shell"] not in tree_starts(records)    # sh is not Python
    exited = [e for e in records if e["event"] == "stop" and e["pid"] == truth["workers"][0]]
    assert [e["reason"] for e in exited] == ["target exited"], exited
    stops = {e["pid"] for e in records if e["event"] == "stop"}
    assert stops == set(every), (stops, every)           # each tracer ended and said so
    for pid in [truth["pid"], truth["workers"][1], truth["shell_worker"], respawned]:
        assert_not_stopped_or_traced(pid)


def test_exceptions_subprocesses_text_shows_each_pid(prefork_one, pyscope):
    """Text feed: every line names its process; the workers' raises are there."""
    truth = prefork_one.truth
    result = pyscope("exceptions", "--subprocesses", "--duration", "2", "--max-rate", "5",
                     prefork_one.pid)
    assert result.rc == RC_OK, result
    pids = {int(m.group(1)) for m in re.finditer(r"\[pid (\d+) tid \d+\] ValueError: work",
                                                 result.stdout)}
    assert pids == set(truth["workers"]), result.stdout[:2000]
    assert "worker process" not in result.stderr, result.stderr
    for pid in [truth["pid"], *truth["workers"]]:   # each tracer ended at the deadline itself
        assert f"pid {pid}: stopped (duration)" in result.stderr, result.stderr
        assert_not_stopped_or_traced(pid)


def descendants(pid):
    """Every live descendant of pid (children of children)."""
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


@pytest.mark.parametrize("victim", ["parent", "tracer"])
def test_exceptions_subprocesses_sigkill(prefork_one, victim):
    """SIGKILL of the `exceptions --subprocesses` process: every per-process tracer is told by
    the kernel (PR_SET_PDEATHSIG) and ends its trace; SIGKILL of one per-process tracer: only
    its process's trace ends, the others go on. The targets live on, untraced."""
    from test_exceptions import Tracer

    truth = prefork_one.truth
    every = [truth["pid"], *truth["workers"]]
    tracer = Tracer(truth["pid"], "--subprocesses", session=True)
    try:
        tracer.wait_events(lambda r: set(every) <= tree_starts(r), "every process's start")
        ours = descendants(tracer.proc.pid)
        assert ours, "no tracer processes"
        if victim == "parent":
            tracer.proc.kill()
            wait_for(lambda: not any(os.path.exists(f"/proc/{p}") and not
                                     is_zombie_or_gone(p) for p in ours),
                     PYSCOPE_TIMEOUT_S, "every per-process tracer to end")
        else:
            guard = children(tracer.proc.pid)[0]
            os.kill(guard, signal.SIGKILL)
            wait_for(lambda: is_zombie_or_gone(guard), PYSCOPE_TIMEOUT_S, "the guard to die")
            wait_for(lambda: len(children(tracer.proc.pid)) == len(every) - 1,
                     PYSCOPE_TIMEOUT_S, "the dead tracer to be reaped, and no other to end")
            assert tracer.proc.poll() is None               # the others go on
    finally:
        if tracer.proc.poll() is None:
            tracer.finish(signal.SIGINT)
        else:
            tracer.proc.wait()
    for pid in every:
        assert_not_stopped_or_traced(pid)
