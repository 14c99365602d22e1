"""Integration target for `run -d`: spins until SIGINT, then says so and exits.

Usage: python3.X until_sigint.py OUT_PATH [--ignore-sigint]

Writes OUT_PATH with its pid at start (atomically), spins in work(), and on KeyboardInterrupt
writes OUT_PATH.int and exits 0. With --ignore-sigint it ignores SIGINT (only SIGTERM or
SIGKILL end it).
"""

import os
import signal
import sys


def work():
    while True:
        sum(range(1000))


def main():
    out = sys.argv[1]
    if "--ignore-sigint" in sys.argv:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        f.write(str(os.getpid()))
    os.replace(out + ".tmp", out)
    try:
        work()
    except KeyboardInterrupt:
        with open(out + ".int", "w", encoding="utf-8") as f:
            f.write("1")


if __name__ == "__main__":
    main()
