"""Integration tests for `pyscope record --tasks` (samples rooted at the asyncio task).

The target (tests/targets/task_burn.py) runs two asyncio tasks burning CPU in different
functions (one through a nested coroutine) and writes, from asyncio's own view, each task's
name and the function it burns in. In the collapsed profile every stack through a burn
function must sit under the root "task: NAME" of the task that runs it, and both tasks must be
seen. The `launch` fixture checks at teardown that the target is alive, not stopped, not traced.
"""
import pytest

from conftest import python_target
from test_record import finish, start_pyscope

RECORD_S = 1.5
MIN_SHARE = 0.1  # each task burns about half of the CPU


@pytest.fixture
def burner(python, launch):
    return launch(python_target(python, "task_burn.py"))


def roots_by_function(text, functions):
    """{function: {root: samples}} for the stacks whose frames include function and the
    coroutine function its task runs (functions: {burn: coroutine}). A stack cut short by a
    torn read (the sampler's, a rare few) lacks the coroutine and is not counted."""
    seen = {fn: {} for fn in functions}
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        for fn, coro in functions.items():
            names = {f.partition(" (")[0] for f in frames}
            if fn in names and coro in names:
                seen[fn][frames[0]] = seen[fn].get(frames[0], 0) + int(n)
    return seen


@pytest.mark.parametrize("blocking", [False, True], ids=["nonblocking", "blocking"])
def test_samples_rooted_at_their_task(burner, blocking):
    truth = burner.truth
    burns = truth["burns"]
    assert set(burns) == set(truth["tasks"]), truth
    args = ["record", "--tasks", "-q", "-f", "collapsed", "-d", RECORD_S]
    proc = start_pyscope(*args, *(["--blocking"] if blocking else []), burner.pid)
    rc, out, err = finish(proc)
    assert rc == 0, err
    total = sum(int(line.rpartition(" ")[2]) for line in out.splitlines())
    seen = roots_by_function(out, {burns[task]: truth["tasks"][task] for task in burns})
    for task, fn in burns.items():
        roots = seen[fn]
        assert set(roots) == {f"task: {task}"}, f"{fn} is under {roots}, not only {task}:\n{out}"
        assert roots[f"task: {task}"] >= MIN_SHARE * total, (task, roots, total)


def test_without_tasks_no_task_roots(burner):
    rc, out, err = finish(start_pyscope("record", "-q", "-f", "collapsed", "-d", 0.5, burner.pid))
    assert rc == 0, err
    assert out.strip() and not any(line.startswith("task: ") for line in out.splitlines()), out
