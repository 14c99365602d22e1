/* SPDX-License-Identifier: MIT */
/*
 * tracer_stop: the exception tracer's exit paths, tracer_stop and the blocking loop tracer_run
 * (the CLI's; the TUI runs tracer_step in its own loop and calls tracer_stop itself).
 *
 * Every exit leaves the target running, untraced and without a breakpoint, in this order:
 * perf breakpoints closed first, so no new trap can be generated; every thread stopped; debug
 * registers cleared (they can only change in a stop); breakpoint SIGTRAPs that were generated but
 * not yet collected drained by target_drain_traps (a thread with one queued is resumed alone
 * until it takes it; a thread standing at the breakpoint, whose trap may still be in flight, is
 * single-stepped past it; each such trap suppressed). Resume-and-restop rounds cannot do this:
 * the kernel serves the interrupt before queued signals, so a thread can be stopped again with
 * its trap still queued, which kills the target once detached (seen in CI, 1 run in ~50). Then
 * the open exceptions are ended with one exact read, and every thread detached. A target that
 * exited meanwhile just ends the trace.
 *
 * tracer_run takes SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGTSTP through a signalfd while it runs, so a
 * Ctrl-C ends the loop and takes this same path instead of the teardown handlers.
 */
#include "pyscope/tracer.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "pyscope/bkpt.h"
#include "pyscope/target.h"
#include "tracer_int.h"

/* ---- release and stop --------------------------------------------------------------- */

/* Clear the breakpoints with every thread stopped, and drain the traps still on their way. */
static int tr_release(struct tracer *t, struct ps_err *err)
{
    int rc = 0;

    t->stopping = true;
    if (t->bp && bkpt_mechanism(t->bp) == BKPT_PERF)
        rc = bkpt_clear(t->bp, err); /* first: no new trap can be generated after this */
    if (rc == 0 && target_current_pid() != 0 && !t->exited)
        rc = target_stop_all(err);
    if (rc == -ESRCH) {
        ps_err_clear(err); /* the target exited meanwhile: nothing left to clear */
        t->exited = true;
        return 0;
    }
    if (t->exited)
        return 0;
    if (rc == 0 && t->bp)
        rc = bkpt_clear(t->bp, err);
    if (rc == 0 && t->bp) {
        const struct target_trap_test test = {.ctx = t, .is_trap = tr_is_trap};
        rc = target_drain_traps(t->addr, &test, err);
    }
    return rc;
}

int tracer_stop(struct tracer *t, struct ps_err *err)
{
    int rc, rc2;

    if (t->stopped)
        return 0;
    if (t->used_bpf)
        return tr_bpf_stop(t);
    if (t->disarmed_at != 0) {
        double now = tr_mono();
        tr_count_end(t, now);
        t->st.disarmed_seconds += now - t->disarmed_at;
        t->disarmed_at = 0;
    }
    rc = tr_release(t, err);
    if (rc == 0)
        tr_check_ends(t, true); /* threads stopped: one read is exact */
    for (size_t i = 0; i < TR_MAX_OPEN; i++)
        if (t->open[i].tid)
            tr_end(t, &t->open[i], true);
    rc2 = target_detach_all(err);
    t->stopped = true;
    tr_deliver(t);
    return rc < 0 ? rc : rc2;
}

/* ---- the blocking loop ------------------------------------------------------------------- */

void tracer_signals(sigset_t *set)
{
    (void)sigemptyset(set);
    (void)sigaddset(set, SIGINT);
    (void)sigaddset(set, SIGTERM);
    (void)sigaddset(set, SIGHUP);
    (void)sigaddset(set, SIGQUIT); /* Ctrl-\ quits as cleanly as Ctrl-C */
    (void)sigaddset(set, SIGTSTP); /* a suspended tracer would hold every thread that raises */
}

static int tr_sig_fd(sigset_t *old)
{
    sigset_t set;

    tracer_signals(&set);
    if (pthread_sigmask(SIG_BLOCK, &set, old) != 0)
        return -1;
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static const char *tr_sig_why(int sig)
{
    switch (sig) {
    case SIGINT: return "signal SIGINT";
    case SIGTERM: return "signal SIGTERM";
    case SIGQUIT: return "signal SIGQUIT";
    case SIGTSTP:
        return "signal SIGTSTP (Ctrl-Z ends the trace: suspended, it would hold the "
               "target's raising threads)";
    default: return "signal SIGHUP";
    }
}

int tracer_run(struct tracer *t, double duration_s, const char **why, struct ps_err *err)
{
    double end = duration_s > 0 ? tr_mono() + duration_s : 0;
    sigset_t old;
    int sfd = tr_sig_fd(&old);
    int rc = 0;

    *why = "error";
    while (rc == 0) {
        struct pollfd p[2] = {{.fd = t->chld_fd, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        double left = end > 0 ? end - tr_mono() : 0.1;
        struct signalfd_siginfo si;
        if (end > 0 && left <= 0) {
            *why = "duration";
            break;
        }
        int wait_ms = tracer_timeout_ms(t);
        if (end > 0 && left * 1000.0 < wait_ms)
            wait_ms = (int)(left * 1000.0) + 1;
        (void)poll(p, sfd >= 0 ? 2 : 1, wait_ms);
        if (sfd >= 0 && read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
            *why = tr_sig_why((int)si.ssi_signo);
            break;
        }
        rc = tracer_step(t, err);
        if (rc == 1)
            *why = t->exec_seen ? "target exec'd" : "target exited";
    }
    rc = rc < 0 ? rc : 0;
    if (tracer_stop(t, err) < 0 && rc == 0)
        rc = err->code;
    if (sfd >= 0)
        (void)close(sfd);
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}
