/* SPDX-License-Identifier: MIT */
/*
 * evloop tests. Timers run on an injected virtual clock (the loop's sleep advances it), so no
 * test depends on wall time: timers fire in the order of their due times at exactly those
 * times, ties in adding order; a periodic timer skips what it missed. Signals are real (sent to
 * ourselves while the loop holds them blocked), so are pidfds (children that exit) and pipes.
 * Teardown steps run last-added first, once, each even after a failure.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "pyscope/evloop.h"

/* ---- a virtual clock --------------------------------------------------------------------- */

struct vclock {
    double now;
    int sleeps;
};

static double v_now(void *arg)
{
    return ((struct vclock *)arg)->now;
}

static void v_sleep(void *arg, double d)
{
    struct vclock *v = arg;

    v->now += d;
    v->sleeps++;
}

struct rec {
    struct vclock *v;
    char order[32];
    double at[32];
    int n;
};

struct tmr {
    struct rec *r;
    char name;
    bool last;
};

static int on_timer(void *arg, struct evloop *l, unsigned events, struct ps_err *err)
{
    struct tmr *t = arg;

    (void)err;
    assert_int_equal(events, 0);
    t->r->at[t->r->n] = t->r->v->now;
    t->r->order[t->r->n++] = t->name;
    if (t->last)
        evloop_stop(l, EVLOOP_END_OWN + 1);
    return 0;
}

static void test_timers_fire_in_order(void **state)
{
    struct vclock v = {.now = 100};
    const struct evloop_clock clk = {.now = v_now, .sleep = v_sleep, .arg = &v};
    const struct evloop_opts o = {.clock = &clk};
    struct rec r = {.v = &v};
    struct tmr c = {&r, 'c', true}, a = {&r, 'a', false}, b = {&r, 'b', false},
               b2 = {&r, 'B', false}, off = {&r, 'x', false};
    struct evloop *l = NULL;
    struct ps_err err = {0};

    (void)state;
    assert_int_equal(evloop_new(&o, &l, &err), 0);
    assert_true(evloop_add_timer(l, 103, on_timer, &c, &err) >= 0);
    assert_true(evloop_add_timer(l, 101, on_timer, &a, &err) >= 0);
    assert_true(evloop_add_timer(l, 102, on_timer, &b, &err) >= 0);
    assert_true(evloop_add_timer(l, 102, on_timer, &b2, &err) >= 0); /* a tie: adding order */
    assert_true(evloop_add_timer(l, -1, on_timer, &off, &err) >= 0); /* disarmed: never */
    assert_int_equal(evloop_run(l, &err), 0);
    assert_int_equal(evloop_end(l), EVLOOP_END_OWN + 1);
    assert_int_equal(r.n, 4);
    assert_memory_equal(r.order, "abBc", 4);
    assert_true(r.at[0] == 101 && r.at[1] == 102 && r.at[2] == 102 && r.at[3] == 103);
    evloop_free(l);
}

struct every {
    struct vclock *v;
    int id, calls;
    uint64_t counts[8];
};

/* Periodic every 1 s; the second call takes 2.5 s (a descheduled pyscope). */
static int on_every(void *arg, struct evloop *l, unsigned events, struct ps_err *err)
{
    struct every *e = arg;

    (void)events;
    (void)err;
    e->counts[e->calls] = evloop_timer_every(l, e->id, 1.0);
    if (e->calls++ == 1)
        e->v->now += 2.5;
    if (e->calls == 4)
        evloop_stop(l, EVLOOP_END_OWN);
    return 0;
}

static void test_periodic_timer_skips_missed_ticks(void **state)
{
    struct vclock v = {.now = 0};
    const struct evloop_clock clk = {.now = v_now, .sleep = v_sleep, .arg = &v};
    const struct evloop_opts o = {.clock = &clk};
    struct every e = {.v = &v};
    struct evloop *l = NULL;
    struct ps_err err = {0};

    (void)state;
    assert_int_equal(evloop_new(&o, &l, &err), 0);
    e.id = evloop_add_timer(l, 1.0, on_every, &e, &err);
    assert_true(e.id >= 0);
    assert_int_equal(evloop_run(l, &err), 0);
    /* t=1: on time; t=2: on time, then 2.5 s lost (now 4.5); due 3 fires at 4.5: 2 periods
     * (3 and 4) in one call, re-armed at 5, not 4 (never a burst); t=5: on time. */
    assert_int_equal(e.counts[0], 1);
    assert_int_equal(e.counts[1], 1);
    assert_int_equal(e.counts[2], 2);
    assert_int_equal(e.counts[3], 1);
    assert_true(v.now == 5.0);
    evloop_free(l);
}

/* ---- signals --------------------------------------------------------------------------------- */

static bool blocked(int sig)
{
    sigset_t cur;

    (void)pthread_sigmask(SIG_SETMASK, NULL, &cur);
    return sigismember(&cur, sig) == 1;
}

static int on_hook(void *arg, struct evloop *l, unsigned events, struct ps_err *err)
{
    (void)l;
    (void)events;
    (void)err;
    ++*(int *)arg;
    return 0;
}

/* A timer that ends the loop. */
static int stop_soon(void *arg, struct evloop *l, unsigned events, struct ps_err *err)
{
    (void)arg;
    (void)events;
    (void)err;
    evloop_stop(l, EVLOOP_END_OWN);
    return 0;
}

static void test_stop_signal_ends_the_loop(void **state)
{
    const struct evloop_opts o = {.signals = EVLOOP_SIG_STOP | EVLOOP_SIG_TSTP | EVLOOP_SIG_WINCH};
    struct evloop *l = NULL;
    struct ps_err err = {0};
    int tstp = 0, winch = 0;

    (void)state;
    assert_false(blocked(SIGTERM));
    assert_int_equal(evloop_new(&o, &l, &err), 0);
    assert_true(blocked(SIGTERM) && blocked(SIGINT) && blocked(SIGHUP) && blocked(SIGQUIT));
    evloop_on_tstp(l, on_hook, &tstp);
    evloop_on_winch(l, on_hook, &winch);
    /* Pending before the run: TSTP and WINCH go to their handlers, TERM ends the loop. */
    assert_int_equal(kill(getpid(), SIGWINCH), 0);
    assert_int_equal(kill(getpid(), SIGTSTP), 0);
    assert_true(evloop_add_timer(l, evloop_now(), stop_soon, NULL, &err) >= 0);
    assert_int_equal(evloop_run(l, &err), 0);
    assert_int_equal(evloop_end(l), EVLOOP_END_OWN);
    assert_int_equal(tstp, 1);
    assert_int_equal(winch, 1);
    assert_int_equal(kill(getpid(), SIGTERM), 0);
    assert_int_equal(evloop_run(l, &err), 0);
    assert_int_equal(evloop_end(l), EVLOOP_END_SIGNAL);
    assert_int_equal(evloop_signo(l), SIGTERM);
    assert_false(evloop_signal_from_kernel(l));
    evloop_free(l);
    assert_false(blocked(SIGTERM)); /* the mask is back */
}

static void test_tstp_without_handler_stops(void **state)
{
    const struct evloop_opts o = {.signals = EVLOOP_SIG_STOP | EVLOOP_SIG_TSTP};
    struct evloop *l = NULL;
    struct ps_err err = {0};

    (void)state;
    assert_int_equal(evloop_new(&o, &l, &err), 0);
    assert_int_equal(kill(getpid(), SIGTSTP), 0);
    assert_int_equal(evloop_run(l, &err), 0);
    assert_int_equal(evloop_end(l), EVLOOP_END_SIGNAL);
    assert_int_equal(evloop_signo(l), SIGTSTP);
    evloop_free(l);
}

/* ---- pidfds ---------------------------------------------------------------------------------- */

static pid_t child(bool wait_for_signal)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        sigset_t none;

        (void)sigemptyset(&none);
        (void)pthread_sigmask(SIG_SETMASK, &none, NULL);
        if (wait_for_signal)
            for (int i = 0; i < 600; i++) /* bounded: the test kills it well before */
                (void)sleep(1);
        _exit(7);
    }
    return pid;
}

static void test_pid_source_sees_the_exit(void **state)
{
    const struct evloop_opts o = {0};
    struct evloop *l = NULL;
    struct ps_err err = {0};
    pid_t pid = child(false);
    int status = 0;

    (void)state;
    assert_int_equal(evloop_new(&o, &l, &err), 0);
    assert_true(evloop_add_pid(l, pid, NULL, NULL, &err) >= 0);
    assert_int_equal(evloop_run(l, &err), 0);
    assert_int_equal(evloop_end(l), EVLOOP_END_EXITED);
    evloop_free(l);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(WEXITSTATUS(status), 7);
}

/* forward_to: the first TERM goes to the child, whose exit then ends the loop. */
static void test_first_stop_signal_is_forwarded_once(void **state)
{
    pid_t pid = child(true);
    const struct evloop_opts o = {.signals = EVLOOP_SIG_STOP, .forward_to = pid};
    struct evloop *l = NULL;
    struct ps_err err = {0};
    int status = 0;

    (void)state;
    assert_int_equal(evloop_new(&o, &l, &err), 0);
    assert_true(evloop_add_pid(l, pid, NULL, NULL, &err) >= 0);
    assert_int_equal(kill(getpid(), SIGTERM), 0);
    assert_int_equal(evloop_run(l, &err), 0);
    assert_int_equal(evloop_end(l), EVLOOP_END_EXITED);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
    /* Forwarded once: the next TERM stops the loop itself. */
    assert_int_equal(kill(getpid(), SIGTERM), 0);
    assert_int_equal(evloop_run(l, &err), 0);
    assert_int_equal(evloop_end(l), EVLOOP_END_SIGNAL);
    evloop_free(l);
}

/* ---- fds ------------------------------------------------------------------------------------- */

struct piped {
    int fds[2];
    int id, calls;
};

/* A tracer's SIGCHLD signalfd (evloop_signal_fd): it reads a child's exit, blocks SIGCHLD only
 * while open, and a nested one (already blocked) leaves the mask to the outer one. */
static void test_signal_fd_for_sigchld(void **state)
{
    struct ps_err err = {0};
    struct signalfd_siginfo si;
    struct pollfd p;
    sigset_t outer, inner;
    int fd, fd2, status = 0;
    pid_t pid;

    (void)state;
    assert_false(blocked(SIGCHLD));
    fd = evloop_signal_fd(EVLOOP_SIG_CHLD, &outer, &err);
    assert_true(fd >= 0);
    assert_true(blocked(SIGCHLD) && sigismember(&outer, SIGCHLD) == 1);
    fd2 = evloop_signal_fd(EVLOOP_SIG_CHLD, &inner, &err);
    assert_true(fd2 >= 0);
    assert_int_equal(sigismember(&inner, SIGCHLD), 0); /* was blocked: not the inner's to undo */
    pid = child(false);
    p = (struct pollfd){.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, -1), 1); /* no timeout: the child's exit is the event */
    assert_int_equal(read(fd, &si, sizeof(si)), (ssize_t)sizeof(si));
    assert_int_equal(si.ssi_signo, SIGCHLD);
    assert_int_equal((pid_t)si.ssi_pid, pid);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    evloop_signal_fd_close(fd2, &inner);
    assert_true(blocked(SIGCHLD)); /* the outer fd still needs it */
    evloop_signal_fd_close(fd, &outer);
    assert_false(blocked(SIGCHLD));
}

static int on_pipe(void *arg, struct evloop *l, unsigned events, struct ps_err *err)
{
    struct piped *p = arg;
    char c;

    (void)err;
    assert_true(events & POLLIN);
    assert_int_equal(read(p->fds[0], &c, 1), 1);
    if (++p->calls == 2)
        evloop_remove(l, p->id); /* from its own callback */
    return 0;
}

static int fail_once(void *arg, struct evloop *l, unsigned events, struct ps_err *err)
{
    (void)arg;
    (void)l;
    (void)events;
    return ps_err_set(err, -EIO, "the source failed");
}

static void test_fd_source_and_errors(void **state)
{
    struct vclock v = {.now = 0};
    const struct evloop_clock clk = {.now = v_now, .sleep = v_sleep, .arg = &v};
    const struct evloop_opts o = {.clock = &clk};
    struct piped p = {0};
    struct evloop *l = NULL;
    struct ps_err err = {0};

    (void)state;
    assert_int_equal(pipe(p.fds), 0);
    assert_int_equal(write(p.fds[1], "ab", 2), 2);
    assert_int_equal(evloop_new(&o, &l, &err), 0);
    p.id = evloop_add_fd(l, p.fds[0], on_pipe, &p, &err);
    assert_true(p.id >= 0);
    assert_true(evloop_add_timer(l, 10, stop_soon, NULL, &err) >= 0);
    assert_int_equal(evloop_run(l, &err), 0);
    assert_int_equal(p.calls, 2); /* both bytes, then removed: the timer ended the loop */
    assert_true(v.now == 10);
    assert_true(evloop_add_timer(l, 0, fail_once, NULL, &err) >= 0);
    assert_int_equal(evloop_run(l, &err), -EIO);
    assert_string_equal(err.msg, "the source failed");
    evloop_free(l);
    (void)close(p.fds[0]);
    (void)close(p.fds[1]);
}

static void test_deadline_stops_with_its_reason(void **state)
{
    struct vclock v = {.now = 5};
    const struct evloop_clock clk = {.now = v_now, .sleep = v_sleep, .arg = &v};
    const struct evloop_opts o = {.clock = &clk};
    struct evloop *l = NULL;
    struct ps_err err = {0};

    (void)state;
    assert_int_equal(evloop_new(&o, &l, &err), 0);
    assert_true(evloop_add_deadline(l, 12.5, EVLOOP_END_OWN + 3, &err) >= 0);
    assert_true(evloop_add_deadline(l, 20, EVLOOP_END_OWN + 4, &err) >= 0);
    assert_int_equal(evloop_run(l, &err), 0);
    assert_int_equal(evloop_end(l), EVLOOP_END_OWN + 3); /* the earlier one, at its time */
    assert_true(v.now == 12.5);
    assert_int_equal(evloop_run(l, &err), 0); /* fired once: the later one is next */
    assert_int_equal(evloop_end(l), EVLOOP_END_OWN + 4);
    assert_true(v.now == 20);
    evloop_free(l);
}

static void test_disabled_source_waits(void **state)
{
    struct vclock v = {.now = 0};
    const struct evloop_clock clk = {.now = v_now, .sleep = v_sleep, .arg = &v};
    const struct evloop_opts o = {.clock = &clk};
    struct rec r = {.v = &v};
    struct tmr a = {&r, 'a', false};
    struct evloop *l = NULL;
    struct ps_err err = {0};
    int id;

    (void)state;
    assert_int_equal(evloop_new(&o, &l, &err), 0);
    id = evloop_add_timer(l, 1, on_timer, &a, &err);
    assert_true(id >= 0);
    evloop_enable(l, id, false);
    assert_true(evloop_add_timer(l, 2, stop_soon, NULL, &err) >= 0);
    assert_int_equal(evloop_run(l, &err), 0);
    assert_int_equal(r.n, 0);
    evloop_enable(l, id, true); /* due 1 is past: fires at the first turn */
    assert_true(evloop_add_timer(l, 3, stop_soon, NULL, &err) >= 0);
    assert_int_equal(evloop_run(l, &err), 0);
    assert_int_equal(r.n, 1);
    assert_true(r.at[0] == 2);
    evloop_free(l);
}

/* ---- teardown -------------------------------------------------------------------------------- */

struct undo {
    char *log;
    char name;
    int rc;
};

static int on_undo(void *arg, struct ps_err *err)
{
    struct undo *u = arg;
    size_t n = strlen(u->log);

    u->log[n] = u->name;
    u->log[n + 1] = '\0';
    return u->rc < 0 ? ps_err_set(err, u->rc, "step %c failed", u->name) : 0;
}

static void test_teardown_order(void **state)
{
    const struct evloop_opts o = {.signals = EVLOOP_SIG_STOP};
    char log[16] = "";
    struct undo a = {log, 'a', 0}, b = {log, 'b', -EIO}, c = {log, 'c', -EPERM};
    struct evloop *l = NULL;
    struct ps_err err = {0};

    (void)state;
    assert_int_equal(evloop_new(&o, &l, &err), 0);
    assert_int_equal(evloop_add_teardown(l, on_undo, &a, &err), 0);
    assert_int_equal(evloop_add_teardown(l, on_undo, &b, &err), 0);
    assert_int_equal(evloop_add_teardown(l, on_undo, &c, &err), 0);
    assert_int_equal(evloop_teardown(l, &err), -EPERM); /* the first failure: c runs first */
    assert_string_equal(err.msg, "step c failed");
    assert_string_equal(log, "cba"); /* last added first; b's failure does not skip a */
    assert_int_equal(evloop_teardown(l, &err), 0);
    assert_true(blocked(SIGTERM)); /* still the loop's until freed */
    evloop_free(l);
    assert_string_equal(log, "cba"); /* once */
    assert_false(blocked(SIGTERM));

    log[0] = '\0';
    assert_int_equal(evloop_new(&o, &l, &err), 0);
    assert_int_equal(evloop_add_teardown(l, on_undo, &a, &err), 0);
    assert_int_equal(evloop_add_teardown(l, on_undo, &c, &err), 0);
    evloop_free(l); /* nobody tore down: free does */
    assert_string_equal(log, "ca");
}

static void test_sizes_are_bounded(void **state)
{
    const struct evloop_opts o = {0};
    struct evloop *l = NULL;
    struct ps_err err = {0};
    char log[EVLOOP_MAX_TEARDOWN + 2] = "";
    struct undo u = {log, 'u', 0};

    (void)state;
    assert_int_equal(evloop_new(&o, &l, &err), 0);
    for (int i = 0; i < EVLOOP_MAX_SOURCES; i++)
        assert_true(evloop_add_timer(l, -1, stop_soon, NULL, &err) >= 0);
    assert_int_equal(evloop_add_timer(l, -1, stop_soon, NULL, &err), -ENOSPC);
    evloop_remove(l, 3);
    assert_int_equal(evloop_add_timer(l, -1, stop_soon, NULL, &err), 3);
    for (int i = 0; i < EVLOOP_MAX_TEARDOWN; i++)
        assert_int_equal(evloop_add_teardown(l, on_undo, &u, &err), 0);
    assert_int_equal(evloop_add_teardown(l, on_undo, &u, &err), -ENOSPC);
    evloop_free(l);
    assert_int_equal(strlen(log), EVLOOP_MAX_TEARDOWN);
}

/* The stop records' reasons: one name per signal the loop takes, "signal" for another. */
static void test_signal_why(void **state)
{
    (void)state;
    assert_string_equal(evloop_signal_why(SIGINT), "signal SIGINT");
    assert_string_equal(evloop_signal_why(SIGTERM), "signal SIGTERM");
    assert_string_equal(evloop_signal_why(SIGHUP), "signal SIGHUP");
    assert_string_equal(evloop_signal_why(SIGQUIT), "signal SIGQUIT");
    assert_string_equal(evloop_signal_why(SIGTSTP), "signal SIGTSTP");
    assert_string_equal(evloop_signal_why(SIGUSR1), "signal");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_fire_in_order),
        cmocka_unit_test(test_periodic_timer_skips_missed_ticks),
        cmocka_unit_test(test_stop_signal_ends_the_loop),
        cmocka_unit_test(test_tstp_without_handler_stops),
        cmocka_unit_test(test_pid_source_sees_the_exit),
        cmocka_unit_test(test_first_stop_signal_is_forwarded_once),
        cmocka_unit_test(test_signal_fd_for_sigchld),
        cmocka_unit_test(test_fd_source_and_errors),
        cmocka_unit_test(test_deadline_stops_with_its_reason),
        cmocka_unit_test(test_disabled_source_waits),
        cmocka_unit_test(test_teardown_order),
        cmocka_unit_test(test_sizes_are_bounded),
        cmocka_unit_test(test_signal_why),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
