"""Terminal escape injection: a target whose exception type, message, file and function names
(and a thread name) hold ESC, BEL, CR and a C1 CSI must not get one raw control byte into any
text output, and its JSON must carry them escaped (issue 19 item 3). So must a module-level
container's name in growth's table.

Target: tests/targets/hostile_names.py (raises and swallows its hostile exception in a loop,
one thread parked in the hostile function). One interpreter: the escaping is pyscope's own.
"""

import json

import pytest

from conftest import find_python, python_target

CONTROLS = [b"\x1b", b"\x07", b"\r", b"\xc2\x9b"]


# An argument of the target's command line with the same bytes (dump --json, ps --json).
ARG = "arg\x1b[31m\x07\r\u009b2J"


@pytest.fixture
def hostile(launch):
    return launch(python_target(find_python("3.12"), "hostile_names.py"), extra=(ARG,))


def raw_controls(data):
    return [c for c in CONTROLS if c in data]


def exceptions(pyscope, target, *args):
    rc, out, err = pyscope("exceptions", "--duration", 1, "--max-rate", 50, *args, target.pid)
    assert rc == 0, err
    return out


def test_exceptions_text_and_summary_escape_control_bytes(hostile, pyscope):
    for args in ((), ("--stack",), ("--summary",)):
        out = exceptions(pyscope, hostile, *args)
        assert "\\x1b[31m" in out and "msg" in out, (args, out[:400])
        assert not raw_controls(out.encode()), (args, out[:400])
    table = out[out.index("count  type"):]
    assert "Evil\\x1b[31m" in table and "fn\\x1b" in table, table


def test_exceptions_log_lines_are_info_not_warnings(hostile, pyscope):
    # the start and stop lines are information: only a warning is labelled "warning: "
    rc, _, err = pyscope("exceptions", "--duration", 1, "--max-rate", 50, hostile.pid)
    assert rc == 0, err
    assert "pyscope: tracing exceptions of pid" in err and "pyscope: stopped (" in err, err
    assert "warning: tracing" not in err and "warning: stopped" not in err, err


def test_exceptions_json_carries_them_escaped(hostile, pyscope):
    out = exceptions(pyscope, hostile, "--json")
    assert not raw_controls(out.encode()), out[:400]
    raises = [r for r in map(json.loads, out.splitlines()) if r["event"] == "raise"]
    assert raises, out[:400]
    want = hostile.truth["hostile"]
    assert raises[0]["type"].endswith("Evil" + want)
    assert raises[0]["message"] == "msg" + want
    assert raises[0]["frames"][0]["function"] == "fn" + want
    assert want in raises[0]["frames"][0]["file"]


def test_dump_and_record_text_escape_control_bytes(hostile, pyscope, tmp_path):
    rc, out, err = pyscope("dump", hostile.pid)
    assert rc == 0, err
    assert "fn\\x1b[31m" in out, out
    assert not raw_controls(out.encode()), out
    folded = tmp_path / "p.folded"
    rc, _, err = pyscope("record", hostile.pid, "--rate", 200, "--duration", 1, "--idle",
                         "--format", "collapsed", "-o", folded)
    assert rc == 0, err
    data = folded.read_bytes()
    assert b"fn" in data and not raw_controls(data), data[:400]


def test_growth_table_escapes_control_bytes(hostile, pyscope):
    rc, out, err = pyscope("growth", "--interval", 0.2, "--duration", 2, "--report", 0,
                           "--top", 0, hostile.pid)
    assert rc == 0, err
    assert "cache\\x1b[31m" in out, out
    assert not raw_controls(out.encode()), out
    rc, out, err = pyscope("growth", "--interval", 0.2, "--duration", 1, "--report", 0,
                           "--top", 0, "--json", hostile.pid)
    assert rc == 0, err
    names = [c["name"] for line in out.splitlines() for c in json.loads(line)["containers"]]
    assert any(n.endswith("cache" + hostile.truth["hostile"]) for n in names), names


def test_dump_json_escapes_c1_controls(hostile, pyscope):
    rc, out, err = pyscope("dump", "--json", hostile.pid)
    assert rc == 0, err
    assert not raw_controls(out.encode()), out[:600]
    doc = json.loads(out)
    want = hostile.truth["hostile"]
    assert doc["cmdline"].endswith(ARG), doc["cmdline"]
    names = [t["name"] for t in doc["threads"]]
    assert "thread" + want in names, names
    functions = [f["function"] for t in doc["threads"] for f in t["frames"]]
    assert "fn" + want in functions, functions


def ps_entry(pyscope, pid):
    rc, out, err = pyscope("ps", "--json")
    assert rc == 0, err
    assert not raw_controls(out.encode()), out[:600]
    entries = [p for p in json.loads(out)["processes"] if p["pid"] == pid]
    assert len(entries) == 1, out[:600]
    return entries[0]


def test_ps_json_escapes_c1_controls(hostile, pyscope):
    assert ps_entry(pyscope, hostile.pid)["cmdline"].endswith(ARG)


def test_ps_json_replaces_bytes_that_are_not_utf8(launch, pyscope):
    # "\udcff" is the byte 0xff in an argument (os.fsencode): not UTF-8 anywhere
    target = launch(python_target(find_python("3.12"), "hostile_names.py"),
                    extra=("bad\udcff" + ARG,))
    assert ps_entry(pyscope, target.pid)["cmdline"].endswith("bad?" + ARG)
