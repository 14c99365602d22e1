"""Integration target for `pyscope exceptions`: raises known exceptions on command, counts them.

Usage: python3.X raiser.py TRUTH_PATH [ROUNDS_BEFORE_EXIT]

Starts a thread parked inside an except block (handler_native_id in the truth). Writes
TRUTH_PATH (generation 0) once parked, then waits for SIGUSR1. Each SIGUSR1 runs one round
in the main thread and in a thread created for it (so after any tracer attached), then writes the
next generation with the expected events of that round and parks again. With ROUNDS_BEFORE_EXIT
it exits (status 0) after that many rounds. SIGUSR2 runs a "storm" round instead: raise and
swallow ValueError in a loop for STORM_S seconds, paced at $RAISER_STORM_RATE per second when set
(for rate-limit and kill-during-burst tests). SIGURG runs a "fork" round: fork a child that runs
one round (main thread only) and exits 0, wait for it and record its pid, exit code and raise
count, then run one round in the main thread (so a tracer must still see the parent).

Each expected event: type, message, raise line (the line tagged `# RAISE:<site>`), stack function
names innermost first (traceback.extract_stack at the raise frame), handler function and line (the
catching frame's traceback entry), whether it is a re-raise of an old object, its cause type.
Each case below is one raise, except `stored`, whose second raise re-raises an old object.
"""

import json
import os
import signal
import sys
import threading
import time
import traceback

N = 5          # repetitions of each case per thread per round
STORM_S = 1.0
LINES = {}
with open(__file__, encoding="utf-8") as src:
    for number, text in enumerate(src, 1):
        if "# RAISE:" in text:
            LINES[text.split("# RAISE:")[1].strip()] = number


def record(log, exc, site, reraise=False, raised_in=None):
    """Append the expected event of exc (caught here) to log. raised_in: the raising function
    of a re-raised object, whose traceback goes on to the frames of its first raise."""
    tb = exc.__traceback__
    handler = (tb.tb_frame.f_code.co_name, tb.tb_lineno)
    while tb.tb_next and tb.tb_frame.f_code.co_name != raised_in:
        tb = tb.tb_next
    stack = [f.name for f in reversed(traceback.extract_stack(tb.tb_frame))]
    log.append({"type": type(exc).__name__, "message": str(exc.args[0]), "site": site,
                "line": LINES[site], "stack": stack, "handled_in": handler[0],
                "handled_line": handler[1], "reraise": reraise,
                "cause": type(exc.__cause__).__name__ if exc.__cause__ else None,
                "thread": threading.get_native_id()})


def swallow(log, i):
    try:
        raise ValueError(f"swallowed {i}")  # RAISE:swallow
    except Exception as exc:  # noqa: BLE001 - the swallowing handler is the point
        record(log, exc, "swallow")


def level3(i):
    raise LookupError(f"deep {i}")  # RAISE:deep


def level2(i):
    level3(i)


def level1(i):
    level2(i)


def deep(log, i):
    try:
        level1(i)
    except LookupError as exc:
        record(log, exc, "deep")


def c_keyerror(log, i):
    table = {}
    try:
        table[f"k{i}"]  # RAISE:ckey
    except KeyError as exc:
        record(log, exc, "ckey")


def inner_re(i):
    raise TypeError(f"re {i}")  # RAISE:reraise


def middle_re(i):
    try:
        inner_re(i)
    except TypeError:
        raise


def reraise(log, i):
    try:
        middle_re(i)
    except TypeError as exc:
        record(log, exc, "reraise")


def raise_again(exc):
    raise exc  # RAISE:stored


def stored(log, i):
    try:
        raise OSError(f"stored {i}")  # RAISE:stored_first
    except OSError as exc:
        record(log, exc, "stored_first")
        kept = exc
    try:
        raise_again(kept)
    except OSError as exc:
        record(log, exc, "stored", reraise=True, raised_in="raise_again")


def chained(log, i):
    try:
        try:
            {}[f"c{i}"]  # RAISE:chain_key
        except KeyError as exc:
            record(log, exc, "chain_key")
            raise RuntimeError(f"chained {i}") from exc  # RAISE:chain
    except RuntimeError as exc:
        record(log, exc, "chain")


CASES = (swallow, deep, c_keyerror, reraise, stored, chained)


def round_of(log):
    for i in range(N):
        for case in CASES:
            case(log, i)


def storm(rate):
    """Raise and swallow ValueError for STORM_S seconds: as fast as possible (rate 0), or paced
    at `rate` per second with a busy wait."""
    start = time.monotonic()
    end, n = start + STORM_S, 0
    while True:
        now = time.monotonic()
        if now >= end:
            return n
        if rate and n >= (now - start) * rate:
            continue
        try:
            raise ValueError("storm")
        except ValueError:
            n += 1


PARKED = threading.Lock()
PARKED.acquire()


def park_in_handler(ready):
    """A thread parked inside an except block: `dump` shows its handled exception."""
    try:
        raise KeyError("parked in handler")  # RAISE:parked
    except KeyError:
        ready.set()
        PARKED.acquire()


def fork_round():
    """Fork a child that raises one round and exits; return its pid, exit code, raise count."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        log = []
        round_of(log)
        os.write(wfd, str(len(log)).encode())
        os._exit(0)
    os.close(wfd)
    data = b""
    while chunk := os.read(rfd, 64):
        data += chunk
    os.close(rfd)
    _, status = os.waitpid(pid, 0)
    return {"child_pid": pid, "child_exit": os.waitstatus_to_exitcode(status),
            "child_raises": int(data or b"-1")}


def write(path, doc):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(doc, out)
    os.replace(tmp, path)


def main():
    path = sys.argv[1]
    rounds_before_exit = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    commands = {signal.SIGUSR1, signal.SIGUSR2, signal.SIGURG}
    signal.pthread_sigmask(signal.SIG_BLOCK, commands)
    ready = threading.Event()
    parked = threading.Thread(target=park_in_handler, args=(ready,), name="in-handler",
                              daemon=True)
    parked.start()
    ready.wait()
    base = {"pid": os.getpid(), "python_version": ".".join(map(str, sys.version_info[:3])),
            "file": os.path.abspath(__file__), "lines": LINES,
            "handler_native_id": parked.native_id}
    write(path, dict(base, generation=0, events=[]))
    generation = 0
    while True:
        sig = signal.sigwait(commands)
        generation += 1
        main_log, thread_log, storms, forked = [], [], 0, {}
        if sig == signal.SIGUSR2:
            storms = storm(float(os.environ.get("RAISER_STORM_RATE", "0")))
        elif sig == signal.SIGURG:
            forked = fork_round()
            round_of(main_log)
        else:
            round_of(main_log)
            worker = threading.Thread(target=round_of, args=(thread_log,), name="late-raiser")
            worker.start()
            worker.join()
        write(path, dict(base, generation=generation, events=main_log + thread_log,
                         storm=storms, storm_seconds=STORM_S, **forked))
        if rounds_before_exit and generation >= rounds_before_exit:
            return


if __name__ == "__main__":
    main()
