/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_OUT_PROFILE_INT_H
#define PYSCOPE_OUT_PROFILE_INT_H

/*
 * Private helpers shared by the profile writers (src/out/out_profile.c, src/out/out_flamegraph.c,
 * src/out/out_samples.c): frame labels and string
 * escaping for XML (JSON strings go through out_json_str, out_jsonw.h). Bytes that are not
 * valid UTF-8 are written as '?', so every output parses whatever the target's strings hold.
 */

#include <stddef.h>
#include <stdio.h>

#include "pyscope/profile.h"

/* Largest label: a function and a file of PROFILE_MAX_STR_LEN each plus the line. */
#define OUT_LABEL_MAX (2 * PROFILE_MAX_STR_LEN + 32)

/* "function (file:line)", "function (file)" without a line, "function" without a file. */
void out_profile_label(const struct profile_frame *f, char *buf, size_t cap);

/* The label of a thread root: "thread NAME (TID)" or "thread IDENT". */
void out_profile_thread_label(const struct profile_thread *t, char *buf, size_t cap);

/* Write s escaped for XML text or attribute values (no quotes). */
void out_profile_xml_str(FILE *f, const char *s);

#endif
