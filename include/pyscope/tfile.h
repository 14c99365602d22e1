/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_TFILE_H
#define PYSCOPE_TFILE_H

/*
 * tfile: opening files that a target names (a co_filename, a path in its maps or in a core's
 * NT_FILE notes, a --core path) without trusting the name. pyscope often runs as root next to
 * the process it reads, so a name is an attacker's choice: it may be a FIFO or a device (an open
 * or a read that blocks forever, possibly while the target's threads are stopped), a symlink or
 * a ".." path that leaves the target's root, or a file the target itself may not read.
 *
 * Two levels: tfile_open_regular() only refuses to block and reads regular files (binaries,
 * cores: what pyscope parses but does not print); tfile_open_as() additionally resolves the name
 * inside the target's root and opens it with the target's file-system credentials (source
 * lines: what pyscope prints). Never: opens without O_NONBLOCK, returns a non-regular file, or
 * changes the credentials of a thread other than its own short-lived helper thread.
 */

#include <sys/types.h>

#include "pyscope/err.h"
#include "pyscope/procstat.h"

/*
 * Open path read-only for a file pyscope parses (O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
 * so a FIFO, a terminal or a device cannot block the open or become our controlling terminal)
 * and refuse anything but a regular file. what names the file in the error ("the core file",
 * "library"). Returns the fd (the caller closes it) or -errno (err: cannot open, with the
 * reason) or -PS_EFORMAT (err: "PATH is a FIFO, not a regular file"). Any thread.
 */
int tfile_open_regular(const char *path, const char *what, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Open name (an absolute path as the target sees it) for reading as the target could:
 * resolved inside the directory rootfd (openat2 RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS: ".."
 * and absolute symlinks stay inside it, /proc magic links are refused), with as's
 * file-system uid, gid and supplementary groups (as->ids_known and as->ngroups >= 0 are
 * required), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, and a regular file only. With
 * as == NULL the open uses pyscope's own credentials (core files: no process to ask).
 *
 * The credentials are taken in a helper thread created for the one open (raw per-thread
 * setfsuid/setfsgid/setgroups, all signals blocked), which exits afterwards; the calling
 * thread's credentials never change. When pyscope cannot take them (not root) it opens as
 * itself only if that gives no more than the target has (same fsuid and fsgid, groups a subset).
 * Returns the fd or a negative code; err gets a sentence but callers that print the file's
 * content show nothing on failure. Any thread; blocks only for the open itself.
 */
int tfile_open_as(int rootfd, const char *name, const struct procstat_status *as,
                  struct ps_err *err) PS_WARN_UNUSED;

/*
 * What tfile_open_as does where openat2 is missing (Linux before 5.6, old seccomp profiles):
 * the same RESOLVE_IN_ROOT walk by hand, one component at a time from rootfd with
 * O_PATH | O_NOFOLLOW, symlinks read and resolved textually (absolute ones from rootfd, at
 * most 40), ".." never above rootfd, the last component opened O_NOFOLLOW with tfile's flags.
 * Magic links are read as text, so they cannot jump out either. The caller's credentials
 * apply; no regular-file check (tfile_open_as does it). Returns the fd or -errno. Exported for
 * tests. Any thread.
 */
int tfile_open_in_root_compat(int rootfd, const char *name) PS_WARN_UNUSED;

#endif
