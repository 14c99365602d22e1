"""Integration target: a raise through code objects made just before it, then the process ends.

Usage: python3.X exit_raiser.py TRUTH_PATH ENDING

Generation 0 {"pid"} is written, then the main thread waits for SIGUSR1. On it, it writes a new
module's source next to the truth file and executes it (its functions' code objects exist only
from now on), writes generation 1 (the module's file, the expected innermost frames of the raise
as [function, line] pairs, the message), and calls into it: inner_fresh() raises and catches
KeyError("inner"), and raises RuntimeError("fresh exit") from it. ENDING "unhandled": nothing
catches it, the interpreter prints it and the process exits with status 1; "os_exit": the module
catches it and calls os._exit(3) at once, without any finalisation.
"""
import json
import os
import signal
import sys

TRUTH = sys.argv[1]
ENDING = sys.argv[2]

SOURCE = '''\
import os


def inner_fresh():
    try:
        raise KeyError("inner")
    except KeyError as e:
        raise RuntimeError("fresh exit") from e  # raise here


def middle_fresh():
    inner_fresh()  # call inner


def outer_fresh(ending):
    if ending == "os_exit":
        try:
            middle_fresh()  # call middle
        except RuntimeError:
            os._exit(3)
    middle_fresh()  # call middle
'''


def publish(doc):
    with open(TRUTH + ".tmp", "w", encoding="utf-8") as f:
        json.dump(doc, f)
    os.replace(TRUTH + ".tmp", TRUTH)


def line_of(text, nth=0):
    return [i + 1 for i, line in enumerate(SOURCE.splitlines()) if text in line][nth]


def main():
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    publish({"pid": os.getpid(), "generation": 0})
    signal.sigwait({signal.SIGUSR1})
    path = os.path.abspath(TRUTH + ".fresh.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(SOURCE)
    space = {"__name__": "fresh"}
    exec(compile(SOURCE, path, "exec"), space)  # noqa: S102 (the test's own source)
    frames = [["inner_fresh", line_of("# raise here")], ["middle_fresh", line_of("# call inner")],
              ["outer_fresh", line_of("# call middle", 0 if ENDING == "os_exit" else 1)]]
    publish({"pid": os.getpid(), "generation": 1, "file": path, "frames": frames,
             "message": "fresh exit"})
    space["outer_fresh"](ENDING)


if __name__ == "__main__":
    main()
