"""`pyscope exceptions --format collapsed|flamegraph|speedscope -o FILE`: where exceptions come
from, as the raise stacks weighted by count (issue 13 item 6).

Ground truth: tests/targets/raiser.py raises a known set of exceptions per round (SIGUSR1) in
its main thread and in a new thread, and writes each one's type and stack (function names,
innermost first). With --max-rate 0 every raise is reported, so the profile's stacks that end
in raiser.py must be exactly the truth's stacks, each weighted by how often it was raised, and
the weights must sum to the raises pyscope says it reported.
"""

import collections
import json
import re
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT, VALIDATE_JSON, find_python, python_target, text_trace_round

SPEEDSCOPE_SCHEMA = ROOT / "docs" / "schema" / "speedscope.schema.json"
SVG = "{http://www.w3.org/2000/svg}"


def traced_round(target, fmt, out):
    """Trace one raiser round into `out` as `fmt`; returns (truth, raises reported)."""
    def one_round():
        generation = target.truth["generation"] + 1
        target.proc.send_signal(signal.SIGUSR1)
        return target.wait_truth(generation)
    truth, rc, stdout, stderr = text_trace_round(
        ["--max-rate", "0", "--format", fmt, "-o", out, target.pid], one_round)
    assert rc == 0, stderr
    assert stdout == "", "--format replaces the feed"
    reported = int(re.search(r"(\d+) raises reported", stderr).group(1))
    return truth, reported


def expected_stacks(truth):
    """Counter of (function names outermost first, ..., "raise TYPE") over the truth's raises."""
    return collections.Counter(tuple(reversed(x["stack"])) + (f"raise {x['type']}",)
                               for x in truth["events"])


def folded(path):
    """[(function names, weight)] and the raising frames' files of a collapsed file."""
    for line in path.read_text().splitlines():
        stack, _, weight = line.rpartition(" ")
        frames = stack.split(";")
        names = [f.rsplit(" (", 1)[0] for f in frames]
        files = [f.rsplit(" (", 1)[1].rsplit(":", 1)[0] if " (" in f else "" for f in frames]
        yield names, files, int(weight)


@pytest.fixture
def raiser(python, launch):
    return launch(python_target(python, "raiser.py"))


def test_collapsed_stacks_are_the_raises(raiser, tmp_path):
    out = tmp_path / "exc.folded"
    truth, reported = traced_round(raiser, "collapsed", out)
    rows = list(folded(out))
    assert sum(w for _, _, w in rows) == reported
    got = collections.Counter()
    for names, files, weight in rows:
        if len(files) >= 2 and files[-2] == truth["file"]:
            got[tuple(names)] += weight
    want = expected_stacks(truth)
    assert got == want, f"missing: {want - got}\nunexpected: {got - want}"


@pytest.fixture
def raiser312(launch):
    return launch(python_target(find_python("3.12"), "raiser.py"))


def test_speedscope_validates_and_weighs_the_raises(raiser312, tmp_path):
    out = tmp_path / "exc.speedscope.json"
    truth, reported = traced_round(raiser312, "speedscope", out)
    check = subprocess.run([sys.executable, str(VALIDATE_JSON), str(SPEEDSCOPE_SCHEMA), str(out)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    doc = json.loads(out.read_text())
    frames = doc["shared"]["frames"]
    prof = doc["profiles"][0]
    assert len(doc["profiles"]) == 1 and sum(prof["weights"]) == reported
    got = collections.Counter()
    for sample, weight in zip(prof["samples"], prof["weights"]):
        names = [frames[i]["name"] for i in sample]
        files = [frames[i].get("file", "") for i in sample]
        if len(files) >= 2 and files[-2] == truth["file"]:
            got[tuple(names)] += weight
    assert got == expected_stacks(truth)


def test_flamegraph_parses_and_weighs_the_raises(raiser312, tmp_path):
    out = tmp_path / "exc.svg"
    truth, reported = traced_round(raiser312, "flamegraph", out)
    root = ET.parse(out).getroot()
    titles = [t.text for t in root.iter(SVG + "title")]
    count = re.compile(r"^(.*) \((\d+) raises, [\d.]+%\)$")
    frames = [(m.group(1), int(m.group(2))) for m in map(count.match, titles) if m]
    assert len(frames) == len(titles), titles[:5]
    assert dict(frames)["all"] == reported
    leaves = collections.Counter()
    for label, weight in frames:
        if label.startswith("raise "):
            leaves[label] += weight
    assert sum(leaves.values()) == reported
    want = collections.Counter(f"raise {x['type']}" for x in truth["events"])
    assert all(leaves[k] >= n for k, n in want.items()), (leaves, want)
