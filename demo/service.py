# SPDX-License-Identifier: MIT
"""A small, misbehaving Python service for pyscope's demo (stdlib only).

It reproduces the failure class pyscope exists for, the kind that logs show nothing about:

* a threaded HTTP service (http.server.ThreadingHTTPServer on 127.0.0.1) fed by two load
  generator threads that only ever talk to it over loopback, at a bounded rate;
* ``compute_weighted_average`` raises ``AttributeError: 'dict' object has no attribute 'value'``
  for every "v2" request, and the handler swallows it with ``except Exception: pass``;
* ``RESPONSE_CACHE``, a module-level dict that grows with every request and is never evicted (a
  slow leak, capped at MAX_CACHE_ENTRIES so the demo cannot eat the machine);
* a CPU hot spot: ``refresh_recommendations`` computes a quadratic similarity matrix in pure
  Python, about a third of a core;
* lock contention: the ``cache-janitor`` thread holds ``CACHE_LOCK`` for long stretches while it
  "compacts" the cache, and the report writers and HTTP workers wait on it.

Threads carry meaningful names (``http-worker-N``, ``load-generator-N``, ``cache-janitor``, ...).
When ready it writes its pid to --pid-file (and the port to --port-file); it removes the pid file
and exits on SIGTERM, SIGINT or after --duration seconds, so it never outlives a forgotten demo.

    python3.12 demo/service.py [--port N] [--pid-file F] [--port-file F] [--duration S]
"""

import argparse
import http.server
import itertools
import json
import math
import os
import random
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import namedtuple

# The leak: every /average response is cached under a fresh key and never evicted. The cap keeps
# a forgotten demo under about 1 GB (an entry keeps the request too: about 1 KB).
MAX_CACHE_ENTRIES = 1_000_000
RESPONSE_CACHE = {}
CACHE_LOCK = threading.Lock()

# Each load generator makes at most this many requests a second (loopback only).
REQUESTS_PER_SECOND = 10

Reading = namedtuple("Reading", "sensor value weight")

_request_ids = itertools.count(1)


# --- the swallowed exception ------------------------------------------------------------------


def parse_readings(payload):
    """Turn a request body into readings. The bug: v2 bodies come back as plain dicts."""
    if payload.get("version", 1) >= 2:
        return payload["readings"]  # forgot to convert, like v1 below
    return [Reading(r["sensor"], r["value"], r["weight"]) for r in payload["readings"]]


def compute_weighted_average(readings):
    """Weighted mean of the readings' values; raises AttributeError on dicts."""
    weighted_sum = total_weight = 0.0
    for r in readings:
        weighted_sum += r.value * r.weight
        total_weight += r.weight
    return weighted_sum / total_weight if total_weight else 0.0


def remember_response(request_id, payload, body):
    """Cache a response forever (the leak). Waits on CACHE_LOCK, held by the janitor."""
    with CACHE_LOCK:
        if len(RESPONSE_CACHE) < MAX_CACHE_ENTRIES:
            RESPONSE_CACHE[request_id] = (payload, body)


# --- the HTTP service -------------------------------------------------------------------------


class DemoHandler(http.server.BaseHTTPRequestHandler):
    server_version = "pyscope-demo/1"

    def log_message(self, format, *args):  # noqa: A002 (the base class names it so)
        pass  # quiet: the demo's output is pyscope's

    def do_GET(self):
        if self.path == "/health":
            self.reply(200, {"status": "ok", "cached": len(RESPONSE_CACHE)})
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        if self.path != "/average":
            self.reply(404, {"error": "not found"})
            return
        length = min(int(self.headers.get("Content-Length", "0")), 1 << 16)
        try:
            payload = json.loads(self.rfile.read(length))
        except ValueError:
            self.reply(400, {"error": "bad json"})
            return
        self.handle_average(payload)

    def handle_average(self, payload):
        average = None
        try:
            average = compute_weighted_average(parse_readings(payload))
        except Exception:
            pass  # "it never fails in practice" -- it fails for every v2 client
        body = {"average": average}
        remember_response(next(_request_ids), payload, json.dumps(body))
        self.reply(200, body)

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class DemoServer(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer whose per-request threads are named http-worker-N."""

    daemon_threads = True
    _workers = itertools.count(1)

    def process_request(self, request, client_address):
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"http-worker-{next(self._workers)}",
            daemon=True,
        )
        thread.start()


# --- background threads -----------------------------------------------------------------------


def make_payload(rng):
    version = rng.choice((1, 2))
    readings = [
        {"sensor": f"s{i}", "value": rng.uniform(0, 100), "weight": rng.randint(1, 5)}
        for i in range(rng.randint(3, 12))
    ]
    return {"version": version, "readings": readings}


def generate_load(port, stop, seed):
    """Post /average (and sometimes GET /health) to ourselves, at a bounded rate."""
    rng = random.Random(seed)
    url = f"http://127.0.0.1:{port}"
    while not stop.is_set():
        try:
            if rng.random() < 0.1:
                urllib.request.urlopen(url + "/health", timeout=10).read()
            else:
                data = json.dumps(make_payload(rng)).encode()
                req = urllib.request.Request(
                    url + "/average", data=data, headers={"Content-Type": "application/json"}
                )
                urllib.request.urlopen(req, timeout=10).read()
        except (OSError, urllib.error.URLError):
            pass  # the server is shutting down or busy; try again later
        stop.wait(1.0 / REQUESTS_PER_SECOND)


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)) or 1.0)


def similarity_matrix(vectors):
    """The hot spot: O(n^2) pure-Python cosine similarities."""
    return [[cosine(a, b) for b in vectors] for a in vectors]


def refresh_recommendations(stop):
    """Recompute product similarities every second (about 0.3 s of CPU each time)."""
    rng = random.Random(7)
    products = [[rng.random() for _ in range(16)] for _ in range(110)]
    while not stop.is_set():
        similarity_matrix(products)
        stop.wait(0.7)


def compact_cache():
    """Pretend to compact the cache; slow, and called with CACHE_LOCK held."""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        time.sleep(0.1)  # waiting on "disk" while holding the lock


def run_janitor(stop):
    """Hold CACHE_LOCK for 1 s out of every 1.5 s: everyone else queues behind it."""
    while not stop.is_set():
        with CACHE_LOCK:
            compact_cache()
        stop.wait(0.5)


def write_report(stop):
    """Periodically report the cache size; spends most of its life waiting for CACHE_LOCK."""
    while not stop.is_set():
        with CACHE_LOCK:
            size = len(RESPONSE_CACHE)
        stop.wait(0.2)
        del size


# --- main -------------------------------------------------------------------------------------


def write_file(path, text):
    """Write atomically, so a watcher never reads a half-written pid or port."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


def remove_pid_file(path):
    """Remove the pid file, unless another instance has written its own pid there since."""
    try:
        with open(path, encoding="ascii") as f:
            if f.read().strip() == str(os.getpid()):
                os.unlink(path)
    except (OSError, TypeError):
        pass  # no pid file asked for (path None), or already gone


def parse_args(argv):
    p = argparse.ArgumentParser(description="pyscope demo service (misbehaves on purpose)")
    p.add_argument("port", nargs="?", type=int, default=0, help="TCP port on 127.0.0.1 (0: any)")
    p.add_argument("--pid-file", help="write the pid here once ready")
    p.add_argument("--port-file", help="write the port here once ready")
    p.add_argument(
        "--duration",
        type=float,
        default=3600.0,
        help="exit after this many seconds (default 3600; 0 = run until signalled)",
    )
    return p.parse_args(argv)


def start_thread(name, target, *args):
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread


def main(argv):
    args = parse_args(argv)
    stop = threading.Event()
    server = DemoServer(("127.0.0.1", args.port), DemoHandler)
    port = server.server_address[1]

    def on_signal(signum, frame):
        raise SystemExit(0)  # unwinds serve_forever in the main thread

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    if args.duration > 0:
        timer = threading.Timer(args.duration, server.shutdown)
        timer.name = "lifetime-timer"
        timer.daemon = True
        timer.start()

    start_thread("cache-janitor", run_janitor, stop)
    for i in (1, 2):
        start_thread(f"report-writer-{i}", write_report, stop)
    start_thread("recommendations", refresh_recommendations, stop)
    for i in (1, 2):
        start_thread(f"load-generator-{i}", generate_load, port, stop, i)

    if args.port_file:
        write_file(args.port_file, str(port))
    if args.pid_file:
        write_file(args.pid_file, str(os.getpid()))
    print(f"pyscope demo service: pid {os.getpid()} on http://127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        stop.set()
        server.server_close()
        remove_pid_file(args.pid_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
