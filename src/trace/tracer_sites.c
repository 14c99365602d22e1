/* SPDX-License-Identifier: MIT */
/*
 * tracer_sites: how many times each (exception type, raise site) was raised, from what the
 * stops saw (tracer.h "Budget", struct tracer_site). A raise seen in a pinned thread counts 1:
 * every hit of a pinned thread stops. A raise seen in a sampled thread stands for 1/p raises,
 * p = the sampled threads' stops / their hits in its arming cycle (arming to arming: one short
 * episode of stops, then the time off); the hits come from the counting breakpoint (exactly, or
 * extrapolated from its windows, tracer_rate.c). So a cycle's sampled hits are apportioned to
 * the sites its stops saw (Horvitz-Thompson); a cycle with hits and no stop apportions nothing
 * (`unattributed`). Variance: each sampled raise is a Bernoulli(p) draw, so a weight w = 1/p
 * adds w (w - 1); the relative standard error is sqrt(var) / estimate.
 *
 * Invariants: the table is fixed (TRACER_MAX_SITES, allocated at tracer_new); when full, the
 * last row becomes "other". Only the tracer thread calls in here. Never touches the target.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "pyscope/bkpt.h"
#include "pyscope/evloop.h"
#include "tracer_int.h"

static uint64_t tr_fnv(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h * 1099511628211ull;
}

static uint64_t tr_site_hash(const char *type, const struct tracer_frame *at)
{
    uint64_t h = tr_fnv(tr_fnv(tr_fnv(14695981039346656037ull, type), at->file), at->function);

    return (h ^ (uint64_t)(unsigned)at->line) * 1099511628211ull;
}

static bool tr_site_is(const struct tr_site *s, uint64_t h, const char *type,
                       const struct tracer_frame *at)
{
    return s->hash == h && s->pub.at.line == at->line && strcmp(s->pub.type, type) == 0 &&
           strcmp(s->pub.at.file, at->file) == 0 && strcmp(s->pub.at.function, at->function) == 0;
}

static struct tr_site *tr_site_find(struct tracer *t, const char *type,
                                    const struct tracer_frame *at)
{
    uint64_t h = tr_site_hash(type, at);
    struct tr_site *s;

    for (size_t i = 0; i < t->nsites; i++)
        if (tr_site_is(&t->sites[i], h, type, at))
            return &t->sites[i];
    if (t->nsites == TRACER_MAX_SITES) { /* full: the last row is "other" */
        s = &t->sites[TRACER_MAX_SITES - 1];
        (void)snprintf(s->pub.type, sizeof(s->pub.type), "other");
        s->pub.at = (struct tracer_frame){.function = "?", .file = "?", .line = -1};
        s->hash = 0;
        return s;
    }
    s = &t->sites[t->nsites++];
    memset(s, 0, sizeof(*s));
    s->hash = h;
    (void)snprintf(s->pub.type, sizeof(s->pub.type), "%s", type);
    s->pub.at = *at;
    s->pub.first_time = 0;
    s->pub.first_seq = t->st.raises;
    return s;
}

bool tr_site_seen(struct tracer *t, const char *type, const struct tracer_frame *at, bool pinned,
                  struct tr_site **out)
{
    static const struct tracer_frame unread = {.function = "?", .file = "?", .line = -1};
    struct tr_site *s = tr_site_find(t, type, at ? at : &unread);

    if (s->pub.seen == 0)
        s->pub.first_time = evloop_wall();
    s->pub.seen++;
    if (pinned)
        s->exact++;
    else
        s->pending++;
    *out = s;
    return s->pub.reported == 0;
}

void tr_site_add_exact(struct tracer *t, const char *type, const struct tracer_frame *at,
                       uint64_t n, uint32_t gen)
{
    struct tr_site *s = tr_site_find(t, type, at);

    if (s->gen != gen) {
        s->gen = gen;
        s->exact = 0;
        s->sampled_est = 0;
        s->var = 0;
        s->pending = 0;
        s->pub.estimated = false;
    }
    s->exact += n;
}

void tr_site_reported(struct tr_site *s)
{
    s->pub.reported++;
}

void tr_sites_cycle(struct tracer *t)
{
    bool exact = false;
    uint64_t total = t->bp ? bkpt_count(t->bp, &exact) : 0;
    double hits = (double)(total - t->cyc_total_at) +
                  (tr_est_hits(&t->est, t->rate_w) - t->cyc_extra_at) -
                  (double)(t->pinned_hits - t->cyc_pinned_at);
    double stops =
        (double)(t->st.hits - t->cyc_stops_at) - (double)(t->pinned_hits - t->cyc_pinned_at);
    double w = exact && stops > 0 && hits > stops + 0.5 ? hits / stops : 1.0;

    if (stops <= 0 && exact && hits > 0)
        t->unattributed += hits;
    for (size_t i = 0; i < t->nsites; i++) {
        struct tr_site *s = &t->sites[i];
        if (!s->pending)
            continue;
        s->sampled_est += (double)s->pending * w;
        s->var += (double)s->pending * w * (w - 1.0);
        s->pub.estimated = s->pub.estimated || w > 1.0;
        s->pending = 0;
    }
    t->cyc_total_at = total;
    t->cyc_extra_at = tr_est_hits(&t->est, t->rate_w);
    t->cyc_pinned_at = t->pinned_hits;
    t->cyc_stops_at = t->st.hits;
}

size_t tracer_sites(struct tracer *t, struct tracer_site *out, size_t cap)
{
    size_t n = 0;

    tr_sites_cycle(t);
    if (t->used_bpf)
        tr_bpf_sites(t);
    for (size_t i = 0; i < t->nsites && n < cap; i++) {
        struct tr_site *s = &t->sites[i];
        out[n] = s->pub;
        out[n].estimate = (double)s->exact + s->sampled_est;
        out[n].rel_err = out[n].estimate > 0 ? sqrt(s->var) / out[n].estimate : 0;
        n++;
    }
    return n;
}
