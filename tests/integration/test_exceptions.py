"""`pyscope exceptions`: every raise reported once, right; every exit path leaves the target clean.

The target (tests/targets/raiser.py) raises known exceptions on SIGUSR1 in its main thread and
in a thread it creates for the round (so after pyscope attached), and writes what it raised
(type, message, raise line, stack, handler, re-raise, cause). pyscope's JSON lines are compared
with that, event for event. Exit paths: SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGTSTP to pyscope, target
exit, SIGKILL of pyscope idle and during a burst, a crash (SIGSEGV, SIGABRT) of its worker while
every raise stops the target; afterwards the target raises and handles normally and is
neither stopped nor traced (also asserted by the `launch` fixture's teardown). A fork while
traced: the child raises and exits 0, the parent stays traced. The rate limit's counts: exact
while cheap (or with --exact-count), estimated above. A final stop that fails (a thread in vfork,
state D) still clears DR7 in the threads that stopped (read back with ptrace afterwards).
"""

import collections
import fcntl
import json
import os
import select
import signal
import struct
import subprocess
import termios
import threading
import time

import pytest

from conftest import (PYSCOPE_BIN, PYSCOPE_TIMEOUT_S, _stat_state, assert_not_stopped_or_traced,
                      children, python_target, raise_loop_count, require, require_pyscope, task_ids,
                      wait_for)


class Tracer:
    """A running `pyscope exceptions --json` and the JSON lines it printed."""

    def __init__(self, pid, *args, prefix=(), session=False):
        require_pyscope()
        self.argv = [*prefix, str(PYSCOPE_BIN), "exceptions", "--json", *map(str, args), str(pid)]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=session)
        self.lines, self.eof = [], False
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._reader, daemon=True)
        self.reader.start()
        start = self.wait_events(lambda evs: any(e["event"] == "start" for e in evs),
                                 "the start record")
        self.start = next(e for e in start if e["event"] == "start")
        self.mechanism = self.start["mechanism"]

    def _reader(self):
        """Drain stdout at once, always: a full pipe would hold pyscope, and so the target. A
        SIGKILLed pyscope may leave a cut last line: kept as a "partial" record."""
        for line in self.proc.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                record = {"event": "partial", "text": line.decode(errors="replace")}
            with self.cond:
                self.lines.append(record)
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def wait_events(self, predicate, what, detail=None):
        """Wait until predicate(lines) holds (deadline: the pyscope timeout); on failure, the
        tracer stopped and detail(lines) (a string) said with its records."""
        with self.cond:
            ok = self.cond.wait_for(lambda: predicate(self.lines) or self.eof,
                                    timeout=PYSCOPE_TIMEOUT_S)
            if ok and predicate(self.lines):
                return list(self.lines)
        ended = self.eof
        if not ended:  # stop it for its stop record: what it counted, lost or dropped says why
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=PYSCOPE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.reader.join(timeout=PYSCOPE_TIMEOUT_S)
        with self.cond:
            kinds = collections.Counter(e["event"] for e in self.lines)
            stop = [e for e in self.lines if e["event"] == "stop"]
            said = detail(self.lines) if detail else ""
        pytest.fail(f"no {what} from {self.argv} (ended: {ended}); records: {dict(kinds)}; "
                    f"stop record: {stop}; {said}", pytrace=False)

    def finish(self, sig=None):
        """Send sig (if any), wait for the exit, return (rc, stderr) with every line read."""
        if sig is not None:
            self.proc.send_signal(sig)
        try:
            err = self.proc.stderr.read()
            self.proc.wait(timeout=PYSCOPE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"pyscope did not exit after {sig}", pytrace=False)
        self.reader.join(timeout=PYSCOPE_TIMEOUT_S)
        return self.proc.returncode, err.decode(errors="replace")


def raiser(python, launch, *extra, expect_alive=True):
    return launch(python_target(python, "raiser.py"), extra=extra, expect_alive=expect_alive)


def run_round(target):
    generation = target.truth["generation"] + 1
    os.kill(target.pid, signal.SIGUSR1)
    return target.wait_truth(generation)


def ours(events, truth, kind="raise"):
    return [e for e in events if e["event"] == kind and (e.get("frames") or [{}])[0].get("file")
            == truth["file"]] if kind == "raise" else [e for e in events if e["event"] == kind]


def round_key(t, m, line, tid):
    return (t, m, line, tid)


def round_missing(tracer_lines, truth):
    """What a round's raises lack and what they have too many of (a failure's detail)."""
    got = collections.Counter(round_key(e["type"], e["message"], e["frames"][0]["line"],
                                        e["native_id"]) for e in ours(tracer_lines, truth))
    want = collections.Counter(round_key(x["type"], x["message"], x["line"], x["thread"])
                               for x in truth["events"])
    others = [(e["type"], e["message"], e["frames"][:2]) for e in tracer_lines
              if e["event"] == "raise" and e not in ours(tracer_lines, truth)]
    return (f"expected {len(truth['events'])}, missing: {sorted(want - got)}; unexpected: "
            f"{sorted(got - want)}; raises elsewhere: {others[:20]}")


def round_ended(tracer_lines, truth):
    """Whether every raise of the round was reported, and its end too."""
    raises = ours(tracer_lines, truth)
    ended = {e["seq"] for e in tracer_lines if e["event"] in ("handled", "propagating", "unknown")}
    return len(raises) >= len(truth["events"]) and all(e["seq"] in ended for e in raises)


def check_round(tracer_lines, truth):
    """Every expected raise reported exactly once, with type, message, line, stack, fate."""
    raises = ours(tracer_lines, truth)
    ends = {e["seq"]: e for e in tracer_lines
            if e["event"] in ("handled", "propagating", "unknown")}
    expected = truth["events"]
    key = lambda t, m, line, tid: (t, m, line, tid)  # noqa: E731
    got = collections.Counter(key(e["type"], e["message"], e["frames"][0]["line"],
                                  e["native_id"]) for e in raises)
    want = collections.Counter(key(x["type"], x["message"], x["line"], x["thread"])
                               for x in expected)
    assert got == want, f"missing: {want - got}\nunexpected: {got - want}"
    by_key = {key(e["type"], e["message"], e["frames"][0]["line"], e["native_id"]): e
              for e in raises}
    for x in expected:
        e = by_key[key(x["type"], x["message"], x["line"], x["thread"])]
        assert [f["function"] for f in e["frames"]] == x["stack"], (x, e)
        assert e["reraise"] == x["reraise"], (x, e)
        assert e["cause"] == x["cause"], (x, e)
        end = ends[e["seq"]]
        assert end["event"] == "handled", (x, end)
        assert (end["handled_at"]["function"], end["handled_at"]["line"]) == \
            (x["handled_in"], x["handled_line"]), (x, end)
    threads = {x["thread"] for x in expected}
    assert len(threads) == 2 and truth["pid"] in threads


def stop_record(lines):
    stops = [e for e in lines if e["event"] == "stop"]
    assert len(stops) == 1, lines[-3:]
    return stops[0]


# Every exit signal with perf breakpoints (the ptrace paths each signal takes); SIGINT with the
# other mechanisms (bpf: the kernel reads each raise; nothing is seized).
EXIT_CASES = [(s, "perf") for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                                    signal.SIGTSTP)] + [(signal.SIGINT, "bpf"),
                                                        (signal.SIGINT, "debugreg")]


@pytest.mark.parametrize("sig,mechanism", EXIT_CASES, ids=lambda v: getattr(v, "name", v))
def test_every_raise_reported_then_clean_exit(python, launch, sig, mechanism):
    target = raiser(python, launch)
    tracer = Tracer(target.pid, "--max-rate", 0, "--mechanism", mechanism)
    assert tracer.mechanism == mechanism
    truth = run_round(target)
    tracer.wait_events(lambda lines: len(ours(lines, truth)) >= len(truth["events"]),
                       "every raise of the round", lambda lines: round_missing(lines, truth))
    rc, err = tracer.finish(sig)
    assert rc == 0, err
    # Ctrl-Z ends the trace (a suspended tracer would hold every thread that raises).
    assert stop_record(tracer.lines)["reason"].startswith(f"signal {sig.name}")
    assert stop_record(tracer.lines)["read_errors"] == 0  # every hit read
    check_round(tracer.lines, truth)
    assert_not_stopped_or_traced(target.pid)
    again = run_round(target)                   # raises and handles normally afterwards
    assert len(again["events"]) == len(truth["events"])


def pipe_unread(fd):
    """Bytes written to the pipe whose read end is fd and not read yet."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def test_output_a_full_pipe_refused_is_written_without_another_raise(python, launch):
    """A reader slower than pyscope (a test's reader thread on a loaded machine, a `| less`)
    fills the pipe; what the pipe refused waits in pyscope's output queue. It must be written
    as soon as the pipe has room, not at the next raise, which a quiet target may never make:
    two rounds' records (~150 KB, more than a 64 KB pipe holds) are read only after they
    ended and the pipe stood full; then every raise of both arrives with pyscope running
    (the old loop wrote the rest only at the next event: here, at the stop)."""
    require_pyscope()
    target = raiser(python, launch)
    proc = subprocess.Popen([str(PYSCOPE_BIN), "exceptions", "--json", "--max-rate", "0",
                             str(target.pid)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    fd = proc.stdout.fileno()
    try:
        buf = b""
        while b"\n" not in buf:  # the start record: tracing began
            ready = select.select([fd], [], [], PYSCOPE_TIMEOUT_S)[0]
            assert ready, "no start record"
            chunk = os.read(fd, 1)  # byte by byte: nothing past the start record is taken
            assert chunk, proc.stderr.read()
            buf += chunk
        assert json.loads(buf)["event"] == "start"
        first = run_round(target)  # two rounds: ~150 KB, whatever the first one imports
        truth = run_round(target)
        truth = dict(truth, events=first["events"] + truth["events"])
        # The pipe full (a page-granular pipe refuses writes from ~60 KB on) and standing so
        # while pyscope ran a few of its steps: what it could not write is in its queue.
        seen = []

        def stood_full():
            seen.append(pipe_unread(fd))
            return len(seen) >= 5 and seen[-1] >= 48 << 10 and len(set(seen[-5:])) == 1
        wait_for(stood_full, PYSCOPE_TIMEOUT_S, "the output pipe to stay full", poll=0.1)
        lines, rest = [], b""
        deadline = time.monotonic() + PYSCOPE_TIMEOUT_S
        while not round_ended(lines, truth):
            left = deadline - time.monotonic()
            assert left > 0 and select.select([fd], [], [], left)[0], \
                f"records still missing with pyscope running: {round_missing(lines, truth)}"
            chunk = os.read(fd, 1 << 16)
            assert chunk, proc.stderr.read()
            rest += chunk
            *done, rest = rest.split(b"\n")
            lines += [json.loads(x) for x in done]
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=PYSCOPE_TIMEOUT_S)
    assert proc.returncode == 0
    got = collections.Counter(round_key(e["type"], e["message"], e["frames"][0]["line"],
                                        e["native_id"]) for e in ours(lines, truth))
    want = collections.Counter(round_key(x["type"], x["message"], x["line"], x["thread"])
                               for x in truth["events"])
    assert got == want, round_missing(lines, truth)


@pytest.mark.parametrize("mechanism", ["perf", "bpf"])
def test_target_exit_ends_the_trace(python, launch, mechanism):
    target = raiser(python, launch, 1, expect_alive=False)
    tracer = Tracer(target.pid, "--max-rate", 0, "--mechanism", mechanism)
    os.kill(target.pid, signal.SIGUSR1)
    rc, err = tracer.finish()
    assert rc == 0, err
    assert stop_record(tracer.lines)["reason"] == "target exited"
    assert target.proc.wait(timeout=PYSCOPE_TIMEOUT_S) == 0, target.log()
    truth = json.loads(target.truth_path.read_text())
    assert truth["generation"] == 1
    check_round(tracer.lines, truth)


@pytest.mark.parametrize("ending", ["unhandled", "os_exit"])
def test_bpf_raise_through_new_code_then_exit_has_its_frames(python, launch, ending):
    """A raise through functions compiled just before it, by a target that ends at once (the
    exception unhandled, or os._exit in its handler; tests/targets/exit_raiser.py): bpf's records
    are read after the raise, often after the exit, when the code objects can no longer be read
    (the old reader gave such a raise no frames, or its finalising interpreter's freed code
    objects). The program sends each code object new to pyscope (and the raised type's name)
    with the record, so the raise has its complete stack, file, function and line per frame, and
    its type and message, as the target wrote them down before raising."""
    target = launch(python_target(python, "exit_raiser.py"), extra=(ending,), expect_alive=False)
    target.wait_truth(0)
    tracer = Tracer(target.pid, "--max-rate", 0, "--mechanism", "bpf")
    assert tracer.mechanism == "bpf"
    os.kill(target.pid, signal.SIGUSR1)
    rc, err = tracer.finish()
    assert rc == 0, err
    assert stop_record(tracer.lines)["reason"] == "target exited"
    assert target.proc.wait(timeout=PYSCOPE_TIMEOUT_S) == (1 if ending == "unhandled" else 3)
    truth = json.loads(target.truth_path.read_text())
    assert truth["generation"] == 1
    raises = [e for e in tracer.lines if e["event"] == "raise" and e["frames"] and
              e["frames"][0]["function"] == "inner_fresh"]
    assert [(e["type"], e["message"]) for e in raises] == \
        [("KeyError", "inner"), ("RuntimeError", truth["message"])], tracer.lines
    frames = raises[1]["frames"]
    assert [(f["file"], f["function"], f["line"]) for f in frames[:3]] == \
        [(truth["file"], name, line) for name, line in truth["frames"]], frames
    assert [f["function"] for f in frames[3:]] == ["main", "<module>"], frames
    assert all(f["file"] != "?" and f["line"] > 0 for f in frames), frames


def test_exception_in_flight_at_attach_is_not_reported_at_its_caller(python, launch):
    """An exception raised, and already propagating, before tracing starts (tests/targets/
    in_flight.py parks it in a finally block) is first seen by bpf at a caller of its raise site.
    Reported there it would name the wrong raise site (the old program did: ValueError "raised"
    at outer()'s call line); it is followed silently and counted in the stop record instead,
    and the next raise of the thread is reported right."""
    target = launch(python_target(python, "in_flight.py"))
    tracer = Tracer(target.pid, "--max-rate", 0, "--mechanism", "bpf")
    assert tracer.mechanism == "bpf"
    os.kill(target.pid, signal.SIGUSR1)
    truth = target.wait_truth(1)
    tracer.wait_events(lambda lines: any(e["event"] == "raise" and e["type"] == "KeyError"
                                         for e in lines), "the raise made while traced")
    rc, err = tracer.finish(signal.SIGINT)
    assert rc == 0, err
    raises = [e for e in tracer.lines if e["event"] == "raise"]
    assert [(e["type"], e["message"], e["frames"][0]["line"]) for e in raises] == \
        [("KeyError", "late", truth["late_line"])], raises
    assert stop_record(tracer.lines)["in_flight_at_start"] == 1


@pytest.mark.parametrize("mechanism", ["bpf"])
def test_exec_ends_the_trace(python, launch, mechanism):
    """A target that exec()s a new Python program (tests/targets/execer.py): every address the
    tracer holds belongs to the old image (bpf: its uprobe, the program's offsets and thread
    states), so the trace ends at the exec with its reason, instead of going on blind (the
    bpf tracer did not notice: it reported nothing and never ended)."""
    target = launch(python_target(python, "execer.py"))
    tracer = Tracer(target.pid, "--max-rate", 0, "--mechanism", mechanism)
    assert tracer.mechanism == mechanism
    tracer.wait_events(lambda lines: any(e["event"] == "raise" for e in lines),
                       "a raise before the exec")
    os.kill(target.pid, signal.SIGUSR1)
    assert target.wait_truth(1)["image"] == "new"
    tracer.wait_events(lambda lines: any(e["event"] == "stop" for e in lines),
                       "the end of the trace at the exec")
    rc, err = tracer.finish()
    assert rc == 0, err
    assert stop_record(tracer.lines)["reason"] == "target exec'd"
    assert not [e for e in tracer.lines if e["event"] == "raise" and e["type"] == "KeyError"]
    assert_not_stopped_or_traced(target.pid)


@pytest.mark.parametrize("mechanism", ["perf", "debugreg", "bpf"])
def test_fork_child_runs_untraced(python, launch, mechanism):
    """A target that forks while traced: the child inherits no breakpoint (perf events are opened
    with inherit=0; the kernel does not copy ptrace debug registers to a child) and is not
    traced, so it raises and handles its exceptions and exits 0 instead of dying of SIGTRAP;
    the parent is still traced: its raises after the fork are all reported."""
    target = raiser(python, launch)
    tracer = Tracer(target.pid, "--max-rate", 0, "--mechanism", mechanism)
    assert tracer.mechanism == mechanism
    generation = target.truth["generation"] + 1
    os.kill(target.pid, signal.SIGURG)
    truth = target.wait_truth(generation)
    assert truth["child_exit"] == 0, truth          # -5 would be a SIGTRAP death
    assert truth["child_raises"] == len(truth["events"]) > 0, truth
    tracer.wait_events(lambda lines: len(ours(lines, truth)) >= len(truth["events"]),
                       "the parent's raises after the fork")
    rc, err = tracer.finish(signal.SIGINT)
    assert rc == 0, err
    raises = ours(tracer.lines, truth)
    assert not [e for e in raises if e["native_id"] == truth["child_pid"]]
    got = collections.Counter((e["type"], e["message"], e["frames"][0]["line"]) for e in raises)
    want = collections.Counter((x["type"], x["message"], x["line"]) for x in truth["events"])
    assert got == want, f"missing: {want - got}\nunexpected: {got - want}"
    assert_not_stopped_or_traced(target.pid)


def worker_of(guard_pid):
    """The worker process under pyscope's guard (the one holding ptrace: src/proc/guard.c)."""
    return wait_for(lambda: next(iter(children(guard_pid)), None), PYSCOPE_TIMEOUT_S,
                    "pyscope's worker process")


def kill_victim(tracer, victim):
    """SIGKILL the pyscope the user started ("pyscope"), or its worker that holds ptrace."""
    os.kill(tracer.proc.pid if victim == "pyscope" else worker_of(tracer.proc.pid), signal.SIGKILL)


@pytest.mark.parametrize("mechanism", ["perf", "debugreg", "bpf"])
@pytest.mark.parametrize("victim", ["pyscope", "worker"])
def test_sigkill_of_pyscope_while_idle(python, launch, mechanism, victim):
    """SIGKILL of the pyscope process the user started: the kernel sends its worker (which holds
    ptrace) SIGTERM, and the worker detaches cleanly: the target lives on, either mechanism.
    SIGKILL of the worker itself: perf: the kernel removes the breakpoints with its fds;
    debugreg: the kernel keeps the debug registers armed, and the guard, seeing its worker
    SIGKILLed, seizes the target again and clears them (bkpt_rescue) before it exits: the target
    raises and handles normally afterwards (before the rescue it died of SIGTRAP at its next
    raise)."""
    target = raiser(python, launch)
    tracer = Tracer(target.pid, "--mechanism", mechanism)
    assert tracer.mechanism == mechanism
    kill_victim(tracer, victim)
    tracer.finish()
    os.kill(target.pid, signal.SIGUSR1)
    truth = target.wait_truth(1)
    assert len(truth["events"]) > 0
    assert_not_stopped_or_traced(target.pid)


@pytest.mark.breakpoints  # perf tracing: skipped where breakpoints do not fire
@pytest.mark.parametrize("victim", ["pyscope", "worker"])
def test_sigkill_of_pyscope_during_a_burst(python, launch, victim):
    """SIGKILL mid-burst with perf breakpoints. Of the pyscope the user started: its worker
    detaches cleanly (SIGTERM from the kernel), the target lives on. Of the worker itself: the
    target lives on, or dies of a SIGTRAP already in flight (CPYTHON.md 5.3, README); nothing
    else is acceptable."""
    target = raiser(python, launch, expect_alive=False)
    tracer = Tracer(target.pid, "--max-rate", 0, "--mechanism", "perf")
    os.kill(target.pid, signal.SIGUSR2)
    tracer.wait_events(lambda lines: sum(e["event"] == "raise" for e in lines) >= 20,
                       "a burst of raises")
    kill_victim(tracer, victim)
    tracer.finish()
    deadline = time.monotonic() + PYSCOPE_TIMEOUT_S
    while time.monotonic() < deadline and target.proc.poll() is None:
        if json.loads(target.truth_path.read_text()).get("generation") == 1:
            break
        time.sleep(0.05)
    if target.proc.poll() is None:
        assert_not_stopped_or_traced(target.pid)
        print("SIGKILL during a burst: target survived")
    else:
        assert victim == "worker", "SIGKILL of the guarded pyscope killed the target"
        assert target.proc.returncode == -signal.SIGTRAP, target.log()
        print("SIGKILL during a burst: target died of SIGTRAP (documented)")


CRASH_ROUNDS = 3  # crashes per case: before the crash handler, about 1 in 2 killed the target


@pytest.mark.parametrize("mechanism", ["perf", "debugreg", "bpf"])
@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGABRT], ids=lambda s: s.name)
def test_crash_of_the_worker_while_raises_stop_the_target(python, launch, mechanism, sig):
    """pyscope crashing (a fault, an abort) while every raise stops the target: the kernel would
    detach a dead tracer's threads and hand one stopped at a hit its SIGTRAP, which kills the
    target; the crash handler (src/proc/target.c tgt_on_crash) disarms and detaches first, then lets
    pyscope die of the crash. The target keeps raising, untraced, every time; with debug
    registers too (the handler clears them, unlike a SIGKILL)."""
    for _ in range(CRASH_ROUNDS):
        target = launch(python_target(python, "raise_loop.py"))
        tracer = Tracer(target.pid, "--max-rate", 0, "--mechanism", mechanism)
        assert tracer.mechanism == mechanism
        tracer.wait_events(lambda lines: sum(e["event"] == "raise" for e in lines) >= 20,
                           "raises stopping the target")
        os.kill(worker_of(tracer.proc.pid), sig)
        rc, err = tracer.finish()
        assert rc != 0, err  # died of it (the guard exits as its worker did)
        start = raise_loop_count(target)
        wait_for(lambda: target.proc.poll() is not None or raise_loop_count(target) >= start + 4000,
                 PYSCOPE_TIMEOUT_S, "the target to raise on after pyscope's crash")
        assert target.proc.poll() is None, \
            f"pyscope's {sig.name} killed the target (status {target.proc.returncode})"
        assert_not_stopped_or_traced(target.pid)


@pytest.mark.parametrize("rate,exact", [(800, False), (20000, False), (20000, True)],
                         ids=["800", "20000", "20000-exact-count"])
@pytest.mark.breakpoints  # perf tracing: skipped where breakpoints do not fire
def test_rate_limit_counts_what_it_does_not_report(python, launch, monkeypatch, rate, exact):
    """A storm paced at `rate` raises/s against --max-rate 50 --burst 20: few reported, the rest
    counted by the non-stopping perf breakpoint while the stopping one is off. The count is
    exact while counting costs the target under 2% (pyscope measures the cost of a counted hit
    and reports the rate that allows: count_exact_rate), or at any rate with --exact-count;
    above it, the counter samples in windows and the count is an estimate, within 25%."""
    monkeypatch.setenv("RAISER_STORM_RATE", str(rate))
    target = raiser(python, launch)
    # --budget 0: the token bucket alone decides the stops here (test_service.py covers the
    # budget); the counting windows then may cost 2% of a core.
    tracer = Tracer(target.pid, "--max-rate", 50, "--burst", 20, "--budget", 0,
                    *(["--exact-count"] * exact), "--mechanism", "perf")
    if tracer.mechanism != "perf":
        tracer.finish(signal.SIGINT)
        pytest.skip("no perf breakpoints here: debug registers have no counter")
    os.kill(target.pid, signal.SIGUSR2)
    truth = target.wait_truth(1)
    rc, err = tracer.finish(signal.SIGINT)
    assert rc == 0, err
    stop = stop_record(tracer.lines)
    storm = truth["storm"]
    achieved = storm / truth["storm_seconds"]
    # The target paces itself; on a loaded 2-core machine it may fall short of the pace: the
    # assertions use the rate it achieved (it records its count).
    assert storm >= min(rate * 0.5, 2000), storm
    reported = sum(e["event"] == "raise" and e["type"] == "ValueError" for e in tracer.lines)
    assert 20 <= reported <= 20 + 50 * 5.0      # burst, then the rate (generous time bound)
    assert stop["disarms"] >= 1, stop
    accounted = reported + stop["not_reported"] + stop["unseen_hits"]
    limit = stop["count_exact_rate"]            # < 0: any rate (--exact-count)
    print(f"storm {storm} ({achieved:.0f}/s), accounted {accounted}, stop {stop}")
    if exact:
        assert limit < 0 and stop["counting"], stop
    elif achieved < 0.5 * limit:
        assert stop["counting"], (achieved, stop)
    elif achieved > 2 * limit:
        assert not stop["counting"], (achieved, stop)
    if stop["counting"]:
        # exact: the storm plus at most a few raises of the target's own machinery
        assert storm <= accounted <= storm + 20, (storm, stop)
    else:
        # estimated (issue 19 item 10: 2 ms windows ran 1.4-2x high under load). A 1 s storm
        # gives the counter ~3 windows of 100 ms: -13% to +20% measured at load 20 on 2 cores
        assert 0.75 * storm <= accounted <= 1.25 * storm, (storm, stop)


BPF_STORM_KILLS = int(os.environ.get("PYSCOPE_BPF_STORM_KILLS", "6"))  # per interpreter


def test_sigkill_of_bpf_pyscope_at_random_moments_of_a_storm(python, launch):
    """The kernel-side mechanism under SIGKILL: pyscope (the guard), its worker, or its whole
    process group, killed at a random moment of a full-speed raise storm, BPF_STORM_KILLS times
    (PYSCOPE_BPF_STORM_KILLS; 100 run by hand, docs/exceptions.md). The kernel removes the
    uprobe with the link's fd, and nothing ever stopped the target: it never dies and keeps
    raising, untraced."""
    import random
    rng = random.Random(os.getpid())
    target = launch(python_target(python, "raise_loop.py"))
    for i in range(BPF_STORM_KILLS):
        tracer = Tracer(target.pid, "--mechanism", "bpf", session=True)  # its own group
        assert tracer.mechanism == "bpf"
        seen = rng.randint(1, 400)
        tracer.wait_events(lambda lines, n=seen: sum(e["event"] == "raise" for e in lines) >= n,
                           "raises of the storm")
        victim = ("pyscope", "worker", "group")[i % 3]
        if victim == "group":
            os.killpg(tracer.proc.pid, signal.SIGKILL)
        else:
            kill_victim(tracer, victim)
        tracer.finish()
        start = raise_loop_count(target)
        wait_for(lambda: target.proc.poll() is not None or raise_loop_count(target) >= start + 4000,
                 PYSCOPE_TIMEOUT_S, "the target to raise on after the kill")
        assert target.proc.poll() is None, \
            f"kill {i} ({victim}) killed the target (status {target.proc.returncode})"
        assert_not_stopped_or_traced(target.pid)


@pytest.mark.breakpoints  # perf tracing: skipped where breakpoints do not fire
def test_without_bpf_capabilities_falls_back_to_perf_and_says_why(python, launch):
    """pyscope without CAP_SYS_ADMIN, CAP_BPF and CAP_PERFMON (capsh drops them from its
    bounding set and its own): the kernel-side mechanism is refused, perf breakpoints trace
    instead, and the start record says why in one sentence naming the capabilities."""
    target = raiser(python, launch)
    prefix = ("capsh", "--drop=cap_sys_admin,cap_bpf,cap_perfmon", "--")
    tracer = Tracer(target.pid, "--max-rate", 0, prefix=(*prefix, "-c", "exec \"$0\" \"$@\""))
    assert tracer.mechanism == "perf", tracer.start
    assert "CAP_BPF" in tracer.start["mechanism_note"], tracer.start
    truth = run_round(target)
    tracer.wait_events(lambda lines: len(ours(lines, truth)) >= len(truth["events"]),
                       "every raise of the round")
    rc, err = tracer.finish(signal.SIGINT)
    assert rc == 0, err
    check_round(tracer.lines, truth)


CHURN_STOPS = 50  # per mechanism: 100 stops, the count (each a fraction of a second)


@pytest.mark.parametrize("mechanism", ["perf", "default"])
def test_clean_stops_while_threads_come_and_go(python, launch, mechanism):
    """Starts and stops racing thread creation and exit (issue 19 items 7 and 1), 100 in all.

    Stop: the tracer's last round of stopping lists a thread the kernel attached for it (its
    parent's clone event not yet collected); seizing it again failed with EPERM, which read as
    "permission denied ... AppArmor" and exit 3 (about 1 stop in 40 before the fix).
    Start: the check of the layout read the GIL's holder, then the thread list; a thread ending in
    between (its state unlinked while it still held the GIL) read as "the GIL holder is not a
    thread state ... the table does not fit this build" and exit 2 (about 1 start in 15 with
    bpf, 1 in 40 with perf). Every start must trace and every stop be clean: rc 0, one stop
    record, the target untraced. "default" is pyscope's own choice (bpf as root)."""
    target = launch(python_target(python, "thread_churn.py"))
    chosen = () if mechanism == "default" else ("--mechanism", mechanism)
    for attempt in range(CHURN_STOPS):
        argv = [str(PYSCOPE_BIN), "exceptions", "--json", "--max-rate", "0", *chosen,
                str(target.pid)]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, bufsize=0)  # readline, then communicate
        first = proc.stdout.readline()
        if not first:
            proc.wait(timeout=PYSCOPE_TIMEOUT_S)
            pytest.fail(f"start {attempt} failed: rc {proc.returncode}: "
                        f"{proc.stderr.read().decode(errors='replace')}", pytrace=False)
        assert json.loads(first)["event"] == "start", first
        proc.send_signal(signal.SIGINT if attempt % 2 else signal.SIGTERM)
        out, err = proc.communicate(timeout=PYSCOPE_TIMEOUT_S)
        stops = [json.loads(line) for line in out.splitlines() if b'"event":"stop"' in line]
        assert proc.returncode == 0 and len(stops) == 1, (attempt, proc.returncode, err.decode())
        with open(f"/proc/{target.pid}/status", encoding="ascii") as status:
            assert "\nTracerPid:\t0\n" in status.read()  # (its threads come and go)


@pytest.mark.any_breakpoints
@pytest.mark.parametrize("mechanism", ["perf", "debugreg"])
def test_breakpoints_that_cannot_fire_are_said(python, launch, mechanism):
    """Where hardware breakpoints never fire (a VM that keeps debug exceptions from its guests:
    this Firecracker guest), a breakpoint trace sees no raise at all and used to look like a
    quiet target. The start record's mechanism_note must say so exactly when it is so: the
    target raises thousands of times while traced (its own count), and the note names dead
    breakpoints if and only if no raise was reported."""
    target = launch(python_target(python, "raise_loop.py"))
    tracer = Tracer(target.pid, "--max-rate", 0, "--mechanism", mechanism)
    start = raise_loop_count(target)
    wait_for(lambda: raise_loop_count(target) >= start + 4000, PYSCOPE_TIMEOUT_S,
             "the target to raise while traced")
    rc, err = tracer.finish(signal.SIGINT)
    assert rc == 0, err
    reported = sum(e["event"] == "raise" for e in tracer.lines)
    said = "hardware breakpoints do not fire" in tracer.start["mechanism_note"]
    assert said == (reported == 0), (reported, tracer.start)


def all_stopped(pid):
    """Every live task of pid is stopped (T, or t while a tracer holds it)."""
    states = []
    for tid in task_ids(pid):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        states.append(stat[stat.rindex(")") + 2:].split()[0])
    return bool(states) and all(s in ("T", "t") for s in states)


SIGSTOP_TRIES = 20  # per mechanism, the count


@pytest.mark.parametrize("mechanism", ["perf", "debugreg"])
def test_ctrl_c_while_the_target_is_stopped_by_sigstop(python, launch, mechanism):
    """Issue 19 item 6: the user stops the target (SIGSTOP) while every raise stops it for
    pyscope (--max-rate 0), presses Ctrl-C (SIGINT to pyscope's process group: the command and
    its worker), then continues the target (SIGCONT). A SIGSTOP that lands between a breakpoint
    hit and its trap's delivery is served first: the thread sits in the group stop with the
    SIGTRAP queued, and a detach without draining it killed the target at SIGCONT (3 of 30
    tries). Each try: pyscope exits 0, the target is still stopped as the user left it, and after
    SIGCONT it raises on (4000 more raises), untraced."""
    target = launch(python_target(python, "raise_loop.py"))
    for attempt in range(SIGSTOP_TRIES):
        tracer = Tracer(target.pid, "--max-rate", 0, "--mechanism", mechanism, session=True)
        assert tracer.mechanism == mechanism, tracer.start
        tracer.wait_events(lambda lines: sum(e["event"] == "raise" for e in lines) >= 20,
                           "raises of the loop")
        os.kill(target.pid, signal.SIGSTOP)
        wait_for(lambda: all_stopped(target.pid), PYSCOPE_TIMEOUT_S, "the target's group stop")
        os.killpg(tracer.proc.pid, signal.SIGINT)
        rc, err = tracer.finish()
        assert rc == 0, (attempt, err)
        assert target.proc.poll() is None, \
            f"try {attempt}: the target died while stopped (status {target.proc.returncode})"
        assert all_stopped(target.pid), f"try {attempt}: the user's stop was lost"
        start = raise_loop_count(target)
        os.kill(target.pid, signal.SIGCONT)
        wait_for(lambda: target.proc.poll() is not None or
                 raise_loop_count(target) >= start + 4000,
                 PYSCOPE_TIMEOUT_S, "the target to raise on after SIGCONT")
        assert target.proc.poll() is None, \
            f"try {attempt}: the target died after SIGCONT (status {target.proc.returncode})"
        assert_not_stopped_or_traced(target.pid)


@pytest.mark.parametrize("mechanism", ["perf", "bpf"])
def test_type_filter_reports_one_type_and_counts_the_rest_once(python, launch, mechanism):
    """--type KeyError: only the round's KeyErrors are reported; every other raise is counted
    once in `filtered` (bpf filters in the kernel, where a filtered exception's propagation
    through its callers must not count again)."""
    target = raiser(python, launch)
    tracer = Tracer(target.pid, "--max-rate", 0, "--type", "KeyError", "--mechanism", mechanism)
    truth = run_round(target)
    want = [x for x in truth["events"] if x["type"] == "KeyError"]
    assert want and len(want) < len(truth["events"]), truth["events"]
    tracer.wait_events(lambda lines: len(ours(lines, truth)) >= len(want), "the KeyErrors")
    rc, err = tracer.finish(signal.SIGINT)
    assert rc == 0, err
    assert {e["type"] for e in ours(tracer.lines, truth)} == {"KeyError"}
    assert len(ours(tracer.lines, truth)) == len(want)
    others = len(truth["events"]) - len(want)       # plus some of the interpreter's own (3.13)
    assert others <= stop_record(tracer.lines)["filtered"] <= others + 15, stop_record(tracer.lines)


DR7_TARGET = r"""
import os, signal, sys, threading, time
fifo = sys.argv[1]
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
threading.Thread(target=lambda: [time.sleep(0.01) for _ in iter(int, 1)], daemon=True).start()
print("ready", flush=True)
signal.sigwait([signal.SIGUSR1])
# posix_spawn waits in vfork (state D, deaf to PTRACE_INTERRUPT) until the child opens the FIFO
os.posix_spawn("/bin/true", ["true"], {},
               file_actions=[(os.POSIX_SPAWN_OPEN, 0, fifo, os.O_RDONLY, 0)])
print("spawned", flush=True)
while True:
    time.sleep(1)
"""


def debug_register7(tids):
    """{tid: DR7} read through ptrace (seize, interrupt, PEEKUSER, detach)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.restype = ctypes.c_long
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    seize, interrupt, peekuser, detach = 0x4206, 0x4207, 3, 17
    dr7_offset = 848 + 7 * 8  # offsetof(struct user, u_debugreg) on x86-64
    out = {}
    for tid in tids:
        assert libc.ptrace(seize, tid, None, None) == 0, ctypes.get_errno()
        assert libc.ptrace(interrupt, tid, None, None) == 0, ctypes.get_errno()
        os.waitpid(tid, 0x40000000)  # __WALL
        ctypes.set_errno(0)
        out[tid] = libc.ptrace(peekuser, tid, ctypes.c_void_p(dr7_offset), None)
        assert ctypes.get_errno() == 0
        assert libc.ptrace(detach, tid, None, None) == 0, ctypes.get_errno()
    return out


@pytest.mark.any_breakpoints
def test_debugreg_cleared_in_stopped_threads_when_a_thread_cannot_stop(launch, python, tmp_path):
    """Issue 19 item 6 (F1): a stop at the end that fails (here a thread in vfork, state D, for
    longer than pyscope's 2 s bound) must still clear DR7 in every thread that did stop, and name
    the others: the old code skipped the clear and detached them armed (the kernel keeps debug
    registers after detach), so the target died at its next raise where breakpoints fire. Read
    from the target's threads with ptrace after pyscope exited; the thread that never stopped may
    stay armed (said in pyscope's error)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    target = subprocess.Popen([python, "-I", "-c", DR7_TARGET, str(fifo)], stdout=subprocess.PIPE)
    try:
        assert target.stdout.readline() == b"ready\n"
        tracer = Tracer(target.pid, "--max-rate", 0, "--mechanism", "debugreg")
        assert tracer.mechanism == "debugreg"
        os.kill(target.pid, signal.SIGUSR1)
        wait_for(lambda: _stat_state(f"/proc/{target.pid}/task/{target.pid}/stat") == "D",
                 PYSCOPE_TIMEOUT_S, "the target's main thread in vfork")
        rc, err = tracer.finish(signal.SIGINT)
        assert rc != 0 and "may stay armed" in err, (rc, err)
        with open(fifo, "wb"):  # the spawned child opens it and execs: the main thread returns
            pass
        assert target.stdout.readline() == b"spawned\n"
        dr7 = debug_register7(task_ids(target.pid))
        assert len(dr7) == 2, dr7
        others = {tid: v for tid, v in dr7.items() if tid != target.pid}
        assert others and not any(v & 1 for v in others.values()), dr7
        assert_not_stopped_or_traced(target.pid)
    finally:
        target.kill()
        target.wait()
