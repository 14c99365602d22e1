"""A small FastAPI + uvicorn service: the target of scripts/bench-service and test_service.py.

Usage: python3.11 bench_service_app.py READY_PATH [COUNTS_PATH]

Listens on 127.0.0.1 (a port the kernel chooses), writes {"generation": 0, "pid", "port"} to
READY_PATH once serving (the tests' truth-file shape), and serves until SIGINT/SIGTERM:
  GET /report?n=N   compute_weighted_average raises AttributeError, swallowed by
                    `except Exception: pass` (the application's own hidden error); grows a
                    module-level cache (CACHE) by one entry
  GET /cpu?n=N      a CPU path (pure Python arithmetic)
  GET /async        an async endpoint that awaits
  GET /counts       the app's own counters (swallowed errors so far), as JSON
The framework (uvicorn, h11, starlette, anyio) raises and catches several exceptions per
request on its own: the noise the application's error must be found in. With COUNTS_PATH,
SIGUSR1 writes the counters there (ground truth for the tests; the file is written whole, then
renamed).
"""

import asyncio
import json
import os
import signal
import socket
import sys

import uvicorn
from fastapi import FastAPI

app = FastAPI()
CACHE = []  # grows by one entry per /report request: a leak for `growth` to find
COUNTS = {"swallowed": 0, "report": 0}


class Order:
    def __init__(self, qty):
        self.qty = qty  # no .weight: compute_weighted_average fails on it


def compute_weighted_average(orders):
    total = sum(o.qty * o.weight for o in orders)
    return total / len(orders)


@app.get("/report")
def report(n: int = 3):
    COUNTS["report"] += 1
    avg = 0.0
    try:
        avg = compute_weighted_average([Order(i) for i in range(n)])
    except Exception:
        COUNTS["swallowed"] += 1
        pass
    CACHE.append(("report", n, COUNTS["report"]))
    return {"ok": True, "avg": avg, "cached": len(CACHE)}


@app.get("/cpu")
def cpu(n: int = 2000):
    acc = 0
    for i in range(n):
        acc = (acc * 31 + i * i) % 1000003
    return {"ok": True, "acc": acc}


@app.get("/async")
async def async_endpoint():
    await asyncio.sleep(0)
    return {"ok": True, "async": True}


@app.get("/counts")
def counts():
    return {"ok": True, **COUNTS}


def write_counts(path):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(COUNTS, f)
    os.rename(tmp, path)


def main():
    ready = sys.argv[1]
    if len(sys.argv) > 2:
        signal.signal(signal.SIGUSR1, lambda *_: write_counts(sys.argv[2]))
    # proto given: asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and an
    # accepted socket inherits it (else Nagle + delayed ACK add 40 ms to every answer)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)

    async def serve():  # uvicorn's Server.serve, plus the ready file once listening
        config.load()
        server.lifespan = config.lifespan_class(config)
        server.install_signal_handlers()
        await server.startup(sockets=[sock])
        with open(ready + ".tmp", "w", encoding="utf-8") as f:
            json.dump({"generation": 0, "pid": os.getpid(), "port": port}, f)
        os.rename(ready + ".tmp", ready)
        await server.main_loop()
        await server.shutdown(sockets=[sock])

    asyncio.run(serve())


if __name__ == "__main__":
    main()
