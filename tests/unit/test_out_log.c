/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for pyscope's log lines (src/out/out_log.c): only a warning is labelled
 * "warning: " (an info line such as "stopped (signal SIGINT)" was labelled so too); text
 * escapes control characters; JSON is the object --log-format json always wrote, with C1
 * controls escaped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "pyscope/out_log.h"

/* One line into a new string (the caller frees it). */
static char *log_line(bool json, const char *level, const char *code, const char *msg, int exit)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);

    assert_non_null(fp);
    out_log_line(fp, json, level, code, msg, exit);
    assert_int_equal(fclose(fp), 0);
    return buf;
}

static void check_line(bool json, const char *level, const char *msg, const char *want)
{
    char *got = log_line(json, level, "OK", msg, 0);

    assert_string_equal(got, want);
    free(got);
}

static void test_text_labels_only_warnings(void **state)
{
    (void)state;
    check_line(false, "info", "stopped (signal SIGINT): 3 raises",
               "pyscope: stopped (signal SIGINT): 3 raises\n");
    check_line(false, "warning", "records dropped", "pyscope: warning: records dropped\n");
    check_line(false, "error", "no such process", "pyscope: no such process\n");
}

static void test_text_and_json_escape(void **state)
{
    (void)state;
    check_line(false, "warning", "file /x\x1b[31m\xc2\x9b.py",
               "pyscope: warning: file /x\\x1b[31m\\u009b.py\n");
    check_line(true, "info", "file /x\x1b[31m\xc2\x9b.py\n",
               "{\"level\":\"info\",\"code\":\"OK\",\"message\":\"file "
               "/x\\u001b[31m\\u009b.py\\n\",\"exit_code\":0}\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_labels_only_warnings),
        cmocka_unit_test(test_text_and_json_escape),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
