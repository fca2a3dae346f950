/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * log.c: the tools' message prefix (program, rank, node) and level filter.
 * A line is formatted whole and written with one fputs, so lines of different
 * ranks sharing a Slurm output file do not interleave mid-line.
 */
#include "config.h"

#include "dml_log.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

dml_log_level_t dml_log_level = DML_LOG_INFO;

static char dml_log_prog[64] = "slurm-dml";
static char dml_log_node[128] = "";
static int dml_log_rank = -1;
static FILE *dml_log_stream;

static const char *const dml_log_names[] = {"error", "warn", "info", "debug", "trace"};

int dml_log_level_parse(const char *name, dml_log_level_t *level)
{
    size_t i;

    if (name == NULL)
        return -1;
    for (i = 0; i < sizeof(dml_log_names) / sizeof(dml_log_names[0]); i++) {
        if (strcasecmp(name, dml_log_names[i]) == 0) {
            *level = (dml_log_level_t)i;
            return 0;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        *level = DML_LOG_WARN;
        return 0;
    }
    return -1;
}

static int dml__env_rank(void)
{
    static const char *const vars[] = {"PMIX_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK",
                                       "SLURM_PROCID"};
    size_t i;

    for (i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        const char *v = getenv(vars[i]);
        char *end;
        long r;

        if (v == NULL || *v == '\0')
            continue;
        r = strtol(v, &end, 10);
        if (*end == '\0' && r >= 0 && r < 1L << 30)
            return (int)r;
    }
    return -1;
}

int dml_log_init(const char *progname, int rank)
{
    const char *node = getenv("SLURMD_NODENAME");
    const char *lvl = getenv("DML_LOG_LEVEL");
    dml_log_level_t parsed;
    int rc = 0;

    if (progname != NULL) {
        const char *slash = strrchr(progname, '/');
        snprintf(dml_log_prog, sizeof(dml_log_prog), "%s", slash ? slash + 1 : progname);
    }
    if (node != NULL && *node != '\0')
        snprintf(dml_log_node, sizeof(dml_log_node), "%s", node);
    else if (gethostname(dml_log_node, sizeof(dml_log_node)) != 0)
        dml_log_node[0] = '\0';
    dml_log_node[sizeof(dml_log_node) - 1] = '\0';
    dml_log_rank = rank >= 0 ? rank : dml__env_rank();

    dml_log_level = DML_LOG_INFO;
    if (lvl != NULL && *lvl != '\0') {
        if (dml_log_level_parse(lvl, &parsed) == 0) {
            dml_log_level = parsed;
        } else {
            dml_warn("DML_LOG_LEVEL='%s' is not a level (error, warn, info, debug, trace); "
                     "using info",
                     lvl);
            rc = -1;
        }
    }
    return rc;
}

void dml_log_set_rank(int rank)
{
    dml_log_rank = rank;
}

void dml_log_set_stream(FILE *stream)
{
    dml_log_stream = stream;
}

void dml_log_emit(dml_log_level_t level, const char *fmt, ...)
{
    char line[2048];
    size_t n;
    int k;
    va_list ap;
    FILE *out = dml_log_stream ? dml_log_stream : stderr;

    if (dml_log_rank >= 0)
        k = snprintf(line, sizeof(line), "%s[%d@%s]: ", dml_log_prog, dml_log_rank, dml_log_node);
    else
        k = snprintf(line, sizeof(line), "%s: ", dml_log_prog);
    n = k < 0 ? 0 : (size_t)k;
    if (level != DML_LOG_INFO && n < sizeof(line)) {
        k = snprintf(line + n, sizeof(line) - n, "%s: ", dml_log_names[level]);
        n += k < 0 ? 0 : (size_t)k;
    }
    if (n < sizeof(line)) {
        va_start(ap, fmt);
        k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        va_end(ap);
        n += k < 0 ? 0 : (size_t)k;
    }
    /* A truncated line still ends in a newline. */
    if (n >= sizeof(line) - 1)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    line[n] = '\0';
    fputs(line, out);
    fflush(out);
}
