"""Every thread, every frame (issue 18): cases other debuggers handle, against real processes.

tests/targets/oddities.py holds an OS thread started by C (tests/targets/ext/cthread.c, built
here with cc) that never ran Python and is named with pthread_setname_np, a Python thread whose
OS name differs from its Python name, and a local whose type name cannot be read; it writes the
native ids and names itself.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import RC_ERROR, RC_NOTPY, RC_OK, RC_PARTIAL, TARGETS, python_target, require, validate_dump_json

CTHREAD_SRC = TARGETS / "ext" / "cthread.c"


@pytest.fixture
def oddities(python, launch, tmp_path):
    cc = shutil.which("cc")
    require(cc is not None, "no C compiler (cc) to build the test library")
    lib = tmp_path / "cthread.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-fno-optimize-sibling-calls", "-pthread",
                    "-o", str(lib), str(CTHREAD_SRC)], check=True, timeout=60)
    return launch(python_target(python, "oddities.py"), extra=[lib])


def by_native_id(doc):
    return {t["native_id"]: t for t in doc["threads"]}


def test_c_thread_is_listed_with_its_native_stack(pyscope, oddities, tmp_path):
    truth = oddities.truth
    result = pyscope("dump", "--json", "--native", oddities.pid)
    assert result.rc == RC_OK, result
    out = tmp_path / "dump.json"
    out.write_text(result.stdout, encoding="utf-8")
    validate_dump_json(out)
    c = by_native_id(result.json())[truth["c_native_id"]]
    assert c["python"] is False and c["thread_id"] is None and c["frames"] == []
    assert c["os"]["name"] == truth["c_os_name"]
    symbols = [f["symbol"] for f in c["native"]]
    assert "cthread_wait" in symbols and "cthread_park" in symbols, symbols
    assert symbols.index("cthread_wait") < symbols.index("cthread_park"), symbols
    text = pyscope("dump", "--no-source", oddities.pid)
    assert text.rc == RC_OK, text
    assert f'OS thread {truth["c_native_id"]} (OS name "c-worker") [no Python thread state]' \
        in text.stdout, text.stdout


def test_os_thread_names_beside_python_names(pyscope, oddities):
    truth = oddities.truth
    result = pyscope("dump", "--json", oddities.pid)
    assert result.rc == RC_OK, result
    threads = by_native_id(result.json())
    py = threads[truth["py_native_id"]]
    assert (py["name"], py["os"]["name"]) == (truth["py_name"], truth["py_os_name"])
    assert threads[truth["c_native_id"]]["os"]["name"] == truth["c_os_name"]
    text = pyscope("dump", "--no-source", oddities.pid)
    assert f'(native {truth["py_native_id"]}) "py-worker" (OS name "os-worker")' in text.stdout


def test_unreadable_type_is_unreadable(pyscope, oddities, tmp_path):
    result = pyscope("dump", "--json", "--locals", oddities.pid)
    assert result.rc == RC_OK, result
    out = tmp_path / "dump.json"
    out.write_text(result.stdout, encoding="utf-8")
    validate_dump_json(out)
    py = by_native_id(result.json())[oddities.truth["py_native_id"]]
    ghost = [v for f in py["frames"] for v in f.get("locals", []) if v["name"] == "ghost"]
    assert ghost == [{"name": "ghost", "kind": "local", "type": None, "repr": None,
                      "unreadable": True}]


def test_run_non_python_command_is_refused_while_it_runs(pyscope, tmp_path):
    # Promptness without a clock: the command exits after 5 s, well inside the 10 s pyscope
    # allows a runtime to appear, so a verdict naming the process came while it was alive
    # (waiting for it to end gives "exited before its Python runtime could be read").
    result = pyscope("run", "-o", tmp_path / "profile.svg", "--", "sleep", "5")
    assert result.rc == RC_NOTPY, result
    assert "(sleep) is not Python" in result.stderr, result.stderr


def eval_runs(doc, thread):
    """(interpreter id, innermost co_name of the run) per eval call, innermost first."""
    runs = []
    for nf in thread["native"]:
        if nf["python_frame"] is not None:
            runs.append((thread["interpreter_id"], thread["frames"][nf["python_frame"]]))
        elif nf["nested_thread"] is not None:
            other = doc["threads"][nf["nested_thread"]]
            runs.append((other["interpreter_id"], other["frames"][nf["nested_frame"]]))
    return [(interp, frame["function"]) for interp, frame in runs]


def test_nested_interpreters_merge_in_order(python, launch, pyscope, tmp_path):
    target = launch(python_target(python, "subinterp.py"))
    truth = target.truth
    result = pyscope("dump", "--json", "--native", target.pid)
    assert result.rc == RC_OK, result
    out = tmp_path / "dump.json"
    out.write_text(result.stdout, encoding="utf-8")
    validate_dump_json(out)
    doc = result.json()
    # The runner's OS thread runs the subinterpreter's <module> from inside runner(): one
    # thread state per interpreter, both showing the same C stack, merged innermost first.
    runner = next(t["native_id"] for t in truth["threads"] if t["function"] == "<module>")
    views = [t for t in doc["threads"] if t["native_id"] == runner]
    assert len(views) == 2, [t["name"] for t in views]
    for view in views:
        assert view["native_error"] is None, view["native_error"]
        runs = eval_runs(doc, view)
        assert runs[0] == (truth["sub_interp_id"], "<module>"), runs
        assert (truth["main_interp_id"], "runner") in runs[1:], runs
    text = pyscope("dump", "--native", "--no-source", target.pid)
    assert text.rc == RC_OK, text
    assert "cannot merge" not in text.stdout
    assert f"(nested: interpreter {truth['sub_interp_id']}'s thread state" in text.stdout


# --- a fast recursion: reads that tear ----------------------------------------------------------

TEAR_TRIES = 200  # dumps tried until the recurser's stack tears under a read (~1 in 10 here)


@pytest.fixture
def recurser(python, launch):
    return launch(python_target(python, "recurse.py"))


def dump_until(pyscope, target, args, torn, tries=TEAR_TRIES):
    """Dump until torn(result) holds; every result seen is returned (the last one torn)."""
    seen = []
    for _ in range(tries):
        result = pyscope("dump", *args, target.pid)
        seen.append(result)
        if torn(result):
            return seen
    pytest.skip(f"the recurser's stack never tore in {tries} reads (an idle machine?)")


def on_recurser_stack(names, truth):
    """names (innermost first) is the outer part of climb* + spin, run, _bootstrap..."""
    stable = truth["stable"]
    if len(names) <= len(stable):
        return names == stable[len(stable) - len(names):]
    return names[-len(stable):] == stable and set(names[:-len(stable)]) == {truth["moving"]}


def recurser_thread(result, truth):
    return next(t for t in result.json()["threads"] if t["native_id"] == truth["native_id"])


def test_torn_reads_keep_the_stable_outer_frames(pyscope, recurser):
    truth = recurser.truth
    seen = dump_until(pyscope, recurser, ("--json", "--retries", "1"),
                      lambda r: recurser_thread(r, truth)["status"] != "ok")
    for result in seen:
        t = recurser_thread(result, truth)
        names = [f["function"] for f in t["frames"]]
        # Never nothing: the outer frames stand still while climb() recurses above them (spin
        # moves too, between two climbs), so a torn read keeps an outer part of the stack.
        assert names, (t["status"], t["error"])
        assert on_recurser_stack(names, truth), (t["status"], t["error"], names)
        assert result.rc == (RC_OK if t["status"] == "ok" else RC_PARTIAL), result
    torn = recurser_thread(seen[-1], truth)
    assert torn["status"] == "partial", torn
    assert f"only the {len(torn['frames'])} outer frames" in torn["error"], torn["error"]


def test_torn_note_is_printed_once(pyscope, recurser):
    seen = dump_until(pyscope, recurser, ("--retries", "1", "--no-source"),
                      lambda r: "note:" in r.stdout)
    block = seen[-1].stdout.split('"recurser"', 1)[1].split("\nThread ", 1)[0]
    assert block.count("kept changing") == 1, block


def test_blocking_auto_stops_when_reads_tear(pyscope, recurser):
    truth = recurser.truth
    seen = dump_until(pyscope, recurser, ("--json", "--blocking=auto", "--retries", "1"),
                      lambda r: r.json()["blocking_auto"])
    for result in seen:
        t = recurser_thread(result, truth)
        assert result.rc == RC_OK and t["status"] == "ok", (t["status"], t["error"])
        assert result.json()["blocking"] == result.json()["blocking_auto"]
        names = [f["function"] for f in t["frames"]]
        assert names[-4:] == truth["stable"] and on_recurser_stack(names, truth), names
    text = dump_until(pyscope, recurser, ("--blocking=auto", "--retries", "1", "--no-source"),
                      lambda r: "--blocking=auto" in r.stdout)
    assert "threads stopped (--blocking=auto: reads without stopping kept tearing)" in \
        text[-1].stdout


# --- a core whose binary moved ------------------------------------------------------------------

DEBIAN_PYTHON = Path("/usr/bin/python3.11")


def test_core_of_a_moved_binary(launch, pyscope, tmp_path):
    """gcore of a copied Debian python3.11 whose folder is renamed before the dump."""
    gcore = shutil.which("gcore")
    require(gcore is not None, "gcore (gdb) is not installed")
    require(DEBIAN_PYTHON.is_file(), f"{DEBIAN_PYTHON} (Debian's python3.11) is missing")
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    shutil.copy2(DEBIAN_PYTHON, old / "python3.11")
    target = launch([old / "python3.11", "-I", TARGETS / "park.py"])
    subprocess.run([gcore, "-o", str(tmp_path / "core"), str(target.pid)], capture_output=True,
                   check=True, timeout=120)
    core = tmp_path / f"core.{target.pid}"
    old.rename(new)
    # --exe serves the native unwinding too: every thread's C stack merges with its frames.
    result = pyscope("dump", "--native", "--json", "--core", core, "--exe", new / "python3.11")
    assert result.rc == RC_OK, result
    threads = result.json()["threads"]
    assert threads and all(t["native_error"] is None for t in threads), threads
    assert all(any(f["python_frame"] is not None for f in t["native"]) for t in threads)
    # A sysroot holding the executable but not the libraries is refused, naming what is missing.
    recorded = tmp_path / "root" / old.relative_to("/") / "python3.11"
    recorded.parent.mkdir(parents=True)
    shutil.copy2(new / "python3.11", recorded)
    refused = pyscope("dump", "--native", "--core", core, "--lib-search-root", tmp_path / "root")
    assert refused.rc == RC_ERROR, refused
    assert f"but {tmp_path / 'root'}/" in refused.stderr and "does not exist" in refused.stderr
