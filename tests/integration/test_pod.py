"""pyscope in a pod: the static binary alone in an empty root, the target outside.

`kubectl debug --target` and a sidecar with a shared process namespace give pyscope a container
of its own (its own mount namespace and root filesystem) in the target's pid namespace.
tests/tools/pod-run builds exactly that with unshare: a tmpfs root holding only /proc and a copy
of the binary, chroot into it, the target a normal process outside. The static binary
(scripts/build-static, built once per session into build-static/, or PYSCOPE_STATIC_BIN) then
passes the dynamic build's own checks, run unchanged: the `pyscope` runner, the exception
tracer, the growth runner and the tmux screen of the other test modules are pointed at it (their
PYSCOPE_BIN), so the ground truth and the comparisons are theirs. The target's executable,
libpython and sources exist only outside the root: pyscope reaches them through /proc/PID/root.
"""

import signal
import subprocess

import pytest

import conftest
import test_attach
import test_dump
import test_exceptions
import test_growth
import test_record
from conftest import ROOT, find_python, interpreter_versions, python_target
from test_attach import screen  # noqa: F401 - the fixture, for test_attach_in_pod

POD_RUN = ROOT / "tests" / "tools" / "pod-run"


def pod_wrapper(tmp_path, binary):
    """An executable that runs `binary` in a fresh empty root (see tests/tools/pod-run)."""
    root = tmp_path / "pod-root"
    root.mkdir(exist_ok=True)
    wrapper = tmp_path / "pyscope-in-pod"
    wrapper.write_text(f"#!/bin/sh\nPOD_ROOT='{root}' exec '{POD_RUN}' '{binary}' \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


@pytest.fixture
def in_pod(static_pyscope, tmp_path, monkeypatch):
    """Every test module's pyscope is the static binary in its pod for this test."""
    wrapper = pod_wrapper(tmp_path, static_pyscope)
    for module in (conftest, test_attach, test_exceptions, test_growth, test_record):
        monkeypatch.setattr(module, "PYSCOPE_BIN", wrapper)
    return wrapper


@pytest.fixture
def one_python():
    """The first interpreter of the matrix: the modes below do not depend on the version
    (dump, which does, runs on every one)."""
    return find_python(interpreter_versions()[0])


def test_the_pod_has_nothing_but_pyscope(static_pyscope, tmp_path):
    """The dynamic build cannot even start in the pod (no loader, no libraries), so the tests
    below prove the static binary needs nothing of the host."""
    dynamic = pod_wrapper(tmp_path, conftest.PYSCOPE_BIN)
    run = subprocess.run([str(dynamic), "--version"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 127 and "No such file" in run.stderr, run
    static = subprocess.run([str(pod_wrapper(tmp_path, static_pyscope)), "--version"],
                            capture_output=True, text=True, timeout=60)
    assert static.returncode == 0 and static.stdout.startswith("pyscope "), static


def test_dump_in_pod(shapes, in_pod, pyscope):
    test_dump.test_json_matches_truth(shapes, pyscope)
    # Source lines are read from the target's files, which only /proc/PID/root reaches.
    test_dump.test_text_dump_reads_like_a_traceback(shapes, pyscope)


def test_record_in_pod(one_python, launch, in_pod, pyscope, tmp_path, monkeypatch):
    monkeypatch.setenv("POD_VOLUME", str(tmp_path))     # the profile is written to a volume
    split = launch(python_target(one_python, "cpusplit.py"))
    test_record.test_profile_matches_the_targets_own_split(split, pyscope, tmp_path)


@pytest.mark.parametrize("mechanism", ["bpf", "perf"])
def test_exceptions_in_pod(one_python, launch, in_pod, mechanism):
    # bpf in the empty root: no /sys there, so the possible-CPU list and the uprobe PMU's type
    # are read from the target's /sys (/proc/PID/root/sys); perf is a pod's ptrace path
    test_exceptions.test_every_raise_reported_then_clean_exit(one_python, launch, signal.SIGINT,
                                                              mechanism)


def test_exceptions_in_pod_chooses_bpf_else_says_why(one_python, launch, in_pod, monkeypatch):
    """The automatic choice in the empty root: bpf; in a pod without CAP_BPF, CAP_PERFMON and
    CAP_SYS_ADMIN, perf breakpoints with the sentence saying why bpf was refused."""
    target = test_exceptions.raiser(one_python, launch)
    tracer = test_exceptions.Tracer(target.pid)
    assert (tracer.mechanism, tracer.start["mechanism_note"]) == ("bpf", ""), tracer.start
    rc, err = tracer.finish(signal.SIGINT)
    assert rc == 0, err
    monkeypatch.setenv("POD_BOUNDING", "-bpf,-perfmon,-sys_admin")
    tracer = test_exceptions.Tracer(target.pid)
    rc, err = tracer.finish(signal.SIGINT)
    assert rc == 0, err
    assert tracer.mechanism == "perf", tracer.start
    assert "CAP_BPF" in tracer.start["mechanism_note"], tracer.start


def test_growth_in_pod(one_python, launch, in_pod):
    test_growth.test_growing_dict_is_first_with_its_rate(one_python, launch, conftest.run_pyscope)


# The sentence the README quotes for a debug container without SYS_PTRACE next to a root target.
NO_PTRACE = ("pyscope: cannot read the memory of pid {pid}: it runs as pyscope's own uid 0 but "
             "holds capabilities pyscope lacks (CapPrm in /proc/PID/status), and the kernel then "
             "requires CAP_SYS_PTRACE; give pyscope CAP_SYS_PTRACE (in Kubernetes add "
             "securityContext: {{capabilities: {{add: [\"SYS_PTRACE\"]}}}} to the debugging "
             "container, or use kubectl debug -it <pod> --profile=general --target=<container>)\n")


@pytest.mark.parametrize("command", ["dump", "exceptions", "attach"])
def test_without_sys_ptrace_in_pod(one_python, launch, in_pod, pyscope, monkeypatch, command):
    monkeypatch.setenv("POD_BOUNDING", "-sys_ptrace")
    target = launch(python_target(one_python, "shapes.py"))
    result = pyscope(command, target.pid)
    assert result.rc == conftest.RC_PERM, result
    assert result.stderr == NO_PTRACE.format(pid=target.pid), result


def test_attach_in_pod(one_python, launch, in_pod, screen):  # noqa: F811
    # TERM=xterm-256color with no terminfo database in the pod: the built-in entries serve.
    test_attach.test_exceptions_pane_and_tracing_toggle(one_python, launch, screen)


def test_attach_in_pod_shows_utf8_names(shapes, in_pod, screen):  # noqa: F811
    # LANG=C.UTF-8 with no locale files in the pod: the target's C.UTF-8 (through its
    # /proc/PID/root) serves, so the UTF-8 thread names read as the dynamic build shows them
    # (test_attach.test_panes_and_keys; the rest of it saves files in the working directory)
    truth = shapes.truth
    assert any(not t["name"].isascii() for t in truth["threads"]), truth["threads"]
    s = screen(shapes.pid)
    test_attach.ready(s)
    s.wait(lambda _: all(t["name"][:8] in "\n".join(s.pane("threads")) for t in truth["threads"]),
           "every thread's name (UTF-8 ones included) in the threads pane")
    s.keys("q")
    assert s.wait_exit() == 0
