"""`pyscope growth` against a live target whose module-level dict grows at a known rate.

tests/targets/growth.py keeps len(LEAK) == int(RATE * seconds since start) (a grower thread that
catches up after any delay, so the rate is exact however it is scheduled) beside stable
containers of about the same length, and writes their len() and sys.getsizeof() as its truth.
SIGUSR1 replaces LEAK by a new dict and deletes the module growth_doomed from sys.modules.
The launch fixture checks after each test that the target is alive, not stopped and not traced.
"""

import json
import os
import select
import signal
import subprocess
import time

import pytest

from conftest import PYSCOPE_BIN, RC_OK, PYSCOPE_TIMEOUT_S, python_target

RATE = 200.0               # items per second added to LEAK
RATE_TOLERANCE = 0.05      # relative


def growth_target(python, launch):
    return launch(python_target(python, "growth.py"), extra=[RATE])


def lines_json(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def rows_by_name(doc):
    rows = {}
    for row in doc["containers"]:
        rows.setdefault(row["name"], []).append(row)
    return rows


def test_growing_dict_is_first_with_its_rate(python, launch, pyscope):
    target = growth_target(python, launch)
    result = pyscope("growth", "--json", "--interval", "0.1", "--duration", "3", "--report", "0",
                     "--top", "0", target.pid)
    assert result.rc == RC_OK, result
    docs = lines_json(result.stdout)
    assert [d["event"] for d in docs] == ["summary"], result
    summary = docs[0]
    first = summary["containers"][0]
    assert first["name"] == "__main__.LEAK", result
    assert int(first["address"], 16) == target.truth["leak_address"]
    want = RATE * 60
    assert abs(first["growth_per_min"] - want) <= RATE_TOLERANCE * want, first
    assert first["points"] >= 20
    rows = rows_by_name(summary)
    for name, truth in target.truth["stable"].items():
        assert name in rows, f"{name} not reported: {sorted(rows)[:40]}"
        row = rows[name][0]
        assert row["type"] == truth["type"], row
        assert row["length"] == truth["length"], row
        assert row["growth_per_min"] == 0.0, row
        if "sizeof" in truth:
            assert row["size_bytes"] == truth["sizeof"], row
            assert int(row["address"], 16) == truth["address"], row
    assert summary["stats"]["torn"] == 0
    assert summary["stats"]["samples"] >= 25


def test_text_table(python, launch, pyscope):
    target = growth_target(python, launch)
    result = pyscope("growth", "--interval", "0.1", "--duration", "1", "--report", "0",
                     "--top", "5", target.pid)
    assert result.rc == RC_OK, result
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"summary: pid {target.pid}, ")
    assert lines[1].split() == ["GROWTH/MIN", "LENGTH", "SIZE", "TYPE", "NAME"]
    assert len(lines) == 2 + 5
    rate, length, _size, _unit, kind, name = lines[2].split()
    assert (kind, name) == ("dict", "__main__.LEAK"), result
    assert float(rate) > 0 and int(length) > 0


def read_json_line(proc, deadline):
    """The next JSON line of a running pyscope, or None at EOF; fails past the deadline."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            proc.kill()
            pytest.fail("pyscope growth wrote no report in time", pytrace=False)
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            line = proc.stdout.readline()
            return json.loads(line) if line else None


def test_replaced_dict_and_deleted_module(python, launch):
    """Mid-watch, LEAK is replaced and a module deleted: the old ones go, the new LEAK leads."""
    target = growth_target(python, launch)
    before = target.truth
    argv = [str(PYSCOPE_BIN), "growth", "--json", "--interval", "0.1", "--rescan", "0.3",
            "--report", "0.3", "--duration", "3", "--top", "0", str(target.pid)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + PYSCOPE_TIMEOUT_S
    docs = [read_json_line(proc, deadline)]
    assert docs[0] is not None and docs[0]["event"] == "report", proc.stderr.read()
    os.kill(target.pid, signal.SIGUSR1)
    after = target.wait_truth(1)
    while (doc := read_json_line(proc, deadline)) is not None:
        docs.append(doc)
    assert proc.wait(timeout=PYSCOPE_TIMEOUT_S) == RC_OK, proc.stderr.read()
    proc.stderr.close()
    proc.stdout.close()

    old_leak, new_leak = before["leak_address"], after["leak_address"]
    doomed = before["stable"]["growth_doomed.ITEMS"]["address"]
    assert old_leak != new_leak
    seen_gone = set()
    for doc in docs:
        for row in doc["containers"]:
            if row["gone"]:
                seen_gone.add(int(row["address"], 16))
    assert old_leak in seen_gone, "the replaced LEAK was never reported gone"
    assert doomed in seen_gone, "the deleted module's list was never reported gone"

    summary = docs[-1]
    assert summary["event"] == "summary"
    first = summary["containers"][0]
    assert first["name"] == "__main__.LEAK" and not first["gone"], first
    assert int(first["address"], 16) == new_leak
    want = RATE * 60
    assert abs(first["growth_per_min"] - want) <= 2 * RATE_TOLERANCE * want, first
    live = [r for r in summary["containers"] if not r["gone"]]
    assert not any(r["name"].startswith("growth_doomed.") for r in live)
    assert summary["stats"]["gone"] >= 2
