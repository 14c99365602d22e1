"""Integration target for the walker's generator gap: a thread that spends its time inside
generator and coroutine frames resumed from C (and from Python), below a known chain of outer
frames.

Usage: python3.X gen_chain.py TRUTH_PATH

The thread `churn` runs chain_outer -> chain_middle -> chain_inner -> churn_loop, and churn_loop
cycles forever through generators consumed by C code (sum, any, all, list, sorted, str.join,
max, dict, json's pure-Python encoder generators with their nested `yield from`, next() and
coroutine send()), nested generator expressions (a generator resumed from C inside a generator
resumed from C), and a generator consumed by a Python `for` loop (inlined on 3.12+). Every
sample of that thread, whatever its innermost frames, must hold the three outer frames.
The thread `bottom` is a generator at the very bottom of its thread (started by
_thread.start_new_thread(next, ...): no Python frame below it), spinning inside: its one frame
is its whole stack, and must be sampled as such, not taken for a cut chain.
Generation 0 of the truth (pid, both threads' native ids, the outer chain) is written once both
threads run; then the target runs until killed.
"""

import json
import json.encoder
import _thread
import os
import sys
import threading
import time

OUTER = ["chain_outer", "chain_middle", "chain_inner", "churn_loop"]
# json's pure-Python encoder is a tree of generators joined by str.join: generators resumed
# from C, each delegating with yield from. 3.11/3.12 use it whenever indent is given; 3.13's C
# encoder handles indent too, so it is switched off.
json.encoder.c_make_encoder = None
DOC = {"k%d" % i: [{"a": [j, str(j), [j, [j, {"b": [j]}]]]} for j in range(6)] for i in range(6)}


def numbers(n):
    for i in range(n):
        yield i


def words(n):
    for i in range(n):
        yield str(i)


def nested(n):
    yield from numbers(n)
    yield from (i * 2 for i in range(n))


def deep(n):
    """n generators, each delegating to the next with yield from: every item the innermost
    yields passes through all of them (on 3.11 each is resumed from C, by SEND)."""
    if n:
        yield from deep(n - 1)
    else:
        for i in range(40):
            yield "x"


async def coro_leaf(n):
    return sum(i for i in range(n))


async def coro_mid(n):
    total = 0
    for i in range(n):
        total += await coro_leaf(i)
    return total


def drive(coro):
    try:
        while True:
            coro.send(None)
    except StopIteration as stop:
        return stop.value


def churn_loop(rec):
    rec["start"] = time.time()
    sink = 0
    while True:
        sink += sum(x for x in range(200))
        sink += any(x > 150 for x in numbers(200))
        sink += all(x >= 0 for x in nested(60))
        sink += len(list(numbers(150)))
        sink += len(sorted(x % 7 for x in range(150)))
        sink += len("".join(words(100)))
        sink += max(x for x in nested(60))
        sink += len(dict((x, x) for x in range(80)))
        sink += sum(sum(y for y in range(x)) for x in range(25))
        sink += len("".join(deep(12)))
        for _ in range(12):  # most of the time: json's chains, the hardest case seen
            sink += len(json.dumps(DOC, indent=1))
        it = numbers(100)
        for _ in range(50):
            sink += next(it)
        sink += drive(coro_mid(20))
        for x in nested(80):  # resumed from Python (inlined on 3.12+)
            sink += x
        sink &= 0xFFFF


def chain_inner(rec):
    churn_loop(rec)


def chain_middle(rec):
    chain_inner(rec)


def chain_outer(rec):
    chain_middle(rec)


def bottom_gen(rec):
    rec["native_id"] = threading.get_native_id()
    x = 0
    while True:
        for i in range(1000):
            x += i
        x &= 0xFFFF
    yield x


def write_atomic(path, doc):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(doc, out)
    os.replace(tmp, path)


def main():
    rec = {"start": None}
    th = threading.Thread(target=chain_outer, name="churn", args=(rec,), daemon=True)
    th.start()
    bottom = {"native_id": None}
    _thread.start_new_thread(next, (bottom_gen(bottom),))
    while rec["start"] is None or bottom["native_id"] is None:
        time.sleep(0.001)
    write_atomic(sys.argv[1], {"generation": 0, "pid": os.getpid(), "native_id": th.native_id,
                               "bottom_native_id": bottom["native_id"],
                               "outer": OUTER, "start": rec["start"],
                               "python_version": ".".join(map(str, sys.version_info[:3]))})
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
