"""`pyscope attach`, the live TUI, driven for real in tmux against real targets.

Each test starts its own tmux server (private socket, no user config) whose one pane runs
`pyscope attach` in a shell that, once pyscope exits, records its exit status and `stty -a` (to
prove the terminal was restored). Screens are read with capture-pane and polled with a deadline
(conftest.wait_for), never slept on. The launch fixture checks at teardown that every target is
alive (where expected), not stopped and not traced; some tests check that while pyscope still
runs, too. Under the ASan build, sanitizer reports go to a log file that the test asserts empty
(pyscope parks stderr while curses owns the screen).
"""

import collections
import json
import os
import pty
import re
import select
import shlex
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import (PYSCOPE_BIN, ROOT, assert_not_stopped_or_traced, children, python_target,
                      require, require_pyscope, tracer_pids, validate_dump_json, wait_for)
from runtime_syms import runtime_image, target_names_statics

README = ROOT / "README.md"
KEYS_BEGIN, KEYS_END = "<!-- keys:begin -->", "<!-- keys:end -->"
SCREEN_TIMEOUT_S = 30.0
TID_RE = re.compile(r"\(tid (\d+)\)")
# the header names the tracing mechanism: "(bpf)", or "(bpf, costs 40% of its CPU)" when
# tracing takes over twice its budget (a loaded machine, a dear uprobe trap: ui/view.c)
MECH_RE = r"\((bpf|perf|debugreg)(\)|, costs )"


def layout(rows, cols):
    """Python mirror of ui/layout.c for slicing captures into panes (tests/unit checks it)."""
    body = rows - 4
    upper = (body + 1) // 2
    left = min(max(cols * 2 // 5, 34), 72)
    top = cols // 2
    return {"threads": (3, upper, 0, left), "stack": (3, upper, left, cols),
            "top": (3 + upper, body - upper, 0, top), "exc": (3 + upper, body - upper, top, cols)}


class Screen:
    """One tmux server with pyscope attach running in its only pane."""

    def __init__(self, tmp_path, args, cols=160, rows=48, env=()):
        require(subprocess.run(["which", "tmux"], capture_output=True).returncode == 0,
                "tmux is not installed")
        require_pyscope()
        self.dir, self.cols, self.rows = tmp_path, cols, rows
        self.sock = tmp_path / "tmux.sock"
        self.rc_path, self.stty_path = tmp_path / "attach.rc", tmp_path / "attach.stty"
        self.asan_log = tmp_path / "sanitizer"
        env = ["env", "TERM=xterm-256color", "LANG=C.UTF-8", "LC_ALL=C.UTF-8", *env]
        for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
            if os.environ.get(var):
                env.append(f"{var}={os.environ[var]}:log_path={self.asan_log}")
        argv = " ".join(shlex.quote(str(a)) for a in [*env, PYSCOPE_BIN.resolve(), "attach", *args])
        script = (f"{argv}; echo $? > {shlex.quote(str(self.rc_path))}.tmp; "
                  f"stty -a > {shlex.quote(str(self.stty_path))}; "
                  f"mv {shlex.quote(str(self.rc_path))}.tmp {shlex.quote(str(self.rc_path))}")
        # remain-on-exit: a pyscope that exits early leaves its last screen (its error) to see
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "attach", "-c", str(tmp_path),
                  "-x", str(cols), "-y", str(rows), "sh", "-c", script, ";",
                  "set-option", "-g", "remain-on-exit", "on")
        self.tmux("set-option", "-g", "window-size", "manual")

    def tmux(self, *args, check=True):
        return subprocess.run(["tmux", "-S", str(self.sock), *args], capture_output=True,
                              text=True, timeout=30, check=check)

    def raw(self):
        """The screen with its attributes as escape sequences (capture-pane -e)."""
        return self.tmux("capture-pane", "-p", "-e", "-t", "attach", check=False).stdout

    def lines(self):
        out = self.tmux("capture-pane", "-p", "-t", "attach", check=False).stdout
        lines = out.split("\n")[:self.rows]
        return lines + [""] * (self.rows - len(lines))

    def pane(self, name):
        """The text of one pane (title row included), each line cut to the pane's columns."""
        y, h, x0, x1 = layout(self.rows, self.cols)[name]
        return [line[x0:x1] for line in self.lines()[y:y + h]]

    def wait(self, predicate, what, timeout=SCREEN_TIMEOUT_S):
        """Poll the screen until predicate(lines) is truthy; fail showing the last screen."""
        last = []

        def check():
            last[:] = self.lines()
            return predicate(last)
        try:
            return wait_for(check, timeout, what, poll=0.05)
        except BaseException:
            print("\n".join(last), file=sys.stderr)
            if self.rc_path.is_file():
                print(f"pyscope attach had exited with {self.rc_path.read_text().strip()}",
                      file=sys.stderr)
            for log in sorted(self.dir.glob("sanitizer*")):
                print(log.read_text(), file=sys.stderr)
            raise

    def wait_text(self, text, what=None):
        return self.wait(lambda lines: any(text in line for line in lines), what or repr(text))

    def keys(self, *keys):
        self.tmux("send-keys", "-t", "attach", *keys)

    def resize(self, cols, rows):
        self.cols, self.rows = cols, rows
        self.tmux("resize-window", "-t", "attach", "-x", str(cols), "-y", str(rows))

    def pyscope_pid(self):
        """pid of the pyscope process (the pane shell's child)."""
        shell = int(self.tmux("display-message", "-p", "-t", "attach", "#{pane_pid}").stdout)
        return wait_for(lambda: next(iter(children(shell)), None), SCREEN_TIMEOUT_S,
                        "the pyscope process")

    def wait_exit(self):
        """pyscope's exit status once the pane shell recorded it; checks the terminal state."""
        rc = int(wait_for(lambda: self.rc_path.is_file() and self.rc_path.read_text().strip(),
                          SCREEN_TIMEOUT_S, "pyscope attach to exit"))
        modes = self.stty_path.read_text().split()
        assert "echo" in modes and "icanon" in modes, f"terminal not restored: {modes}"
        self.check_sanitizers()
        return rc

    def check_sanitizers(self):
        logs = sorted(self.dir.glob("sanitizer*"))
        assert not logs, "sanitizer reports:\n" + "\n".join(p.read_text() for p in logs)

    def close(self):
        """Kill the tmux server (pyscope gets SIGHUP) and wait until pyscope is gone, so that
        the launch fixture's checks see the target after pyscope released it."""
        shell = self.tmux("display-message", "-p", "-t", "attach", "#{pane_pid}", check=False)
        kids = []
        if shell.returncode == 0 and shell.stdout.strip():
            kids = children(int(shell.stdout))
        self.tmux("kill-server", check=False)
        for kid in kids:
            wait_for(lambda: not alive(kid), SCREEN_TIMEOUT_S, f"pyscope {kid} to exit")


def alive(pid):
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.fixture
def screen(tmp_path):
    screens = []

    def _open(*args, **kw):
        s = Screen(tmp_path, args, **kw)
        screens.append(s)
        return s
    yield _open
    for s in screens:
        s.close()


def ready(s):
    """Wait for the first full screen: the threads pane lists threads."""
    s.wait(lambda lines: "Threads (" in "\n".join(lines) and TID_RE.search("\n".join(lines)),
           "the first snapshot on screen")


def stack_tid(s):
    m = TID_RE.search("\n".join(s.pane("stack")))
    return int(m.group(1)) if m else None


def check_stack(s, truth):
    """The stack pane shows the selected thread's innermost frame and its source line."""
    tid = s.wait(lambda _: stack_tid(s), "a thread in the stack pane")
    thread = next(t for t in truth["threads"] if t["native_id"] == tid)
    inner = thread["frames"][-1]
    want = (inner["qualname"], f":{inner['line']}")
    s.wait(lambda _: any(want[0] in l and want[1] in l for l in s.pane("stack")),
           f"{want} in the stack of {thread['name']}")
    source = Path(inner["file"]).read_text().splitlines()[inner["line"] - 1].strip()[:30]
    s.wait(lambda _: any(source in l for l in s.pane("stack")), f"source line {source!r}")
    return tid


def raised_count(s):
    m = re.search(r"Exceptions: (\d+) raised", s.pane("exc")[0])
    return int(m.group(1)) if m else 0


EVENT_RE = re.compile(r"^\d\d:\d\d:\d\d x\d+\s+(\w+): (.*?)\s*$")
WHERE_RE = re.compile(r"raiser\.py:\d+\) -> (?:handled in (\w+) \([^:]*:(\d+)\)|in flight)")


def feed_events(s):
    """[((type, message), (handled_in, handled_line) or None)] of the raiser's raises shown."""
    rows = s.pane("exc")[1:]
    events = []
    for first, second in zip(rows, rows[1:]):
        m, w = EVENT_RE.match(first.strip()), WHERE_RE.search(second)
        if m and w and not m.group(2).endswith("~"):
            events.append(((m.group(1), m.group(2)),
                           (w.group(1), int(w.group(2))) if w.group(1) else None))
    return events


def help_keys_text():
    out = subprocess.run([str(PYSCOPE_BIN), "attach", "--help"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    block = out.split("\nkeys:\n", 1)[1].split("\n\n", 1)[0]
    return [line.rstrip() for line in block.splitlines()]


# --- tests --------------------------------------------------------------------------------------

def test_panes_and_keys(shapes, screen, tmp_path):
    truth = shapes.truth
    s = screen(shapes.pid)
    ready(s)
    # Every check polls: a capture may catch a frame half drawn; a wrong screen times out.
    s.wait(lambda _: all(str(t["native_id"]) in "\n".join(s.pane("threads")) and
                         t["name"][:8] in "\n".join(s.pane("threads")) for t in truth["threads"]),
           "every thread's native id and name (UTF-8 ones included) in the threads pane")
    first = check_stack(s, truth)
    s.keys("j")                                     # the selection moves to the next thread
    s.wait(lambda _: stack_tid(s) not in (None, first), "j to select another thread")
    check_stack(s, truth)

    s.keys("?")                                     # help: exactly the lines of --help
    want = help_keys_text()                         # (a capture may catch a frame half drawn)
    s.wait(lambda lines: [line.rstrip() for line in lines if line.rstrip() in want] == want,
           "the ? screen to list exactly the keys of --help")
    s.keys("Escape")
    s.wait(lambda lines: not any("pyscope attach: keys" in l for l in lines), "Esc to close help")

    s.keys("s")
    s.wait(lambda _: "(by total)" in "\n".join(s.pane("top")), "s to sort by total")
    s.keys("l")
    s.wait(lambda _: "Top lines" in s.pane("top")[0], "l to show lines")
    s.keys("/", "x", "y", "z", "Enter")
    s.wait(lambda _: "/xyz" in s.pane("top")[0], "the filter in the top title")
    s.keys("Escape")
    s.wait(lambda _: "/xyz" not in s.pane("top")[0], "Esc to clear the filter")
    s.keys("p")
    s.wait(lambda lines: "PAUSED" in lines[2], "p to pause")
    s.keys("p")
    s.wait(lambda lines: "PAUSED" not in lines[2], "p to resume")

    s.keys("d")
    note = s.wait(lambda lines: re.search(r"wrote (\S+\.json)", lines[-1]), "d to write JSON")
    path = Path(note.group(1))
    assert path.parent == tmp_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600    # it may hold --locals secrets
    validate_dump_json(path)
    assert json.loads(path.read_text())["pid"] == shapes.pid

    s.keys("q")
    assert s.wait_exit() == 0
    assert_not_stopped_or_traced(shapes.pid)


def test_exceptions_pane_and_tracing_toggle(python, launch, screen):
    target = launch(python_target(python, "raiser.py"))
    # --budget 0: the feed is checked raise by raise, so every raise must stop (under the
    # default 1% budget this nearly idle target affords a few stops a second; test_service.py
    # covers the budget)
    s = screen("--budget", "0", target.pid, cols=240)
    ready(s)
    s.wait(lambda lines: re.search(r"exceptions [-\d.]+/s " + MECH_RE, lines[2]),
           "exception tracing on")
    s.keys("f")                                     # the raw feed, newest first
    s.wait(lambda _: "newest first" in s.pane("exc")[0], "f to show the feed")
    generation = target.truth["generation"] + 1
    os.kill(target.pid, signal.SIGUSR1)
    truth = target.wait_truth(generation)
    expected = truth["events"]
    s.wait(lambda _: raised_count(s) >= len(expected), f"{len(expected)} raises counted")
    fates = {}                                      # a re-raised object has two fates
    for x in expected:
        fates.setdefault((x["type"], x["message"]), {None}).add((x["handled_in"],
                                                                 x["handled_line"]))

    def feed_matches(_):
        """At least 5 raises shown, each as raised and handled in the round."""
        shown = feed_events(s)
        return len(shown) >= 5 and all(handled in fates.get(event, ())
                                       for event, handled in shown)
    s.wait(feed_matches, f"the newest raises in the feed, as in the truth: {sorted(fates)}")
    s.wait(lambda _: any(h for _, h in feed_events(s)), "where a raise was handled")
    s.keys("Tab", "Tab", "Tab", "Enter")            # threads -> stack -> top -> exceptions
    s.wait(lambda _: "Stack of raise #" in s.pane("stack")[0], "Enter to open a raise's stack")
    s.keys("Escape")
    s.wait(lambda _: "Stack of raise #" not in s.pane("stack")[0], "Esc back to the thread")

    # bpf (kernel-side) holds no ptrace: nothing to see in the target's TracerPid
    assert "(bpf)" in s.lines()[2] or any(tracer_pids(target.pid).values()), \
        "tracing on, yet the target is not traced"
    s.keys("e")
    s.wait(lambda lines: "exception tracing off" in lines[2], "e to stop tracing")
    assert_not_stopped_or_traced(target.pid)        # released while pyscope still runs
    s.keys("e")
    s.wait(lambda lines: re.search(MECH_RE, lines[2]), "e to trace again")
    os.kill(s.pyscope_pid(), signal.SIGTERM)
    assert s.wait_exit() == 0
    assert_not_stopped_or_traced(target.pid)
    generation = target.truth["generation"] + 1     # raises and handles normally afterwards
    os.kill(target.pid, signal.SIGUSR1)
    assert len(target.wait_truth(generation)["events"]) == len(expected)


def test_resize(shapes, screen):
    s = screen(shapes.pid, cols=120, rows=40)
    ready(s)
    s.resize(80, 24)
    s.wait(lambda lines: "Threads (" in lines[3] and "Stack" in lines[3] and
           lines[23].startswith("? help  q quit"), "the layout at 80x24")
    check_stack(s, shapes.truth)
    s.resize(50, 12)
    s.wait_text("terminal too small")
    s.resize(150, 45)
    s.wait(lambda lines: "Top " in "\n".join(s.pane("top")) and "q quit" in lines[44],
           "the layout at 150x45")
    s.keys("q")
    assert s.wait_exit() == 0


def test_target_exit_keeps_last_data(python, launch, screen):
    target = launch(python_target(python, "shapes.py"), expect_alive=False)
    s = screen(target.pid, "--no-exceptions")
    ready(s)
    tid = stack_tid(s)
    target.proc.kill()
    target.proc.wait(timeout=30)
    s.wait_text(f"target pid {target.pid} exited")
    s.wait(lambda _: stack_tid(s) == tid, "the last stack to stay on screen")
    s.keys("j", "k", "Tab")                         # and the keys still work
    s.keys("q")
    assert s.wait_exit() == 0


def test_sighup_when_the_terminal_dies(shapes, screen):
    s = screen(shapes.pid)
    ready(s)
    s.wait(lambda lines: re.search(MECH_RE, lines[2]), "exception tracing on")
    pid = s.pyscope_pid()
    s.tmux("kill-server")                           # the pod shell goes away: SIGHUP
    wait_for(lambda: not alive(pid), SCREEN_TIMEOUT_S, "pyscope to exit on SIGHUP")
    assert_not_stopped_or_traced(shapes.pid)
    s.check_sanitizers()


def untraced(pid):
    """Every task of pid has TracerPid 0."""
    return not any(tracer_pids(pid).values())


def test_hangup_with_pyscope_as_session_leader_tmux(shapes, tmp_path):
    """`tmux new-session "exec pyscope attach PID"` then kill-session: the kernel's SIGHUP goes to
    the session leader (the guard) alone, and the worker's terminal reads 0 / writes EIO."""
    require(subprocess.run(["which", "tmux"], capture_output=True).returncode == 0,
            "tmux is not installed")
    sock = str(tmp_path / "tmux.sock")
    # perf: the ptrace mechanism, whose hold on the target a lost terminal must not leave (bpf
    # holds nothing: the kernel removes its probe with pyscope's fds)
    cmd = (f"exec env TERM=xterm {shlex.quote(str(PYSCOPE_BIN.resolve()))} attach "
           f"--mechanism perf {shapes.pid}")
    subprocess.run(["tmux", "-S", sock, "-f", "/dev/null", "new-session", "-d", "-s", "hup",
                    "-x", "160", "-y", "48", cmd], check=True, timeout=30)
    try:
        guard = int(subprocess.run(["tmux", "-S", sock, "display-message", "-p", "-t", "hup",
                                    "#{pane_pid}"], capture_output=True, text=True, timeout=30,
                                   check=True).stdout)
        wait_for(lambda: not untraced(shapes.pid), SCREEN_TIMEOUT_S, "attach to trace the target")
        worker = children(guard)
        subprocess.run(["tmux", "-S", sock, "kill-session", "-t", "hup"], timeout=30)
    finally:
        subprocess.run(["tmux", "-S", sock, "kill-server"], capture_output=True, timeout=30)
    try:
        wait_for(lambda: untraced(shapes.pid), SCREEN_TIMEOUT_S, "the target to be released")
        for pid in [guard, *worker]:
            wait_for(lambda: not alive(pid), SCREEN_TIMEOUT_S, f"pyscope {pid} to exit")
    finally:
        _end(guard)
    assert_not_stopped_or_traced(shapes.pid)


def test_hangup_with_pyscope_as_session_leader_pty(shapes):
    """The shape of `ssh -t` / `kubectl exec -it ... pyscope attach`: pyscope leads the session
    of a pty (pty.fork: setsid + controlling terminal), then the master is closed."""
    require_pyscope()
    pid, master = pty.fork()
    if pid == 0:                                    # the child: session leader on the pty
        os.environ["TERM"] = "xterm"
        os.execv(str(PYSCOPE_BIN),
                 [str(PYSCOPE_BIN), "attach", "--mechanism", "perf", str(shapes.pid)])
    seen = bytearray()

    def drained_and(cond):
        while select.select([master], [], [], 0)[0]:
            try:
                seen.extend(os.read(master, 65536))
            except OSError:
                break
        return cond()

    try:
        wait_for(lambda: drained_and(lambda: b"Threads (" in seen and not untraced(shapes.pid)),
                 SCREEN_TIMEOUT_S, "attach to draw and trace the target")
    finally:
        os.close(master)                            # the connection drops
    try:
        wait_for(lambda: untraced(shapes.pid), SCREEN_TIMEOUT_S, "the target to be released")
        (status,) = wait_for(lambda: _reaped(pid), SCREEN_TIMEOUT_S, "pyscope to exit")
    except BaseException:
        _end(pid)
        os.waitpid(pid, 0)
        raise
    assert os.waitstatus_to_exitcode(status) == 0, status
    assert_not_stopped_or_traced(shapes.pid)


def _end(pid):
    """A pyscope a failed test left running: SIGTERM (its worker then releases the target)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def _reaped(pid):
    """The wait status of our child pid once it exited (as a truthy tuple), else None."""
    got, status = os.waitpid(pid, os.WNOHANG)
    return (status,) if got else None


def proc_state(pid):
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_ctrl_z_releases_the_target(shapes, screen):
    s = screen(shapes.pid)
    ready(s)
    s.wait(lambda lines: re.search(MECH_RE, lines[2]), "exception tracing on")
    pid = s.pyscope_pid()
    assert "(bpf)" in s.lines()[2] or any(tracer_pids(shapes.pid).values())
    s.keys("C-z")
    wait_for(lambda: proc_state(pid) == "T", SCREEN_TIMEOUT_S, "pyscope to suspend itself")
    assert_not_stopped_or_traced(shapes.pid)        # nobody holds the target while we sleep
    os.kill(pid, signal.SIGCONT)                    # `fg` (the pane's sh has no job control)
    s.wait_text("exception tracing was stopped for the suspension")
    s.keys("q")
    assert s.wait_exit() == 0


COLOR_SGR = re.compile(r"\x1b\[[0-9;]*(3[0-7]|38;5;\d+|4[0-7]|48;5;\d+)[;m]")


@pytest.mark.parametrize("no_color", [False, True], ids=["color", "NO_COLOR"])
def test_colors_and_no_color(shapes, screen, no_color):
    s = screen(shapes.pid, "--no-exceptions", env=["NO_COLOR=1"] if no_color else [])
    ready(s)
    raw = s.wait(lambda _: s.raw() if "\x1b[" in s.raw() else None, "attributes on screen")
    assert bool(COLOR_SGR.search(raw)) != no_color, raw[:400].encode()
    s.keys("q")
    assert s.wait_exit() == 0


def test_without_a_terminal(shapes, pyscope):
    result = pyscope("attach", shapes.pid)         # stdin is /dev/null, stdout a pipe
    assert result.rc == 2, result
    assert "needs a terminal" in result.stderr, result
    assert result.stdout == ""
    assert_not_stopped_or_traced(shapes.pid)


def test_headless_max_frames(shapes, screen):
    s = screen(shapes.pid, "--max-frames", 4)
    assert s.wait_exit() == 0
    assert_not_stopped_or_traced(shapes.pid)


def test_demo_service(python, launch, screen, tmp_path):
    pid_file = tmp_path / "demo.pid"
    target = launch([python, "-u", ROOT / "demo" / "service.py", "--pid-file", pid_file,
                     "--duration", 120], truth=False)
    wait_for(pid_file.is_file, SCREEN_TIMEOUT_S, "the demo service to start")
    s = screen(target.pid)
    ready(s)
    s.wait(lambda _: "cache-janitor" in "\n".join(s.pane("threads")), "the janitor thread")
    s.wait(lambda _: "AttributeError: 'dict' object has no attribute 'value'"
           in "\n".join(s.pane("exc")), "the swallowed AttributeError")
    check_demo_exceptions(s)
    s.wait(lambda _: re.search(r"cosine|similarity_matrix", "\n".join(s.pane("top")[2:6])),
           "the hot spot at the top of the top table")
    s.keys("g")                                     # the leak: among the fastest growing
    s.wait(lambda _: re.search(r"Growth: [1-9]\d* containers", s.pane("exc")[0]), "growth view")
    # rate, length, the length's sparkline (blocks or ASCII marks, maybe blank), name
    row = re.compile(r"\s*[-+]\d+\.\d\s+-?\d+\s+(?:[^\w\s]+\s+)?\w[\w.]*( |~|$)")
    s.wait(lambda _: not [line for line in s.pane("exc")[2:] if line.strip() and
                          not row.match(line)], "every growth row as rate, length, name")
    leak = re.compile(r"\s*\+\d+\.\d\s+\d+\s+(?:[^\w\s]+\s+)?__main__\.RESPONSE_CACHE \(dict")
    s.wait(lambda _: any(leak.match(line) for line in s.pane("exc")[2:5]),
           "RESPONSE_CACHE growing, in the growth view's first rows")
    s.keys("g")
    s.wait(lambda _: "Exceptions:" in s.pane("exc")[0], "g again: back to exceptions")
    s.keys("v")                                     # locals under the frames
    s.wait(lambda _: any(re.match(r"\s{8}\w+ = ", l) for l in s.pane("stack")), "locals")
    s.keys("q")
    assert s.wait_exit() == 0


SITE_RE = re.compile(r"^\s*(\d+)\s+[-\d.]+/s (\w+)(?:: |\s*$)")


def site_rows(s):
    """{(type, raise site): (count, where-handled line)} of the grouped exceptions pane."""
    rows = s.pane("exc")[1:]
    return {(m.group(2), second.strip().split(" -> ")[0]): (int(m.group(1)), second.strip())
            for first, second in zip(rows, rows[1:]) if (m := SITE_RE.match(first))}


def check_demo_exceptions(s):
    """The grouped pane: the demo's swallowed AttributeError is one row with its count and its
    handler; the email parser's StopIteration sites (raised and handled in the standard
    library) are hidden until m; / filters the pane; f shows the raw feed."""
    error = ("AttributeError", "at demo/service.py:67")
    handler = re.compile(r"-> handled at demo/service\.py:\d+ in handle_average$")
    s.wait(lambda _: site_rows(s).get(error, (0, ""))[0] >= 2 and
           handler.search(site_rows(s)[error][1]),
           "the AttributeError's row with its count and handler")
    assert "hidden: m)" in s.pane("exc")[0], s.pane("exc")[0]
    assert not [k for k in site_rows(s) if k[0] == "StopIteration"], site_rows(s)
    s.keys("m")                                     # all raises: the library's own sites too
    s.wait(lambda _: any(k[0] == "StopIteration" and "feedparser.py" in k[1]
                         for k in site_rows(s)), "m to show the StopIteration sites")
    counts = collections.Counter(k for k in site_rows(s))
    assert max(counts.values()) == 1, f"a site shown twice: {counts}"
    s.keys("Tab", "Tab", "Tab", "/", *"Attr", "Enter")  # threads -> stack -> top -> exceptions
    s.wait(lambda _: "/Attr" in s.pane("exc")[0] and
           {k[0] for k in site_rows(s)} == {"AttributeError"}, "/ to filter the exceptions")
    assert "/" not in s.pane("top")[0], "the filter went to the top table"
    s.keys("f")
    s.wait(lambda _: "newest first" in s.pane("exc")[0] and
           any(EVENT_RE.match(line.strip()) for line in s.pane("exc")[1:]), "f for the feed")
    assert all(EVENT_RE.match(line.strip()).group(1) == "AttributeError"
               for line in s.pane("exc")[1:] if EVENT_RE.match(line.strip()))
    s.keys("f", "m", "Escape")
    s.wait(lambda _: "/Attr" not in s.pane("exc")[0] and "hidden: m)" in s.pane("exc")[0],
           "Esc clears the filter, m hides library sites again")


def test_tasks_view(python, launch, screen):
    target = launch(python_target(python, "tasks.py"))
    names = [t["name"] for t in target.truth["tasks"] if t["name"]]
    s = screen(target.pid, "--no-exceptions", cols=200)
    ready(s)
    s.keys("t")
    s.wait(lambda _: "asyncio tasks" in s.pane("exc")[0], "t to show the tasks")
    s.wait(lambda _: re.search(rf"{len(target.truth['tasks'])} tasks in 2 loops",
                               s.pane("exc")[1]), "the task count")

    def tasks_shown(_):
        """The pane is full of the truth's task names, the deadlocked one marked."""
        shown = "\n".join(s.pane("exc"))
        visible = [n for n in names if re.search(rf"\b{re.escape(n)}\b", shown)]
        return (len(visible) >= min(len(names), len(s.pane("exc")) - 3) and
                (re.search(r"dl-a\s+DEADLOCK", shown) or "dl-a" not in visible))
    s.wait(tasks_shown, f"the tasks {names}")
    s.keys("t")
    s.wait(lambda _: "Exceptions" in s.pane("exc")[0], "t again: back to exceptions")
    s.keys("q")
    assert s.wait_exit() == 0


def test_help_readme_and_keymap_agree():
    require_pyscope()
    md = subprocess.run([str(PYSCOPE_BIN), "attach", "--keys-markdown"], capture_output=True,
                        text=True, timeout=30, check=True).stdout
    text = README.read_text(encoding="utf-8")
    assert KEYS_BEGIN in text and KEYS_END in text, "README.md lacks the key list markers"
    block = text.split(KEYS_BEGIN, 1)[1].split(KEYS_END, 1)[0].strip("\n")
    assert block == md.strip("\n"), "README key list is stale: run scripts/readme-keys"
    help_lines = help_keys_text()
    md_lines = md.strip("\n").splitlines()
    assert len(help_lines) == len(md_lines)
    for h, m in zip(help_lines, md_lines):
        keys, _, desc = m[2:].partition(": ")
        assert h.endswith(desc) and h.split(desc)[0].strip() == keys.replace("`", ""), (h, m)


def test_native_stack_pane(python, launch, screen):
    """attach --native: the stack pane shows the C stack with the Python frames merged where the
    interpreter runs them, no raw eval-loop frame left (tests/targets/park.py parks its main
    thread in time.sleep() inside main()); the target is released after every refresh."""
    target = launch(python_target(python, "park.py"))
    s = screen("--native", "--no-exceptions", target.pid)
    ready(s)

    # time_sleep is static: a stripped runtime (Debian's static python3.X, .dynsym only) has no
    # name for it, and the pane shows the frame that calls libc's sleep by its address.
    named = target_names_statics(target.pid)
    unnamed_re = re.compile(r"\[C\] 0x[0-9a-f]+  " +
                            re.escape(os.path.basename(runtime_image(target.pid))))

    def is_sleep(lines, i):
        if named:
            return "[C] time_sleep" in lines[i]
        return i > 0 and bool(unnamed_re.search(lines[i])) and \
            bool(re.search(r"\[C\] \w*sleep\w*\+0x[0-9a-f]+  libc", lines[i - 1]))

    def merged(_):
        lines = s.pane("stack")
        c = [i for i in range(len(lines)) if is_sleep(lines, i)]
        py = [i for i, line in enumerate(lines) if re.search(r"\bmain\b.*park\.py:\d+", line)]
        return bool(c and py and c[0] < py[0])

    s.wait(merged, ("time_sleep" if named else "libc's sleep called from an address") +
           " above main() in the native stack pane")
    assert not any("_PyEval_EvalFrameDefault" in line for line in s.pane("stack"))
    s.keys("q")
    assert s.wait_exit() == 0
    assert_not_stopped_or_traced(target.pid)


def probe_bytes(pid, addr):
    """(the byte at addr in pid's memory, the byte at addr in the file mapped there): a bpf
    tracer's uprobe is an int3 (0xcc) the kernel writes over the first; a released one is gone."""
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= addr < end:
                break
        else:
            raise AssertionError(f"{addr:#x} is not mapped in pid {pid}")
    # map_files names a mapping without the zero padding /proc/PID/maps has (a non-PIE
    # python's low addresses: "0041f000-006d2000" there, "41f000-6d2000" here)
    with open(f"/proc/{pid}/map_files/{start:x}-{end:x}", "rb") as image:
        image.seek(addr - start + int(fields[2], 16))
        in_file = image.read(1)[0]
    with open(f"/proc/{pid}/mem", "rb") as mem:
        mem.seek(addr)
        in_memory = mem.read(1)[0]
    return in_memory, in_file


ATTACH_STOPS = 40  # q, SIGINT, SIGTERM, SIGHUP in turn: 10 of each
ATTACH_ERRORS = ("no exception tracing", "no sampling", "sampling:", "exception tracing stopped",
                 "stopping the tracer")


def test_attach_starts_and_stops_while_threads_come_and_go(python, launch, tmp_path):
    """Issue 19 items 7 and 5 for the TUI: attach started and stopped 40 times against a target
    whose threads start, raise and end at every moment, with pyscope's own choice of exception
    tracing (bpf as root), stopped by `q`, SIGINT, SIGTERM and SIGHUP in turn (README: each an
    orderly stop, exit code 0). Every start must draw the target's threads with tracing on and
    no error (the first 8 also the churn's raises, the others are stopped as soon as tracing is
    on); every stop exit 0 with the terminal restored and nothing on stderr; afterwards the
    target is neither stopped nor traced and, with bpf, the uprobe's int3 at PyTraceBack_Here
    (seen while attached) is gone from its memory. The binary before the layout check's retry
    (99376a2^) fails it: "layout check failed: the GIL holder ... is not a thread state", exit 2
    at start 6."""
    target = launch(python_target(python, "thread_churn.py"))
    here = target.truth["traceback_here"]
    stops = ["q", signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
    for attempt in range(ATTACH_STOPS):
        how = stops[attempt % len(stops)]
        where = tmp_path / f"attach{attempt}"
        where.mkdir()
        s = Screen(where, [target.pid])
        try:
            s.wait(lambda lines: "Threads (" in "\n".join(lines) and
                   TID_RE.search("\n".join(lines)),
                   f"start {attempt}: the first snapshot on screen")
            header = s.wait(lambda lines: re.search(MECH_RE, lines[2]),
                            f"start {attempt}: exception tracing on")
            mech = header.group(1)
            if attempt < 2 * len(stops):  # then stop as soon as tracing is on: other moments
                s.wait(lambda _: raised_count(s) > 0, f"start {attempt}: the churn's raises shown")
            shown = "\n".join(s.lines())
            assert not any(e in shown for e in ATTACH_ERRORS), (attempt, shown)
            if mech == "bpf":
                memory, image = probe_bytes(target.pid, here)
                assert memory == 0xCC != image, (attempt, hex(memory), hex(image))
            else:
                assert not untraced(target.pid), (attempt, mech)
            if how == "q":
                s.keys("q")
            else:
                os.kill(s.pyscope_pid(), how)
            rc = s.wait_exit()
            # after the TUI: its parked stderr is replayed on the pane; a clean stop says nothing
            said = [line for line in s.lines() if line.strip() and "Pane is dead" not in line]
            assert rc == 0 and not said, (attempt, how, rc, said)
        finally:
            s.close()
        assert_not_stopped_or_traced(target.pid)
        memory, image = probe_bytes(target.pid, here)
        assert memory == image, (attempt, how, hex(memory), hex(image))
