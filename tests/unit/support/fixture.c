/* SPDX-License-Identifier: MIT */
/* Recorded fixtures for unit tests (see fixture.h). */
#include "fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>

#include "pyscope/pyproc.h"

void test_fixture_load(const char *minor, const char *name, struct test_fixture *fx)
{
    char path[700];
    struct ps_err err = {0};
    json_error_t jerr;

    (void)snprintf(fx->mem, sizeof(fx->mem), "%s/tests/fixtures/%s/%s.mem", PYSCOPE_SOURCE_DIR,
                   minor, name);
    (void)snprintf(path, sizeof(path), "%s.meta", fx->mem);
    if (pyproc_meta_read(path, &fx->loc, &err) < 0)
        fail_msg("cannot load %s: %s", path, err.msg);
    (void)snprintf(path, sizeof(path), "%s/tests/fixtures/%s/%s.truth.json", PYSCOPE_SOURCE_DIR,
                   minor, name);
    fx->truth = json_load_file(path, 0, &jerr);
    if (!fx->truth)
        fail_msg("cannot load %s: %s", path, jerr.text);
}

void test_fixture_free(struct test_fixture *fx)
{
    if (!fx)
        return;
    json_decref(fx->truth);
    fx->truth = NULL;
}
