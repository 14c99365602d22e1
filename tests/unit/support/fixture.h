/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_TEST_FIXTURE_H
#define PYSCOPE_TEST_FIXTURE_H

/*
 * Recorded fixtures for unit tests: tests/fixtures/<minor>/<name>.mem (+ .meta), made by
 * scripts/record-fixtures with `pyscope ... --record`, and <name>.truth.json, the ground truth
 * the target wrote about itself. Shared by the unit tests that replay them (linked into every
 * cmocka binary by CMakeLists.txt).
 */

#include <jansson.h>

#include "../../../src/cpython/layout_tables.h" /* generated: LAYOUT_VERSION_NAMES */
#include "pyscope/locate.h"

/* The minors every fixture set is recorded for: every supported version (scripts/record-fixtures
 * records them all), from the generated table list. */
#define TEST_MINORS                                                                                \
    {                                                                                              \
        LAYOUT_VERSION_NAMES                                                                       \
    }

struct test_fixture {
    struct locate_info loc; /* from <name>.mem.meta */
    json_t *truth;          /* <name>.truth.json, owned */
    char mem[512];          /* path of <name>.mem, for memsrc_fixture_open */
};

/* Load fixture `name` of `minor`; fails the running test (cmocka) when anything is missing. */
void test_fixture_load(const char *minor, const char *name, struct test_fixture *fx);

/* Release the truth document; NULL-safe. */
void test_fixture_free(struct test_fixture *fx);

#endif
