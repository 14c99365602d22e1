"""Where the runtime lives: static and shared builds, deleted files, another mount namespace.

Each test runs shapes.py under an interpreter laid out a particular way and compares pyscope's
dump with the target's own truth (test_dump.assert_matches_truth):
  * Debian's /usr/bin/python3.11: libpython linked statically into a stripped, non-PIE executable;
  * the interpreter's executable and libpython copied to a temp dir, started from there and
    deleted: only /proc/PID/map_files still reaches them;
  * the interpreter's prefix bind-mounted in a private mount namespace (unshare -m) and run from
    there: the files exist only in the target's namespace, reachable through /proc/PID/root.
The last two run for every interpreter of the matrix and for Debian's static build.
"""

import json
import os
import shutil
import subprocess

from conftest import RC_OK, TARGETS, require
from test_dump import assert_matches_truth, dump_json

DEBIAN_PYTHON = "/usr/bin/python3.11"


def build_facts(python):
    """(prefix, minor, shared libpython path or None) of an interpreter, asked from itself."""
    code = ("import json, sys, sysconfig; v = sysconfig.get_config_var; print(json.dumps("
            "[sys.base_prefix, '%d.%d' % sys.version_info[:2], v('Py_ENABLE_SHARED'), "
            "v('LIBDIR'), v('INSTSONAME')]))")
    out = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    prefix, minor, shared, libdir, soname = json.loads(out)
    lib = os.path.join(libdir, soname) if shared and libdir and soname else None
    return prefix, minor, lib


def debian_python():
    require(os.access(DEBIAN_PYTHON, os.X_OK), f"{DEBIAN_PYTHON} (Debian's python3.11) missing")
    return DEBIAN_PYTHON


def shapes_argv(python):
    return [python, "-I", "-u", str(TARGETS / "shapes.py")]


def maps_paths(pid):
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
        return [line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6]


def test_debian_static_stripped(launch, pyscope):
    python = debian_python()
    target = launch(shapes_argv(python))
    assert not any("libpython" in p for p in maps_paths(target.pid)), "not a static build"
    doc = dump_json(pyscope, target.pid)
    assert_matches_truth(doc, target.truth)
    assert os.path.realpath(doc["image"]) == os.path.realpath(python)


def check_deleted_after_start(python, launch, pyscope, tmp_path):
    prefix, minor, lib = build_facts(python)
    (tmp_path / "bin").mkdir()
    copy = tmp_path / "bin" / f"python{minor}"
    shutil.copy2(os.path.realpath(python), copy)
    env_lib = []
    if lib:
        (tmp_path / "lib").mkdir()
        shutil.copy2(os.path.realpath(lib), tmp_path / "lib" / os.path.basename(lib))
        env_lib = [f"LD_LIBRARY_PATH={tmp_path / 'lib'}"]  # RUNPATH yields to it
    argv = ["env", f"PYTHONHOME={prefix}", *env_lib, *shapes_argv(str(copy))]
    target = launch(argv)
    shutil.rmtree(tmp_path / "bin")
    shutil.rmtree(tmp_path / "lib", ignore_errors=True)
    deleted = [p for p in maps_paths(target.pid) if p.endswith("(deleted)")]
    assert any(str(tmp_path) in p for p in deleted), deleted
    doc = dump_json(pyscope, target.pid)
    assert_matches_truth(doc, target.truth)
    assert str(tmp_path) in doc["image"]


def check_only_in_target_namespace(python, launch, pyscope, tmp_path):
    require(shutil.which("unshare") is not None, "unshare (util-linux) missing")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=30)
    require(probe.returncode == 0, f"cannot create a mount namespace: {probe.stderr!r}")
    prefix, minor, lib = build_facts(python)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    inside = f"{mnt}/bin/python{minor}"
    env_lib = f"LD_LIBRARY_PATH={mnt}/lib" if lib else "PYSCOPE_STATIC=1"
    script = 'mount --bind "$1" "$2" && shift 2 && exec env "$@"'
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", prefix,
            str(mnt), env_lib, *shapes_argv(inside)]
    target = launch(argv)
    assert not os.listdir(mnt), "the bind mount leaked into pyscope's namespace"
    assert any(p.startswith(str(mnt)) for p in maps_paths(target.pid))
    doc = dump_json(pyscope, target.pid)
    assert_matches_truth(doc, target.truth)
    assert doc["image"].startswith(str(mnt)), doc["image"]
    result = pyscope("dump", "--locals", "--no-source", target.pid)
    assert result.rc == RC_OK, result


def test_deleted_after_start(python, launch, pyscope, tmp_path):
    check_deleted_after_start(python, launch, pyscope, tmp_path)


def test_deleted_after_start_debian_static(launch, pyscope, tmp_path):
    check_deleted_after_start(debian_python(), launch, pyscope, tmp_path)


def test_only_in_target_mount_namespace(python, launch, pyscope, tmp_path):
    check_only_in_target_namespace(python, launch, pyscope, tmp_path)


def test_only_in_target_mount_namespace_debian_static(launch, pyscope, tmp_path):
    check_only_in_target_namespace(debian_python(), launch, pyscope, tmp_path)
