"""`pyscope dump` of a process with a subinterpreter (tests/targets/subinterp.py).

The target parks a thread in the main interpreter and two in a subinterpreter (the thread that
runs the subinterpreter's code, which also has a main-interpreter thread state, and a named
thread it started), and writes each one's native id, ident, name, innermost function and
interpreter id as seen from inside its own interpreter. pyscope must list every one of them
under the right interpreter id, name the subinterpreter's thread from that interpreter's own
threading registry, and keep each interpreter's threads together.
"""

import itertools

from conftest import RC_OK, python_target, validate_dump_json


def test_threads_of_every_interpreter(python, launch, pyscope, tmp_path):
    target = launch(python_target(python, "subinterp.py"))
    truth = target.truth
    assert truth["sub_interp_id"] != truth["main_interp_id"]
    result = pyscope("dump", "--json", target.pid)
    assert result.rc == RC_OK, result
    out = tmp_path / "dump.json"
    out.write_text(result.stdout, encoding="utf-8")
    validate_dump_json(out)
    threads = result.json()["threads"]
    by_key = {(t["native_id"], t["interpreter_id"]): t for t in threads}
    for tt in truth["threads"]:
        key = (tt["native_id"], tt["interp_id"])
        assert key in by_key, f"{tt} missing from {sorted(by_key)}"
        jt = by_key[key]
        assert jt["thread_id"] == tt["ident"]
        assert jt["frames"], f"{tt['function']}: no frames"
        assert jt["frames"][0]["function"] == tt["function"]
        if tt["name"]:
            assert jt["name"] == tt["name"]
    # Grouped: each interpreter's threads form one run.
    runs = [k for k, _ in itertools.groupby(t["interpreter_id"] for t in threads)]
    assert len(runs) == len(set(runs)) == 2, runs


def test_text_names_the_interpreter(python, launch, pyscope):
    target = launch(python_target(python, "subinterp.py"))
    sub = target.truth["sub_interp_id"]
    result = pyscope("dump", "--no-source", target.pid)
    assert result.rc == RC_OK, result
    headers = [line for line in result.stdout.splitlines() if line.startswith("Thread ")]
    tagged = [h for h in headers if f"[interpreter {sub}]" in h]
    assert len(tagged) == 2, headers
    assert any('"sub-worker"' in h for h in tagged), tagged
