/* SPDX-License-Identifier: MIT */
/*
 * Opening a core file (see core.h): memsrc_core (segments, NT_FILE maps, thread notes) and the
 * recorded executable's path. Opening the Python runtime in it is cpython/pycore.c's part.
 */
#include "pyscope/core.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int core_open(const struct core_opts *opts, struct core **out, struct ps_err *err)
{
    struct core *c = calloc(1, sizeof(*c));
    int rc;

    if (!c)
        return ps_err_set(err, -ENOMEM, "out of memory opening %s", opts->path);
    rc = memsrc_core_open(opts, &c->src, &c->maps, &c->threads, &c->nthreads, &c->cred, err);
    if (rc < 0) {
        free(c);
        return rc;
    }
    c->pid = c->threads[0].tid;
    for (size_t i = 0; i < c->maps.n; i++) {
        if (c->maps.v[i].path[0] == '/' && c->maps.v[i].offset == 0) {
            (void)strncpy(c->exe, c->maps.v[i].path, sizeof(c->exe) - 1);
            break;
        }
    }
    *out = c;
    return 0;
}

void core_close(struct core *c)
{
    if (!c)
        return;
    memsrc_close(c->src);
    maps_free(&c->maps);
    free(c->threads);
    free(c);
}
