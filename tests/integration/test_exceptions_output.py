"""`pyscope exceptions` must never hold the target because its own reader is slow: a consumer
that stops reading (a paused pager, a full pipe) must not leave a raising thread stopped at the
breakpoint. Output is queued (bounded; beyond it records are dropped and counted) and written
only as far as the pipe takes it without blocking.
"""

import signal
import subprocess
import time

from conftest import (PYSCOPE_BIN, PYSCOPE_TIMEOUT_S, python_target, raise_loop_count,
                      require_pyscope)

PROGRESS_RAISES = 6000   # ~30x what a 64 KiB pipe holds in records
PROGRESS_DEADLINE_S = 15


def test_unread_output_never_stalls_the_target(python, launch):
    require_pyscope()
    target = launch(python_target(python, "raise_loop.py"))
    # Unlimited rate: every raise stops the thread and produces a record; nobody reads stdout,
    # so the pipe (64 KiB) fills within a few hundred records.
    proc = subprocess.Popen([str(PYSCOPE_BIN), "exceptions", "--json", "--max-rate", "0",
                             str(target.pid)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Read only the start record (tracing is armed from here on), then never read again.
        assert b'"start"' in proc.stdout.readline()
        deadline = time.monotonic() + PROGRESS_DEADLINE_S
        start = raise_loop_count(target)
        while time.monotonic() < deadline and raise_loop_count(target) < start + PROGRESS_RAISES:
            time.sleep(0.05)
        assert raise_loop_count(target) >= start + PROGRESS_RAISES, \
            "the target stopped making progress while pyscope's output was not read"
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=PYSCOPE_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    lines = out.decode().splitlines()
    assert any('"event":"raise"' in line.replace(" ", "") for line in lines)
    # Whatever was queued is written whole once the target is released: complete lines only.
    assert all(line.startswith("{") and line.endswith("}") for line in lines), lines[-3:]
