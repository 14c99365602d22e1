"""`pyscope dump --tasks` against a parked event loop, compared with the ground truth it wrote.

tasks.py parks an event loop (main thread) with tasks in known states plus a second loop in
another thread, and records from inside the loop every task's address (id), name, state, what it
awaits, its TaskGroup / gather() children and its coroutine chain innermost first (the running
task: its thread stack out to its coroutine frame). pyscope's JSON must match it task by task
and frame by frame; the text report must show the same tasks, chains (outermost first) and the
deadlock. Every test runs once per interpreter in PYSCOPE_PYTHON_VERSIONS; the launch fixture
checks after each test that the target is alive, not stopped and not traced.
"""

import json
import re

from conftest import RC_OK, RC_USAGE, python_target, validate_dump_json

UNNAMED_RE = re.compile(r"Task-\d+$")
MANY = 3000


def key(frame):
    return (frame["function"], frame["file"], frame["line"])


def by_addr(items, field):
    return {item[field]: item for item in items}


def truth_cycles(truth):
    """Addresses of tasks on a cycle of the truth's await edges (each task awaits at most one)."""
    nxt = {t["addr"]: t["awaits"]["task"] for t in truth["tasks"]
           if t["awaits"] and t["awaits"]["kind"] == "task"}
    on_cycle = set()
    for start in nxt:
        seen, v = [], start
        while v in nxt and v not in seen:
            seen.append(v)
            v = nxt[v]
        if v == start:
            on_cycle.add(start)
    return on_cycle


def truth_edges(truth):
    edges = set()
    for t in truth["tasks"]:
        if t["awaits"] and t["awaits"]["kind"] == "task":
            edges.add((t["addr"], t["awaits"]["task"], "await"))
        edges.update((t["addr"], kid["task"], kid["via"]) for kid in t["children"])
    return edges


def dumped_edges(doc):
    tasks = doc["tasks"]
    return {(tasks[e["from"]]["address"], tasks[e["to"]]["address"], e["via"])
            for e in doc["await_graph"]}


def check_task(doc, want, got):
    label = want["name"] or got["name"]
    if want["name"] is None:
        assert UNNAMED_RE.match(got["name"]), f"unnamed task shown as {got['name']!r}"
    else:
        assert got["name"] == want["name"]
    assert got["state"] == want["state"], label
    assert got["error"] is None, f"{label}: {got['error']}"
    if want["state"] == "running":
        return
    assert [key(f) for f in got["frames"]] == [key(f) for f in want["chain"]], label
    assert [f["qualname"] for f in got["frames"]] == [f["qualname"] for f in want["chain"]]
    if want["awaits"] is None:
        assert got["awaits"] is None, label
        return
    assert got["awaits"]["kind"] == want["awaits"]["kind"], label
    if want["awaits"]["kind"] == "task":
        assert doc["tasks"][got["awaits"]["task"]]["address"] == want["awaits"]["task"], label


def check_running(doc, truth, got):
    """The runner: on the loop's thread, its chain = that thread's innermost frames."""
    assert [key(f) for f in got["frames"]] == [key(f) for f in truth["running_chain"]]
    assert got["thread_native_id"] == truth["native_id"]
    thread = next(t for t in doc["threads"] if t["native_id"] == truth["native_id"])
    assert got["thread_frame"] == len(truth["running_chain"]) - 1
    assert thread["frames"][: got["thread_frame"] + 1] == got["frames"]


def dump_tasks(pyscope, pid, tmp_path, *extra):
    out = tmp_path / "tasks.json"
    result = pyscope("dump", "--tasks", "--json", "-o", out, *extra, pid)
    assert result.rc == RC_OK, result
    validate_dump_json(out)
    return result, json.loads(out.read_text())


def test_tasks_match_truth(python, launch, pyscope, tmp_path):
    target = launch(python_target(python, "tasks.py"))
    truth = target.truth
    for extra in ((), ("--blocking",)):
        _, doc = dump_tasks(pyscope, target.pid, tmp_path, *extra)
        summary = doc["tasks_summary"]
        assert summary["error"] is None
        assert summary["found"] == summary["listed"] == len(truth["tasks"])
        assert summary["loops"] == 2 and not summary["capped"]
        assert doc["tasks"][0]["state"] == "running"
        want, got = by_addr(truth["tasks"], "addr"), by_addr(doc["tasks"], "address")
        assert set(got) == set(want)
        for addr, w in want.items():
            check_task(doc, w, got[addr])
        check_running(doc, truth, doc["tasks"][0])
        assert dumped_edges(doc) == truth_edges(truth)
        cycle = {t["address"] for t in doc["tasks"] if t["in_cycle"]}
        assert cycle == truth_cycles(truth) and len(cycle) == 2


def test_tasks_text(python, launch, pyscope):
    target = launch(python_target(python, "tasks.py"))
    truth = target.truth
    result = pyscope("dump", "--tasks", "--no-source", target.pid)
    assert result.rc == RC_OK, result
    text = result.stdout
    assert re.search(r"asyncio: %d tasks in 2 event loops" % len(truth["tasks"]), text)
    blocks = {b.split("\n", 1)[0]: b for b in re.split(r"\n\n", text) if b.startswith("Task ")}
    for task in truth["tasks"]:
        name = re.escape(task["name"]) if task["name"] else r"Task-\d+"
        header = [h for h in blocks if re.match(r'Task "%s" \[%s\]' % (name, task["state"]), h)]
        assert header, f"no block for {name} [{task['state']}]:\n{text}"
        if task["name"] is None:
            continue
        frames = re.findall(r'File "(.*)", line (\d+), in (\S+)', blocks[header[0]])
        chain = truth["running_chain"] if task["state"] == "running" else task["chain"]
        assert [(f, int(n), fn) for f, n, fn in frames] == \
            [(c["file"], c["line"], c["function"]) for c in reversed(chain)], header[0]
    sleeper = next(h for h in blocks if h.startswith('Task "sleeper"'))
    assert "sleeping (asyncio.sleep)" in sleeper
    assert re.search(r'^DEADLOCK: "dl-(a|b)" -> "dl-(a|b)" -> "dl-\1"$', text, re.M), text


def test_tasks_cap_many(python, launch, pyscope, tmp_path):
    target = launch(python_target(python, "tasks.py"), extra=[MANY])
    truth = target.truth
    result, doc = dump_tasks(pyscope, target.pid, tmp_path, "--max-tasks", "40")
    summary = doc["tasks_summary"]
    assert summary["found"] == len(truth["tasks"]) > MANY
    assert summary["listed"] == len(doc["tasks"]) == 40 and summary["capped"]
    assert summary["by_state"]["running"] == 1 and doc["tasks"][0]["name"] == "runner"
    assert all(t["state"] in ("running", "pending") for t in doc["tasks"])
    assert doc["stats"]["read_seconds"] < 2.0, doc["stats"]
    text = pyscope("dump", "--tasks", "--no-source", "--max-tasks", "40", target.pid)
    assert text.rc == RC_OK and "showing 40" in text.stdout
    assert len(text.stdout) < 64 * 1024


def test_tasks_without_asyncio(python, launch, pyscope, tmp_path):
    target = launch(python_target(python, "park.py"))
    _, doc = dump_tasks(pyscope, target.pid, tmp_path)
    assert doc["tasks"] == [] and "asyncio is not imported" in doc["tasks_summary"]["error"]
    text = pyscope("dump", "--tasks", target.pid)
    assert text.rc == RC_OK and "asyncio: asyncio is not imported" in text.stdout


def test_max_tasks_usage(pyscope):
    for bad in ("0", "-1", "x", "100001"):
        result = pyscope("dump", "--tasks", "--max-tasks", bad, "1")
        assert result.rc == RC_USAGE, result
