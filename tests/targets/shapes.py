"""Integration target: threads in varied stack shapes, parked, with their own ground truth.

Usage: python3.X shapes.py TRUTH_PATH

Every worker thread (and the main thread) parks in a C-level blocking call that never returns
(lock.acquire() on a lock held forever, time.sleep, os.read and select on pipes nobody writes),
so each stack is stable for as long as the process lives. Every park site is a line marked with
the PARK comment marker; the truth writer waits, bounded, until every thread's innermost frame
sits on one of those lines, then records each thread's ident, native_id, name and
traceback.extract_stack() (outermost first, plus co_qualname and the code position of each
frame), writes TRUTH_PATH atomically (tmp + rename) and exits. The process then parks until killed.

SIGUSR1 starts one more parked thread ("late-N") and rewrites TRUTH_PATH with "generation"
incremented: the test for a thread created after pyscope's first dump. Worker threads block
SIGUSR1, so the kernel always delivers it to the main thread, whose time.sleep() is interrupted,
runs the handler and goes back to sleep on the same line.

If the threads do not all park within the deadline, TRUTH_PATH gets {"error": ...} instead.
Runs on every supported CPython (3.11+: uses co_qualname and co_positions).
"""

import functools
import json
import os
import select
import signal
import sys
import threading
import time
import traceback

TRUTH_PATH = sys.argv[1]
HERE = os.path.abspath(__file__)
MARK = "# " + "PARK"
with open(HERE, encoding="utf-8") as _src:
    PARK_LINES = frozenset(i for i, text in enumerate(_src, 1) if text.rstrip().endswith(MARK))

PARK_DEADLINE_S = 20.0
RECURSION_DEPTH = 120
HELD = threading.Lock()
HELD.acquire()                  # never released: every HELD.acquire() below blocks forever
PIPES = [os.pipe() for _ in range(2)]   # write ends stay open and unwritten: reads block forever

ROLES = {}                      # ident -> role, for the tests to find a shape by name
_state = {"generation": 0, "writer": None, "late": 0}


# --- the shapes ---------------------------------------------------------------------------------

class Service:
    """A method of a class: qualname Service.handle."""

    def handle(self):
        HELD.acquire()  # PARK


def make_closure():
    """A closure: qualname make_closure.<locals>.inner."""
    period = 3600

    def inner():
        while True:
            time.sleep(period)  # PARK
    return inner


def ticker(fd):
    """A generator being iterated: its frame sits inside the consumer's stack."""
    while True:
        select.select([fd], [], [])  # PARK
        yield fd


def consume(fd):
    for _ in ticker(fd):
        pass


def logged(fn):
    """A functools.wraps decorator: the wrapper frame shows as 'wrapper'."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


@logged
def decorated_park():
    HELD.acquire()  # PARK


async def coro_step():
    HELD.acquire()  # PARK


async def coro_handler():
    await coro_step()


def drive_coroutine():
    """A coroutine driven by hand with .send(): coroutine frames inside a plain thread."""
    coro = coro_handler()
    coro.send(None)


def 𠀋_park():       # a UCS4 identifier
    while True:
        time.sleep(3600)  # PARK


def λ_σ():            # UCS2
    𠀋_park()


def café_ünïcødé():   # UCS1, non-ASCII
    λ_σ()


def recurse(depth):
    """Recursion RECURSION_DEPTH deep; padded locals make the frames span data-stack chunks."""
    a = b = c = d = e = f = g = h = i = j = k = m = depth  # noqa: F841 (frame padding)
    if depth == 0:
        HELD.acquire()  # PARK
    return recurse(depth - 1)


class ParkedThread(threading.Thread):
    """A threading.Thread subclass; its run() is the thread's entry frame."""

    def run(self):
        self.wait_here()

    def wait_here(self):
        os.read(PIPES[1][0], 1)  # PARK


def late_arrival():
    HELD.acquire()  # PARK


def park_main():
    while True:
        time.sleep(3600)  # PARK


# --- orchestration ------------------------------------------------------------------------------

def start(thread, role):
    """Start with SIGUSR1 blocked so only the main thread ever receives it."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        thread.daemon = True
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    ROLES[thread.ident] = role


def start_all():
    start(threading.Thread(target=Service().handle, name="svc-method"), "method")
    start(threading.Thread(target=make_closure(), name="closure"), "closure")
    start(threading.Thread(
        target=lambda: os.read(PIPES[0][0], 1),  # PARK
        name="lambda-reader"), "lambda")
    start(threading.Thread(target=consume, args=(PIPES[0][0],), name="generator"), "generator")
    start(threading.Thread(target=decorated_park, name="decorated"), "decorated")
    start(threading.Thread(target=drive_coroutine, name="coroutine"), "coroutine")
    start(threading.Thread(target=café_ünïcødé, name="wörker-λ"), "nonascii")
    start(threading.Thread(target=recurse, args=(RECURSION_DEPTH,), name="recursion"),
          "recursion")
    start(ParkedThread(name="subclass-𝄞"), "subclass")
    ROLES[threading.main_thread().ident] = "main"


def frame_position(frame):
    """(line, end_line, column, end_column) of the frame's current instruction, or Nones."""
    if frame.f_lasti < 0:
        return (None, None, None, None)
    positions = list(frame.f_code.co_positions())
    index = frame.f_lasti // 2
    return positions[index] if index < len(positions) else (None, None, None, None)


def describe(thread, frame):
    chain = []
    f = frame
    while f is not None:
        chain.append(f)
        f = f.f_back
    chain.reverse()                                 # outermost first, like traceback
    summary = traceback.extract_stack(frame)
    assert len(summary) == len(chain), (len(summary), len(chain))
    frames = []
    for fs, f in zip(summary, chain):
        line, end_line, column, end_column = frame_position(f)
        frames.append({"file": fs.filename, "line": fs.lineno, "function": fs.name,
                       "qualname": f.f_code.co_qualname, "position_line": line,
                       "end_line": end_line, "column": column, "end_column": end_column})
    return {"ident": thread.ident, "native_id": thread.native_id, "name": thread.name,
            "role": ROLES.get(thread.ident), "frames": frames}


def unparked(me):
    """Threads (other than the writer) whose innermost frame is not on a park line."""
    frames = sys._current_frames()
    waiting = []
    for thread in threading.enumerate():
        if thread is me:
            continue
        frame = frames.get(thread.ident)
        if frame is None or frame.f_code.co_filename != HERE or frame.f_lineno not in PARK_LINES:
            waiting.append(thread.name)
    return waiting, frames


def write_json(doc):
    tmp = f"{TRUTH_PATH}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(doc, out, ensure_ascii=False, indent=1)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, TRUTH_PATH)


def write_truth(generation, previous):
    if previous is not None:
        previous.join()
    me = threading.current_thread()
    deadline = time.monotonic() + PARK_DEADLINE_S
    while True:
        waiting, frames = unparked(me)
        if not waiting:
            break
        if time.monotonic() > deadline:
            write_json({"generation": generation, "error": f"threads never parked: {waiting}"})
            return
        time.sleep(0.005)       # polling the threads' state, bounded by the deadline
    threads = [describe(t, frames[t.ident]) for t in threading.enumerate() if t is not me]
    write_json({
        "generation": generation,
        "pid": os.getpid(),
        "python_version": ".".join(map(str, sys.version_info[:3])),
        "executable": sys.executable,
        "script": HERE,
        "recursion_depth": RECURSION_DEPTH,
        "park_lines": sorted(PARK_LINES),
        "writer_native_id": me.native_id,
        "threads": threads,
    })


def start_writer():
    generation = _state["generation"]
    writer = threading.Thread(target=write_truth, args=(generation, _state["writer"]),
                              name=f"truth-writer-{generation}")
    _state["writer"] = writer
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        writer.daemon = True
        writer.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def on_sigusr1(signum, frame):
    _state["late"] += 1
    _state["generation"] += 1
    start(threading.Thread(target=late_arrival, name=f"late-{_state['late']}"), "late")
    start_writer()


def main():
    signal.signal(signal.SIGUSR1, on_sigusr1)
    start_all()
    start_writer()
    park_main()


if __name__ == "__main__":
    main()
