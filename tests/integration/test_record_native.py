"""Integration tests for `pyscope record --native` (C frames merged into each sampled stack).

The target (tests/targets/park.py) parks its main thread in time.sleep() inside main() and a
second thread on a lock. Recorded with --native (which implies --blocking) and --idle, the main
thread's stack must go from the C entry point through the Python frames (merged where the
evaluation loop runs them: no _PyEval_EvalFrameDefault frame left) down to libc's sleep, in that
order. The `launch` fixture checks at teardown that the target is alive, not stopped and not
traced (every tick stops and releases every thread).
"""
import re

from conftest import python_target
from runtime_syms import runtime_image, target_names_statics
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
    if target_names_statics(target.pid):
        assert "main" in names and "time_sleep" in names, names
        assert names.index("main") < names.index("time_sleep"), names
        assert "park.py" in sleeping[0][names.index("main")][1], sleeping[0]
        return
    # A stripped runtime (Debian's static python3.X, .dynsym only): time_sleep is static and
    # nameless, so libc's sleep is called by a frame of the runtime named by its address; the
    # parked thread's samples still merge into one stack, keyed by those addresses.
    assert "main" in names, names
    assert "park.py" in sleeping[0][names.index("main")][1], sleeping[0]
    caller, image = sleeping[0][-2], runtime_image(target.pid)
    assert re.fullmatch(r"0x[0-9a-f]+", caller[0]) and caller[1] == image, sleeping[0]
    assert names.index("main") < len(names) - 2, names
    assert len(sleeping) == 1, f"the parked thread's samples did not merge:\n{out}"

