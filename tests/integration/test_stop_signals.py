"""Exit semantics of the long-running commands (issue 16, README "Exit codes").

SIGINT, SIGTERM and SIGHUP, sent to pyscope alone, to its process group (pyscope and, for
`exceptions`, its worker: what supervisors send), and through `timeout` (which signals the
command, then its group: two deliveries), must each end the command in order: exit code 0 every
time, the final output complete (the summary table, the profile, the growth table) and the
target released. One interpreter (the first of the matrix): this is about pyscope's signal
handling, not about a Python version.
"""

import json
import os
import re
import signal
import subprocess

import pytest

from conftest import (PYSCOPE_BIN, PYSCOPE_TIMEOUT_S, assert_not_stopped_or_traced, find_python,
                      interpreter_versions, python_target, require_pyscope, wait_for)

SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
ROUTES = ["alone", "group", "timeout"]
TIMEOUT_AFTER_S = "1"  # `timeout`'s own delay: any moment must do, pyscope holds the signals


def exceptions_done(out, err):
    """The stop record, a feed line per raise it says was reported, and a summary whose
    ValueError count is every raise it saw: reported + seen but not reported (above its budget
    bpf reports one raise in N and counts every one in the kernel; a rate limit does the same)."""
    stops = re.findall(r"stopped \(signal [A-Z]+\): (\d+) raises reported, (\d+) seen but not "
                       r"reported", err)
    # once, whatever the route: the worker gets each stop signal once (guard.c; counted by
    # route in tests/unit/test_guard.c)
    assert len(stops) == 1 and err.count("stopped (") == 1, err
    reported, unreported = map(int, stops[0])
    lines = out.splitlines()
    headers = [i for i, line in enumerate(lines) if line.split()[:2] == ["count", "type"]]
    assert len(headers) == 1, out[-2000:]                      # one summary table
    header = headers[0]
    fed = sum("ValueError: loop" in line for line in lines[:header])
    assert fed == reported, (fed, err)
    rows = [line.split() for line in lines[header + 1:] if "ValueError" in line]
    assert sum(int(row[0]) for row in rows) == reported + unreported, (out[-2000:], err)


def record_done(out, err, path):
    profile = json.loads(path.read_text())          # complete JSON, whatever the moment
    assert "profiles" in profile, profile.keys()


def growth_done(out, err):
    assert out.count("summary: pid") == 1, out[-2000:]


COMMANDS = {
    "exceptions": (lambda pid, tmp: ["exceptions", "--summary", pid], exceptions_done),
    "record": (lambda pid, tmp: ["record", "--format", "speedscope", "-o", tmp / "p.json", pid],
               record_done),
    "growth": (lambda pid, tmp: ["growth", "--interval", "0.1", "--duration", "0", pid],
               growth_done),
}


@pytest.fixture(scope="module")
def first_python():
    return find_python(interpreter_versions()[0])


def holds_stop_signals(pid):
    """pyscope reached its command (SIGINT blocked from there on: cli_hold_stop_signals)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            blocked = next(line for line in f if line.startswith("SigBlk:"))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return False
    return bool(int(blocked.split()[1], 16) & (1 << (signal.SIGINT - 1)))


def ready(proc, command):
    """Wait until a signal now tests the stop: exceptions traced and fed one raise; the others
    hold the stop signals (before that, pyscope is still being exec'd)."""
    if command != "exceptions":
        wait_for(lambda: holds_stop_signals(proc.pid), PYSCOPE_TIMEOUT_S, "pyscope to start")
        return "", ""
    seen = b""
    while b"tracing exceptions" not in seen:
        line = proc.stderr.readline()
        assert line, f"pyscope exceptions ended before tracing: {seen.decode()}"
        seen += line
    return proc.stdout.readline().decode(), seen.decode()


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_stop_signal_ends_in_order(first_python, launch, tmp_path, command, route, sig):
    require_pyscope()
    target = launch(python_target(first_python, "raise_loop.py"))
    argv_of, check = COMMANDS[command]
    argv = [str(PYSCOPE_BIN), *map(str, argv_of(target.pid, tmp_path))]
    if route == "timeout":
        argv = ["timeout", "--preserve-status", "-s", sig.name, TIMEOUT_AFTER_S, *argv]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True,
                            bufsize=0)  # unbuffered: readline() here, then communicate()
    try:
        early_out, early = ready(proc, command) if route != "timeout" else ("", "")
        if route == "alone":
            proc.send_signal(sig)
        elif route == "group":
            os.killpg(proc.pid, sig)
        out, err = proc.communicate(timeout=PYSCOPE_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out, err = early_out + out.decode(errors="replace"), early + err.decode(errors="replace")
    assert proc.returncode == 0, (proc.returncode, err)
    if command == "record":
        check(out, err, tmp_path / "p.json")
    else:
        check(out, err)
    assert_not_stopped_or_traced(target.pid)


def pending(pid, sig):
    """Whether sig waits, generated but not yet taken (or dropped), for process pid."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        masks = [int(line.split()[1], 16) for line in f if line.startswith(("SigPnd:", "ShdPnd:"))]
    return any(mask & (1 << (sig - 1)) for mask in masks)


def test_subprocesses_survives_a_dropped_sigtstp(first_python, launch):
    """`exceptions --subprocesses` in its own session (a supervisor's setsid: an orphaned
    process group, where the kernel drops a default-action SIGTSTP) gets a SIGTSTP: it must go
    on following the tree, and end when the root exits, with exit code 0. Its former loop
    polled a signalfd that listed SIGTSTP without blocking it, woke for the signal the kernel
    then dropped, and blocked for good in read()."""
    require_pyscope()
    target = launch(python_target(first_python, "raise_loop.py"), expect_alive=False)
    proc = subprocess.Popen([str(PYSCOPE_BIN), "exceptions", "--subprocesses", str(target.pid)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        seen = b""
        while b"tracing exceptions" not in seen:     # the tree's one tracer runs
            line = proc.stderr.readline()
            assert line, f"pyscope ended before tracing: {seen.decode()}"
            seen += line
        proc.send_signal(signal.SIGTSTP)
        wait_for(lambda: not pending(proc.pid, signal.SIGTSTP), PYSCOPE_TIMEOUT_S,
                 "the kernel to drop the SIGTSTP")
        target.proc.kill()
        target.proc.wait()
        err = seen + proc.communicate(timeout=PYSCOPE_TIMEOUT_S)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, (proc.returncode, err.decode())
    assert b"stopped (target exited): 1 Python processes" in err, err.decode()
