"""Integration target: an exception already propagating when pyscope starts tracing.

Usage: python3.X in_flight.py TRUTH_PATH

The main thread raises ValueError("early") in inner(); it propagates into mid(), whose finally
block parks the thread (sigwait for SIGUSR1) with the exception in flight: its raise and its
first two frames are over before any tracer can attach. Truth generation 0 is written while
parked: {"pid", "file", "raise_line", "caught_line"} (caught_line: the line in outer() where the
exception arrives, its first frame after the park). On SIGUSR1 the finally block ends, the
exception reaches outer() and is caught there, then after() raises and catches KeyError("late"),
the one raise made while traced; generation 1 then adds {"late_line"} and the process parks
until killed.
"""
import inspect
import json
import os
import signal
import sys

TRUTH = sys.argv[1]


def publish(doc):
    with open(TRUTH + ".tmp", "w", encoding="utf-8") as f:
        json.dump(doc, f)
    os.replace(TRUTH + ".tmp", TRUTH)


def lineno(fn, text):
    src, start = inspect.getsourcelines(fn)
    return start + next(i for i, line in enumerate(src) if text in line)


def inner():
    raise ValueError("early")


def mid(doc):
    try:
        inner()
    finally:
        publish(doc)
        signal.sigwait({signal.SIGUSR1})


def outer(doc):
    try:
        mid(doc)  # caught here
    except ValueError:
        pass


def after():
    try:
        raise KeyError("late")
    except KeyError:
        pass


def main():
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    doc = {"pid": os.getpid(), "file": os.path.abspath(__file__), "generation": 0,
           "raise_line": lineno(inner, "raise ValueError"),
           "caught_line": lineno(outer, "# caught here")}
    late_line = lineno(after, "raise KeyError")  # inspect raises and catches: not while traced
    outer(doc)
    after()
    doc.update(generation=1, late_line=late_line)
    publish(doc)
    signal.sigwait({signal.SIGUSR1})


if __name__ == "__main__":
    main()
