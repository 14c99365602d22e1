"""Ground truth for `record`: every sample under the right thread, every thread counted each tick.

The target (tests/targets/threads_truth.py) runs threads of known behaviour (spinning, sleeping,
renamed mid-run, created and ended mid-run, one likely reusing an ended thread's ident), each in
a function named after the thread, and writes each thread's ident, native id, names and its
start and end by its own clock. With --idle every live thread is sampled at every tick, so:
  - per thread, the samples taken while it lived (by its clock) are within 3% of the ticks
    pyscope reports it took in that window (its own achieved tick count, not wall time x rate:
    this holds on a loaded machine);
  - every sample of a thread holds that thread's function (or only threading's bootstrap
    frames, before and after it) and never another thread's.
Checked in raw JSON samples (pid and thread in every sample), collapsed stacks, speedscope, the
flamegraph SVG (parsed as XML) and pprof (gzipped profile.proto, decoded by protoc --decode_raw
and by a small wire reader here), and with --blocking. A process tree (tests/targets/
procs_truth.py) under a shell is held to the same rules per process.
"""
import glob
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import PYSCOPE_TIMEOUT_S, python_target, require, wait_for
from test_record import finish, json_lines, start_pyscope, stream_has

RATE = 200
TOLERANCE = 0.03
SVG = "{http://www.w3.org/2000/svg}"
# Names are read again at least this often (sampler.h: every 10th re-list, 100 ms apart).
NAME_DELAY_S = 1.2
# Frames a thread may show outside its own function: threading's start and end of a thread.
BOOTSTRAP = {"Thread._bootstrap", "Thread._bootstrap_inner", "Thread.run", "_bootstrap",
             "_bootstrap_inner", "run", "Event.set", "Condition.notify_all", "Condition.notify",
             "Thread._delete", "_delete", "_maintain_shutdown_locks", "Thread._stop", "_stop",
             "Condition.__exit__", "Condition.__enter__", "_after_fork",
             # _bootstrap_inner's first calls (a busy machine's sample caught Thread._set_ident)
             "Thread._set_ident", "_set_ident", "Thread._set_tstate_lock", "_set_tstate_lock",
             "Thread._set_native_id", "_set_native_id", "Thread._set_os_name", "_set_os_name"}


def close_enough(got, want):
    """Within TOLERANCE (3%) of want, or 2 samples. A bool: a tuple here made every count
    check in this file pass whatever the counts."""
    return abs(got - want) <= max(TOLERANCE * want, 2)


def ticks_of(stderr):
    m = re.search(r"(\d+) ticks \(", stderr)
    assert m, stderr
    return int(m.group(1))


def fn_names(frames):
    return {f.rsplit(" (", 1)[0] for f in frames}


def check_stack(rec, names, all_fns):
    """A sample of thread rec: its function on the stack, or only bootstrap frames; never
    another thread's function."""
    others = (all_fns - {rec["fn"]}) & names
    assert not others, f"a sample of {rec['names']} holds {others}: {sorted(names)}"
    assert rec["fn"] in names or names <= BOOTSTRAP, \
        f"a sample of {rec['names']} without {rec['fn']}: {sorted(names)}"


@pytest.fixture
def threads_target(python, launch):
    return launch(python_target(python, "threads_truth.py"))


def record(pid, out, *args, duration=1):
    proc = start_pyscope("record", pid, "--idle", "--rate", RATE, "--duration", duration,
                         "-o", out, *args)
    rc, _, err = finish(proc)
    assert rc == 0, err
    return ticks_of(err)


def by_tid(truth):
    return {r["native_id"]: r for r in truth["threads"]}


def steady(truth):
    return [r for r in truth["threads"] if r["end"] is None]


def test_raw_samples_every_thread_every_tick(threads_target, tmp_path):
    target = threads_target
    out = tmp_path / "s.jsonl"
    proc = start_pyscope("record", target.pid, "--idle", "--rate", RATE, "--duration", 3,
                         "--format", "json", "-o", out)
    wait_for(lambda: stream_has(out, 10), PYSCOPE_TIMEOUT_S, "samples in the stream")
    os.kill(target.pid, signal.SIGUSR1)
    rc, _, err = finish(proc)
    assert rc == 0, err
    truth = target.wait_truth(1)
    lines = json_lines(out)
    head, samples, tail = lines[0], lines[1:-1], lines[-1]
    assert head["rate_hz"] == RATE
    recs = by_tid(truth)
    all_fns = {r["fn"] for r in recs.values()}
    tick_wall = {}
    for s in samples:
        assert s["pid"] == target.pid, s
        rec = recs.get(s["tid"])
        assert rec is not None, f"a sample of an unknown thread: {s}"
        assert s["thread"] == rec["ident"], (s, rec)
        # Every sample, the main thread's inside json's encoder generators (writing its truth)
        # too: test_generators_resumed_from_c_keep_their_callers.
        check_stack(rec, {f["function"] for f in s["frames"]}, all_fns)
        tick_wall[s["t"]] = min(s["wall"], tick_wall.get(s["t"], s["wall"]))
    assert len(tick_wall) <= tail["ticks"]
    first, last = min(tick_wall.values()), max(tick_wall.values())
    for tid, rec in recs.items():
        lo, hi = max(rec["start"], first), min(rec["end"] or last, last)
        if hi - lo < 0.2:
            continue  # the recording ended before this thread's life (a very slow machine)
        want = sum(1 for w in tick_wall.values() if lo <= w <= hi)
        got = sum(1 for s in samples if s["tid"] == tid and lo <= s["wall"] <= hi)
        assert close_enough(got, want), (rec["names"], got, want)
        if rec["fn"] == "sleep_d":  # renamed: its new name once names were read again
            later = [s["name"] for s in samples if s["tid"] == tid and
                     s["wall"] > rec["renamed"] + NAME_DELAY_S]
            assert set(later) <= {"renamed_d"}, set(later)
        if rec.get("joined"):  # gone: nothing counted for it once join() returned
            after = [s for s in samples if s["tid"] == tid and s["wall"] > rec["joined"]]
            assert len(after) <= 1, (rec["names"], len(after))
    assert any(r["fn"] == "late" for r in recs.values())


def test_generators_resumed_from_c_keep_their_callers(python, launch, tmp_path):
    """Every sample of a thread busy inside generators and coroutines resumed from C (sum, any,
    list, str.join over json's nested encoder generators, send(), ...) holds its whole outer
    chain. 3.11 marks a resumed generator's frame is_entry and clears its `previous` when it
    yields: a chain read across a yield used to stop there, looking complete, and a sample held
    only the innermost generator frames. A generator at the bottom of its thread (no caller)
    is still sampled, its one frame a whole stack."""
    target = launch(python_target(python, "gen_chain.py"))
    truth = target.truth
    out = tmp_path / "s.jsonl"
    # As many samples as the machine gives (a cut chain was seen in 1 sample in 20 to 1,000).
    proc = start_pyscope("record", target.pid, "--idle", "--rate", 1000, "--duration", 4,
                         "--format", "json", "-o", out)
    rc, _, err = finish(proc)
    assert rc == 0, err
    outer = truth["outer"]  # outermost first
    samples = json_lines(out)[1:-1]
    mine = [s for s in samples if s.get("tid") == truth["native_id"]]
    # A generator at the very bottom of its thread is a whole stack, not a cut one: sampled.
    bottom = [[f["function"] for f in s["frames"]] for s in samples
              if s.get("tid") == truth["bottom_native_id"]]
    assert len(bottom) >= len(mine) // 2, (len(bottom), len(mine))
    assert all(b == ["bottom_gen"] for b in bottom), [b for b in bottom if b != ["bottom_gen"]][:3]
    assert len(mine) >= 100, (len(mine), err)
    in_generators, cut = 0, []
    for s in mine:
        names = [f["function"] for f in reversed(s["frames"])]  # outermost first
        at = [names.index(fn) if fn in names else -1 for fn in outer]
        if -1 in at or at != sorted(at):
            cut.append(names)
            continue
        inner = names[at[-1] + 1:]
        in_generators += any(n.endswith(("<genexpr>", "_iterencode", "_iterencode_dict",
                                         "_iterencode_list", "numbers", "nested", "words",
                                         "coro_leaf", "coro_mid")) for n in inner)
    # Samples without their callers: the old walker cut ~5% on 3.11 (38 of 821); the 3.11
    # _PyCFrame check leaves a few in a thousand under load (json's nested encoder generators;
    # noted on issue 14), never more than 1%.
    assert len(cut) * 100 <= len(mine), f"{len(cut)} of {len(mine)} samples without callers: {cut[:3]}"
    # The target spends most of its time there: the check above is not vacuous.
    assert in_generators >= len(mine) // 4, (in_generators, len(mine))


def collapsed_roots(text):
    """{root label: [(frame names, count)]} of collapsed stacks."""
    roots = {}
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        roots.setdefault(frames[0], []).append((fn_names(frames[1:]), int(n)))
    return roots


def root_record(label, recs):
    m = re.fullmatch(r"thread (.*) \((\d+)\)", label)
    assert m, label
    rec = recs.get(int(m.group(2)))
    assert rec is not None, f"root {label} is no thread of the target"
    assert m.group(1) == rec["names"][-1], (label, rec["names"])
    return rec


def check_roots(roots, truth, ticks):
    """Per-thread stacks and counts: every steady thread counted at every tick."""
    recs = by_tid(truth)
    all_fns = {r["fn"] for r in recs.values()}
    counts = {}
    for label, stacks in roots.items():
        rec = root_record(label, recs)
        for names, n in stacks:
            check_stack(rec, names, all_fns)
            counts[rec["native_id"]] = counts.get(rec["native_id"], 0) + n
    for rec in steady(truth):
        assert close_enough(counts.get(rec["native_id"], 0), ticks), (rec["names"], counts)


@pytest.fixture
def settled(threads_target):
    """The target after its scenario: steady threads only, sleep_d renamed."""
    os.kill(threads_target.pid, signal.SIGUSR1)
    return threads_target.wait_truth(1)


@pytest.mark.parametrize("blocking", [False, True], ids=["nonblocking", "blocking"])
def test_collapsed_per_thread(threads_target, settled, tmp_path, blocking):
    out = tmp_path / "c.folded"
    ticks = record(threads_target.pid, out, "--threads", "--format", "collapsed",
                   *(["--blocking"] if blocking else []))
    check_roots(collapsed_roots(out.read_text()), settled, ticks)


def test_speedscope_per_thread(threads_target, settled, tmp_path):
    out = tmp_path / "s.json"
    ticks = record(threads_target.pid, out, "--format", "speedscope")
    doc = json.loads(out.read_text())
    frames = [f["name"] for f in doc["shared"]["frames"]]
    roots = {}
    for prof in doc["profiles"]:
        roots[prof["name"]] = [({frames[i] for i in stack}, w)
                               for stack, w in zip(prof["samples"], prof["weights"])]
    check_roots(roots, settled, ticks)


def svg_frames(path):
    """[(name, samples, x, width, y)] of the flamegraph's frames."""
    out = []
    for g in ET.parse(path).getroot().iter(SVG + "g"):
        title, rect = g.find(SVG + "title"), g.find(SVG + "rect")
        if title is None or rect is None:
            continue
        m = re.fullmatch(r"(.*) \((\d+) samples, [0-9.]+%\)", title.text)
        assert m, title.text
        out.append((m.group(1), int(m.group(2)), float(rect.get("x")), float(rect.get("width")),
                    float(rect.get("y"))))
    return out


def test_flamegraph_per_thread(threads_target, settled, tmp_path):
    out = tmp_path / "f.svg"
    ticks = record(threads_target.pid, out, "--threads", "--format", "flamegraph")
    frames = svg_frames(out)
    recs = by_tid(settled)
    thread_y = {y for name, _, _, _, y in frames if name.startswith("thread ")}
    assert len(thread_y) == 1, thread_y
    roots = [(root_record(name, recs), n, x, w) for name, n, x, w, y in frames
             if name.startswith("thread ")]
    for rec in steady(settled):
        got = sum(n for r, n, _, _ in roots if r is rec)
        assert close_enough(got, ticks), (rec["names"], got, ticks)
    fns = {r["fn"]: r for r in recs.values()}
    for name, n, x, w, _ in frames:
        fn = name.rsplit(" (", 1)[0]
        if fn not in fns:
            continue
        owner = [r for r, _, rx, rw in roots if rx <= x + w / 2 <= rx + rw]
        assert owner and owner[0] is fns[fn], f"{name} drawn under {owner and owner[0]['names']}"


def last_wall(path):
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return json.loads(line).get("wall", 0)
        except ValueError:
            continue  # a line being written
    return 0


def test_names_read_again(python, launch, tmp_path):
    """The main thread sampled before `import threading` gets its name once it has one."""
    target = launch(python_target(python, "late_threading.py"))
    out = tmp_path / "n.jsonl"
    proc = start_pyscope("record", target.pid, "--format", "json", "-o", out)
    wait_for(lambda: stream_has(out, 10), PYSCOPE_TIMEOUT_S, "samples in the stream")
    os.kill(target.pid, signal.SIGUSR1)
    truth = target.wait_truth(1)
    wait_for(lambda: last_wall(out) > truth["imported"] + NAME_DELAY_S + 0.2, PYSCOPE_TIMEOUT_S,
             "samples after the name delay")
    proc.send_signal(signal.SIGINT)
    rc, _, err = finish(proc)
    assert rc == 0, err
    samples = json_lines(out)[1:-1]
    later = {s["name"] for s in samples if s["wall"] > truth["imported"] + NAME_DELAY_S}
    assert later == {truth["name"]}, later


def proc_truths(directory):
    recs = {}
    for name in os.listdir(directory):
        if name.endswith(".json"):
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                rec = json.load(f)
            recs[rec["pid"]] = rec
    return recs


def test_process_tree_from_a_shell(python, launch, tmp_path):
    """--subprocesses on a shell: its Python children, grandchildren (behind Python and behind
    another shell) and workers that exit and are respawned, each sampled at every tick of its
    life, every sample under its own process."""
    script = python_target(python, "procs_truth.py")
    shell = launch(["sh", "-c", " ".join(map(str, script)) + ' "$1"; true', "sh"])
    out = tmp_path / "p.jsonl"
    proc = start_pyscope("record", shell.pid, "--subprocesses", "--idle", "--rate", RATE,
                         "--duration", 5, "--format", "json", "-o", out)
    wait_for(lambda: stream_has(out, 10), PYSCOPE_TIMEOUT_S, "samples in the stream")
    os.kill(shell.truth["pid"], signal.SIGUSR1)
    rc, _, err = finish(proc)
    assert rc == 0, err
    assert "followed" in err, err
    lines = json_lines(out)
    samples, tail = lines[1:-1], lines[-1]
    recs = proc_truths(shell.truth["dir"])
    assert {r["role"] for r in recs.values()} >= {"root", "pychild", "pygrand", "shgrand",
                                                  "worker_a", "worker_b"}
    roles = {f"proc_{r['role']}" for r in recs.values()}
    checked, cut = 0, []
    for s in samples:
        rec = recs.get(s["pid"])
        if rec is None or s["wall"] < rec["start"]:
            continue  # before its truth: just forked (its parent's image until exec) or starting
        names = {f["function"] for f in s["frames"]}
        others = (roles - {f"proc_{rec['role']}"}) & names
        assert not others, f"a sample of {rec['role']} holds {others}"
        # Its own function while it runs (a tick's wall time is taken before its reads, so the
        # 200 ms at each end of a life are left out), inside `any(genexpr)` too: at most 1% of
        # samples cut (3.11's generator-chain check leaves a few in a thousand: issue 14).
        if s["tid"] == rec["pid"] and rec["start"] + 0.2 <= s["wall"] <= (rec["end"] or 1e12) - 0.2:
            checked += 1
            if f"proc_{rec['role']}" not in names:
                cut.append((rec["role"], sorted(names)))
    assert checked and len(cut) * 100 <= checked, (len(cut), checked, cut[:3])
    # The root's main thread, alive throughout, is sampled at every tick: its samples are the
    # timeline of ticks the others are held to.
    root = next(r for r in recs.values() if r["role"] == "root")
    timeline = sorted(s["wall"] for s in samples if s["pid"] == root["pid"] and
                      s["tid"] == root["pid"])
    assert close_enough(len(timeline), tail["ticks"])
    first, last = timeline[0], timeline[-1]
    for rec in recs.values():
        lo, hi = max(rec["start"], first), min(rec["end"] or last, last)
        if hi - lo < 0.5:
            continue
        want = sum(1 for w in timeline if lo <= w <= hi)
        got = sum(1 for s in samples if s["pid"] == rec["pid"] and s["tid"] == rec["pid"] and
                  lo <= s["wall"] <= hi)
        print(rec["role"], got, want)
        assert close_enough(got, want), (rec["role"], got, want)


def test_subprocesses_across_exec(python, launch, tmp_path):
    """--subprocesses follows a child through exec(): a Python child that os.execv()s Python
    and a shell that execs Python are each re-opened (new image, new runtime) and sampled under
    their pid, at every tick of the new image's life, every sample its own function."""
    target = launch(python_target(python, "exec_truth.py"))
    truth = target.truth
    out = tmp_path / "x.jsonl"
    proc = start_pyscope("record", target.pid, "--subprocesses", "--idle", "--rate", RATE,
                         "--duration", 3 + 2 * truth["before_s"], "--format", "json", "-o", out)
    rc, _, err = finish(proc)
    assert rc == 0, err
    execs = re.search(r"(\d+) re-opened after exec", err)
    assert execs and int(execs.group(1)) >= 2, err
    recs = {}
    for path in glob.glob(os.path.join(truth["dir"], "*.json")):
        with open(path, encoding="utf-8") as f:
            rec = json.load(f)
        recs[rec["role"]] = rec
    assert set(recs) == {"root", "pyexec_before", "pyexec_after", "shexec_after"}, set(recs)
    assert recs["pyexec_before"]["pid"] == recs["pyexec_after"]["pid"]
    assert recs["shexec_after"]["pid"] == truth["shexec_pid"]
    samples = json_lines(out)[1:-1]
    timeline = sorted(s["wall"] for s in samples if s["pid"] == target.pid and
                      s["tid"] == target.pid)
    last = timeline[-1]
    for role in ("pyexec_before", "pyexec_after", "shexec_after"):
        rec = recs[role]
        lo, hi = rec["start"] + 0.2, min(rec["end"] or last, last) - 0.2
        assert hi - lo >= 0.5, (role, rec, last)
        mine = [s for s in samples if s["pid"] == rec["pid"] and s["tid"] == rec["pid"] and
                lo <= s["wall"] <= hi]
        for s in mine:
            names = {f["function"] for f in s["frames"]}
            assert f"proc_{role}" in names, (role, sorted(names))
        want = sum(1 for w in timeline if lo <= w <= hi)
        assert close_enough(len(mine), want), (role, len(mine), want)


def test_run_subprocesses_of_a_shell_command(python, tmp_path):
    """`run --subprocesses` of a command that is not Python: its Python child is recorded."""
    out = tmp_path / "r.folded"
    cmd = " ".join(map(str, python_target(python, "cpusplit.py"))) + f" {tmp_path / 't.json'}"
    proc = start_pyscope("run", "--subprocesses", "--rate", RATE, "--format", "collapsed",
                         "-o", out, "--", "sh", "-c", cmd + " --seconds 3; true")
    rc, _, err = finish(proc)
    assert rc == 0, err
    roots = collapsed_roots(out.read_text())
    assert roots and all(r.startswith("process ") for r in roots), sorted(roots)
    assert any("alpha" in names for stacks in roots.values() for names, _ in stacks), roots


# --- pprof: gzipped profile.proto, read by a real decoder (protoc --decode_raw) -------------------

def pb_fields(buf):
    """[(field, wire type, value)] of one protobuf message (varint and length-delimited)."""
    out, i = [], 0
    while i < len(buf):
        key, i = pb_varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = pb_varint(buf, i)
        elif wire == 2:
            n, i = pb_varint(buf, i)
            value, i = buf[i:i + n], i + n
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        out.append((field, wire, value))
    return out


def pb_varint(buf, i):
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7f) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def pb_packed(buf):
    out, i = [], 0
    while i < len(buf):
        v, i = pb_varint(buf, i)
        out.append(v)
    return out


def read_pprof(path):
    """(strings, {location id: function name}, [(location ids leaf first, value, labels)])."""
    raw = gzip.decompress(path.read_bytes())
    decoded = subprocess.run(["protoc", "--decode_raw"], input=raw, capture_output=True,
                             timeout=60)
    assert decoded.returncode == 0, decoded.stderr.decode(errors="replace")
    top = pb_fields(raw)
    strings = [v.decode() for f, _, v in top if f == 6]
    assert strings[0] == ""
    functions, locations, samples = {}, {}, []
    for f, _, v in top:
        sub = {}
        if f in (2, 4, 5):
            for k, _, x in pb_fields(v):
                sub.setdefault(k, []).append(x)
        if f == 5:
            functions[sub[1][0]] = strings[sub[2][0]]
        elif f == 4:
            line = dict((k, x) for k, _, x in pb_fields(sub[4][0]))
            locations[sub[1][0]] = line[1]
        elif f == 2:
            labels = {}
            for lab in sub.get(3, []):
                d = {k: x for k, _, x in pb_fields(lab)}
                labels[strings[d[1]]] = strings[d[2]] if 2 in d else d.get(3)
            samples.append((pb_packed(sub[1][0]), pb_packed(sub[2][0])[0], labels))
    names = {loc: functions[fn] for loc, fn in locations.items()}
    # protoc saw as many samples as this reader did
    assert decoded.stdout.decode(errors="replace").count("\n2 {") + \
        decoded.stdout.decode(errors="replace").startswith("2 {") == len(samples)
    return strings, names, samples


def test_pprof_per_thread(threads_target, settled, tmp_path):
    require(shutil.which("protoc"), "protoc (Debian's protobuf-compiler) is missing")
    out = tmp_path / "p.pb.gz"
    ticks = record(threads_target.pid, out, "--format", "pprof")
    _, names, samples = read_pprof(out)
    recs = by_tid(settled)
    all_fns = {r["fn"] for r in recs.values()}
    counts = {}
    for locs, value, labels in samples:
        rec = recs.get(labels.get("thread_id"))
        assert rec is not None, labels
        assert labels["thread"] == rec["names"][-1], (labels, rec["names"])
        check_stack(rec, {names[loc] for loc in locs}, all_fns)
        counts[rec["native_id"]] = counts.get(rec["native_id"], 0) + value
    for rec in steady(settled):
        assert close_enough(counts.get(rec["native_id"], 0), ticks), (rec["names"], counts)


def test_pprof_process_labels(python, launch, tmp_path):
    require(shutil.which("protoc"), "protoc (Debian's protobuf-compiler) is missing")
    target = launch(python_target(python, "spawner.py"))
    out = tmp_path / "sub.pb.gz"
    record(target.pid, out, "--subprocesses", "--format", "pprof")
    _, names, samples = read_pprof(out)
    pids = {target.pid: "parent_work", target.truth["child_pid"]: "child_work"}
    assert {labels["pid"] for _, _, labels in samples} == set(pids)
    for locs, _, labels in samples:
        fns = {names[loc] for loc in locs}
        assert labels["process"].startswith(f"process {labels['pid']} ")
        assert not any(f.startswith("process ") for f in fns), fns  # a label, not a frame
        assert (set(pids.values()) - {pids[labels["pid"]]}).isdisjoint(fns), (labels, fns)
