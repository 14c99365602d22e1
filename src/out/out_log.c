/* SPDX-License-Identifier: MIT */
/*
 * pyscope's log lines (see out_log.h). Each line is assembled in memory and written with one
 * fputs, so lines from forked tracers sharing stderr (exceptions --subprocesses) do not mix.
 */
#include "pyscope/out_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "out_int.h"
#include "pyscope/out_jsonw.h"

/* The line into m: text or JSON, with its newline. */
static void log_compose(FILE *m, bool json, const char *level, const char *code, const char *msg,
                        int exit_code)
{
    if (!json) {
        (void)fprintf(m, "pyscope: %s", strcmp(level, "warning") == 0 ? "warning: " : "");
        out_text_escaped(m, msg);
        (void)fputc('\n', m);
        return;
    }
    (void)fputs("{\"level\":", m);
    out_json_str(m, level);
    (void)fputs(",\"code\":", m);
    out_json_str(m, code);
    (void)fputs(",\"message\":", m);
    out_json_str(m, msg);
    (void)fprintf(m, ",\"exit_code\":%d}\n", exit_code);
}

void out_log_line(FILE *fp, bool json, const char *level, const char *code, const char *msg,
                  int exit_code)
{
    char *line = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&line, &len);

    if (m) {
        log_compose(m, json, level, code, msg, exit_code);
        if (fclose(m) == 0 && line) {
            (void)fputs(line, fp);
            free(line);
            return;
        }
        free(line);
    }
    /* out of memory: say so (the message itself is not written unescaped) */
    (void)fputs(json ? "{\"level\":\"error\",\"code\":\"ENOMEM\",\"message\":\"out of memory\"}\n"
                     : "pyscope: out of memory writing a message\n",
                fp);
}
