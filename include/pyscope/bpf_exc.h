/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_BPF_EXC_H
#define PYSCOPE_BPF_EXC_H

/*
 * bpf_exc: the kernel-side exception reader's loader (the "bpf" tracer mechanism). Loads the
 * BPF program compiled from src/trace/bpf/exc.bpf.c (embedded in pyscope at build time), configured
 * for one target from its layout table, attaches it as a uprobe at PyTraceBack_Here's entry in
 * the target's own binary (the file as the target maps it: /proc/PID/map_files, else
 * /proc/PID/root), filtered to the target's process, and hands its ring-buffer records
 * (src/trace/bpf/exc_rec.h) to a callback. It neither stops nor writes the target: the kernel owns
 * the uprobe and removes it when the link's fd closes, pyscope's death included.
 *
 * One bpf_exc per traced process, used from one thread. Memory: the ring buffer (16 MiB of
 * kernel memory) and two tid maps of EXC_BPF_THREADS entries.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyscope/err.h"
#include "pyscope/pyproc.h"

struct bpf_exc;
struct exc_bpf_rec;

/*
 * Whether this process may load and attach the program: CAP_BPF and CAP_PERFMON, or
 * CAP_SYS_ADMIN, in its effective set, and bpf() not refused (a trivial map is created and
 * closed). Returns 0, or -EPERM with one sentence in err saying what is missing (the capability,
 * or bpf() refused by seccomp or kernel.unprivileged_bpf_disabled).
 */
int bpf_exc_allowed(struct ps_err *err) PS_WARN_UNUSED;

/*
 * Load the program for pp's target (offsets from pp->lay, addresses from pp->loc), with an
 * optional type filter (a type name, qualified or bare: the kernel compares the part after the
 * last dot with the part of tp_name after its last dot; the caller still checks the exact
 * name), and attach it at address addr (PyTraceBack_Here, already checked as a function entry).
 * Nothing fires before this returns; borrows pp. Errors: -EPERM (as bpf_exc_allowed), -ENOENT
 * (addr is not in a file mapping of the target), -PS_EVERSION (a field the program needs is
 * absent from the layout), other negative codes from the kernel with libbpf's reason.
 */
int bpf_exc_open(const struct pyproc *pp, uint64_t addr, const char *type_filter,
                 struct bpf_exc **out, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Whether the thread-exit and exec tracepoints are attached (EXC_BPF_EXIT / EXC_BPF_EXEC records
 * come): when not, a thread's exit is learnt from /proc only, and an exec not at all.
 */
bool bpf_exc_sees_exits(const struct bpf_exc *b);

/*
 * Over the budget: one raise in `every` (per CPU) gets its record, the others are counted per
 * site only (0 or 1: every raise gets its record). Takes effect at the next hit.
 */
void bpf_exc_set_sampling(struct bpf_exc *b, uint32_t every);

/*
 * The exact per-site raise counts the program keeps (every raise that passed --type, sampled
 * or not): up to cap (site, count) pairs into keys/counts; returns how many.
 */
struct exc_bpf_site;
size_t bpf_exc_sites(const struct bpf_exc *b, struct exc_bpf_site *keys, uint64_t *counts,
                     size_t cap);

/* A file descriptor readable (POLLIN) when records are waiting. */
int bpf_exc_fd(const struct bpf_exc *b);

/*
 * Hand up to max waiting records to cb, oldest first, without blocking (len: the bytes the
 * program sent, at least up to its frames). A storm refills the ring buffer as fast as it is
 * read: the bound lets the caller's loop deliver and check time in between. Returns the number
 * handled (max: more may be waiting) or a negative code.
 */
int bpf_exc_poll(struct bpf_exc *b, int max,
                 void (*cb)(void *ctx, const struct exc_bpf_rec *r, size_t len), void *ctx);

/* Tell the program thread tid's thread state (0: forget tid). Errors ignored (the program
 * falls back to the GIL holder and checks the native id). */
void bpf_exc_set_tstate(struct bpf_exc *b, pid_t tid, uint64_t tstate);

/*
 * Tell the program that user space does not hold code object `code` (it could not resolve it
 * from its CODE record, or dropped it from its code cache): the next raise through it sends a
 * CODE record again. Errors ignored (at worst a frame of a target that has exited is unresolved).
 */
void bpf_exc_forget_code(struct bpf_exc *b, uint64_t code);

/* The same for a raised type whose name user space no longer holds (or could not read): the
 * next RAISE record of that type carries its name again. */
void bpf_exc_forget_type(struct bpf_exc *b, uint64_t type);

/* The program's counters (enum exc_bpf_counter, summed over CPUs) into out[EXC_BPF_CNT_N]. */
void bpf_exc_counters(const struct bpf_exc *b, uint64_t *out);

/* Detach (the kernel removes the uprobe at once) and free. NULL-safe. */
void bpf_exc_close(struct bpf_exc *b);

/*
 * The cost of one uprobe hit that the program cannot time itself (the trap, the single-step of
 * the displaced instruction, the return), in seconds: the same program put for a moment on a
 * function of pyscope's own (where it returns at its first check: the target is not its
 * caller), called BPF_EXC_CALIB_CALLS times with and without it (least of 3 rounds each, ~10-40
 * ms in all). Nothing in the target is touched. < 0 when it could not be measured (no mapping
 * of our own code, the attach refused). The function starts with a push, as the target's
 * PyTraceBack_Here: one trap per hit, as there. Issue 15 measured 1.7 us on an earlier machine;
 * 6-7 us here (a raise loop at depth 10: 0.55 us per raise untraced, 7.4 us counted).
 */
double bpf_exc_trap_cost_s(struct bpf_exc *b);

/*
 * Remove the uprobe (the kernel stops counting and recording raises) but keep the maps and the
 * ring buffer, so that the last records, the counters and the per-site counts read after it are
 * one consistent picture. Idempotent; NULL-safe; bpf_exc_close still frees everything.
 */
void bpf_exc_detach(struct bpf_exc *b);

#endif
