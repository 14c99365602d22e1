# SPDX-License-Identifier: MIT
"""scripts/benchlib.py: what the bench scripts share, so that every benchmark compares alike.

This machine is noisy (identical runs vary up to 2x), so no figure here is a whole-run time:
every figure is a ratio within one run.

- run_windows(): one long-running target, alternating windows: off, arm, off, arm, ..., off.
  An arm is a tool switched on for one window (the new pyscope, the old one, or a sham: a
  process that does nothing, switched the same way: the control). The arms' order turns by one
  each cycle, so a drift of the machine falls on every arm alike. ratios() divides each arm
  window's figure by the mean of the off windows beside it.
- alternate(): a figure of pyscope itself (CPU per dump, per sample), measured for each binary
  in turn, `repeat` rounds, the order turned each round.
- Rows: an old-vs-new figure, one value per round (or per cycle) for each binary; new/old is
  the ratio of the medians, its spread the min-max of the per-round new/old ratios. print()
  prints them as one table; when $PYSCOPE_BENCH_ROWS names a file, rows are also appended to it
  as JSON lines (scripts/bench --all gathers every benchmark's rows into one table).
"""
import json
import os
import signal
import statistics
import subprocess
import time

ROWS_ENV = "PYSCOPE_BENCH_ROWS"


def proc_cpu(pid):
    """CPU seconds pid has used: /proc/PID/schedstat (nanoseconds, all threads of a
    single-threaded process) when present, else utime + stime (clock ticks: 10 ms steps)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kib(pid, key="VmRSS"):
    """A /proc/PID/status size in KiB (VmRSS, VmHWM, ...); 0 when absent."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def tree(pid):
    """pid and its descendants (their pids, from /proc/PID/task/TID/children)."""
    out, queue = [], [pid]
    while queue:
        p = queue.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    queue += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def tree_cpu(pid):
    """CPU seconds used so far by pid and its descendants that are alive, every thread
    (/proc/PID/task/TID/schedstat: nanoseconds)."""
    total = 0
    for p in tree(pid):
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


def reap(proc, timeout=30.0):
    """Waits for a subprocess.Popen and returns the CPU seconds (user + system) it used, with
    those of its descendants it waited for (pyscope's guard and worker). Kills it after
    timeout seconds."""
    end = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > end:
            proc.kill()
            end = float("inf")
        time.sleep(0.01)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ru.ru_utime + ru.ru_stime


def wait_for(cond, timeout=15.0):
    """Polls cond every 20 ms until it is true (True) or timeout seconds have passed (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


class Arm:
    """A thing switched on for one window: start() before the window, stop() after it; stop()
    returns the arm's own figures for the window (a dict, e.g. {"cpu_s": 0.12})."""

    def __init__(self, name):
        self.name = name

    def start(self):
        pass

    def stop(self):
        return {}


class Paused(Arm):
    """A process kept stopped between its windows: SIGCONT at start, SIGSTOP at stop (a
    sampler keeps its attachment and caches across windows). stop() gives its CPU in the window.
    end() lets it run and ends it with SIGTERM (a background job may ignore SIGINT)."""

    def __init__(self, name, cmd):
        super().__init__(name)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.cpu0 = 0.0

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def start(self):
        self.cpu0 = proc_cpu(self.proc.pid)
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self):
        os.kill(self.proc.pid, signal.SIGSTOP)
        return {"cpu_s": proc_cpu(self.proc.pid) - self.cpu0}

    def end(self):
        os.kill(self.proc.pid, signal.SIGCONT)
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()


class Sham(Arm):
    """The control of a started-per-window tool: a `sleep` started at the window's start and
    ended with SIGTERM at its end."""

    def __init__(self, name="sham"):
        super().__init__(name)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["sleep", "1000"])

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return {"cpu_s": reap(self.proc)}


def run_windows(arms, measure, seconds, cycles):
    """Alternating windows on one target: per cycle, for each arm (the order turned by one each
    cycle), an off window then the arm's window; a last off window closes. measure(seconds)
    measures the target for that long and returns a dict of its figures; an arm window's dict
    also holds what the arm's stop() returned. Returns [(kind, figures)], kind "off" or the
    arm's name, in window order."""
    wins = []
    for c in range(cycles):
        k = c % len(arms)
        for arm in arms[k:] + arms[:k]:
            wins.append(("off", measure(seconds)))
            arm.start()
            figures = measure(seconds)
            figures.update(arm.stop())
            wins.append((arm.name, figures))
    wins.append(("off", measure(seconds)))
    return wins


def ratios(wins, key, minus=False):
    """{arm name: [figure / mean of the off windows beside it]}, one entry per window of the
    arm, in window order (so entry i of two arms is the same cycle). minus: the difference to
    the off mean instead of the ratio (e.g. the extra time per traced raise)."""
    out = {}
    for i, (kind, fig) in enumerate(wins):
        if kind == "off":
            continue
        offs = statistics.mean(wins[j][1][key] for j in (i - 1, i + 1)
                               if 0 <= j < len(wins) and wins[j][0] == "off")
        out.setdefault(kind, []).append(fig[key] - offs if minus else fig[key] / offs)
    return out


def arm_values(wins, key):
    """{arm name: [the arm windows' own figure key]}, in window order."""
    out = {}
    for kind, fig in wins:
        if kind != "off":
            out.setdefault(kind, []).append(fig[key])
    return out


def alternate(measure, binaries, repeat):
    """{name: [measure(path) per round]} for binaries {name: path}, measured in turn, the order
    turned by one each round."""
    names = list(binaries)
    out = {n: [] for n in names}
    for r in range(repeat):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            out[n].append(measure(binaries[n]))
    return out


def median_or_nan(vals):
    return statistics.median(vals) if vals else float("nan")


class Rows:
    """The old-vs-new figures of one benchmark (add), printed as a table (print)."""

    def __init__(self, bench):
        self.bench, self.rows = bench, []

    def add(self, measure, old, new, note=""):
        """old, new: one value per round or cycle (paired by index). Prints the row at once."""
        mo, mn = median_or_nan(old), median_or_nan(new)
        per = [n / o for o, n in zip(old, new) if o]
        row = {"bench": self.bench, "measure": measure, "old": mo, "new": mn,
               "ratio": mn / mo if mo else float("nan"),
               "lo": min(per, default=float("nan")), "hi": max(per, default=float("nan")),
               "n": len(per), "note": note}
        self.rows.append(row)
        print(f"   {measure}: old {fmt(mo)} new {fmt(mn)}: new/old x{row['ratio']:.3f} "
              f"(per round x{row['lo']:.3f}-x{row['hi']:.3f}, n={row['n']}) {note}", flush=True)
        path = os.environ.get(ROWS_ENV)
        if path:
            with open(path, "a") as f:
                f.write(json.dumps(row) + "\n")

    def print(self):
        print_table(self.rows)


def fmt(v):
    """A figure in 4 significant digits."""
    return f"{v:.4g}"


def print_table(rows):
    """One table of old-vs-new rows (dicts as Rows.add makes them)."""
    if not rows:
        return
    w = max(len(r["measure"]) for r in rows)
    print(f"\n{'bench':<11} {'measure':<{w}} {'old':>9} {'new':>9} {'new/old':>8} "
          f"{'spread':>15} {'n':>3}  note")
    for r in rows:
        print(f"{r['bench']:<11} {r['measure']:<{w}} {fmt(r['old']):>9} {fmt(r['new']):>9} "
              f"{'x%.3f' % r['ratio']:>8} {'x%.3f-x%.3f' % (r['lo'], r['hi']):>15} "
              f"{r['n']:>3}  {r['note']}")
