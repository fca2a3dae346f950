/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml_log.h: messages from slurm-dml's tools (never from its libraries).
 *
 * Every line carries the tool's name and, in MPI and Slurm jobs, the rank and
 * node it came from, so that interleaved output of many ranks stays readable:
 *
 *     dml-train[3@n2]: error: /data/x/shard-3.h5: dataset "x" has 783 columns...
 *
 * The level comes from DML_LOG_LEVEL (error, warn, info, debug, trace; default
 * info). The macros test the level before formatting, so a debug message
 * costs a comparison when debug is off.
 */
#ifndef DML_LOG_H
#define DML_LOG_H

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library exports what this header declares, and nothing else (it is
 * built with -fvisibility=hidden). */
#pragma GCC visibility push(default)

typedef enum {
    DML_LOG_ERROR = 0,
    DML_LOG_WARN = 1,
    DML_LOG_INFO = 2,
    DML_LOG_DEBUG = 3,
    DML_LOG_TRACE = 4
} dml_log_level_t;

extern dml_log_level_t dml_log_level;

/*
 * Sets the program name and reads DML_LOG_LEVEL. rank < 0 takes the rank from
 * the launcher's environment (PMIX_RANK, OMPI_COMM_WORLD_RANK, PMI_RANK,
 * SLURM_PROCID); no rank is shown outside a parallel launch. The node is
 * SLURMD_NODENAME inside a Slurm job (several simulated nodes may share one
 * host), else the host name. Returns 0, or -1 if DML_LOG_LEVEL was not
 * understood (the level stays info and a warning says so).
 */
int dml_log_init(const char *progname, int rank);

/* Changes the rank shown, once MPI knows it. */
void dml_log_set_rank(int rank);

/* Where messages go (default stderr); tests point it at a file. */
void dml_log_set_stream(FILE *stream);

/* Parses a level name; returns 0 and sets *level, or -1 if unknown. */
int dml_log_level_parse(const char *name, dml_log_level_t *level);

void dml_log_emit(dml_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define DML_LOG(lvl, ...)                                                                          \
    do {                                                                                           \
        if ((lvl) <= dml_log_level)                                                                \
            dml_log_emit((lvl), __VA_ARGS__);                                                      \
    } while (0)

#define dml_error(...) DML_LOG(DML_LOG_ERROR, __VA_ARGS__)
#define dml_warn(...) DML_LOG(DML_LOG_WARN, __VA_ARGS__)
#define dml_info(...) DML_LOG(DML_LOG_INFO, __VA_ARGS__)
#define dml_debug(...) DML_LOG(DML_LOG_DEBUG, __VA_ARGS__)
#define dml_trace(...) DML_LOG(DML_LOG_TRACE, __VA_ARGS__)

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* DML_LOG_H */
