"""`pyscope dump` error paths: exit code, one clear sentence on stderr, and an untouched target.

Each case that has a target asserts right after pyscope ran that the target is not stopped and
not traced (the launch fixture checks it again at teardown, and that the target is still alive).
"""

import json
import os
import re
import shutil
import signal
import subprocess

import pytest

from conftest import (NOBODY, RC_NOPROC, RC_NOTPY, RC_OK, RC_PERM, RC_USAGE, RC_VERSION,
                      assert_not_stopped_or_traced, find_python, python_target, require,
                      tracer_pids, wait_for)

BLOCKING = pytest.mark.parametrize("flags", [[], ["--blocking"]], ids=["plain", "blocking"])


def one_sentence(stderr):
    """stderr is one non-empty line, not a traceback or a sanitizer report."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert not re.search(r"Traceback|AddressSanitizer|runtime error|Segmentation", stderr)
    return lines[0]


def reaped_pid():
    """The pid of a child that has exited and been reaped: no such process now."""
    child = subprocess.Popen(["/bin/true"])
    child.wait(timeout=30)
    assert not os.path.exists(f"/proc/{child.pid}"), "pid reused at once; rerun"
    return child.pid


@pytest.fixture
def sleeper(launch):
    """/bin/sleep: a live process that is not Python (Popen returns after the exec)."""
    return launch(["/bin/sleep", "600"], truth=False)


def test_missing_pid(pyscope):
    pid = reaped_pid()
    result = pyscope("dump", pid)
    assert result.rc == RC_NOPROC, result
    assert str(pid) in one_sentence(result.stderr)
    assert result.stdout == ""


@BLOCKING
def test_not_a_python_process(sleeper, pyscope, flags):
    result = pyscope("dump", *flags, sleeper.pid)
    assert result.rc == RC_NOTPY, result
    message = one_sentence(result.stderr)
    assert re.search(r"not (a )?Python", message, re.I), message
    assert re.search(r"_PyRuntime|libpython|Py_Version", message), \
        f"the message should say what was looked for: {message}"
    assert_not_stopped_or_traced(sleeper.pid)


@BLOCKING
def test_unsupported_python_version(launch, pyscope, flags):
    target = launch(python_target(find_python("3.10"), "park.py"))
    assert target.truth["python_version"].startswith("3.10.")
    result = pyscope("dump", *flags, target.pid)
    assert result.rc == RC_VERSION, result
    assert "3.10" in one_sentence(result.stderr)
    assert_not_stopped_or_traced(target.pid)


@BLOCKING
def test_permission_denied_without_cap_sys_ptrace(python, launch, pyscope, flags):
    require(os.geteuid() == 0, "needs root to run pyscope as another uid via setpriv")
    require(shutil.which("setpriv"), "setpriv (util-linux) is not installed")
    target = launch(python_target(python, "park.py"))
    result = pyscope("dump", *flags, target.pid, as_user=NOBODY)
    assert result.rc == RC_PERM, result
    assert "CAP_SYS_PTRACE" in result.stderr, result
    assert re.search(r"kubernetes|securityContext|kubectl", result.stderr, re.I), result
    assert result.stdout == ""
    assert_not_stopped_or_traced(target.pid)


def attach_strace(pid):
    strace = subprocess.Popen(["strace", "-f", "-p", str(pid), "-o", "/dev/null"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: strace.poll() is not None or
             set(tracer_pids(pid).values()) == {strace.pid}, 30,
             f"strace to trace every task of {pid}")
    assert strace.poll() is None, "strace exited instead of attaching"
    return strace


def detach_strace(strace, pid):
    if strace.poll() is None:
        strace.send_signal(signal.SIGTERM)          # strace detaches cleanly on SIGTERM
    strace.wait(timeout=30)
    wait_for(lambda: set(tracer_pids(pid).values()) <= {0}, 30, f"strace to detach from {pid}")


def test_target_already_traced(python, launch, pyscope):
    require(shutil.which("strace"), "strace is not installed")
    target = launch(python_target(python, "park.py"))
    strace = attach_strace(target.pid)
    try:
        blocked = pyscope("dump", "--blocking", target.pid)
        assert blocked.rc == RC_PERM, blocked
        assert "strace" in blocked.stderr, f"the message should name the tracer: {blocked!r}"
        assert set(tracer_pids(target.pid).values()) == {strace.pid}, "pyscope disturbed strace"
        plain = pyscope("dump", "--json", target.pid)
        assert plain.rc == RC_OK, plain
        dumped = {t["native_id"] for t in plain.json()["threads"]}
        assert dumped == set(target.truth["native_ids"])
    finally:
        detach_strace(strace, target.pid)
    assert_not_stopped_or_traced(target.pid)


def error_cases():
    return [pytest.param("missing", id="missing-pid"), pytest.param("notpython", id="not-python")]


@pytest.mark.parametrize("case", error_cases())
def test_log_format_json_error(case, launch, pyscope):
    if case == "missing":
        pid, want_rc = reaped_pid(), RC_NOPROC
    else:
        pid, want_rc = launch(["/bin/sleep", "600"], truth=False).pid, RC_NOTPY
    result = pyscope("dump", "--log-format", "json", pid)
    assert result.rc == want_rc, result
    line = one_sentence(result.stderr)
    record = json.loads(line)
    assert isinstance(record, dict), line
    assert record["level"] == "error"
    assert isinstance(record["code"], str) and record["code"], line
    assert isinstance(record["message"], str) and record["message"], line
    assert result.stdout == ""


@pytest.mark.parametrize("argv", [
    [],
    ["dump"],
    ["dump", "notapid"],
    ["dump", "-5"],
    ["frobnicate", "1"],
    ["dump", "--no-such-flag", "1"],
    ["dump", "--log-format", "xml", "1"],
    ["dump", "1", "2"],
], ids=lambda argv: " ".join(argv) or "no-args")
def test_bad_usage(pyscope, argv):
    result = pyscope(*argv)
    assert result.rc == RC_USAGE, result
    assert result.stderr.strip(), result
    assert not re.search(r"AddressSanitizer|runtime error|Segmentation", result.stderr)
