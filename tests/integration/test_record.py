"""Integration tests for `pyscope record` and `pyscope run` (the sampling profiler).

The target (tests/targets/cpusplit.py) measures its own CPU split between alpha() and beta();
the profile's shares must match it within a few points. Every output format must parse (the
SVG as XML, speedscope against docs/schema/speedscope.schema.json, raw samples as documented in
docs/profile-formats.md). SIGINT to pyscope and the target's exit mid-recording must both give a
complete file. pyscope's RSS must stay flat during a fast recording of a bounded set of stacks.
After every test the `launch` fixture checks the target is alive (unless it was meant to exit),
not stopped and not traced. Progress is observed through files (the output stream, the target's
truth), never by sleeping.
"""
import json
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from conftest import (PYSCOPE_BIN, PYSCOPE_TIMEOUT_S, ROOT, VALIDATE_JSON,
                      assert_not_stopped_or_traced, find_python, interpreter_versions,
                      is_zombie_or_gone, python_target, require_pyscope, tracer_pids, wait_for)

SPEEDSCOPE_SCHEMA = ROOT / "docs" / "schema" / "speedscope.schema.json"
SVG = "{http://www.w3.org/2000/svg}"
SHARE_TOLERANCE = 0.06  # absolute share points; the split is ~0.75 / 0.25


@pytest.fixture
def split(python, launch):
    return launch(python_target(python, "cpusplit.py"))


def folded_counts(text):
    """{'alpha': n, 'beta': n, 'total': n} from collapsed stacks."""
    counts = {"alpha": 0, "beta": 0, "total": 0}
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        counts["total"] += int(n)
        for fn in ("alpha", "beta"):
            if f";{fn} (" in stack or stack.startswith(f"{fn} ("):
                counts[fn] += int(n)
    return counts


def _next_truth(target):
    """Ask the target for its cumulative counters (SIGUSR1 -> next truth generation)."""
    generation = target.truth["generation"] + 1
    os.kill(target.pid, signal.SIGUSR1)
    return target.wait_truth(generation)


def start_pyscope(*args):
    require_pyscope()
    # Its own session: a hung `pyscope run` is killed with the command it started, which
    # would otherwise hold the output pipes open (and communicate() wait) forever.
    return subprocess.Popen([str(PYSCOPE_BIN), *map(str, args)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def finish(proc):
    try:
        out, err = proc.communicate(timeout=PYSCOPE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            out, err = b"", b"(its output pipes are held open by a process outside its group)"
        pytest.fail(f"pyscope hung; stderr: {err.decode(errors='replace')}", pytrace=False)
    assert proc.returncode >= 0, f"pyscope died of signal {-proc.returncode}: {err!r}"
    return proc.returncode, out.decode(), err.decode()


def json_lines(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def stream_has(path, n):
    try:
        with open(path, encoding="utf-8") as f:
            return sum(1 for _ in f) >= n
    except FileNotFoundError:
        return False


# --- accuracy and formats ------------------------------------------------------------------------

def test_profile_matches_the_targets_own_split(split, pyscope, tmp_path):
    out = tmp_path / "p.folded"
    before = _next_truth(split)
    rc, _, err = pyscope("record", split.pid, "--rate", 1000, "--duration", 2,
                         "--format", "collapsed", "-o", out)
    after = _next_truth(split)
    assert rc == 0, err
    counts = folded_counts(out.read_text())
    assert counts["alpha"] + counts["beta"] > 500, (counts, err)
    alpha_s = after["alpha_s"] - before["alpha_s"]
    beta_s = after["beta_s"] - before["beta_s"]
    truth = alpha_s / (alpha_s + beta_s)
    measured = counts["alpha"] / (counts["alpha"] + counts["beta"])
    assert abs(measured - truth) < SHARE_TOLERANCE, (measured, truth, counts)
    assert "torn" in err and "own CPU" in err and "slowest tick" in err  # end statistics
    assert "no samples lost" in err or "of samples lost: " in err  # the loss in words
    # Every alpha/beta stack has the target's one call path (the sampler's prefix reuse must
    # never graft a leaf onto another stack's callers).
    for line in out.read_text().splitlines():
        names = [f.rsplit(" (", 1)[0] for f in line.rpartition(" ")[0].split(";")]
        if names[-1] in ("alpha", "beta"):
            assert names == ["<module>", "main", "timed", names[-1]], line


def test_speedscope_validates_against_schema(split, pyscope, tmp_path):
    out = tmp_path / "p.speedscope.json"
    rc, _, err = pyscope("record", split.pid, "--rate", 500, "--duration", 0.5,
                         "--format", "speedscope", "-o", out)
    assert rc == 0, err
    check = subprocess.run([sys.executable, str(VALIDATE_JSON), str(SPEEDSCOPE_SCHEMA), str(out)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    doc = json.loads(out.read_text())
    names = {f["name"] for f in doc["shared"]["frames"]}
    assert {"alpha", "beta", "<module>"} <= names or {"alpha", "beta", "main"} <= names
    prof = doc["profiles"][0]
    assert prof["type"] == "sampled" and len(prof["samples"]) == len(prof["weights"])
    assert sum(prof["weights"]) > 50


def test_flamegraph_is_interactive_svg(split, pyscope, tmp_path):
    out = tmp_path / "p.svg"
    rc, _, err = pyscope("record", split.pid, "--rate", 500, "--duration", 0.5,
                         "--format", "flamegraph", "-o", out)
    assert rc == 0, err
    root = ET.parse(out).getroot()
    titles = [t.text for t in root.iter(SVG + "title")]
    assert any(t.startswith("alpha (") for t in titles), titles
    assert any(t.startswith("all (") for t in titles), titles
    script = root.find(SVG + "script").text
    assert "function search()" in script and "function zoom(g)" in script


def test_raw_samples_stream(split, pyscope, tmp_path):
    out = tmp_path / "p.jsonl"
    rc, _, err = pyscope("record", split.pid, "--rate", 500, "--duration", 0.5,
                         "--format", "json", "-o", out)
    assert rc == 0, err
    lines = json_lines(out)
    head, samples, tail = lines[0], lines[1:-1], lines[-1]
    assert head["pyscope"] == "samples" and head["pid"] == split.pid
    assert head["python"] == split.truth["python_version"]
    assert tail["end"] == "duration" and tail["samples"] == len(samples) > 50
    times = [s["t"] for s in samples]
    assert times == sorted(times)
    for s in samples:
        assert s["state"] in ("active", "idle") and isinstance(s["gil"], bool)
        assert s["tid"] == split.pid and s["name"] == "MainThread"
        assert s["frames"] and {"function", "file", "line"} <= set(s["frames"][0])
    assert any(s["frames"][0]["function"] in ("alpha", "beta") for s in samples)


def test_threads_and_thread_filter(python, launch, pyscope, tmp_path):
    # --idle: a thread counts as running on 3.11 only while it holds the GIL, and the helper can
    # go a whole half second without it (its sleep(0) hands the GIL to the main thread, which
    # keeps it for the switch interval); this test is about the filter, not the scheduling.
    target = launch(python_target(python, "cpusplit.py"), extra=["--helper"])
    out = tmp_path / "t.folded"
    rc, _, err = pyscope("record", target.pid, "--rate", 500, "--duration", 0.5, "--threads",
                         "--idle", "--format", "collapsed", "-o", out)
    assert rc == 0, err
    roots = {line.split(";", 1)[0] for line in out.read_text().splitlines()}
    assert any(r.startswith("thread MainThread (") for r in roots), roots
    assert any(r.startswith("thread helper (") for r in roots), roots
    rc, _, err = pyscope("record", target.pid, "--rate", 500, "--duration", 0.5, "--thread",
                         "helper", "--idle", "--format", "collapsed", "-o", out)
    assert rc == 0, err
    text = out.read_text()
    assert "gamma (" in text and "alpha (" not in text, text


def test_blocking_leaves_target_running(split, pyscope, tmp_path):
    out = tmp_path / "b.folded"
    rc, _, err = pyscope("record", split.pid, "--rate", 100, "--duration", 0.5, "--blocking",
                         "--format", "collapsed", "-o", out)
    assert rc == 0, err
    assert folded_counts(out.read_text())["total"] > 10
    assert_not_stopped_or_traced(split.pid)


def test_subprocesses_one_root_per_process(python, launch, pyscope, tmp_path):
    target = launch(python_target(python, "spawner.py"))
    child = target.truth["child_pid"]
    out = tmp_path / "sub.folded"
    rc, _, err = pyscope("record", target.pid, "--rate", 200, "--duration", 1.5,
                         "--subprocesses", "--format", "collapsed", "-o", out)
    assert rc == 0, err
    roots = {}
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        roots.setdefault(frames[0], set()).update(f.rsplit(" (", 1)[0] for f in frames[1:])
    # Every stack under its process (not only those of the first re-list period).
    assert all(r.startswith("process ") for r in roots), sorted(roots)
    parent_root = next(r for r in roots if r.startswith(f"process {target.pid} "))
    child_root = next(r for r in roots if r.startswith(f"process {child} "))
    assert "parent_work" in roots[parent_root] and "child_work" not in roots[parent_root]
    assert "child_work" in roots[child_root] and "parent_work" not in roots[child_root]
    assert "subprocesses: 1 followed" in err, err
    assert_not_stopped_or_traced(child)
    # Without the option, only the target itself, and no process frames.
    rc, _, err = pyscope("record", target.pid, "--rate", 200, "--duration", 0.3,
                         "--format", "collapsed", "-o", out)
    assert rc == 0, err
    text = out.read_text()
    assert "parent_work" in text and "child_work" not in text and "process " not in text


# --- endings -------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["flamegraph", "json"])
def test_sigint_mid_recording_gives_complete_file(split, tmp_path, fmt):
    out = tmp_path / f"sigint.{fmt}"
    proc = start_pyscope("record", split.pid, "--rate", 1000, "--format", fmt, "-o", out)
    # The file exists once recording starts (signals are blocked from before that point);
    # the raw stream also shows samples arriving.
    wait_for(lambda: stream_has(out, 20 if fmt == "json" else 0), 20, "pyscope to record")
    proc.send_signal(signal.SIGINT)
    rc, _, err = finish(proc)
    assert rc == 0, err
    if fmt == "json":
        assert json_lines(out)[-1]["end"] == "signal"
    else:
        assert ET.parse(out).getroot().tag == SVG + "svg"
    assert_not_stopped_or_traced(split.pid)


def test_target_exit_mid_recording_gives_complete_file(python, launch, tmp_path):
    target = launch(python_target(python, "cpusplit.py"), expect_alive=False)
    out = tmp_path / "exit.jsonl"
    proc = start_pyscope("record", target.pid, "--rate", 1000, "--format", "json", "-o", out)
    wait_for(lambda: stream_has(out, 20), 20, "samples in the stream")
    os.kill(target.pid, signal.SIGUSR2)
    rc, _, err = finish(proc)
    assert rc == 0, err
    lines = json_lines(out)
    assert lines[-1]["end"] == "exited" and lines[-1]["samples"] == len(lines) - 2


def test_run_records_a_command_until_it_exits(python, tmp_path):
    out = tmp_path / "run.folded"
    truth = tmp_path / "truth.json"
    proc = start_pyscope("run", "--rate", 500, "--format", "collapsed", "-o", out, "--",
                         *python_target(python, "cpusplit.py"), truth, "--seconds", 1)
    rc, _, err = finish(proc)
    assert rc == 0, err
    counts = folded_counts(out.read_text())
    assert counts["alpha"] > 0 and counts["beta"] > 0, counts
    assert "target exited" in err


def test_run_forwards_sigint_to_the_command(python, tmp_path):
    out = tmp_path / "run.jsonl"
    truth = tmp_path / "truth.json"
    proc = start_pyscope("run", "--rate", 500, "--format", "json", "-o", out, "--",
                         *python_target(python, "cpusplit.py"), truth)
    # The command's truth file says it is inside the loop that handles Ctrl-C.
    wait_for(lambda: truth.exists() and stream_has(out, 20), 20, "the command to run")
    proc.send_signal(signal.SIGINT)
    rc, _, err = finish(proc)
    assert rc == 0, err  # the command caught KeyboardInterrupt and exited 0
    assert json_lines(out)[-1]["end"] == "exited"


# --- memory ----------------------------------------------------------------------------------------

def rss_kib(pid):
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_rss_stays_flat_at_high_rate(split, tmp_path):
    out = tmp_path / "rss.jsonl"
    proc = start_pyscope("record", split.pid, "--rate", 5000, "--idle", "--format", "json",
                         "-o", out)
    try:
        wait_for(lambda: stream_has(out, 2000), 30, "2000 samples")
        early = rss_kib(proc.pid)
        wait_for(lambda: stream_has(out, 10000), 60, "10000 samples")
        late = rss_kib(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        rc, _, err = finish(proc)
    assert rc == 0, err
    assert late - early < 2048, f"RSS grew from {early} KiB to {late} KiB over 8000 samples"


# --- run -d: the command ends with the recording (as py-spy does) unless --keep-running --------

def run_for_a_second(tmp_path, *extra, keep=False):
    """`run -d 1` of until_sigint.py: (pyscope's exit code, its stderr, the command's pid).
    Output goes to files: a command left running keeps the descriptors it inherited."""
    require_pyscope()
    python = find_python(interpreter_versions()[0])  # not version-specific: one interpreter
    pidfile, errfile = tmp_path / "pid", tmp_path / "err"
    with open(errfile, "wb") as err:
        proc = subprocess.Popen(
            [str(PYSCOPE_BIN), "run", "--rate", "200", "-d", "1", "--format", "collapsed", "-o",
             str(tmp_path / "o.folded"), *(["--keep-running"] if keep else []), "--",
             *map(str, python_target(python, "until_sigint.py")), str(pidfile), *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    try:
        rc = proc.wait(timeout=PYSCOPE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"pyscope run hung: {errfile.read_text()}", pytrace=False)
    return rc, errfile.read_text(), int(pidfile.read_text())


def test_run_duration_ends_the_command_with_sigint(tmp_path):
    rc, err, pid = run_for_a_second(tmp_path)
    assert rc == 0, err
    assert (tmp_path / "pid.int").exists()  # it saw KeyboardInterrupt
    assert is_zombie_or_gone(pid)


def test_run_duration_then_sigterm_when_sigint_is_ignored(tmp_path):
    rc, err, pid = run_for_a_second(tmp_path, "--ignore-sigint")
    assert rc == 0, err
    assert not (tmp_path / "pid.int").exists() and is_zombie_or_gone(pid)


def test_run_keep_running_leaves_the_command(tmp_path):
    rc, err, pid = run_for_a_second(tmp_path, keep=True)
    try:
        assert rc == 0, err
        assert not is_zombie_or_gone(pid), "the command was ended despite --keep-running"
        assert_not_stopped_or_traced(pid)
    finally:
        os.kill(pid, signal.SIGKILL)


SEIZER = """
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
pid = int(sys.argv[1])
while libc.ptrace(0x4206, pid, None, None) != 0:   # PTRACE_SEIZE: refused while pyscope holds it
    time.sleep(0.001)
print("seized", flush=True)
sys.stdin.read()                                    # hold it until told; exiting detaches
"""


def test_blocking_keeps_its_profile_when_another_tracer_attaches(split, tmp_path):
    """issue 19 item 8: a mid-run error (here another tracer takes the target between two
    --blocking samples) ends the recording, but what was sampled is written, with one sentence
    saying why, and exit code 1 (partial)."""
    out = tmp_path / "early.folded"
    proc = start_pyscope("record", split.pid, "--rate", 100, "--blocking", "--format",
                         "collapsed", "-o", out)
    try:
        wait_for(lambda: tracer_pids(split.pid).get(split.pid) == proc.pid, PYSCOPE_TIMEOUT_S,
                 "a first --blocking sample")
        seizer = subprocess.Popen([sys.executable, "-c", SEIZER, str(split.pid)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert seizer.stdout.readline() == "seized\n"
            _, err = proc.communicate(timeout=PYSCOPE_TIMEOUT_S)
        finally:
            seizer.communicate(timeout=PYSCOPE_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = err.decode()
    assert proc.returncode == 1, err
    assert "stopped early" in err and "already traced" in err, err
    assert folded_counts(out.read_text())["total"] >= 1
    assert_not_stopped_or_traced(split.pid)
