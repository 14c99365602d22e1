"""Benchmark target: N threads each parked DEPTH Python frames deep (time.sleep at the bottom).

Usage: python3.X deep.py THREADS DEPTH READY_PATH
Writes READY_PATH (its pid) once every thread is parked, then parks until killed.
"""
import os
import sys
import threading
import time

THREADS, DEPTH, READY = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
parked = threading.Semaphore(0)


def level(n):
    if n <= 1:
        parked.release()
        time.sleep(1e6)
    else:
        level(n - 1)


def worker():
    # The thread's own bootstrap frames count: start DEPTH - 3 levels below them.
    level(DEPTH - 3)


for i in range(THREADS - 1):
    threading.Thread(target=worker, name=f"deep-{i}", daemon=True).start()
for _ in range(THREADS - 1):
    parked.acquire()
with open(READY + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(READY + ".tmp", READY)
level(DEPTH)
