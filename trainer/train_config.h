/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * train_config.h: dml-train's settings as one table (config_table.c): each
 * setting's key, type, where it lands, default, range and help. The
 * command line, --config files, --help, the effective configuration as
 * key=value text and as JSON (--print-config, the ranks' agreement, the
 * checkpoint's "config" attribute) are all made from it, so that a setting
 * added to the table appears in every one of them.
 *
 * config_table.c (the table and its key=value text) is a convenience
 * library linked into libdml_train (which uses only the text of a
 * dml_trainer_config_t, for checkpoints) and into dml-train; hidden in the
 * library. config_parse.c (options, the INI file, JSON, --help) is
 * dml-train's alone, so that only the tool needs libinih and jansson.
 * Nothing here prints or exits: failures are recorded with dml_error_set
 * and the tool prints them. Not named config.h: that is autoconf's.
 */
#ifndef DML_TRAIN_CONFIG_H
#define DML_TRAIN_CONFIG_H

#include "dml_train.h"

#include <stddef.h>
#include <stdint.h>

/* jansson's object type (config_parse.c; only the tool includes jansson.h) */
struct json_t;

/* The most entries the table may have (the given[] flags). */
#define DML__CFG_MAX 64

/* What --print-config prints. */
enum { DML__PRINT_NONE = 0, DML__PRINT_INI, DML__PRINT_JSON };

/* Everything the command line and a config file set: the trainer's own
 * config (first, so that the table's offsets into it are also offsets into
 * a bare dml_trainer_config_t) and what only the tool uses. */
typedef struct {
    dml_trainer_config_t train;
    const char *model; /* the spec as given (train.spec is it parsed) */
    const char *metrics, *output, *resume, *signals;
    int blas_threads, requeue;
    /* what to do rather than train */
    const char *config_file;
    int check, print;
    /* which table entries were set, by the file or the command line */
    unsigned char given[DML__CFG_MAX];
    /* the config file's values (the settings point into them) */
    char **owned;
    size_t nowned;
} dml__train_settings_t;

/* ---- config_table.c: in libdml_train and dml-train ---- */

/*
 * The effective configuration, one setting a line, "key=value" (keys as in
 * config files, with _; names for choices; numbers in as few decimal
 * digits as give the value back exactly: equal text means equal settings).
 * Every setting the tool takes, in table order, each as settled (momentum
 * and weight decay the optimiser's where not given): what the ranks
 * compare. Returns snprintf's count.
 */
int dml__settings_text(const dml__train_settings_t *s, char *buf, size_t len);

/* The same, as --print-config=ini prints it (a valid --config file that
 * means what the settings mean): a setting whose default depends on another
 * (momentum, weight_decay: the optimiser's) and that was not given is
 * written empty, which reads back as unset, so that the file read with
 * another --optimizer takes that optimiser's defaults. */
int dml__settings_ini_text(const dml__train_settings_t *s, char *buf, size_t len);

/* The same form for a bare trainer config, all settled: its settings, what
 * it records but takes no option for (AdamW's betas and eps, the cosine
 * schedule's length) and ranks= (0: left out). The checkpoint's "config"
 * attribute. */
int dml__trainer_config_text(const dml_trainer_config_t *c, int ranks, char *buf, size_t len);

/* ---- config_parse.c: dml-train only ---- */

/* Defaults: dml_trainer_config_init's, then the table's own. */
void dml__settings_init(dml__train_settings_t *s);
void dml__settings_free(dml__train_settings_t *s);

/*
 * Defaults, then the file of --config FILE (INI, keys as the options
 * without their --, - or _ alike, optionally under [train]), then the
 * command line, which wins. In the file an empty value ("key =") leaves a
 * path, the model or a setting that --print-config=ini writes empty unset.
 * 0: parsed and complete; 1: --help was asked for (nothing after it is
 * looked at); 2: refused, with the detail
 * recorded (dml_error_set) naming the option or the file's line and the
 * cause. --train and --model are required unless --print-config is given.
 * Uses getopt_long (optind is reset).
 */
int dml__settings_parse(dml__train_settings_t *s, int argc, char **argv);

/* The effective configuration as a JSON object (keys as in the text,
 * numbers as numbers, choices and paths as strings, unset paths null,
 * switches true or false, with the recorded-only settings), every value
 * as settled (dml__settings_text's): a record, not an input. NULL: no
 * memory. */
struct json_t *dml__settings_json(const dml__train_settings_t *s);
/* dml__settings_json as text, reals in as few digits as read back exactly
 * (15, else 17). Free it with free(). */
char *dml__settings_json_text(const dml__train_settings_t *s);

/* The --help text (malloc'd; NULL: no memory). */
char *dml__config_help(void);

#endif /* DML_TRAIN_CONFIG_H */
