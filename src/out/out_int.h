/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_OUT_INT_H
#define PYSCOPE_OUT_INT_H

/*
 * Private to the writers (out_text.c, out_json.c, out_tasks.c, out_ps.c, out_exc.c): the pieces
 * the asyncio task section shares with the thread report, so that a coroutine frame prints
 * exactly like a thread frame in both formats, and the text escaper every text writer uses.
 */

#include <jansson.h>
#include <stdio.h>

#include "pyscope/snap.h"

struct text_ctx; /* out_text.c: one text report in progress */

/* out_text.c: print a frame as a traceback line (plus source line and locals per options). */
void out_text_frame(struct text_ctx *c, const struct snap_frame *f);

/* out_text.c: print target text with control characters and invalid UTF-8 escaped. */
void out_text_escaped(FILE *fp, const char *str);

/* out_text.c: n bytes as "512 B", "1.5 KiB", "45.2 MiB" ... into buf. */
void out_text_bytes(char *buf, size_t size, uint64_t n);

/* out_json.c: a new frame object as the schema's $defs/frame; NULL with *rc set on failure
 * (-ENOMEM, or -EINVAL for a string that is not UTF-8). */
json_t *out_json_frame_new(const struct snap_frame *f, int *rc);

/* out_tasks.c: the "asyncio tasks" and "await graph" sections of the text report (s->tasks
 * must be non-NULL); writes through fp, errors are sticky in fp. */
void out_tasks_text(struct text_ctx *c, FILE *fp, const struct snap *s);

/* out_tasks.c: add "tasks", "await_graph" and "tasks_summary" to the dump document doc
 * (s->tasks must be non-NULL). Returns 0, -ENOMEM or -EINVAL (a string that is not UTF-8). */
int out_tasks_json(json_t *doc, const struct snap *s);

#endif
