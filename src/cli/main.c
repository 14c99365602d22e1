/* SPDX-License-Identifier: MIT */
/*
 * pyscope's entry point: global options, then dispatch to a subcommand (src/cli/cli_<name>.c)
 * through one table. No engine logic lives here; exit codes are in cli.h and --help.
 */
#include <stdio.h>
#include <string.h>

#include "pyscope/cli.h"
#include "pyscope/layout.h"

struct command {
    const char *name;
    cli_command_fn run;
    const char *summary;
};

static const struct command commands[] = {
    {"dump", cli_dump, "print every thread's Python stack (text or --json)"},
    {"attach", cli_attach, "the live terminal UI: threads, stacks, top, exceptions"},
    {"exceptions", cli_exceptions, "show every exception as it is raised, swallowed ones too"},
    {"growth", cli_growth, "which module-level containers grow (the leak hunt)"},
    {"record", cli_record, "sample a running process's stacks into a profile (flamegraph, ...)"},
    {"run", cli_run, "start a command and profile it until it exits (run -- cmd args)"},
    {"ps", cli_ps, "list the Python processes in view, masters with their workers"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void print_usage(void)
{
    (void)fputs("usage: pyscope <command> [options] <pid>\n"
                "\n"
                "Read a running Python process from the outside: nothing is injected, the\n"
                "target keeps running and is never left stopped or traced.\n"
                "\n"
                "commands:\n",
                stdout);
    for (size_t i = 0; i < NCOMMANDS; i++)
        (void)printf("  %-12s %s\n", commands[i].name, commands[i].summary);
    (void)fputs("\n"
                "`pyscope <command> --help` shows a command's options.\n"
                "\n"
                "common options:\n"
                "  --log-format text|json  errors as a sentence (default) or JSON lines on stderr\n"
                "  -h, --help              this help\n"
                "  -V, --version           the version and the supported Python versions\n"
                "\n"
                "exit codes: 0 ok, 1 partial (a thread could not be read consistently),\n"
                "  2 error, 3 permission denied, 4 not a Python process,\n"
                "  5 unsupported Python version, 6 no such process, 64 usage\n",
                stdout);
}

/* Apply --log-format wherever it appears (so early errors are already formatted right);
 * returns false for a bad value. */
static bool scan_log_format(struct cli_common *c, int argc, char **argv)
{
    for (int i = 1; i < argc && argv[i]; i++) {
        const char *v = NULL;

        if (strncmp(argv[i], "--log-format=", 13) == 0)
            v = argv[i] + 13;
        else if (strcmp(argv[i], "--log-format") == 0)
            v = i + 1 < argc && argv[i + 1] ? argv[i + 1] : "";
        if (!v)
            continue;
        if (strcmp(v, "json") == 0)
            c->log_format = CLI_LOG_JSON;
        else if (strcmp(v, "text") != 0)
            return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    struct cli_common common = {.log_format = CLI_LOG_TEXT};
    int i = 1;

    if (!scan_log_format(&common, argc, argv))
        return cli_usage(&common, "--log-format takes `text` or `json`");
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            print_usage();
            return CLI_EXIT_OK;
        }
        if (strcmp(argv[i], "-V") == 0 || strcmp(argv[i], "--version") == 0) {
            (void)printf("pyscope %s (Python %s)\n", PYSCOPE_VERSION, layout_supported());
            return CLI_EXIT_OK;
        }
        if (strcmp(argv[i], "--log-format") == 0)
            i++;
        else if (strncmp(argv[i], "--log-format=", 13) != 0)
            return cli_usage(&common, "unknown option `%s`", argv[i]);
        i++;
    }
    if (i >= argc)
        return cli_usage(&common, "missing command (try `pyscope dump <pid>`)");
    for (size_t k = 0; k < NCOMMANDS; k++)
        if (strcmp(argv[i], commands[k].name) == 0)
            return commands[k].run(&common, argc - i, argv + i);
    return cli_usage(&common, "unknown command `%s`", argv[i]);
}
