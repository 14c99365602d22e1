"""Exit semantics of every command (issue 16, README "Exit codes").

SIGINT, SIGTERM, SIGHUP and SIGQUIT, sent to pyscope alone, to its process group (pyscope and,
for `exceptions`, its worker; for `run`, its command: what supervisors send), and through
`timeout` (which signals the command, then its group: two deliveries), must each end the command
in order: the exit code README documents, the same every time, the final output complete (the
summary table, the profile, the growth table, the snapshot) and the target released. One
interpreter (the first of the matrix): this is about pyscope's signal handling, not about a
Python version. `attach`'s stop by signal is test_attach.py's.
"""

import json
import os
import re
import signal
import subprocess

import pytest

from conftest import (PYSCOPE_BIN, PYSCOPE_TIMEOUT_S, assert_not_stopped_or_traced, children,
                      find_python, interpreter_versions, is_zombie_or_gone, python_target,
                      require_pyscope, wait_for)

SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
ALL_SIGNALS = [*SIGNALS, signal.SIGQUIT]
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


# SIGQUIT: the same path as the others in every loop (evloop's one list); checked alone for the
# long-running commands, by every route for run, where the command dies of it too. Each
# `timeout` case costs its delay.
ROUTE_SIGNALS = [pytest.param(route, sig, id=f"{route}-{sig.name}") for route in ROUTES
                 for sig in ALL_SIGNALS]
LONG_CASES = [pytest.param(route, sig, id=f"{route}-{sig.name}") for route in ROUTES
              for sig in ALL_SIGNALS if route == "alone" or sig != signal.SIGQUIT]


@pytest.mark.parametrize("route,sig", LONG_CASES)
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


# --- the one-shot commands: dump and ps ---------------------------------------------------------

def blocked_writing(pid):
    """pyscope sleeps in write(2): its output pipe is full (a pyscope that holds the stop
    signals holds them by then)."""
    try:
        with open(f"/proc/{pid}/syscall", encoding="ascii") as f:
            call = f.read().split()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return call[:1] == ["1"]


def held_or_gone(pid, sig):
    """The signal reached pyscope and waits, held (or, on a binary that does not hold it,
    pyscope is gone)."""
    try:
        return pending(pid, sig) or is_zombie_or_gone(pid)
    except (FileNotFoundError, ProcessLookupError):
        return True


def fill(fd):
    """Fill the pipe whose write end is fd to the last byte; returns how many were written."""
    os.set_blocking(fd, False)
    n = 0
    for size in (4096, 1):
        try:
            while True:
                n += os.write(fd, b"x" * size)
        except BlockingIOError:
            pass
    os.set_blocking(fd, True)
    return n


def drain(fd):
    data = b""
    while chunk := os.read(fd, 1 << 16):
        data += chunk
    return data


def dump_text_done(out, target):
    assert f"Process {target.pid}" in out and "park.py" in out, out[-2000:]
    assert out.endswith("\n"), out[-2000:]


def dump_json_done(out, target):
    doc = json.loads(out)                         # complete JSON, whatever the moment
    assert doc["pid"] == target.pid and len(doc["threads"]) >= 2, out[-2000:]


def ps_done(out, target):
    doc = json.loads(out)
    assert target.pid in [p["pid"] for p in doc["processes"]], out[-2000:]


ONE_SHOT = {
    "dump": (lambda pid: ["dump", pid], dump_text_done),
    "dump-blocking-json": (lambda pid: ["dump", "--blocking", "--json", pid], dump_json_done),
    "ps": (lambda pid: ["ps", "--json"], ps_done),
}
ONE_SHOT_TIMEOUT_S = "0.5"  # pyscope then sleeps on its full pipe: any moment after exec does


# dump (whose --blocking has handlers of its own, target.c's) by every signal alone and to its
# group, through `timeout` by its default SIGTERM; ps by SIGTERM
ONE_SHOT_CASES = [pytest.param(command, route, sig, id=f"{command}-{route}-{sig.name}")
                  for command in ONE_SHOT for route in ROUTES for sig in ALL_SIGNALS
                  if sig == signal.SIGTERM or (command != "ps" and route != "timeout")]


@pytest.mark.parametrize("command,route,sig", ONE_SHOT_CASES)
def test_one_shot_finishes_its_output(first_python, launch, tmp_path, command, route, sig):
    """dump and ps under a stop signal: the snapshot is written whole, exit code 0 (what it
    gives without a signal: the target is parked, never partial), the target released. The
    signal must arrive before the output is out: pyscope writes into a pipe filled beforehand,
    and sleeps in write() until the test drains it, after the signal waits held in pyscope.
    Before pyscope held the stop signals, dump and ps died of them (143, nothing written),
    `dump --blocking` through target.c's handler."""
    require_pyscope()
    target = launch(python_target(first_python, "park.py"))
    argv_of, check = ONE_SHOT[command]
    argv = [str(PYSCOPE_BIN), *map(str, argv_of(target.pid))]
    if route == "timeout":
        argv = ["timeout", "--preserve-status", "-s", sig.name, ONE_SHOT_TIMEOUT_S, *argv]
    r, w = os.pipe()
    filled = fill(w)
    with open(tmp_path / "err", "wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=w, stderr=err,
                                start_new_session=True)
    os.close(w)
    try:
        pid = proc.pid
        if route == "timeout":
            wait_for(lambda: children(proc.pid), PYSCOPE_TIMEOUT_S, "timeout to start pyscope")
            pid = children(proc.pid)[0]
        wait_for(lambda: blocked_writing(pid), PYSCOPE_TIMEOUT_S,
                 "pyscope to write into its full pipe")
        if route == "alone":
            proc.send_signal(sig)
        elif route == "group":
            os.killpg(proc.pid, sig)
        wait_for(lambda: held_or_gone(pid, sig), PYSCOPE_TIMEOUT_S, f"{sig.name} to arrive")
        data = drain(r)
        proc.wait(timeout=PYSCOPE_TIMEOUT_S)
    finally:
        os.close(r)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    errtext = (tmp_path / "err").read_text(errors="replace")
    assert proc.returncode == 0, (proc.returncode, errtext)
    assert data[:filled] == b"x" * filled
    check(data[filled:].decode(errors="replace"), target)
    assert_not_stopped_or_traced(target.pid)


# --- run: the command is pyscope's child --------------------------------------------------------

RUN_TARGET = """
import os, resource, signal, sys
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGQUIT: no core file
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
    signal.signal(s, signal.SIG_IGN if sys.argv[2] == "ignore" else signal.SIG_DFL)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
def work():
    while True:
        sum(range(1000))
work()
"""


def recording(pid, path):
    """`run` started recording: its command's runtime was read, the output file is open."""
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path)
                   for fd in os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return False


def start_run(python, tmp_path, mode, route=None, sig=None):
    """`pyscope run` of RUN_TARGET (its stop signals at their default action, or ignored);
    returns (proc, ready path, profile path). With the timeout route, `timeout` starts it."""
    script, ready, out = tmp_path / "cmd.py", tmp_path / "ready", tmp_path / "p.json"
    script.write_text(RUN_TARGET)
    argv = [str(PYSCOPE_BIN), "run", "-q", "-f", "speedscope", "-o", str(out), "--",
            python, "-I", str(script), str(ready), mode]
    if route == "timeout":
        argv = ["timeout", "--preserve-status", "-s", sig.name, TIMEOUT_AFTER_S, *argv]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    return proc, ready, out


@pytest.mark.parametrize("route,sig", ROUTE_SIGNALS)
def test_run_ends_with_its_command(first_python, tmp_path, route, sig):
    """`run` of a command that dies of the stop signals: whatever the route (the command gets
    the signal from the group, passed on by pyscope, or both), exit code 128+N every time, the
    command's status as README says, the profile complete, the command reaped."""
    require_pyscope()
    proc, ready, out = start_run(first_python, tmp_path, "default", route, sig)
    try:
        if route != "timeout":
            wait_for(lambda: ready.exists() and recording(proc.pid, out), PYSCOPE_TIMEOUT_S,
                     "run to record its command")
        if route == "alone":
            proc.send_signal(sig)
        elif route == "group":
            os.killpg(proc.pid, sig)
        err = proc.communicate(timeout=PYSCOPE_TIMEOUT_S)[1].decode(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + sig, (proc.returncode, err)
    assert "profiles" in json.loads(out.read_text()), err
    assert is_zombie_or_gone(int(ready.read_text()))


@pytest.mark.parametrize("sig", ALL_SIGNALS, ids=lambda s: s.name)
def test_run_escalates_to_sigkill(first_python, tmp_path, sig):
    """`run` of a command that ignores the stop signals: the first is passed on (and ignored),
    the second ends the recording and the profile is written, the third sends the command
    SIGKILL: exit code 137, never a wait for ever. Before, pyscope sat in waitpid(2) with the
    signals held and unread until someone killed the command."""
    require_pyscope()
    proc, ready, out = start_run(first_python, tmp_path, "ignore")
    try:
        wait_for(lambda: ready.exists() and recording(proc.pid, out), PYSCOPE_TIMEOUT_S,
                 "run to record its command")
        for n in range(2):
            proc.send_signal(sig)
            wait_for(lambda: not pending(proc.pid, sig), PYSCOPE_TIMEOUT_S,
                     f"pyscope to take signal {n + 1}")
        wait_for(lambda: not recording(proc.pid, out), PYSCOPE_TIMEOUT_S,
                 "the profile to be written")
        assert proc.poll() is None and not is_zombie_or_gone(int(ready.read_text()))
        proc.send_signal(sig)
        err = proc.communicate(timeout=PYSCOPE_TIMEOUT_S)[1].decode(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + signal.SIGKILL, (proc.returncode, err)
    assert "profiles" in json.loads(out.read_text()), err
    assert is_zombie_or_gone(int(ready.read_text()))
