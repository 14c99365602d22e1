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
 * tracer_run is an evloop (evloop.h): SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGTSTP come through its
 * signalfd, so a Ctrl-C ends the loop and takes this same path (tracer_stop is the loop's
 * teardown step) instead of the teardown handlers. Every call runs on the thread that called
 * tracer_run, the one that attached (ptrace requests must).
 */
#include "pyscope/tracer.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>

#include "pyscope/bkpt.h"
#include "pyscope/evloop.h"
#include "pyscope/target.h"
#include "tracer_int.h"

/* ---- release and stop --------------------------------------------------------------- */

/*
 * target_stop_all failed (a thread in D state, or threads kept appearing; issue 19 item 6): clear
 * and drain the threads that did stop, one by one (bkpt_clear would take a running thread's
 * ESRCH for "cleared"), and say that the others may still be armed. target_detach_all then
 * disarms each thread it manages to stop before detaching it; a thread it cannot stop is left
 * traced until pyscope exits and, with debug registers, armed: a raise in it would kill the
 * target. No stop here could do better in bounded time. Not exercised where hardware breakpoints
 * do not fire; the debug-register state is (tests/integration/test_exceptions.py).
 */
static int tr_release_partial(struct tracer *t, int rc, struct ps_err *err)
{
    static pid_t tids[TARGET_MAX_THREADS]; /* tracer thread only */
    const struct target_trap_test test = {.ctx = t, .is_trap = tr_is_trap};
    struct ps_err ignored = {0};
    size_t stopped = target_stopped_tids(tids, TARGET_MAX_THREADS);
    size_t all = target_tids(tids + stopped, TARGET_MAX_THREADS - stopped);
    char why[sizeof(err->msg)];

    for (size_t k = 0; k < stopped; k++)
        if (bkpt_clear_thread(t->bp, tids[k], &ignored) < 0)
            ps_err_clear(&ignored); /* best effort: the first error is the one reported */
    if (target_drain_traps(t->addr, &test, &ignored) < 0) /* skips the threads still running */
        ps_err_clear(&ignored);
    if (bkpt_mechanism(t->bp) != BKPT_DEBUGREG || !err)
        return rc;
    (void)snprintf(why, sizeof(why), "%s", err->msg);
    return ps_err_replace(err, rc,
                          "%s; the breakpoint was cleared in the %zu thread(s) that stopped, but "
                          "the debug registers of the %zu other(s) may stay armed: a raise there "
                          "would kill pid %d with SIGTRAP (attach again and quit to clear them)",
                          why, stopped, all > stopped ? all - stopped : 0,
                          (int)target_current_pid());
}

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
    if (rc < 0 && t->bp && target_current_pid() != 0)
        return tr_release_partial(t, rc, err); /* some threads still run */
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
        double now = tr_now(t);
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

/* tracer_run's own reasons to end (evloop_stop). */
#define TR_END_DONE     EVLOOP_END_OWN       /* tracer_step said the trace is over */
#define TR_END_DURATION (EVLOOP_END_OWN + 1) /* duration_s elapsed */

struct tr_run {
    struct tracer *t;
    int wait; /* the timer at tracer_timeout_ms: a quiet wait is a step too */
};

static const char *tr_sig_why(int sig)
{
    if (sig == SIGTSTP)
        return "signal SIGTSTP (Ctrl-Z ends the trace: suspended, it would hold the "
               "target's raising threads)";
    return evloop_signal_why(sig);
}

/* The tracer's fd was readable or its wait ran out: one step, then the next wait. */
static int tr_run_step(void *arg, struct evloop *l, unsigned events, struct ps_err *err)
{
    struct tr_run *r = arg;
    int rc = tracer_step(r->t, err);

    (void)events;
    if (rc == 1)
        evloop_stop(l, TR_END_DONE);
    evloop_timer_at(l, r->wait, evloop_clock_now(l) + tracer_timeout_ms(r->t) / 1000.0);
    return rc < 0 ? rc : 0;
}

/* The loop's teardown: the target released (tracer_stop), whatever ended the loop. */
static int tr_run_undo(void *arg, struct ps_err *err)
{
    return tracer_stop(arg, err);
}

/* The loop: stop signals and TSTP (no handler: Ctrl-Z is an orderly stop), the tracer's fd,
 * its wait and the duration. */
static int tr_run_open(struct tr_run *r, struct evloop *l, double duration_s, struct ps_err *err)
{
    double now = evloop_clock_now(l);
    int rc = evloop_add_teardown(l, tr_run_undo, r->t, err);

    if (rc == 0)
        rc = evloop_add_fd(l, r->t->chld_fd, tr_run_step, r, err);
    if (rc >= 0)
        rc = r->wait =
            evloop_add_timer(l, now + tracer_timeout_ms(r->t) / 1000.0, tr_run_step, r, err);
    if (rc >= 0 && duration_s > 0)
        rc = evloop_add_deadline(l, now + duration_s, TR_END_DURATION, err);
    return rc < 0 ? rc : 0;
}

static const char *tr_run_why(const struct tracer *t, const struct evloop *l)
{
    switch (evloop_end(l)) {
    case EVLOOP_END_SIGNAL: return tr_sig_why(evloop_signo(l));
    case TR_END_DURATION: return "duration";
    case TR_END_DONE: return t->exec_seen ? "target exec'd" : "target exited";
    default: return "error";
    }
}

int tracer_run(struct tracer *t, double duration_s, const char **why, struct ps_err *err)
{
    const struct evloop_opts o = {.signals = EVLOOP_SIG_STOP | EVLOOP_SIG_TSTP,
                                  .clock = t->opts.clock};
    struct tr_run r = {.t = t, .wait = -1};
    struct evloop *l = NULL;
    struct ps_err later = {0}; /* the teardown's error when the run's own is kept */
    int rc = evloop_new(&o, &l, err), rc2;

    *why = "error";
    if (rc == 0)
        rc = tr_run_open(&r, l, duration_s, err);
    if (rc == 0)
        rc = evloop_run(l, err);
    if (rc == 0)
        *why = tr_run_why(t, l);
    rc2 = l ? evloop_teardown(l, rc < 0 ? &later : err) : tracer_stop(t, rc < 0 ? &later : err);
    evloop_free(l);
    return rc < 0 ? rc : rc2;
}
