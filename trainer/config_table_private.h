/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * config_table_private.h: the settings table's entries, shared by
 * config_table.c (the table and its key=value text, in libdml_train) and
 * config_parse.c (INI, options, JSON, --help: dml-train's only). Included
 * by those two files alone; everything else uses train_config.h.
 */
#ifndef DML_CONFIG_TABLE_PRIVATE_H
#define DML_CONFIG_TABLE_PRIVATE_H

#include "train_config.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    CFG_STRING, /* const char *, pointing into argv or the file's values */
    CFG_INT,    /* int, a whole number in [imin, imax] */
    CFG_U64,    /* uint64_t, in [imin, imax] */
    CFG_KIB,    /* size_t of bytes, given in KiB in [imin, imax] */
    CFG_FLOAT,  /* float, a number in [min, max] */
    CFG_DOUBLE, /* double, in [min, max], or a word of choices */
    CFG_BOOL,   /* int 0/1: a flag on the command line, true/false in a file */
    CFG_ENUM,   /* an enum (int-sized): one of choices */
    CFG_MODEL,  /* the spec's text: parsed into train.spec once all is read */
    CFG_ACTION  /* not a setting: what to do (--help, --check, ...) */
} dml__cfg_type_t;

enum {
    DML__CFG_TOOL = 1u << 0,   /* lands outside dml_trainer_config_t: the tool's own */
    DML__CFG_RECORD = 1u << 1, /* recorded, not set: no option, no key */
    DML__CFG_CKPT = 1u << 2,   /* --help lists it under Checkpoints */
    DML__CFG_NODEF = 1u << 3,  /* --help shows no default */
    DML__CFG_UNSET0 = 1u << 4, /* 0 is "not set" (below the range): written empty, null */
    /* its default depends on another setting (the optimiser's): the ini
     * form writes it empty unless it was given, and empty reads as unset */
    DML__CFG_DEPENDS = 1u << 5
};

typedef struct {
    const char *name;
    int value;
} dml__cfg_choice_t;

typedef struct {
    const char *name; /* the option; the key is it with _ for - */
    dml__cfg_type_t type;
    unsigned flags;
    size_t off;
    const char *def; /* as an option's value; NULL: dml_trainer_config_init's */
    double min, max;
    uint64_t imin, imax;
    const dml__cfg_choice_t *choices; /* NULL-terminated */
    const char *arg;                  /* --help's name for the value */
    const char *help;
    const char *note; /* after the default in --help's [ ] */
    const char *want; /* what a bad value is told to be, where not derived */
    int (*valid)(const char *);
} dml__cfg_entry_t;

/* The table, in the order of the text, the JSON and --help's sections. */
extern const dml__cfg_entry_t dml__cfg_table[];
extern const size_t dml__cfg_count;

#define DML__CFG_PTR(base, e) ((void *)((char *)(base) + (e)->off))
#define DML__CFG_CPTR(base, e) ((const void *)((const char *)(base) + (e)->off))

/* The entry of an option's name; NULL: none. */
const dml__cfg_entry_t *dml__cfg_named(const char *name);
/* A config file's key (len bytes): the option's name, with _ or - alike.
 * Records and actions have no key. NULL: none. */
const dml__cfg_entry_t *dml__cfg_keyed(const char *key, size_t len);
/* The key of e: its name with _ for - (what the text and JSON use). */
const char *dml__cfg_key(const dml__cfg_entry_t *e, char *buf, size_t len);
/* e's value in base (a settings struct, or a bare trainer config where e
 * is not the tool's) as text: buf, or a constant string. */
const char *dml__cfg_value_text(const dml__cfg_entry_t *e, const void *base, char *buf, size_t len);

#endif /* DML_CONFIG_TABLE_PRIVATE_H */
