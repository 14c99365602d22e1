"""Integration target for --native: threads parked inside C calls.

Usage: python3.X native_block.py TRUTH_PATH EXT_DIR

EXT_DIR holds the natblock C extension (tests/targets/ext/natblock.c, built by the test). Threads:
  * "in-ext": worker -> outer -> natblock.call(inner) -> inner -> natblock.block(pipe): parked in
    read(2) inside the extension, with two C->Python entries on its C stack;
  * "on-lock": parked in lock.acquire();
  * MainThread: parked in time.sleep() inside main_sleep().
Once each is parked (its /proc syscall number says so), writes TRUTH_PATH atomically:
{"pid", "python_version", "threads": {name: {"native_id", "python": [co_name, innermost first]}}}.
"""

import json
import os
import sys
import threading
import time

sys.path.insert(0, sys.argv[2])
import natblock  # noqa: E402  (built by the test into EXT_DIR)

READ_FD, WRITE_FD = os.pipe()
HELD = threading.Lock()
HELD.acquire()
SYSCALL_READ, SYSCALL_FUTEX = 0, 202


def inner():
    return natblock.block(READ_FD)


def outer():
    return natblock.call(inner)


def in_ext():
    outer()


def on_lock():
    HELD.acquire()


def syscall_of(tid):
    try:
        with open(f"/proc/self/task/{tid}/syscall", encoding="ascii") as f:
            word = f.read().split()[0]
    except (OSError, IndexError):
        return None
    return int(word) if word.lstrip("-").isdigit() else None


def wait_parked(thread, syscall):
    deadline = time.monotonic() + 20
    while syscall_of(thread.native_id) != syscall:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{thread.name} did not park in syscall {syscall}")
        time.sleep(0.002)


def python_names(ident, frames):
    names = []
    frame = frames[ident]
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return names


def main_sleep(truth_path, threads):
    frames = sys._current_frames()
    doc = {"pid": os.getpid(),
           "python_version": ".".join(map(str, sys.version_info[:3])),
           "threads": {t.name: {"native_id": t.native_id, "python": python_names(t.ident, frames)}
                       for t in threads}}
    main = threading.main_thread()
    doc["threads"]["MainThread"] = {"native_id": main.native_id,
                                    "python": ["main_sleep", "main", "<module>"]}
    tmp = truth_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(doc, out)
    os.replace(tmp, truth_path)
    while True:
        time.sleep(3600)


def main():
    threads = [threading.Thread(target=in_ext, name="in-ext", daemon=True),
               threading.Thread(target=on_lock, name="on-lock", daemon=True)]
    for thread in threads:
        thread.start()
    wait_parked(threads[0], SYSCALL_READ)
    wait_parked(threads[1], SYSCALL_FUTEX)
    main_sleep(sys.argv[1], threads)


if __name__ == "__main__":
    main()
