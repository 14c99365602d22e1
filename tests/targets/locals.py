"""Integration target for `dump --locals`: parked frames holding values of every repr'd type.

Usage: python3.X locals.py TRUTH_PATH

Parks three threads whose frames hold: scalars (None, bools, small/negative/big ints, floats,
str with quotes/escapes/non-ASCII, a long str, bytes, an opaque object) passed partly as
arguments (*args, keyword-only, **kwargs); containers (tuples incl. 1-tuple and empty, nested
lists deeper than the repr depth cap, a 100,000-item list, dicts, sets, a self-containing list);
and a closure (cell variables in the outer frame, free variables in the inner one). Then writes
TRUTH_PATH atomically: for every parked thread, its frames innermost first, each with the
frame's own view of its variables (frame.f_locals: repr prefix, type name, len, id) and the
code's argument/cell/free names. The main thread then sleeps until killed.
"""

import json
import os
import sys
import threading
import time

HELD = threading.Lock()
HELD.acquire()
REPR_KEEP = 2000


class Opaque:
    pass


def park(started):
    started.set()
    HELD.acquire()


def scalars(started, a, b=2, *rest, kw=None, **extra):
    nothing = None
    yes, no = True, False
    small, neg, zero = 42, -7, 0
    big, negbig, huge = 2 ** 200, -(3 ** 150), 10 ** 1000
    fl, fl_big, fl_small, fl_whole, fl_inf = 0.1, 1e16, -2.5e-07, 1234567.0, float("inf")
    text, quoted, both = "hello", "it's", "a'b\"c"
    uni, esc = "h\u00e9llo \u65e5\u672c \U0001f40d", "tab\tnl\n\x01"
    long_text = "x" * 5000
    raw, long_raw = b"\x00ab\xff'", bytes(range(256)) * 4
    thing = Opaque()
    park(started)


def containers(started):
    tup, one, empty_t = (1, "two", 3.0), (1,), ()
    nested = [1, [2, [3, [4, [5]]]]]
    many = list(range(100000))
    d = {"a": 1, "b": [1, 2], 3: None}
    big_d = {i: i * i for i in range(1000)}
    st, empty_s, big_s = {1, 2, 3}, set(), set(range(500))
    rec = [1]
    rec.append(rec)
    mixed = {"k": (1, [2, {"x": b"y"}])}
    park(started)


def closure(started):
    shared = "captured"
    counter = [0]

    def inner(p):
        loc = p + 1
        seen = (shared, counter)
        park(started)
        return loc, seen

    return inner(10)


def describe(value):
    try:
        text = repr(value)
    except Exception as exc:  # e.g. int too large to convert
        text = None
        error = type(exc).__name__
    else:
        error = None
    try:
        length = len(value)
    except TypeError:
        length = None
    return {"repr": None if text is None else text[:REPR_KEEP],
            "repr_len": None if text is None else len(text), "repr_error": error,
            "type": type(value).__name__, "len": length, "id": id(value)}


def frame_truth(frame):
    code = frame.f_code
    nargs = code.co_argcount + code.co_kwonlyargcount + \
        (1 if code.co_flags & 0x4 else 0) + (1 if code.co_flags & 0x8 else 0)
    return {"function": code.co_name, "qualname": code.co_qualname,
            "args": list(code.co_varnames[:nargs]), "cells": list(code.co_cellvars),
            "frees": list(code.co_freevars),
            "locals": {name: describe(v) for name, v in dict(frame.f_locals).items()}}


def main():
    runs = [("locals-scalars", scalars, (1, 2, 3, 4), {"kw": "k", "x": 1.5}),
            ("locals-containers", containers, (), {}),
            ("locals-closure", closure, (), {})]
    threads = []
    for name, func, args, kwargs in runs:
        started = threading.Event()
        t = threading.Thread(target=func, args=(started, *args), kwargs=kwargs, name=name,
                             daemon=True)
        t.start()
        started.wait()
        threads.append(t)
    frames = sys._current_frames()
    doc = {"pid": os.getpid(), "python_version": ".".join(map(str, sys.version_info[:3])),
           "threads": []}
    for t in threads:
        stack, f = [], frames[t.ident]
        while f is not None and f.f_code.co_name != "park":
            f = f.f_back  # still inside started.set(): its frames are gone by the dump
        while f is not None:
            stack.append(frame_truth(f))
            f = f.f_back
        doc["threads"].append({"name": t.name, "native_id": t.native_id, "frames": stack})
    tmp = sys.argv[1] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(doc, out)
    os.replace(tmp, sys.argv[1])
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
