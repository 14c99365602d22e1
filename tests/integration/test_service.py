"""`pyscope exceptions` on a service: the rare error among the framework's own raises, within a
budget (issue 13 items 3-4, issue 19 item 10).

1. A real FastAPI + uvicorn app (scripts/bench_service_app.py, Debian's python3-fastapi and
   python3-uvicorn on Debian's /usr/bin/python3.11; scripts/setup installs them, and CI=true
   fails when they are missing): its swallowed AttributeError is reported with message, raise
   site and handler among the raises of uvicorn, h11, starlette and anyio, and the site's count
   is the app's own counter (--max-rate 0: every raise stops).
2. A rare site (KeyError, 1/s, tests/targets/rare_storm.py) beside a storm of 10,000 ValueError/s
   from another site, under the default budget: the rare site is in the "sites" record with its
   count within 20% of what the target counted, and the storm's estimate (see the bound). "Within
   10 s" is by construction, not by a clock: the trace spans the target's own 10 rare raises
   (it starts raising on SIGUSR1 once pyscope attached and stops after the tenth). The budget's
   own accounting stays within its share of the target's CPU time.
"""

import http.client
import json
import os
import re
import signal
import subprocess
import threading

import pytest

from conftest import ROOT, python_target, require, text_trace_round
from test_exceptions import Tracer, stop_record

APP = ROOT / "scripts" / "bench_service_app.py"
DEBIAN_PY = "/usr/bin/python3.11"
PATHS = ["/report?n=3", "/cpu?n=200", "/async"]


def sites_record(lines):
    recs = [e for e in lines if e["event"] == "sites"]
    assert len(recs) == 1, lines[-3:]
    return recs[0]["sites"]


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    assert resp.status == 200 and body.get("ok"), (path, resp.status, body)
    return body


@pytest.mark.parametrize("mechanism", ["perf", "bpf"])
def test_fastapi_swallowed_error_found_among_framework_raises(launch, mechanism):
    probe = subprocess.run([DEBIAN_PY, "-c", "import fastapi, uvicorn"], capture_output=True,
                           text=True, check=False) if os.access(DEBIAN_PY, os.X_OK) else None
    require(probe is not None and probe.returncode == 0,
            f"{DEBIAN_PY} with python3-fastapi and python3-uvicorn (scripts/setup installs "
            f"them): {probe.stderr.strip()[-200:] if probe else 'no ' + DEBIAN_PY}")
    app = launch([DEBIAN_PY, "-I", str(APP)])
    port = app.truth["port"]
    # No limit (--max-rate 0: no budget, no token bucket): every raise stops (perf) or is read in
    # the kernel (bpf), so each is followed to its handler and the site's count is exact (the budget's sampling is the next test's; at
    # 1% this nearly idle app affords ~25 stops in the run, docs/exceptions.md).
    tracer = Tracer(app.pid, "--max-rate", 0, "--mechanism", mechanism)
    before = get(port, "/counts")["swallowed"]
    clients = [threading.Thread(target=lambda k=k: [get(port, PATHS[(k + i) % 3])
                                                   for i in range(30)]) for k in range(4)]
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    after = get(port, "/counts")["swallowed"]
    rc, err = tracer.finish(signal.SIGINT)
    assert rc == 0, err
    raises = [e for e in tracer.lines if e["event"] == "raise"]
    sites = sites_record(tracer.lines)
    print(f"swallowed {after - before}, stop {stop_record(tracer.lines)}\n"
          f"sites {[(s['type'], s['function'], s['seen'], s['estimate']) for s in sites]}")
    ours = [e for e in raises if e["type"] == "AttributeError" and e["frames"] and
            e["frames"][0]["file"].endswith("bench_service_app.py")]
    assert ours, [(e["type"], e["frames"][:1]) for e in raises[:20]]
    for ev in ours:
        assert ev["message"] == "'Order' object has no attribute 'weight'", ev
        assert ev["frames"][0]["file"].endswith("bench_service_app.py"), ev["frames"][0]
        assert "compute_weighted_average" in [f["function"] for f in ev["frames"][:3]], ev
    # Its handler: `report`'s except (the call line inside its try).
    ends = {e["seq"]: e for e in tracer.lines if e["event"] == "handled"}
    handlers = {(ends[e["seq"]]["handled_at"]["function"], ends[e["seq"]]["fate_unknown"])
                for e in ours if e["seq"] in ends}
    assert handlers == {("report", False)}, handlers
    framework = {e["frames"][0]["file"] for e in raises if e not in ours and e["frames"]}
    assert any("/dist-packages/" in f or "/asyncio/" in f for f in framework), framework
    site = [s for s in sites if s["type"] == "AttributeError" and s["file"].endswith("_app.py")]
    assert len(site) == 1, site
    assert site[0]["estimate"] == after - before, (site, before, after)


@pytest.mark.breakpoints  # perf tracing: skipped where breakpoints do not fire
def test_rare_site_beside_a_storm_is_seen_with_its_count(python, launch):
    target = launch(python_target(python, "rare_storm.py"), extra=(10000, 10))
    tracer = Tracer(target.pid, "--mechanism", "perf")  # the ptrace budget's estimates
    os.kill(target.pid, signal.SIGUSR1)
    truth = target.wait_truth(1)
    rc, err = tracer.finish(signal.SIGINT)
    assert rc == 0, err
    sites = {(s["type"], s["function"]): s for s in sites_record(tracer.lines)}
    stop = stop_record(tracer.lines)
    print(f"truth {truth}\nsites {sites}\nstop {stop}")
    rare, storm = sites.get(("KeyError", "rare_site")), sites.get(("ValueError", "storm_site"))
    assert rare is not None, sites
    assert abs(rare["estimate"] - truth["rare"]) <= 0.2 * truth["rare"], (rare, truth)
    assert storm is not None and storm["estimated"], storm
    # Measured on a 2-core machine at load 20-25: +30% to +52% (catch-up of a paced storm
    # inside counting windows); 0-10% when the machine is quiet. Bound: 1.6x.
    assert 0.6 * truth["storm"] <= storm["estimate"] <= 1.6 * truth["storm"], (storm, truth)
    # What was spent stays near the share of the target's CPU time (plus the first credit).
    # The charge per stop is a model (measured hold + 35 us); on a loaded 2-core machine the
    # spend was seen up to 1.6x the share (1.0x quiet), so the bound is 2x.
    assert stop["budget"] == pytest.approx(0.01)
    assert stop["budget_spent_s"] <= 0.02 * max(stop["target_cpu_s"], 0.05 * truth["seconds"]) \
        + 0.01, stop


def test_rare_site_beside_a_storm_bpf_counts_every_raise(python, launch):
    """bpf: the kernel counts every raise per site, so both sites' counts are exact, whatever
    records were sampled."""
    target = launch(python_target(python, "rare_storm.py"), extra=(10000, 10))
    tracer = Tracer(target.pid, "--mechanism", "bpf")
    os.kill(target.pid, signal.SIGUSR1)
    truth = target.wait_truth(1)
    rc, err = tracer.finish(signal.SIGINT)
    assert rc == 0, err
    sites = {(s["type"], s["function"]): s for s in sites_record(tracer.lines)}
    rare, storm = sites.get(("KeyError", "rare_site")), sites.get(("ValueError", "storm_site"))
    assert rare is not None and storm is not None, sites
    assert (rare["estimate"], rare["estimated"]) == (truth["rare"], False), (rare, truth)
    assert (storm["estimate"], storm["estimated"]) == (truth["storm"], False), (storm, truth)


def test_bpf_over_the_budget_samples_records_and_counts_every_raise(python, launch):
    """bpf over the budget (at any rate): the cost (the program, its traps and pyscope's own CPU
    per record) is held to the budget by sampling the records (sampled_every > 1, raises not
    reported), while the kernel's per-site counts stay exact (the old program sent a record per
    raise: every raise reported, no sampling), and the rare site's first raise gets its record
    even when a slow reader lets the ring fill (a quarter of it is kept for first raises)."""
    target = launch(python_target(python, "rare_storm.py"), extra=(100000, 4))
    tracer = Tracer(target.pid, "--mechanism", "bpf", "--budget", "0.1")
    os.kill(target.pid, signal.SIGUSR1)
    truth = target.wait_truth(1)
    rc, err = tracer.finish(signal.SIGINT)
    assert rc == 0, err
    stop = stop_record(tracer.lines)
    print(f"truth {truth}\nstop {stop}")
    assert stop["not_reported"] > 0, stop  # sampled_every is back to 1 once the storm ended
    assert stop["reported"] < stop["raises"], stop
    sites = {(s["type"], s["function"]): s for s in sites_record(tracer.lines)}
    rare, storm = sites.get(("KeyError", "rare_site")), sites.get(("ValueError", "storm_site"))
    assert rare is not None and storm is not None, sites
    assert (storm["estimate"], storm["estimated"]) == (truth["storm"], False), (storm, truth)
    assert (rare["estimate"], rare["estimated"]) == (truth["rare"], False), (rare, truth)
    assert rare["reported"] >= 1, rare  # a site's first raise always gets its record


def test_text_summary_says_what_tracing_took(python, launch):
    """The text summary weighs tracing against the budget: a storm of 100,000 raises traced with
    bpf (a uprobe trap per frame each raise crosses, which the budget does not limit) took the
    target at least 1% of its CPU, and the summary says how much and what the budget was."""
    target = launch(python_target(python, "rare_storm.py"), extra=(100000, 4))

    def storm():
        os.kill(target.pid, signal.SIGUSR1)
        return target.wait_truth(1)
    _, rc, _, err = text_trace_round(["--mechanism", "bpf", target.pid], storm)
    assert rc == 0, err
    took = re.search(r"; tracing took about (\d+)% of the target's CPU time \(budget 1%", err)
    assert took and int(took.group(1)) >= 1, err


@pytest.mark.breakpoints  # perf tracing: skipped where breakpoints do not fire
def test_rare_raise_waits_for_nothing_in_its_own_thread(python, launch):
    """The rare thread's raises all stop (it is pinned): exact, not an estimate."""
    target = launch(python_target(python, "rare_storm.py"), extra=(2000, 3))
    tracer = Tracer(target.pid, "--mechanism", "perf")  # the ptrace budget's estimates
    os.kill(target.pid, signal.SIGUSR1)
    truth = target.wait_truth(1)
    rc, err = tracer.finish(signal.SIGINT)
    assert rc == 0, err
    rare = [s for s in sites_record(tracer.lines) if s["type"] == "KeyError"]
    assert len(rare) == 1 and rare[0]["seen"] == truth["rare"] == 3, rare
    assert not rare[0]["estimated"] and rare[0]["estimate"] == 3, rare
