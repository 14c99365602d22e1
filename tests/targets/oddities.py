"""Integration target for threads and values other tools see and pyscope used to miss.

Usage: python3.X oddities.py TRUTH_PATH CTHREAD_SO

* an OS thread started by C (CTHREAD_SO, tests/targets/ext/cthread.c) that never ran Python,
  named "c-worker" with pthread_setname_np;
* a Python thread "py-worker" whose OS name (pthread_setname_np through libc) is "os-worker";
* in py-worker's parked frame, a local `ghost` whose type object's tp_name points at unmapped
  memory (built with ctypes: a static-type-shaped buffer; refcounts far from zero so nothing
  ever frees it), so its type name cannot be read.
Writes TRUTH_PATH atomically (native ids, OS names, ghost's id) and parks until killed.
"""

import ctypes
import json
import os
import sys
import threading
import time

HELD = threading.Lock()
HELD.acquire()
LIBC = ctypes.CDLL(None)
LIBC.pthread_self.restype = ctypes.c_ulong
LIBC.pthread_setname_np.argtypes = [ctypes.c_ulong, ctypes.c_char_p]
KEEP = []


def ghost_object():
    """An object whose type's tp_name (offset 24: after PyObject_VAR_HEAD, every 64-bit build) is 0x10."""
    fake_type = ctypes.create_string_buffer(1024)
    header = ctypes.cast(fake_type, ctypes.POINTER(ctypes.c_uint64))
    header[0] = 1 << 40          # ob_refcnt
    header[1] = id(type)         # ob_type: PyType_Type
    header[3] = 0x10             # tp_name: unmapped; tp_flags stays 0 (static, not GC)
    obj = ctypes.create_string_buffer(16)
    words = ctypes.cast(obj, ctypes.POINTER(ctypes.c_uint64))
    words[0] = 1 << 40
    words[1] = ctypes.addressof(fake_type)
    KEEP.extend((fake_type, obj))
    return ctypes.cast(ctypes.addressof(obj), ctypes.py_object).value


def py_worker(started, box):
    LIBC.pthread_setname_np(LIBC.pthread_self(), b"os-worker")
    ghost = ghost_object()
    box["ghost_id"] = id(ghost)
    started.set()
    HELD.acquire()


def main():
    truth_path, lib_path = sys.argv[1], sys.argv[2]
    rfd, _wfd = os.pipe()
    lib = ctypes.CDLL(lib_path)
    lib.cthread_start.argtypes = [ctypes.c_int, ctypes.c_char_p]
    if lib.cthread_start(rfd, b"c-worker") != 0:
        raise SystemExit("cthread_start failed")
    started, box = threading.Event(), {}
    worker = threading.Thread(target=py_worker, args=(started, box), name="py-worker",
                              daemon=True)
    worker.start()
    started.wait()
    deadline = time.monotonic() + 30
    while lib.cthread_tid() == 0:  # bounded wait for the C thread to park
        if time.monotonic() > deadline:
            raise SystemExit("the C thread did not start")
        time.sleep(0.01)
    doc = {"pid": os.getpid(), "c_native_id": lib.cthread_tid(), "c_os_name": "c-worker",
           "py_native_id": worker.native_id, "py_name": "py-worker", "py_os_name": "os-worker",
           "main_native_id": threading.main_thread().native_id, "ghost_id": box["ghost_id"]}
    tmp = truth_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(doc, out)
    os.replace(tmp, truth_path)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
