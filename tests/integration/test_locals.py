"""`pyscope dump --locals` against tests/targets/locals.py, compared with the target's own view.

The target parks threads whose frames hold values of every type pyscope reprs (and some it does
not), and writes, per frame, frame.f_locals as repr prefix, type name, len and id. Rules:
  * the variable names of every frame equal f_locals' keys (unbound ones are absent in both);
  * kinds follow the code object (arguments, co_cellvars, co_freevars);
  * a repr without "..." equals Python's repr exactly; one with "..." was cut there, so the text
    before it is a prefix of Python's repr, and a " (len N)" suffix gives len(value);
  * any other object prints as "<Type at 0x...>" with the object's id and type name.
Runs once per interpreter of the matrix; the launch fixture checks the target stays healthy.
"""

import re

from conftest import RC_OK, python_target, validate_dump_json

OTHER_RE = re.compile(r"^<(.+) at 0x([0-9a-f]+)>$")
LEN_RE = re.compile(r" \(len (\d+)\)$")
# Types whose repr pyscope reproduces (anything else is "<Type at 0x...>").
REPRODUCED = {"NoneType", "bool", "int", "float", "str", "bytes", "tuple", "list", "dict", "set"}


def expected_kind(frame, name):
    if name in frame["args"]:
        return "arg"
    if name in frame["frees"]:
        return "free"
    return "cell" if name in frame["cells"] else "local"


def check_repr(where, var, truth):
    got = var["repr"]
    assert got is not None and not var["unreadable"], f"{where}: unreadable {var}"
    assert len(got) < 320, f"{where}: repr of {len(got)} chars passes the cap"
    if truth["type"] not in REPRODUCED:
        m = OTHER_RE.match(got)
        assert m, f"{where}: {got!r} is not <Type at 0x...>"
        assert int(m.group(2), 16) == truth["id"], f"{where}: {got!r} is not id {truth['id']:#x}"
        assert m.group(1).split(".")[-1] == truth["type"], f"{where}: {got!r} vs {truth['type']}"
        return
    assert var["type"] == truth["type"], f"{where}: type {var['type']} vs {truth['type']}"
    expected = truth["repr"]
    if "..." not in got:
        assert got == expected, f"{where}: {got!r} != {expected!r}"
        return
    prefix = got[:got.index("...")]
    assert expected.startswith(prefix), f"{where}: {got!r} is not a prefix of {expected[:400]!r}"
    m = LEN_RE.search(got)
    if m:
        assert int(m.group(1)) == truth["len"], f"{where}: {got!r} vs len {truth['len']}"


def check_frame(thread_name, tf, jf):
    where = f"{thread_name}:{tf['qualname']}"
    assert jf["qualname"] == tf["qualname"], f"{where}: frame is {jf['qualname']}"
    assert "locals" in jf, f"{where}: no locals in the JSON frame"
    got = {v["name"]: v for v in jf["locals"]}
    assert sorted(got) == sorted(tf["locals"]), f"{where}: names {sorted(got)}"
    for name, truth in tf["locals"].items():
        var = got[name]
        assert var["kind"] == expected_kind(tf, name), f"{where}.{name}: kind {var['kind']}"
        check_repr(f"{where}.{name}", var, truth)
    return len(got)


def test_locals_match_f_locals(python, launch, pyscope, tmp_path):
    target = launch(python_target(python, "locals.py"))
    result = pyscope("dump", "--json", "--locals", target.pid)
    assert result.rc == RC_OK, result
    out = tmp_path / "dump.json"
    out.write_text(result.stdout, encoding="utf-8")
    validate_dump_json(out)
    threads = {t["native_id"]: t for t in result.json()["threads"]}
    checked = 0
    for tt in target.truth["threads"]:
        jt = threads[tt["native_id"]]
        # Both innermost first; the truth starts at park() (see locals.py).
        assert len(jt["frames"]) == len(tt["frames"]), f"{tt['name']}: frame counts differ"
        for tf, jf in zip(tt["frames"], jt["frames"]):
            checked += check_frame(tt["name"], tf, jf)
    assert checked >= 60, f"only {checked} variables compared"


def test_locals_text(python, launch, pyscope):
    target = launch(python_target(python, "locals.py"))
    result = pyscope("dump", "--locals", "--no-source", target.pid)
    assert result.rc == RC_OK, result
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "arg   a = 1" in lines
    assert "cell  shared = 'captured'" in lines
    assert "free  shared = 'captured'" in lines
    assert "local many = [0, 1, 2, 3, 4, 5, 6, 7, ...] (len 100000)" in lines
    assert "local rec = [1, [...]]" in lines


def test_no_locals_by_default(python, launch, pyscope):
    target = launch(python_target(python, "locals.py"))
    result = pyscope("dump", "--json", target.pid)
    assert result.rc == RC_OK, result
    assert all("locals" not in f for t in result.json()["threads"] for f in t["frames"])
