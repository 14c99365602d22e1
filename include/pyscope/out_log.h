/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_OUT_LOG_H
#define PYSCOPE_OUT_LOG_H

/*
 * pyscope's own messages on stderr (cli_log): one line each, as text for people or as a JSON
 * object for machines (--log-format json). Messages quote paths and names taken from the
 * target, so text goes through the text escaper (control characters and invalid UTF-8 as
 * \xNN, \u00NN) and JSON through out_json_str (out_jsonw.h). Writes never fail: stream errors
 * are sticky in the FILE. Thread-safe as stdio is (one fprintf-sized write per line).
 */

#include <stdbool.h>
#include <stdio.h>

/*
 * One message. level is "error", "warning" or "info". Text: "pyscope: MSG", with "warning: "
 * before MSG for a warning only (an error's message says what failed; info is neither).
 * JSON: {"level":LEVEL,"code":CODE,"message":MSG,"exit_code":EXIT} (code: the error's name as
 * ps_err_name gives it, "OK" for none; exit_code: the exit status that code maps to).
 */
void out_log_line(FILE *fp, bool json, const char *level, const char *code, const char *msg,
                  int exit_code);

#endif
