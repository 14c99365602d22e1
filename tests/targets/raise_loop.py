"""Integration target: raise and swallow ValueError in a loop, forever, counting.

Usage: python3.X raise_loop.py TRUTH_PATH
Writes {"pid": ...} to TRUTH_PATH once looping, and keeps the number of raises so far in
TRUTH_PATH + ".count" (rewritten every 2000 raises), so a test can tell whether the target is
making progress or sits stopped.
"""
import json
import os
import sys

TRUTH = sys.argv[1]


def publish(path, data):
    with open(path + ".tmp", "w") as f:
        f.write(data)
    os.rename(path + ".tmp", path)


count = 0
publish(TRUTH, json.dumps({"pid": os.getpid()}))
while True:
    try:
        raise ValueError("loop")
    except Exception:
        pass
    count += 1
    if count % 2000 == 0:
        publish(TRUTH + ".count", str(count))
