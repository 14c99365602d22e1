"""Integration tests for `pyscope record --native` (C frames merged into each sampled stack).

The target (tests/targets/park.py) parks its main thread in time.sleep() inside main() and a
second thread on a lock. Recorded with --native (which implies --blocking) and --idle, the main
thread's stack must go from the C entry point through the Python frames (merged where the
evaluation loop runs them: no _PyEval_EvalFrameDefault frame left) down to libc's sleep, in that
order. The `launch` fixture checks at teardown that the target is alive, not stopped and not
traced (every tick stops and releases every thread).
"""
from conftest import python_target
from test_record import finish, start_pyscope


def frames_of(line):
    """[(function, file)] of one collapsed line, outermost first."""
    stack = line.rpartition(" ")[0]
    out = []
    for frame in stack.split(";"):
        name, _, rest = frame.partition(" (")
        out.append((name, rest.rstrip(")").rpartition(":")[0] or rest.rstrip(")")))
    return out


def test_native_sleep_merged(python, launch):
    target = launch(python_target(python, "park.py"))
    proc = start_pyscope("record", "--native", "--idle", "-q", "-f", "collapsed", "-d", 0.5,
                         target.pid)
    rc, out, err = finish(proc)
    assert rc == 0, err
    stacks = [frames_of(line) for line in out.splitlines()]
    assert stacks, err
    assert not any(f == "_PyEval_EvalFrameDefault" for s in stacks for f, _ in s), out
    sleeping = [s for s in stacks
                if s and "sleep" in s[-1][0] and "libc" in s[-1][1]]
    assert sleeping, f"no stack ends in libc's sleep:\n{out}"
    names = [f for f, _ in sleeping[0]]
    assert "main" in names and "time_sleep" in names, names
    assert names.index("main") < names.index("time_sleep"), names
    assert "park.py" in sleeping[0][names.index("main")][1], sleeping[0]

