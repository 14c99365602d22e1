"""Integration target: threads parked in a subinterpreter as well as in the main interpreter.

Usage: python3.X subinterp.py TRUTH_PATH

The main interpreter parks a thread "main-parked"; a thread "runner" creates a subinterpreter
(_xxsubinterpreters in 3.11/3.12, _interpreters in 3.13) and runs code in it that starts a
named thread "sub-worker" and then parks the runner itself inside the subinterpreter; both block
reading a pipe nobody writes. The subinterpreter writes its own facts (interpreter id, its
threads' idents, native ids, names and innermost function) to a side file; the main interpreter
waits for it and writes TRUTH_PATH atomically with every parked thread and its interpreter id.
"""

import json
import os
import sys
import threading
import time

try:
    import _interpreters as interpreters  # 3.13
except ImportError:
    import _xxsubinterpreters as interpreters  # 3.11, 3.12

HELD = threading.Lock()
HELD.acquire()

SUB_CODE = """
import json, os, threading
try:
    import _interpreters as interpreters
except ImportError:
    import _xxsubinterpreters as interpreters

def sub_park(ready):
    ready.set()
    os.read({fd}, 1)

current = interpreters.get_current()
interp_id = int(current[0] if isinstance(current, tuple) else current)
ready = threading.Event()
worker = threading.Thread(target=sub_park, args=(ready,), name="sub-worker")
worker.start()
ready.wait()
me = threading.current_thread()
doc = {{"interp_id": interp_id, "threads": [
    {{"name": "sub-worker", "native_id": worker.native_id, "ident": worker.ident,
      "function": "sub_park"}},
    {{"name": None, "native_id": threading.get_native_id(), "ident": threading.get_ident(),
      "function": "<module>"}}]}}
with open({side!r} + ".tmp", "w") as out:
    json.dump(doc, out)
os.replace({side!r} + ".tmp", {side!r})
os.read({fd}, 1)
"""


def main_park(started):
    started.set()
    HELD.acquire()


def runner(fd, side):
    # 3.11's isolated subinterpreters refuse threads; 3.12+ isolated ones allow them.
    interp = interpreters.create(isolated=False) if sys.version_info < (3, 12) \
        else interpreters.create()
    interpreters.run_string(interp, SUB_CODE.format(fd=fd, side=side))


def main():
    truth_path = sys.argv[1]
    side = truth_path + ".sub"
    rfd, _wfd = os.pipe()  # never written: both subinterpreter threads block in read()
    started = threading.Event()
    parked = threading.Thread(target=main_park, args=(started,), name="main-parked", daemon=True)
    parked.start()
    started.wait()
    threading.Thread(target=runner, args=(rfd, side), name="runner", daemon=True).start()
    deadline = time.monotonic() + 30
    while not os.path.exists(side):  # the subinterpreter's own facts, bounded wait
        if time.monotonic() > deadline:
            raise SystemExit("subinterpreter did not report")
        time.sleep(0.01)
    with open(side, encoding="utf-8") as f:
        sub = json.load(f)
    main_id = interpreters.get_main()
    main_id = int(main_id[0] if isinstance(main_id, tuple) else main_id)
    threads = [{"name": "main-parked", "native_id": parked.native_id, "ident": parked.ident,
                "function": "main_park", "interp_id": main_id}]
    threads += [dict(t, interp_id=sub["interp_id"]) for t in sub["threads"]]
    doc = {"pid": os.getpid(), "python_version": ".".join(map(str, sys.version_info[:3])),
           "main_interp_id": main_id, "sub_interp_id": sub["interp_id"], "threads": threads}
    tmp = truth_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(doc, out)
    os.replace(tmp, truth_path)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
