"""`pyscope ps` and the workers note, against a pre-fork master and its Python workers.

tests/targets/prefork.py is a master idle in select() with three Python workers (one behind a
shell) that raise in a loop; its truth names them. `ps` must list the master with exactly those
workers (text and JSON); `dump`, `exceptions`, `growth` and `attach` on the master must say in
one sentence that the work may happen in those workers, with their pids.
"""

import json
import os
import re

import pytest

from conftest import RC_OK, assert_not_stopped_or_traced, python_target
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
