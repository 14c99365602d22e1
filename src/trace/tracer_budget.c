/* SPDX-License-Identifier: MIT */
/*
 * tracer_budget: the target time exception tracing may take (tracer.h "Budget"), as a credit in
 * seconds of target time. It refills at budget x the target's CPU (read from /proc/PID/stat as
 * it runs); each stop is charged when it ends (tr_budget_stop), each hit counted while disarmed
 * when its counting window ends (tr_budget_charge, from tracer_rate.c). Two ways to spend it:
 * pinned threads (every raise stops: the threads that raise rarely, chosen cheapest first every
 * TR_ALLOC_S) and episodes of the others (armed until TR_EPISODE_STOPS stops or the credit is
 * spent, re-armed when an episode's worth has refilled, jittered: stops are spread out, never a
 * run). tracer_rate.c arms and disarms; this file only decides.
 *
 * Invariants: only the tracer thread calls in here; nothing is allocated (the thread table is
 * allocated at tracer_new); it never touches the target's memory (only /proc and perf ioctls).
 */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "pyscope/bkpt.h"
#include "pyscope/procstat.h"
#include "tracer_int.h"

/* Budget (tracer.h "Budget"). A stop is charged what pyscope holds the thread (measured) plus
 * TR_STOP_FLOOR_S, the round trip of a stop that pyscope cannot see from its side (debug
 * exception, signal delivery, ptrace stop and wake-up: 31-37 us measured in this KVM guest
 * with a tracer doing nothing at a hit, docs/performance.md). The credit refills at
 * budget x the target's CPU (cores, read every TR_CPU_S, at least TR_CPU_FLOOR) and holds at
 * most two episodes. Sampled threads are armed for episodes of at most TR_EPISODE_STOPS stops
 * (a request meets at most that many in a row); threads whose hit rate x stop cost fits in
 * TR_PIN_SHARE of the budget are pinned (decided every TR_ALLOC_S, cheapest first); a pinned
 * thread whose own stops overspend its share of a period (plus TR_OVERDRAFT episodes) is
 * unpinned at once. */
#define TR_STOP_FLOOR_S  35e-6
#define TR_CPU_S         0.25
#define TR_CPU_FLOOR     0.2
#define TR_CPU_EWMA      0.5
#define TR_EPISODE_STOPS 4
#define TR_PIN_SHARE     0.5
#define TR_ALLOC_S       0.5
#define TR_OVERDRAFT     2.0

void tr_budget_init(struct tracer *t)
{
    const struct tracer_opts *opts = &t->opts;

    t->budget = opts->max_rate < 0 || opts->budget < 0 ? -1.0
                : opts->budget > 0                     ? opts->budget
                                                       : TRACER_BUDGET_SHARE;
    t->stop_cost = TR_STOP_FLOOR_S * 2;
    t->cpu_rate = TR_CPU_FLOOR;
    t->credit = 2 * TR_EPISODE_STOPS * t->stop_cost;
    t->rearm_need = TR_EPISODE_STOPS * t->stop_cost;
    t->rng = (uint32_t)getpid() * 2654435761u + 1u;
    t->cpu_at = -1;
}

static double tr_episode_cost(const struct tracer *t)
{
    return TR_EPISODE_STOPS * t->stop_cost;
}

/* Budget refill rate: seconds of target time per second. */
double tr_budget_refill(const struct tracer *t)
{
    return t->budget * fmax(t->cpu_rate, TR_CPU_FLOOR);
}

double tr_budget_jitter(struct tracer *t)
{
    t->rng = t->rng * 1664525u + 1013904223u; /* LCG: only to break phase locking */
    return (double)(t->rng >> 8) / (double)(1u << 24);
}

/* The target's CPU seconds now (process-wide utime + stime), < 0 when unreadable. */
static double tr_target_cpu(const struct tracer *t)
{
    struct procstat_stat st;
    struct ps_err ignored = {0};
    long hz = sysconf(_SC_CLK_TCK);

    if (hz <= 0 || procstat_stat(t->pp->pid, 0, &st, &ignored) < 0)
        return -1;
    return (double)(st.utime_ticks + st.stime_ticks) / (double)hz;
}

static void tr_cpu_tick(struct tracer *t, double now)
{
    double cpu;

    if (t->cpu_at >= 0 && now - t->cpu_at < TR_CPU_S)
        return;
    cpu = tr_target_cpu(t);
    if (cpu < 0)
        return;
    if (t->cpu_at < 0)
        t->cpu_first = cpu;
    else if (now > t->cpu_at)
        t->cpu_rate = (1 - TR_CPU_EWMA) * t->cpu_rate +
                      TR_CPU_EWMA * fmax(0.0, cpu - t->cpu_last) / (now - t->cpu_at);
    t->cpu_last = cpu;
    t->cpu_at = now;
}

void tr_budget_cpu(struct tracer *t, double now)
{
    tr_cpu_tick(t, now);
}

/* Pin or unpin tid. Unpinned while the others are disarmed, its next hits are not stopped for:
 * its exception in flight may be handled further out than seen (fate_unknown). */
static void tr_pin(struct tracer *t, pid_t tid, bool on)
{
    if (bkpt_pinned(t->bp, tid) == on || bkpt_pin(t->bp, tid, on) < 0 || on || bkpt_armed(t->bp))
        return;
    for (size_t i = 0; i < TR_MAX_OPEN; i++)
        if (t->open[i].tid == tid)
            t->open[i].blind = true;
}

static struct tr_thr *tr_thr_of(struct tracer *t, pid_t tid)
{
    for (size_t i = 0; i < TR_MAX_THR; i++)
        if (t->thr[i].tid == tid)
            return &t->thr[i];
    return NULL;
}

void tr_budget_thread(struct tracer *t, pid_t tid)
{
    struct tr_thr *r;

    if (t->budget < 0 || bkpt_mechanism(t->bp) != BKPT_PERF || tr_thr_of(t, tid) ||
        !(r = tr_thr_of(t, 0)))
        return;
    *r = (struct tr_thr){.tid = tid, .on_at = t->cnt_on_total};
    r->count_at = bkpt_thread_count(t->bp, tid);
    tr_pin(t, tid, true);
}

/* A thread's hit rate since the last decision: pinned, its counter is always on; sampled, its
 * counter is on for t->cnt_on_total's increase only. */
static void tr_thr_rate(struct tracer *t, struct tr_thr *r, double dt)
{
    uint64_t count = bkpt_thread_count(t->bp, r->tid);
    double on = bkpt_pinned(t->bp, r->tid) ? dt : t->cnt_on_total - r->on_at;

    if (on > 1e-3)
        r->rate = (double)(count - r->count_at) / on;
    r->count_at = count;
    r->on_at = t->cnt_on_total;
    r->stops = 0;
}

static int tr_thr_cmp(const void *a, const void *b)
{
    const struct tr_thr *x = a, *y = b;

    return (x->rate > y->rate) - (x->rate < y->rate);
}

/* Pin the threads whose hits cost least, while they fit in TR_PIN_SHARE of the budget. The
 * table is compacted (threads gone are forgotten) and sorted by rate, cheapest first. */
static void tr_allocate(struct tracer *t, double now)
{
    double dt = now - t->alloc_at, cum = 0, allowance = TR_PIN_SHARE * tr_budget_refill(t);
    size_t n = 0;

    t->alloc_at = now;
    for (size_t i = 0; i < TR_MAX_THR; i++) {
        struct tr_thr r = t->thr[i];
        t->thr[i].tid = 0;
        if (!r.tid || !bkpt_known(t->bp, r.tid))
            continue;
        tr_thr_rate(t, &r, dt);
        t->thr[n++] = r;
    }
    qsort(t->thr, n, sizeof(t->thr[0]), tr_thr_cmp);
    t->st.pinned_threads = 0;
    for (size_t i = 0; i < n; i++) {
        bool pin = (cum += t->thr[i].rate * t->stop_cost) <= allowance;
        tr_pin(t, t->thr[i].tid, pin);
        t->st.pinned_threads += pin;
    }
}

void tr_budget_tick(struct tracer *t, double now)
{
    if (t->budget < 0)
        return;
    tr_cpu_tick(t, now);
    if (t->credit_at > 0 && now > t->credit_at)
        t->credit =
            fmin(t->credit + (now - t->credit_at) * tr_budget_refill(t), 2 * tr_episode_cost(t));
    t->credit_at = now;
    if (bkpt_mechanism(t->bp) == BKPT_PERF && now - t->alloc_at >= TR_ALLOC_S)
        tr_allocate(t, now);
}

bool tr_budget_stop(struct tracer *t, pid_t tid, double hold)
{
    double cost = hold + TR_STOP_FLOOR_S;
    bool pinned = bkpt_mechanism(t->bp) == BKPT_PERF && bkpt_pinned(t->bp, tid);
    struct tr_thr *r;

    t->stop_cost = 0.9 * t->stop_cost + 0.1 * cost;
    t->st.spent_s += cost;
    if (pinned)
        t->pinned_hits++;
    if (t->budget < 0)
        return pinned;
    t->credit -= cost;
    if (pinned) {
        /* A pinned thread that alone spent more than the pinned share of an allocation period
         * is a storm: sampled from now on (the others keep their pin). */
        r = tr_thr_of(t, tid);
        if (r &&
            (double)++r->stops * t->stop_cost >
                TR_PIN_SHARE * tr_budget_refill(t) * TR_ALLOC_S + TR_OVERDRAFT * tr_episode_cost(t))
            tr_pin(t, tid, false);
        return true;
    }
    if (++t->ep_stops >= TR_EPISODE_STOPS || t->credit < 0)
        t->want_disarm = true;
    return false;
}

void tr_budget_charge(struct tracer *t, double seconds)
{
    t->st.spent_s += seconds;
    if (t->budget >= 0)
        t->credit -= seconds;
}

bool tr_budget_episode_due(const struct tracer *t)
{
    return t->budget < 0 || t->credit >= t->rearm_need;
}

void tr_budget_episode(struct tracer *t)
{
    t->ep_stops = 0;
    t->st.episodes++;
    t->rearm_need = tr_episode_cost(t) * (1.0 + tr_budget_jitter(t));
}

double tr_budget_wait(const struct tracer *t)
{
    return t->budget < 0 ? 1.0 : fmax(0.0, t->rearm_need - t->credit) / tr_budget_refill(t);
}
