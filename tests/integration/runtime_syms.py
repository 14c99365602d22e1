"""Can the native tests expect CPython's static C functions by name in this target?

pyscope names a C frame from the ELF file mapped at its pc: .symtab, the MiniDebugInfo of
.gnu_debugdata, or a build-id debug file under /usr/lib/debug. A pyenv build keeps .symtab in
libpython, so static functions such as time_sleep, take_gil or lock_PyThread_acquire_lock have
names. Debian's /usr/bin/python3.X (the matrix entry "3.X-debian") carries the whole runtime in a
stripped executable with .dynsym only: only exported functions (PyEval_RestoreThread,
PyThread_acquire_lock_timed, ...) can have a name there, and every static one can only be shown
by its address. The tests ask this module which case they are in, from the target's own mappings.
"""

import functools
import os
import struct

DEBUG_DIR = "/usr/lib/debug"


def runtime_image(pid):
    """Path of the ELF file holding the interpreter of pid: its libpython, else its executable."""
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and os.path.basename(fields[5].strip()).startswith("libpython"):
                return fields[5].strip()
    return os.readlink(f"/proc/{pid}/exe")


def _elf_sections(data):
    """{name: (offset, size)} of an ELF64 little-endian image (the only kind tested here)."""
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "not an ELF64 LE file"
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strtab_off = headers[shstrndx][4]
    sections = {}
    for name_off, _type, _flags, _addr, offset, size in headers:
        end = data.index(b"\0", strtab_off + name_off)
        sections[data[strtab_off + name_off:end].decode()] = (offset, size)
    return sections


def _build_id(data, sections):
    """The GNU build id of the image as hex, or None."""
    if ".note.gnu.build-id" not in sections:
        return None
    offset, _size = sections[".note.gnu.build-id"]
    namesz, descsz, _type = struct.unpack_from("<III", data, offset)
    desc = offset + 12 + (namesz + 3) // 4 * 4
    return data[desc:desc + descsz].hex()


@functools.lru_cache(maxsize=None)
def names_static_functions(image):
    """True when one of the sources pyscope reads names the image's static functions."""
    with open(image, "rb") as f:
        data = f.read()
    sections = _elf_sections(data)
    if ".symtab" in sections or ".gnu_debugdata" in sections:
        return True
    build_id = _build_id(data, sections)
    return bool(build_id) and os.path.exists(
        f"{DEBUG_DIR}/.build-id/{build_id[:2]}/{build_id[2:]}.debug")


def target_names_statics(pid):
    """names_static_functions() of the runtime image of the running target pid."""
    return names_static_functions(runtime_image(pid))
