"""Integration target: exceptions and frames whose every name carries terminal control bytes.

Usage: python3.X hostile_names.py TRUTH_PATH

The exception's type name, message, raising file name and function name all hold ESC, BEL, CR
and a C1 CSI, as a hostile or merely careless program can make them. A thread named with the
same bytes parks inside the hostile function (for dump and record), and the main thread raises
and swallows the exception in a loop, counting. Writes {"pid", "hostile"} to TRUTH_PATH once both
run, and the number of raises so far in TRUTH_PATH + ".count" every 200 raises, when a
module-level list named "cache" + the same bytes also grows by one (for growth).
"""
import json
import os
import sys
import threading

TRUTH = sys.argv[1]
HOSTILE = "\x1b[31m\x1b]0;pwned\x07\r\u009b2J"
# The exception's class, file and function are all named with the hostile bytes.
Evil = type("Evil" + HOSTILE, (Exception,), {})
SOURCE = """
def hostile(parked, gate):
    if parked:
        gate.wait()
        return
    raise Evil("msg" + HOSTILE)
"""
scope = {"Evil": Evil, "HOSTILE": HOSTILE}
exec(compile(SOURCE, "/nonexistent/file" + HOSTILE + ".py", "exec"), scope)
hostile = scope["hostile"]
hostile.__code__ = hostile.__code__.replace(co_name="fn" + HOSTILE, co_qualname="fn" + HOSTILE)


def publish(path, data):
    with open(path + ".tmp", "w") as f:
        f.write(data)
    os.rename(path + ".tmp", path)


gate = threading.Event()
parker = threading.Thread(target=hostile, args=(True, gate), name="thread" + HOSTILE,
                          daemon=True)
parker.start()
# A module-level container named with the same bytes, growing (for growth).
globals()["cache" + HOSTILE] = cache = []
count = 0
publish(TRUTH, json.dumps({"pid": os.getpid(), "hostile": HOSTILE}))
while True:
    try:
        hostile(False, gate)
    except Exception:
        pass
    count += 1
    if count % 200 == 0:
        publish(TRUTH + ".count", str(count))
        if len(cache) < 1_000_000:
            cache.append(count)
