/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_UI_APP_DATA_H
#define PYSCOPE_UI_APP_DATA_H

/*
 * The TUI's data feeders (app_data.c), called by the event loop in app.c. Each keeps the app
 * consistent on failure: a feeder that cannot run says so in the status line or a note and
 * the session goes on; only running out of memory is returned. Main thread only (the tracer
 * must be driven from the thread that created it).
 */

#include <stdbool.h>

#include "app_int.h"

/* Record the target's age and reset the trends; call once before the first snapshot. */
void ui_data_init_clock(struct ui_app *app);

/* Take a snapshot (rotating latest -> prev) and update the rates. 0, or -ENOMEM. */
int ui_data_snapshot(struct ui_app *app);

/* Create the profile and the sampler (a sampler failure is a status, not an error). -ENOMEM. */
int ui_data_sampler_start(struct ui_app *app, struct ps_err *err) PS_WARN_UNUSED;

/* The sampler's fd was readable: take a sample (the target's exit turns the session "gone"). */
void ui_data_sampler_tick(struct ui_app *app);

/* Start / stop exception tracing (failures become the status line). */
void ui_data_tracer_start(struct ui_app *app);
void ui_data_tracer_stop(struct ui_app *app);

/* Service the tracer (its fd was readable, or a timer tick): true when the feed changed. */
bool ui_data_tracer_step(struct ui_app *app);

/* Copy new tracer events into the feed: true when there were any. */
bool ui_data_drain_events(struct ui_app *app);

/* Create the growth handle, scan and take a first sample; false (and a note) when it fails. */
bool ui_data_growth_start(struct ui_app *app);

/* Sample the growth handle if any (and rescan it every UI_GROWTH_RESCAN_S). */
void ui_data_growth_tick(struct ui_app *app);

/* The target exited: stop the sampler and the tracer, keep the data, say so. Idempotent. */
void ui_data_gone(struct ui_app *app);

#endif
