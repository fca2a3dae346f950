/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml_registry.h: the model registry (libdml_registry).
 *
 * A registry is a directory on the shared file system, used by any number of
 * jobs at once with no server (docs/formats/registry.md):
 *   - versions are immutable and named by the model's hash (dml_nn.h's
 *     identity of spec, weights and buffers), each with its lineage: the
 *     dataset and its content hash, the spec, what the caller adds (the
 *     hyperparameters, metrics, job, the checkpoint it came from);
 *   - aliases ("production", "staging", ...) name one version each and keep
 *     their history, so that a rollback knows where to go.
 * A version is staged in tmp/ and renamed into versions/ (of two
 * registrations of one model, one lands and the other finds it there); an
 * alias file is replaced by rename while the registry's lock (flock) is held,
 * so a reader sees the old alias or the new one, never neither, and two
 * updates at once both land, one after the other.
 */
#ifndef DML_REGISTRY_H
#define DML_REGISTRY_H

#include "dml_status.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#pragma GCC visibility push(default)

#define DML_REGISTRY_FORMAT "slurm-dml model registry"
#define DML_REGISTRY_VERSION 1
/* A version's name: the model's hash, 16 hex digits, and the NUL. */
#define DML_REGISTRY_VERSION_LEN 17

typedef struct dml_registry dml_registry_t;

/* Opens the registry in dir; create: make it (and its parents) if absent.
 * DML_ERR_FORMAT when dir holds something that is no registry. */
dml_status_t dml_registry_open(const char *dir, int create, dml_registry_t **out);
void dml_registry_close(dml_registry_t *r);

/*
 * Registers the model file (or checkpoint) at model: loaded and checked
 * (format, checksums, finite weights), written into the registry as a model
 * file, with version.json holding its lineage: what the model file says
 * (spec, dataset, dataset hash, steps, epochs), the time, and the members of
 * lineage_json (a JSON object's text, or NULL: e.g. name, params, metrics,
 * job, checkpoint); members the registry owns (format, version, model) are
 * refused. version: the model's hash. *existed: 1 when that version was there
 * already (its record is left as it was).
 */
dml_status_t dml_registry_register(dml_registry_t *r, const char *model, const char *lineage_json,
                                   char version[DML_REGISTRY_VERSION_LEN], int *existed);

/* REF: an alias, a version or a unique prefix of one (4 hex digits at least).
 * The version and its model file's path (path may be NULL). */
dml_status_t dml_registry_resolve(dml_registry_t *r, const char *ref,
                                  char version[DML_REGISTRY_VERSION_LEN], char *path, size_t len);

/* As dml_registry_resolve, for a caller that will load the model: the model
 * file is loaded and its hash checked against the version (its name), so
 * that a file replaced or changed after registration is refused
 * (DML_ERR_CHECKSUM, naming the version, the file and both hashes) instead
 * of served as that version. */
dml_status_t dml_registry_resolve_model(dml_registry_t *r, const char *ref,
                                        char version[DML_REGISTRY_VERSION_LEN], char *path,
                                        size_t len);

/*
 * "REGISTRY:REF" as the tools' --model takes it: when the text before the
 * last ':' is a registry directory, *is_ref = 1 and path gets the model file
 * of REF, checked as dml_registry_resolve_model checks it (or the failure
 * names both); otherwise *is_ref = 0, DML_OK, and spec is a path to use as
 * it is.
 */
dml_status_t dml_registry_resolve_spec(const char *spec, char *path, size_t len,
                                       char version[DML_REGISTRY_VERSION_LEN], int *is_ref);

/*
 * Points alias at REF. expect (NULL: no condition) makes it a compare-and-set:
 * the alias must still name that version ("" or "none": must not exist yet),
 * else DML_ERR_MISMATCH and nothing changes, so that a decision taken on the
 * alias's old value is never applied to a newer one. note (may be NULL) goes
 * into the history (who, why). previous: the version it named ("" if none).
 */
dml_status_t dml_registry_alias_set(dml_registry_t *r, const char *alias, const char *ref,
                                    const char *expect, const char *note,
                                    char previous[DML_REGISTRY_VERSION_LEN]);

/* Moves alias back: to REF `to`, or (to NULL) to the version it named before
 * its current one. now: the version it names afterwards. */
dml_status_t dml_registry_alias_rollback(dml_registry_t *r, const char *alias, const char *to,
                                         const char *note, char now[DML_REGISTRY_VERSION_LEN],
                                         char previous[DML_REGISTRY_VERSION_LEN]);

/* JSON texts (malloc'ed, the caller frees): every sound version, oldest
 * first, each with the aliases naming it; one version's record with its
 * aliases; one alias's file (with its history). */
dml_status_t dml_registry_list_json(dml_registry_t *r, char **json);
dml_status_t dml_registry_show_json(dml_registry_t *r, const char *ref, char **json);
dml_status_t dml_registry_alias_json(dml_registry_t *r, const char *alias, char **json);

/* Called for each finding of verify and each removal of gc: the entry (a
 * path relative to the registry), DML_OK or what is wrong, and the detail. */
typedef void (*dml_registry_report_cb_t)(void *arg, const char *entry, dml_status_t st,
                                         const char *detail);

/* Checks everything: the registry's file, each version (its record, its
 * model file loaded with checksums, and that its hash is its name), each
 * alias (its file, and that its version is there), and names anything
 * foreign. *problems: how many entries are damaged or foreign. */
dml_status_t dml_registry_verify(dml_registry_t *r, dml_registry_report_cb_t fn, void *arg,
                                 int *problems);

/* Removes the versions no alias names except the `keep` (>= 1) most
 * recently registered, and staging leftovers older than an hour (a killed
 * registration's); dry_run: only reports. Damaged versions are left for
 * verify to name. */
dml_status_t dml_registry_gc(dml_registry_t *r, int keep, int dry_run, dml_registry_report_cb_t fn,
                             void *arg, int *removed);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* DML_REGISTRY_H */
