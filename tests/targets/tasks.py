"""Integration target: asyncio tasks in known states, parked, with their own ground truth.

Usage: python3.X tasks.py TRUTH_PATH [EXTRA_SLEEPERS]

The main thread runs an event loop whose main task ("runner") creates tasks in known states:
sleeping, awaiting another task, awaiting a future nobody resolves, a chain of three nested
coroutines, a TaskGroup with two children, an async generator consumer, two tasks awaiting each
other (a deadlock), an unnamed task, a task kept alive after it finished and one after it was
cancelled, plus EXTRA_SLEEPERS more sleeping tasks (the cap test). A second thread runs its own
loop with one sleeping task ("other-loop-sleeper").

Once every task has reached its await point (asyncio.sleep(0) rounds; every other task is
checked to be suspended), the runner writes TRUTH_PATH atomically from inside the loop: each
task's name, state, what it awaits and its coroutine chain innermost first (cr_await/ag_await
followed down, each frame's function, file and f_lineno), the running task's chain being its
thread stack from the innermost frame out to its coroutine frame. Then the runner calls a plain
function that crunches a little and parks in lock.acquire() on a lock held forever: the loop stays
in that known state (runner running, every other task suspended) until the process is killed.
Runs on every supported CPython.
"""

import asyncio
import gc
import inspect
import json
import os
import sys
import threading

TRUTH_PATH = sys.argv[1]
EXTRA_SLEEPERS = int(sys.argv[2]) if len(sys.argv) > 2 else 0
HELD = threading.Lock()
HELD.acquire()                  # never released: HELD.acquire() below blocks forever
NEVER = 3600 * 24
CHAIN_CAP = 64
GROUPS = {}                     # parent task id -> [child task ids] of its TaskGroup


# --- the tasks ----------------------------------------------------------------------------------

async def sleeper():
    await asyncio.sleep(NEVER)


async def wait_on_task(other):
    await other


async def wait_on_future(fut):
    await fut


async def level3(fut):
    await fut


async def level2(fut):
    await level3(fut)


async def level1(fut):
    await level2(fut)


async def group_child():
    await asyncio.sleep(NEVER)


async def group_parent():
    async with asyncio.TaskGroup() as tg:
        kids = [tg.create_task(group_child(), name="tg-child-0"),
                tg.create_task(group_child(), name="tg-child-1")]
        GROUPS[id(asyncio.current_task())] = [id(k) for k in kids]


async def ticker(fut):
    yield 1
    await fut
    yield 2


async def agen_consumer(fut):
    async for _ in ticker(fut):
        pass


async def gather_parent():
    await asyncio.gather(group_child(), group_child())


async def deadlocked(peer):
    await peer[0]


async def finishes():
    return 42


# --- the ground truth ---------------------------------------------------------------------------

def frame_row(frame):
    code = frame.f_code
    return {"function": code.co_name, "qualname": code.co_qualname,
            "file": code.co_filename, "line": frame.f_lineno}


def asend_target(obj):
    """The async generator behind an async_generator_asend object (no Python accessor)."""
    for ref in gc.get_referents(obj):
        if inspect.isasyncgen(ref):
            return ref
    return None


def suspended_chain(coro):
    """Frames of a suspended coroutine chain, innermost first, and the object at its end."""
    rows, obj = [], coro
    for _ in range(CHAIN_CAP):
        if type(obj).__name__ == "async_generator_asend":
            obj = asend_target(obj)
        if inspect.iscoroutine(obj):
            frame, nxt = obj.cr_frame, obj.cr_await
        elif inspect.isasyncgen(obj):
            frame, nxt = obj.ag_frame, obj.ag_await
        elif inspect.isgenerator(obj):
            frame, nxt = obj.gi_frame, obj.gi_yieldfrom
        else:
            break
        if frame is None:
            break
        rows.append(frame_row(frame))
        obj = nxt
    rows.reverse()
    return rows


def running_chain(task, frame, park_line):
    """The running task's thread stack, innermost first, out to its coroutine's frame; the
    innermost frame is reported at its park line (it parks right after this)."""
    rows, top = [], task.get_coro().cr_frame
    while frame is not None:
        rows.append(frame_row(frame))
        if frame is top:
            rows[0]["line"] = park_line
            return rows
        frame = frame.f_back
    raise RuntimeError("the running task's coroutine frame is not on the stack")


def awaits(task, by_obj):
    """What a suspended task waits for, as its _fut_waiter says."""
    waiter = getattr(task, "_fut_waiter", None)
    if waiter is None:
        return None
    if waiter in by_obj:
        return {"kind": "task", "task": id(waiter)}
    inner = suspended_chain(task.get_coro())
    if inner and inner[0]["function"] == "sleep" and \
            inner[0]["file"].endswith(os.path.join("asyncio", "tasks.py")):
        return {"kind": "sleep"}
    return {"kind": "future"}


def state_of(task, me):
    if task is me:
        return "running"
    if task.cancelled():
        return "cancelled"
    return "done" if task.done() else "pending"


def task_row(task, me, by_obj):
    """One task; "name" is null for tasks created without one (asking would name them)."""
    row = {"addr": id(task), "name": by_obj[task], "state": state_of(task, me), "chain": [],
           "awaits": None, "children": []}
    waiter = getattr(task, "_fut_waiter", None)
    if id(task) in GROUPS:
        row["children"] = [{"task": kid, "via": "taskgroup"} for kid in GROUPS[id(task)]]
    elif waiter is not None and type(waiter).__name__ == "_GatheringFuture":
        row["children"] = [{"task": id(kid), "via": "gather"} for kid in waiter._children]
    if not task.done() and task is not me:
        row["chain"], row["awaits"] = suspended_chain(task.get_coro()), awaits(task, by_obj)
    return row


def write_truth(doc):
    tmp = TRUTH_PATH + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(doc, out)
    os.replace(tmp, TRUTH_PATH)


# --- setup and park -----------------------------------------------------------------------------

def other_loop(ready, holder):
    async def body():
        holder.append(asyncio.get_running_loop())
        holder.append(asyncio.create_task(sleeper(), name="other-loop-sleeper"))
        asyncio.get_running_loop().call_soon(ready.set)     # runs once both are suspended
        await asyncio.sleep(NEVER)
    asyncio.run(body())


def park_line():
    marker = "# " + "PARK"
    with open(os.path.abspath(__file__), encoding="utf-8") as src:
        return next(i for i, text in enumerate(src, 1) if text.rstrip().endswith(marker))


def crunch(doc, me):
    """CPU work, then the truth (with the runner's own chain), then park holding the loop."""
    total = 0
    for i in range(10000):
        total += i * i
    doc["running_chain"] = running_chain(me, sys._getframe(0), park_line())
    write_truth(doc)
    HELD.acquire()  # PARK
    return total


async def settle(me):
    """Let every task of this loop reach its await point (bounded rounds)."""
    for _ in range(50):
        await asyncio.sleep(0)
        if all(t.done() or t.get_coro().cr_suspended for t in asyncio.all_tasks() if t is not me):
            return
    raise RuntimeError("tasks did not reach their await points")


async def run_phase(kept, names, other):
    me = asyncio.current_task()
    await settle(me)
    tasks = asyncio.all_tasks() | asyncio.all_tasks(other) | set(kept)
    by_obj = {t: names.get(id(t), None) for t in tasks}
    by_obj.update({t: t.get_name() for t in tasks if id(t) not in names and
                   t.get_name().startswith(("tg-", "other-"))})
    doc = {"pid": os.getpid(),
           "python_version": ".".join(map(str, sys.version_info[:3])),
           "native_id": threading.get_native_id(),
           "thread_id": threading.get_ident(),
           "extra_sleepers": EXTRA_SLEEPERS,
           "tasks": [task_row(t, me, by_obj) for t in tasks]}
    crunch(doc, me)


async def main():
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    me.set_name("runner")
    never, never2, never3 = loop.create_future(), loop.create_future(), loop.create_future()
    holder, ready = [], threading.Event()
    threading.Thread(target=other_loop, args=(ready, holder), name="other-loop",
                     daemon=True).start()
    if not ready.wait(30):
        raise RuntimeError("the second loop did not start")
    named = {}

    def spawn(coro, name=None):
        task = asyncio.create_task(coro, name=name)
        if name is not None:
            named[id(task)] = name
        return task

    named[id(me)] = "runner"
    sleeping = spawn(sleeper(), "sleeper")
    peer_a, peer_b = [], []
    spawn(wait_on_task(sleeping), "task-waiter")
    spawn(wait_on_future(never), "future-waiter")
    spawn(level1(never2), "nested")
    spawn(group_parent(), "tg-parent")
    spawn(agen_consumer(never3), "agen-consumer")
    spawn(gather_parent(), "gather-parent")
    peer_a.append(spawn(deadlocked(peer_b), "dl-a"))
    peer_b.append(spawn(deadlocked(peer_a), "dl-b"))
    spawn(wait_on_future(never))
    for i in range(EXTRA_SLEEPERS):
        spawn(sleeper(), f"extra-{i}")
    kept = [spawn(finishes(), "done-task"), spawn(sleeper(), "cancelled-task")]
    await asyncio.sleep(0)
    kept[1].cancel()
    await run_phase(kept, named, holder[0])


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as exc:  # noqa: BLE001 - the harness shows the reason
        write_truth({"error": f"{type(exc).__name__}: {exc}"})
        raise
