/* SPDX-License-Identifier: MIT */
/*
 * `pyscope record`'s status and statistics lines (see out_record.h). Formatting only: the CLI
 * gathers the numbers (sampler, profile, subprocess group, its own rusage) and passes them in.
 */
#include "pyscope/out_record.h"

void out_record_status(FILE *fp, const struct sampler_stats *st)
{
    char lost[128];

    sampler_lost_words(st, lost, sizeof(lost));
    (void)fprintf(fp, "\rpyscope: %llu samples, %.0f Hz, %s, %.1f s   ",
                  (unsigned long long)st->samples, st->rate, lost, st->elapsed);
}

void out_record_subproc_stats(FILE *fp, const struct subproc_stats *ss)
{
    (void)fprintf(fp,
                  "pyscope: subprocesses: %llu followed (%llu still running, %llu re-opened "
                  "after exec), %llu samples, torn %llu, failed %llu; %llu not Python, %llu "
                  "over the cap of %d\n",
                  (unsigned long long)ss->followed, (unsigned long long)ss->active,
                  (unsigned long long)ss->execs, (unsigned long long)ss->samples,
                  (unsigned long long)ss->torn, (unsigned long long)ss->errors,
                  (unsigned long long)ss->not_python, (unsigned long long)ss->over_cap,
                  SUBPROC_MAX);
}

void out_record_stats(FILE *fp, const struct sampler_stats *st, const struct profile *p,
                      double own_cpu_s)
{
    static const char *const ends[] = {"stopped", "duration reached", "signal", "target exited"};
    struct profile_stats ps;
    double attempts = (double)(st->samples + st->torn + st->errors);
    char lost[128];

    profile_stats_get(p, &ps);
    sampler_lost_words(st, lost, sizeof(lost));
    (void)fprintf(fp, "pyscope: %s\n", lost);
    (void)fprintf(
        fp,
        "pyscope: %s after %.2f s: %llu ticks (%.1f Hz achieved, %llu missed), "
        "%llu samples (%llu reused unchanged), %llu idle skipped\n"
        "pyscope: torn %llu (%.2f%%), failed %llu (%.2f%%); own CPU %.3f s "
        "(%.1f%% of a core); slowest tick %.0f us, mean %.1f us; "
        "%zu unique stacks, %zu frames\n",
        ends[st->end], st->elapsed, (unsigned long long)st->ticks, st->rate,
        (unsigned long long)st->missed_ticks, (unsigned long long)st->samples,
        (unsigned long long)st->reused, (unsigned long long)st->idle_skipped,
        (unsigned long long)st->torn, attempts > 0 ? 100.0 * (double)st->torn / attempts : 0.0,
        (unsigned long long)st->errors, attempts > 0 ? 100.0 * (double)st->errors / attempts : 0.0,
        own_cpu_s, st->elapsed > 0 ? 100.0 * own_cpu_s / st->elapsed : 0.0, st->tick_max_us,
        st->ticks ? st->tick_total_us / (double)st->ticks : 0.0, ps.nodes, ps.frames);
}
