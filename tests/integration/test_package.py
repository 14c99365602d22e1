"""The Debian package: `cpack -G DEB` in the static build, inspected, installed, run.

The package is built from scripts/build-static's build directory (conftest's static_pyscope builds
it once per session), inspected with dpkg-deb --info/--contents, then installed for real by dpkg
into a scratch root with an empty dpkg database (`dpkg --root`), as on a machine that has
nothing of pyscope's build dependencies; the installed /usr/bin/pyscope then dumps a target
from the empty pod root of test_pod (only /proc and that binary), so nothing of this machine's
libraries helps it. (A fresh Debian 12 from debootstrap needs a mirror and minutes; the scratch
root is what runs here.)
"""

import os
import shutil
import subprocess

from conftest import PYSCOPE_TIMEOUT_S, RC_OK, python_target, require
from test_dump import split_text_dump
from test_pod import one_python, pod_wrapper  # noqa: F401 - the fixture


def run(*argv, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=kw.pop("timeout", 300), **kw)


def test_deb_builds_inspects_installs_and_runs(static_pyscope, one_python, launch,  # noqa: F811
                                               tmp_path):
    require(shutil.which("cpack") and shutil.which("dpkg-deb") and shutil.which("dpkg"),
            "cpack, dpkg-deb and dpkg are needed")
    built = run("cpack", "-G", "DEB", "-B", tmp_path / "out",
                cwd=os.path.dirname(static_pyscope))
    assert built.returncode == 0, built.stdout + built.stderr
    deb, = (tmp_path / "out").glob("pyscope_*_amd64.deb")

    info = run("dpkg-deb", "--info", deb)
    assert info.returncode == 0, info
    fields = dict(line.strip().split(": ", 1) for line in info.stdout.splitlines()
                  if ": " in line and not line.startswith("  "))
    version = run(static_pyscope, "--version").stdout.split()[1]
    assert fields["Package"] == "pyscope" and fields["Version"] == version, fields
    assert fields["Architecture"] == "amd64" and "Depends" not in fields, fields
    contents = run("dpkg-deb", "--contents", deb).stdout
    assert "./usr/bin/pyscope" in contents and "./usr/share/doc/pyscope/README.md" in contents

    root = tmp_path / "debian"
    for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates"):
        (root / d).mkdir(parents=True)
    (root / "var/lib/dpkg/status").touch()
    installed = run("dpkg", f"--root={root}", "--log=/dev/null", "-i", deb)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    status = run("dpkg", f"--root={root}", "-s", "pyscope").stdout
    assert "Status: install ok installed" in status, status
    binary = root / "usr/bin/pyscope"
    shapes = launch(python_target(one_python, "shapes.py"))
    assert binary.stat().st_mode & 0o111

    dump = run(pod_wrapper(tmp_path, binary), "dump", shapes.pid, timeout=PYSCOPE_TIMEOUT_S)
    assert dump.returncode == RC_OK, dump
    assert set(split_text_dump(dump.stdout)) == {t["ident"] for t in shapes.truth["threads"]}
