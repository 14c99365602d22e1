"""Hostile targets (issue 19): a target names files, pyscope must not read them for it.

Source lines come from files the target names by co_filename, and pyscope usually runs as root.
tests/targets/named_park.py parks threads in code compiled with chosen filenames: a root-only
secret file (a uid-65534 target), escapes from a chroot (an absolute symlink to the host's
secret, ".." names, a relative symlink climbing out). No byte of the secret may appear in any
output; a legitimate file the target can read still shows its lines (the positive control).
"""

import functools
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import uuid

import pytest

from conftest import (NOBODY, RC_OK, TARGETS, assert_not_stopped_or_traced, children, require,
                      wait_for)

sys.path.insert(0, str(TARGETS))
from named_park import PARK_SOURCE  # noqa: E402 - the target's own source, for the control

DEBIAN_PYTHON = "/usr/bin/python3.11"  # outside /root, so uid 65534 and a chroot can run it
READY_S = 30.0
SHOWN = "# parked-here"  # on every line PARK_SOURCE can be parked on


@functools.lru_cache(maxsize=None)
def can_unshare(*flags):
    """unshare with these namespace flags works here (root with CAP_SYS_ADMIN, not a locked-down
    container)."""
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", *flags, "true"], capture_output=True, timeout=30).returncode == 0


def read_line(proc, timeout):
    """The target's first stdout line (its JSON ready note), with a deadline."""
    buf = b""
    fd = proc.stdout.fileno()
    while not buf.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], timeout)
        chunk = os.read(fd, 4096) if ready else b""
        if not chunk:
            err = proc.stderr.read().decode(errors="replace") if proc.poll() is not None else ""
            pytest.fail(f"target {proc.args} wrote no ready line: {err}", pytrace=False)
        buf += chunk
    return json.loads(buf)


@pytest.fixture
def named():
    """Factory: named(argv) -> (proc, note), started in its own session, killed at teardown."""
    procs = []

    def _start(argv):
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        procs.append(proc)
        return proc, read_line(proc, READY_S)
    yield _start
    for proc in procs:
        try:
            if proc.poll() is None:
                assert_not_stopped_or_traced(proc.pid)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
            proc.wait(timeout=30)


@pytest.fixture
def secret(tmp_path):
    """A root-only (0600) file whose every line carries a unique marker; returns (path, marker)."""
    marker = f"SECRET-{uuid.uuid4().hex}"
    path = tmp_path / "secret.txt"
    path.write_text("".join(f"{marker}-{i}\n" for i in range(1, 40)))
    path.chmod(0o600)
    return path, marker


@pytest.fixture
def public_dir():
    """A world-readable directory outside root's 0700 tmp tree (uid 65534 can read it)."""
    path = subprocess.run(["mktemp", "-d", "/tmp/pyscope-hostile.XXXXXX"], check=True,
                          capture_output=True, text=True).stdout.strip()
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


def outputs(pyscope, pid):
    """dump's text and JSON outputs (stdout and stderr); both must succeed."""
    texts = []
    for args in (["dump"], ["dump", "--json"]):
        result = pyscope(*args, pid)
        assert result.rc == RC_OK, result
        texts.append(result.stdout + result.stderr)
    return texts


def shadow_lines():
    try:
        with open("/etc/shadow", encoding="utf-8", errors="replace") as f:
            return [line.strip() for line in f if len(line.strip()) > 8]
    except OSError:
        return []


def test_source_of_a_root_only_file_is_not_shown_to_nobody(pyscope, named, secret, public_dir):
    require(os.geteuid() == 0, "needs root to drop the target to uid 65534")
    require(shutil.which("setpriv") and os.access(DEBIAN_PYTHON, os.X_OK),
            f"setpriv and {DEBIAN_PYTHON} are needed")
    path, marker = secret
    script = shutil.copy(TARGETS / "named_park.py", public_dir)
    public = os.path.join(public_dir, "app.py")
    with open(public, "w", encoding="utf-8") as f:
        f.write(PARK_SOURCE)
    os.chmod(public, 0o644)
    proc, note = named(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                        DEBIAN_PYTHON, "-I", "-u", script, str(path), "/etc/shadow", public])
    text, doc = outputs(pyscope, proc.pid)
    for out in (text, doc):
        assert marker not in out
        assert not [line for line in shadow_lines() if line in out]
    assert str(path) in text                             # the frame itself is shown ...
    assert text.count(SHOWN) == 1, text                  # ... and only the public file's line


def test_core_source_is_read_as_the_crashed_process(pyscope, named, secret, public_dir,
                                                    tmp_path):
    """dump --core reads source lines with the ids the core records for the process
    (NT_PRPSINFO pr_uid, pr_gid), not root's: a gcore core of the uid-65534 target above shows
    no line of the root-only secret it names, nor of /etc/shadow, and still its public file's."""
    gcore = shutil.which("gcore")
    require(os.geteuid() == 0 and gcore and shutil.which("setpriv") and
            os.access(DEBIAN_PYTHON, os.X_OK),
            f"needs root, gcore (gdb), setpriv and {DEBIAN_PYTHON}")
    path, marker = secret
    script = shutil.copy(TARGETS / "named_park.py", public_dir)
    public = os.path.join(public_dir, "app.py")
    with open(public, "w", encoding="utf-8") as f:
        f.write(PARK_SOURCE)
    os.chmod(public, 0o644)
    proc, note = named(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                        DEBIAN_PYTHON, "-I", "-u", script, str(path), "/etc/shadow", public])
    subprocess.run([gcore, "-o", str(tmp_path / "core"), str(proc.pid)], capture_output=True,
                   check=True, timeout=120)
    core = tmp_path / f"core.{proc.pid}"
    texts = []
    for args in (["dump", "--core", core], ["dump", "--json", "--core", core]):
        result = pyscope(*args)
        assert result.rc == RC_OK, result
        texts.append(result.stdout + result.stderr)
    text, doc = texts
    for out in (text, doc):
        assert marker not in out
        assert not [line for line in shadow_lines() if line in out]
    assert str(path) in text                             # the frame itself is shown ...
    assert text.count(SHOWN) == 1, text                  # ... and only the public file's line


def jail_argv(jail, names):
    """named_park.py chrooted into jail (/usr bind-mounted read-only) in a new mount namespace."""
    setup = ('mount --bind /usr "$1/usr" && mount -o remount,bind,ro "$1/usr" && '
             'jail=$1 && shift && exec chroot "$jail" ' +
             f"{DEBIAN_PYTHON} -I -u /app/named_park.py \"$@\"")
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", setup, "sh",
            str(jail), *names]


def make_jail(tmp_path, secret_path):
    jail = tmp_path / "jail"
    (jail / "usr").mkdir(parents=True)
    (jail / "app").mkdir()
    for name, to in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
        (jail / name).symlink_to(to)
    shutil.copy(TARGETS / "named_park.py", jail / "app")
    (jail / "app" / "real.py").write_text(PARK_SOURCE)
    (jail / "app" / "link.py").symlink_to(secret_path)          # absolute: the host's file
    climb = "../" * (len(secret_path.parts) + 2)
    (jail / "app" / "rel.py").symlink_to(climb + str(secret_path).lstrip("/"))
    return jail


def test_source_names_cannot_leave_the_target_root(pyscope, named, secret, tmp_path):
    require(can_unshare("--mount") and os.access(DEBIAN_PYTHON, os.X_OK),
            f"needs unshare --mount (root, CAP_SYS_ADMIN) and {DEBIAN_PYTHON}")
    path, marker = secret
    jail = make_jail(tmp_path, path)
    up = "/.." * (len(jail.parts) + 2)
    names = ["/app/link.py", "/app/rel.py", up + str(path), "/app/../../../.." + str(path),
             "/app/real.py"]
    proc, note = named(jail_argv(jail, names))
    assert note["pid"] == proc.pid                       # unshare, sh and chroot exec python
    text, doc = outputs(pyscope, proc.pid)
    for out in (text, doc):
        assert marker not in out
    assert "/app/link.py" in text and "/app/rel.py" in text
    assert text.count(SHOWN) == 1, text                  # /app/real.py, inside the jail


def test_attach_stack_pane_hides_the_secret(pyscope, named, secret, public_dir, tmp_path):
    require(os.geteuid() == 0 and shutil.which("setpriv") and shutil.which("tmux"),
            "needs root, setpriv and tmux")
    from test_attach import Screen, stack_tid  # noqa: E402 - the tmux driver of the attach tests
    path, marker = secret
    script = shutil.copy(TARGETS / "named_park.py", public_dir)
    proc, note = named(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                        DEBIAN_PYTHON, "-I", "-u", script, str(path)])
    s = Screen(tmp_path, ["--no-exceptions", proc.pid])
    try:
        tid = note["threads"][str(path)]
        for _ in range(3):                               # main thread, then the parked one
            if s.wait(lambda _: stack_tid(s), "a thread in the stack pane") == tid:
                break
            s.keys("j")
        s.wait(lambda _: stack_tid(s) == tid and path.name in "\n".join(s.pane("stack")),
               "the thread parked in the secret's name, its frame in the stack pane")
        assert marker not in "\n".join(s.lines())
        s.keys("q")
        assert s.wait_exit() == 0
    finally:
        s.close()


# --- files the target names are never opened in a way that blocks (item 2) -------------------

PARK_C = "#include <unistd.h>\nvoid park(void) { for (;;) pause(); }\n"


def test_native_with_a_library_path_swapped_for_a_fifo(pyscope, named, tmp_path):
    """dump --native must not block on a mapped path that now names a FIFO, and must leave the
    target running (the named fixture checks it is neither stopped nor traced)."""
    cc = shutil.which("cc")
    require(cc and can_unshare("--mount") and os.access(DEBIAN_PYTHON, os.X_OK),
            f"needs cc, unshare --mount (root, CAP_SYS_ADMIN) and {DEBIAN_PYTHON}")
    src, lib, fifo = tmp_path / "park.c", tmp_path / "libpark.so", tmp_path / "fifo"
    src.write_text(PARK_C)
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(src)], check=True,
                   timeout=60)
    os.mkfifo(fifo)
    proc, note = named(["unshare", "--mount", "--propagation", "private", DEBIAN_PYTHON, "-I",
                        "-u", TARGETS / "fifo_lib.py", lib, fifo])
    wait_for(lambda: str(lib) in open(f"/proc/{proc.pid}/maps", encoding="utf-8").read(),
             READY_S, "the library mapped")
    result = pyscope("dump", "--native", "--json", proc.pid)   # fails the test on a hang
    assert result.rc in (0, 1), result
    threads = {t["native_id"]: t for t in result.json()["threads"]}
    assert note["native_id"] in threads
    assert_not_stopped_or_traced(proc.pid)


DECOY_C = "void decoy_one(void) {}\nvoid decoy_two(void) {}\n"


def test_native_symbols_come_from_the_mapped_file_not_its_path(pyscope, named, tmp_path):
    """A target that puts another ELF file over a mapped library's path (a bind mount in its own
    mount namespace; a rename works alike): dump --native names the parked thread's frame from
    the file that is mapped (/proc/PID/map_files), not from what the path names now (before:
    /proc/PID/root + path, the decoy's symbols or none)."""
    cc = shutil.which("cc")
    require(cc and os.geteuid() == 0 and can_unshare("--mount") and
            os.access(DEBIAN_PYTHON, os.X_OK),
            f"needs root, cc, unshare --mount (CAP_SYS_ADMIN) and {DEBIAN_PYTHON}")
    lib, decoy = tmp_path / "libpark.so", tmp_path / "libdecoy.so"
    for source, out in ((PARK_C, lib), (DECOY_C, decoy)):
        src = out.with_suffix(".c")
        src.write_text(source)
        subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(out), str(src)], check=True,
                       timeout=60)
    proc, note = named(["unshare", "--mount", "--propagation", "private", DEBIAN_PYTHON, "-I",
                        "-u", TARGETS / "fifo_lib.py", lib, decoy])
    result = pyscope("dump", "--native", "--json", proc.pid)
    assert result.rc in (0, 1), result
    thread = next(t for t in result.json()["threads"] if t["native_id"] == note["native_id"])
    symbols = [f.get("symbol") or "" for f in thread["native"]]
    assert "park" in symbols, symbols
    assert not [s for s in symbols if s.startswith("decoy_")], symbols
    assert_not_stopped_or_traced(proc.pid)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_core_that_is_not_a_file(pyscope, tmp_path, kind):
    path = tmp_path / "core.fifo" if kind == "fifo" else "/dev/zero"
    if kind == "fifo":
        os.mkfifo(path)
    result = pyscope("dump", "--core", path)
    assert result.rc == 2, result
    want = "a FIFO" if kind == "fifo" else "a character device"
    assert f"{path}: it is {want}, not a regular file" in result.stderr, result


# --- a target in another pid namespace, pyscope outside it (item 9) ---------------------------

def in_pidns(launch, script):
    """script under DEBIAN_PYTHON as pid 1 of a new pid namespace; returns (target, host pid).
    The ids CPython stores (native_thread_id) are that namespace's: 1, 2, ..."""
    require(can_unshare("--pid", "--fork", "--mount-proc") and os.access(DEBIAN_PYTHON, os.X_OK),
            f"needs unshare --pid --mount-proc (root, CAP_SYS_ADMIN) and {DEBIAN_PYTHON}")
    target = launch(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc",
                     DEBIAN_PYTHON, "-I", "-u", TARGETS / script])
    host = wait_for(lambda: next(iter(children(target.pid)), None), READY_S,
                    "the python in the new pid namespace")
    return target, host


def host_tids(pid):
    """{tid in the target's namespace: tid here} from each task's NSpid line."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status", encoding="ascii") as f:
            nspid = next(line.split()[1:] for line in f if line.startswith("NSpid:"))
        out[int(nspid[-1])] = int(nspid[0])
    return out


def test_dump_of_a_target_in_another_pid_namespace(launch, pyscope):
    target, host = in_pidns(launch, "park.py")
    assert target.truth["pid"] == 1
    tids = host_tids(host)
    want = sorted(tids[n] for n in target.truth["native_ids"])
    assert want != sorted(target.truth["native_ids"])     # the ids really differ
    for args in (["dump", "--json"], ["dump", "--native", "--json"]):
        result = pyscope(*args, host)
        assert result.rc == RC_OK, result
        threads = result.json()["threads"]
        assert sorted(t["native_id"] for t in threads) == want
        assert all(t["os"]["state"] == "S" for t in threads), threads   # not unknown
        if "--native" in args:
            assert all(t["native"] and not t.get("native_error") for t in threads), threads
    assert_not_stopped_or_traced(host)


@pytest.mark.breakpoints  # perf tracing: skipped where breakpoints do not fire
def test_exceptions_of_a_target_in_another_pid_namespace(launch):
    from test_exceptions import Tracer  # noqa: E402 - the exceptions tests' driver
    target, host = in_pidns(launch, "raise_loop.py")
    tracer = Tracer(host, "--max-rate", 0)
    lines = tracer.wait_events(lambda evs: sum(e["event"] == "raise" for e in evs) >= 20,
                               "raises of the namespaced target")
    rc, err = tracer.finish(signal.SIGINT)
    assert rc == 0, err
    assert {e["native_id"] for e in lines if e["event"] == "raise"} == {host}
    assert_not_stopped_or_traced(host)
