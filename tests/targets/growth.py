"""Integration target for `pyscope growth`: one module-level dict that grows at a known rate
beside stable containers of similar size, with its own ground truth.

Usage: python3.X growth.py TRUTH_PATH [RATE]

LEAK (a module-level dict of __main__) gains RATE items per second (default 200): a grower
thread keeps len(LEAK) equal to int(RATE * seconds since start), catching up after any delay, so
the rate is exact however the thread is scheduled. Beside it sit stable containers of about the
same length: a dict, a list, a set, a deque, a class attribute (Registry.handlers: one level into
a module-level class) and an lru_cache'd function's cache; plus a module `growth_doomed` in
sys.modules with a stable list.

TRUTH_PATH (written atomically, tmp + rename) holds the generation, the rate, id() (= address)
of LEAK, and each stable container's name, type, length and sys.getsizeof.

SIGUSR1 replaces LEAK by a new dict (the old one stays referenced from OLD_LEAKS so that the new
one cannot reuse its address), deletes growth_doomed from sys.modules, and rewrites TRUTH_PATH
with generation + 1. The process then keeps growing the new LEAK until killed.
"""

import collections
import functools
import gc
import json
import os
import signal
import sys
import threading
import time
import types

TRUTH_PATH = sys.argv[1]
RATE = float(sys.argv[2]) if len(sys.argv) > 2 else 200.0
STABLE_N = 500

LEAK = {}
OLD_LEAKS = []
STABLE_DICT = {i: str(i) for i in range(STABLE_N)}
STABLE_LIST = list(range(STABLE_N))
STABLE_SET = set(range(STABLE_N))
STABLE_DEQUE = collections.deque(range(STABLE_N))


class Registry:
    """A module-level class: its attributes are one level down."""

    handlers = {f"h{i}": i for i in range(STABLE_N)}


@functools.lru_cache(maxsize=None)
def cached(x):
    return x * 2


for _i in range(STABLE_N):
    cached(_i)

_doomed = types.ModuleType("growth_doomed")
_doomed.ITEMS = list(range(300))
sys.modules["growth_doomed"] = _doomed
del _doomed

_state = {"generation": 0, "start": time.monotonic()}


def grow():
    n = 0
    while True:
        due = int((time.monotonic() - _state["start"]) * RATE)
        while n < due:
            LEAK[n] = n
            n += 1
        time.sleep(0.005)


def stable():
    rows = {
        "__main__.STABLE_DICT": ("dict", STABLE_DICT),
        "__main__.STABLE_LIST": ("list", STABLE_LIST),
        "__main__.STABLE_SET": ("set", STABLE_SET),
        "__main__.STABLE_DEQUE": ("deque", STABLE_DEQUE),
        "__main__.Registry.handlers": ("dict", Registry.handlers),
    }
    out = {name: {"type": t, "length": len(obj), "sizeof": sys.getsizeof(obj),
                  "address": id(obj)} for name, (t, obj) in rows.items()}
    out["__main__.cached"] = {"type": "lru_cache", "length": cached.cache_info().currsize}
    if "growth_doomed" in sys.modules:
        items = sys.modules["growth_doomed"].ITEMS
        out["growth_doomed.ITEMS"] = {"type": "list", "length": len(items),
                                      "sizeof": sys.getsizeof(items), "address": id(items)}
    return out


def write_truth():
    doc = {"generation": _state["generation"], "pid": os.getpid(), "rate_per_s": RATE,
           "leak_address": id(LEAK), "old_leak_addresses": [id(d) for d in OLD_LEAKS],
           "stable": stable()}
    tmp = TRUTH_PATH + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    os.rename(tmp, TRUTH_PATH)


def on_usr1(_signo, _frame):
    global LEAK
    OLD_LEAKS.append(LEAK)
    LEAK = {}
    del sys.modules["growth_doomed"]
    gc.collect()
    _state["generation"] += 1
    write_truth()


signal.signal(signal.SIGUSR1, on_usr1)
threading.Thread(target=grow, name="grower", daemon=True).start()
write_truth()
while True:
    time.sleep(3600)
