"""A fresh Debian 12 machine: only /usr/bin/python3.11, no pyenv builds.

Simulated by running the README's scripts with PYENV_ROOT pointing nowhere and PATH=/usr/bin:/bin
(no pyenv shims): scripts/find-python falls back to Debian's interpreter for 3.11 and fails for
the others; scripts/demo runs its service on 3.11 and dumps it; the test harness skips a missing
interpreter locally but fails it under CI=true; gen-layouts --check skips locally, fails in CI.
"""

import os
import subprocess
import sys

import pytest

from conftest import PYSCOPE_BIN, ROOT, require, require_pyscope

DEBIAN_VERSION = "3.11"  # Debian 12's own python3
DEBIAN_PYTHON = f"/usr/bin/python{DEBIAN_VERSION}"


@pytest.fixture
def fresh_env(tmp_path):
    require(os.access(DEBIAN_PYTHON, os.X_OK), f"{DEBIAN_PYTHON} (Debian's python3.11) missing")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYSCOPE_PYTHON", "CI", "PYSCOPE_PYTHON_VERSIONS")}
    env.update(PATH="/usr/bin:/bin", PYENV_ROOT=str(tmp_path / "no-pyenv"),
               HOME=str(tmp_path), PYSCOPE_BIN=str(PYSCOPE_BIN))
    return env


def run(argv, env, timeout=60):
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def supported(env):
    """The supported versions, oldest first: `scripts/find-python --supported` (the one list)."""
    out = run([str(ROOT / "scripts" / "find-python"), "--supported"], env)
    assert out.returncode == 0 and DEBIAN_VERSION in out.stdout.split(), out
    return out.stdout.split()


def missing_versions(env):
    """The supported versions a fresh Debian 12 lacks: all but its own python3."""
    missing = [v for v in supported(env) if v != DEBIAN_VERSION]
    assert missing
    return missing


def test_find_python_falls_back_to_debian(fresh_env):
    find = str(ROOT / "scripts" / "find-python")
    found = run([find, DEBIAN_VERSION], fresh_env)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == DEBIAN_PYTHON
    for version in missing_versions(fresh_env):
        found = run([find, version], fresh_env)
        assert found.returncode == 1 and "no Python " + version in found.stderr, found


def test_demo_runs_on_debian_python(fresh_env):
    require_pyscope()
    demo = run([str(ROOT / "scripts" / "demo"), "--no-source"], fresh_env, timeout=120)
    assert demo.returncode == 0, f"{demo.stdout}\n{demo.stderr}"
    assert f"demo service (Python {DEBIAN_VERSION}." in demo.stdout
    assert f"Python {DEBIAN_VERSION}." in demo.stdout and "Thread " in demo.stdout
    assert DEBIAN_PYTHON in demo.stdout


def nested_pytest(env, ci):
    env = dict(env, PYSCOPE_PYTHON_VERSIONS=missing_versions(env)[0],
               **({"CI": "true"} if ci else {}))
    return run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                str(ROOT / "tests" / "integration" / "test_locals.py"),
                "-k", "test_no_locals_by_default"], env, timeout=120)


def test_missing_interpreter_skips_locally_fails_in_ci(fresh_env):
    local = nested_pytest(fresh_env, ci=False)
    assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout
    ci = nested_pytest(fresh_env, ci=True)
    assert ci.returncode == 1 and "missing prerequisite (CI=true" in ci.stdout, ci.stdout


def test_gen_layouts_check_skips_locally_fails_in_ci(fresh_env):
    gen = str(ROOT / "scripts" / "gen-layouts")
    local = run([sys.executable, gen, "--check"], fresh_env)
    assert local.returncode == 0 and "--check skipped" in local.stderr, local
    ci = run([sys.executable, gen, "--check"], dict(fresh_env, CI="true"))
    oldest = supported(fresh_env)[0]  # gen-layouts looks for the oldest first
    assert ci.returncode == 2 and f"no CPython {oldest} found" in ci.stderr, ci
