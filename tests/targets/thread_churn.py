"""Integration target: threads that start, raise, and end, forever.

Usage: python3.X thread_churn.py TRUTH_PATH
Writes {"pid": ..., "traceback_here": ...} to TRUTH_PATH once churning: traceback_here is the
address of PyTraceBack_Here in this process (where a bpf tracer puts its uprobe), so a test can
read that the probe's breakpoint is there while traced and gone afterwards. Up to four
short-lived threads at a time each raise and swallow a few exceptions and exit, so threads are
created and gone at every moment (the shape that races a tracer's stop with clone events).
"""
import ctypes
import json
import os
import sys
import threading


def short_life():
    for _ in range(20):
        try:
            raise KeyError("churn")
        except KeyError:
            pass


def main():
    started = 0
    while True:
        threads = [threading.Thread(target=short_life) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        started += len(threads)
        if started == 400:
            with open(sys.argv[1] + ".tmp", "w") as f:
                here = ctypes.cast(ctypes.pythonapi.PyTraceBack_Here, ctypes.c_void_p).value
                json.dump({"pid": os.getpid(), "traceback_here": here}, f)
            os.rename(sys.argv[1] + ".tmp", sys.argv[1])


main()
