"""Integration target for `record --tasks`: two asyncio tasks burning CPU in different functions.

Usage: python3.X task_burn.py TRUTH_PATH

Task "burner-a" runs burn_a() and task "burner-b" runs burn_b() (through a nested coroutine,
so the task's own coroutine is not the innermost frame), each yielding to the loop between
rounds, forever. Once both have run a round, TRUTH_PATH is written atomically with the task
names and the function each one burns in, from asyncio's own view (Task.get_name() and the
coroutine's code name).
"""

import asyncio
import json
import os
import sys

ROUNDS = 20000


def burn_a(n):
    s = 0
    for i in range(n):
        s += i * i
    return s


def burn_b(n):
    s = 0
    for i in range(n):
        s += i ^ 3
    return s


async def loop_a(started):
    while True:
        burn_a(ROUNDS)
        started.add("a")
        await asyncio.sleep(0)


async def inner_b():
    burn_b(ROUNDS)


async def loop_b(started):
    while True:
        await inner_b()
        started.add("b")
        await asyncio.sleep(0)


def write_truth(path, tasks):
    doc = {"pid": os.getpid(), "generation": 0,
           "python_version": ".".join(map(str, sys.version_info[:3])),
           "tasks": {t.get_name(): t.get_coro().cr_code.co_name for t in tasks},
           "burns": {"burner-a": "burn_a", "burner-b": "burn_b"}}
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(doc, out)
    os.replace(tmp, path)


async def main(path):
    started = set()
    tasks = [asyncio.create_task(loop_a(started), name="burner-a"),
             asyncio.create_task(loop_b(started), name="burner-b")]
    while len(started) < 2:
        await asyncio.sleep(0)
    write_truth(path, tasks)
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
