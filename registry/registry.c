/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * registry.c: the model registry's one owner (docs/formats/registry.md).
 *
 * Layout under the registry directory:
 *   registry.json              {"format": "slurm-dml model registry", "version": 1}
 *   versions/<hash>/model.h5   the model file (nn/'s format), never changed
 *   versions/<hash>/version.json   its lineage
 *   aliases/<name>.json        the version an alias names, and its history
 *   tmp/                       registrations being staged, gc's removals
 *   .lock                      flock'ed while an alias changes or gc runs
 * Why no database: a registry must work from any node of a cluster where the
 * only shared thing is the file system, and rename() within one directory is
 * the one atomic operation every shared file system (NFS, Lustre, GPFS)
 * gives. flock() is honoured across NFS clients on Linux (as fcntl locks).
 */
#include "config.h"

#include "dml_h5.h"
#include "dml_json.h"
#include "dml_nn.h"
#include "dml_registry.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define ALIAS_FORMAT "slurm-dml registry alias"
#define VERSION_FORMAT "slurm-dml registry version"
#define STALE_SECONDS 3600

struct dml_registry {
    char dir[4096];
};

/* ---- small helpers ----------------------------------------------------- */

static int is_hash(const char *s)
{
    size_t i;
    for (i = 0; i < 16; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return 0;
    return s[16] == '\0';
}

/* Alias names: what a file name and a shell word can hold without quoting. */
static dml_status_t check_alias(const char *alias)
{
    size_t i, n = strlen(alias);
    if (n == 0 || n > 64 || alias[0] == '.' || alias[0] == '-')
        goto bad;
    for (i = 0; i < n; i++)
        if (!isalnum((unsigned char)alias[i]) && strchr("._-", alias[i]) == NULL)
            goto bad;
    if (is_hash(alias))
        goto bad;
    return DML_OK;
bad:
    return dml_error_set(DML_ERR_INVALID_ARG,
                         "alias '%s': not a name (1-64 letters, digits, '.', "
                         "'_', '-', not starting with '.' or '-', not a version's 16 hex digits)",
                         alias);
}

static double now_seconds(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

static void iso_time(double t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Writes the JSON value at path by the durable-write idiom (a temporary
 * beside it, fsync, rename, fsync of the directory). */
static dml_status_t write_json(const char *path, json_t *v)
{
    char *text = json_dumps(v, JSON_INDENT(2) | JSON_SORT_KEYS);
    dml_status_t st;

    if (text == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "%s: cannot format the record", path);
    st = dml__write_durably(path, text, strlen(text), "record", 0);
    free(text);
    return st;
}

/* Reads a JSON object whose "format" member is format. */
static dml_status_t read_json(const char *path, const char *format, json_t **out)
{
    json_error_t e;
    json_t *v;
    const char *f;

    *out = NULL;
    if ((v = json_load_file(path, JSON_REJECT_DUPLICATES, &e)) == NULL) {
        if (access(path, F_OK) != 0)
            return dml_error_set_errno(errno, "%s", path);
        return dml_error_set(DML_ERR_FORMAT, "%s: not JSON (line %d: %s)", path, e.line, e.text);
    }
    f = json_string_value(json_object_get(v, "format"));
    if (!json_is_object(v) || f == NULL || strcmp(f, format) != 0) {
        json_decref(v);
        return dml_error_set(DML_ERR_FORMAT, "%s: not a %s file", path, format);
    }
    *out = v;
    return DML_OK;
}

static int lock_registry(const dml_registry_t *r)
{
    char path[4200];
    int fd;

    snprintf(path, sizeof(path), "%s/.lock", r->dir);
    if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666)) < 0) {
        dml_error_set_errno(errno, "%s: cannot open the registry's lock", path);
        return -1;
    }
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            dml_error_set_errno(errno, "%s: cannot lock", path);
            close(fd);
            return -1;
        }
    }
    return fd;
}

static void unlock_registry(int fd)
{
    if (fd >= 0)
        close(fd); /* releases the flock */
}

/* ---- open -------------------------------------------------------------- */

dml_status_t dml_registry_open(const char *dir, int create, dml_registry_t **out)
{
    dml_registry_t *r = NULL;
    char path[4200];
    json_t *v = NULL;
    dml_status_t st;
    const char *sub[] = {"versions", "aliases", "tmp"};
    size_t i;

    *out = NULL;
    if (dir == NULL || *dir == '\0' || strlen(dir) >= sizeof(r->dir))
        return dml_error_set(DML_ERR_INVALID_ARG, "registry directory: none or too long a path");
    if ((r = calloc(1, sizeof(*r))) == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", dir);
    snprintf(r->dir, sizeof(r->dir), "%s", dir);
    snprintf(path, sizeof(path), "%s/registry.json", dir);
    if (access(path, F_OK) != 0) {
        DIR *d;
        struct dirent *de;
        int empty = 1;

        if (!create) {
            st = access(dir, F_OK) == 0
                     ? dml_error_set(DML_ERR_NOT_FOUND,
                                     "%s: not a model registry (no registry.json)", dir)
                     : dml_error_set_errno(errno, "registry %s", dir);
            goto fail;
        }
        if (dml__mkdir_p(dir) != 0) {
            st = dml_error_set_errno(errno, "registry %s: cannot create", dir);
            goto fail;
        }
        /* Never take over a directory that holds something else. */
        if ((d = opendir(dir)) == NULL) {
            st = dml_error_set_errno(errno, "registry %s", dir);
            goto fail;
        }
        while ((de = readdir(d)) != NULL) {
            const char *n = de->d_name;
            if (strcmp(n, ".") && strcmp(n, "..") && strcmp(n, "versions") &&
                strcmp(n, "aliases") && strcmp(n, "tmp") && strcmp(n, ".lock") &&
                strncmp(n, "registry.json.tmp.", 18))
                empty = 0;
        }
        closedir(d);
        if (!empty) {
            st = dml_error_set(DML_ERR_EXISTS,
                               "%s: holds other files, and is no model registry: "
                               "a registry goes into a directory of its own",
                               dir);
            goto fail;
        }
        v = json_pack("{s:s, s:i}", "format", DML_REGISTRY_FORMAT, "version", DML_REGISTRY_VERSION);
        if (v == NULL) {
            st = dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", dir);
            goto fail;
        }
        /* Two jobs creating it at once write the same bytes; its
         * directories are made below, as for an existing registry. */
        if ((st = write_json(path, v)) != DML_OK)
            goto fail;
        json_decref(v);
        v = NULL;
    }
    if ((st = read_json(path, DML_REGISTRY_FORMAT, &v)) != DML_OK)
        goto fail;
    if (json_integer_value(json_object_get(v, "version")) != DML_REGISTRY_VERSION) {
        st = dml_error_set(
            DML_ERR_FORMAT, "%s: registry format version %lld; this slurm-dml reads %d", path,
            (long long)json_integer_value(json_object_get(v, "version")), DML_REGISTRY_VERSION);
        goto fail;
    }
    /* (also repairs a registry whose empty directories were removed) */
    for (i = 0; i < sizeof(sub) / sizeof(sub[0]); i++) {
        char p[4200];
        snprintf(p, sizeof(p), "%s/%s", dir, sub[i]);
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            st = dml_error_set_errno(errno, "%s: cannot create", p);
            goto fail;
        }
    }
    json_decref(v);
    *out = r;
    return DML_OK;
fail:
    json_decref(v);
    free(r);
    return st;
}

void dml_registry_close(dml_registry_t *r)
{
    free(r);
}

/* ---- versions ---------------------------------------------------------- */

static void version_dir(const dml_registry_t *r, const char *version, char *buf, size_t len)
{
    snprintf(buf, len, "%s/versions/%s", r->dir, version);
}

/*
 * A version's record or an alias's file at path: its format, and its
 * "version" member 16 hex digits (equal to name, where name is given); an
 * alias also needs its history.
 */
static dml_status_t read_entry(const char *path, const char *format, const char *name, json_t **out)
{
    const char *v;
    dml_status_t st;

    if ((st = read_json(path, format, out)) != DML_OK)
        return st;
    v = json_string_value(json_object_get(*out, "version"));
    if (v == NULL || !is_hash(v) || (name != NULL && strcmp(v, name) != 0) ||
        (name == NULL && !json_is_array(json_object_get(*out, "history")))) {
        json_decref(*out);
        *out = NULL;
        return dml_error_set(DML_ERR_FORMAT, "%s: %s", path,
                             v == NULL || !is_hash(v) ? "no version"
                             : name != NULL ? "records another version than its directory's name"
                                            : "no history");
    }
    return DML_OK;
}

static dml_status_t read_version(const dml_registry_t *r, const char *version, json_t **out)
{
    char path[4400];

    snprintf(path, sizeof(path), "%s/versions/%s/version.json", r->dir, version);
    return read_entry(path, VERSION_FORMAT, version, out);
}

static json_t *lineage_of(const dml_model_info_t *info, const char *source, double t)
{
    char when[32];
    iso_time(t, when, sizeof(when));
    /* the paths as dml_json_str() gives them: a name that is not UTF-8 must
     * not make its model impossible to register */
    return json_pack("{s:s, s:i, s:s, s:s, s:f, s:o, s:s, s:{s:o, s:s}, s:I, s:I, s:s}", "format",
                     VERSION_FORMAT, "format_version", DML_REGISTRY_VERSION, "version", info->hash,
                     "registered", when, "registered_unix", t, "source", dml_json_str(source),
                     "spec", info->spec_text, "dataset", "path", dml_json_str(info->dataset),
                     "hash", info->dataset_hash, "steps", (json_int_t)info->steps, "epochs",
                     (json_int_t)info->epochs, "model", "model.h5");
}

dml_status_t dml_registry_register(dml_registry_t *r, const char *model, const char *lineage_json,
                                   char version[DML_REGISTRY_VERSION_LEN], int *existed)
{
    char stage[4200], path[4300], dest[4200], abs[4096];
    dml_model_t *m = NULL;
    dml_model_info_t info;
    json_t *extra = NULL, *rec = NULL, *val;
    json_error_t e;
    const char *key;
    dml_status_t st;
    int have_stage = 0, have_info = 0;

    *existed = 0;
    version[0] = '\0';
    if (lineage_json != NULL) {
        extra = json_loads(lineage_json, JSON_REJECT_DUPLICATES, &e);
        if (extra == NULL || !json_is_object(extra)) {
            st = dml_error_set(DML_ERR_INVALID_ARG, "lineage: not a JSON object (%s)",
                               extra ? "another JSON value" : e.text);
            goto out;
        }
        json_object_foreach(extra, key, val)
        {
            if (!strcmp(key, "format") || !strcmp(key, "format_version") ||
                !strcmp(key, "version") || !strcmp(key, "model") || !strcmp(key, "registered") ||
                !strcmp(key, "registered_unix")) {
                st = dml_error_set(DML_ERR_INVALID_ARG, "lineage: '%s' is the registry's to set",
                                   key);
                goto out;
            }
        }
    }
    memset(&info, 0, sizeof(info));
    if ((st = dml_model_load(model, 1, &m, &info)) != DML_OK)
        goto out;
    have_info = 1;
    snprintf(version, 17, "%s", info.hash);
    version_dir(r, info.hash, dest, sizeof(dest));
    if (access(dest, F_OK) == 0) {
        *existed = 1;
        goto out;
    }
    snprintf(stage, sizeof(stage), "%s/tmp/reg-%s-%ld-%lx", r->dir, info.hash, (long)getpid(),
             (unsigned long)((unsigned long)now_seconds() * 1000003UL ^ (unsigned long)clock()));
    if (mkdir(stage, 0777) != 0) {
        st = dml_error_set_errno(errno, "%s: cannot create", stage);
        goto out;
    }
    have_stage = 1;
    snprintf(path, sizeof(path), "%s/model.h5", stage);
    if ((st = dml_model_save(path, m, &info)) != DML_OK)
        goto out;
    if (realpath(model, abs) == NULL)
        snprintf(abs, sizeof(abs), "%s", model);
    if ((rec = lineage_of(&info, abs, now_seconds())) == NULL) {
        st = dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", model);
        goto out;
    }
    if (extra != NULL && json_object_update(rec, extra) != 0) {
        st = dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", model);
        goto out;
    }
    snprintf(path, sizeof(path), "%s/version.json", stage);
    if ((st = write_json(path, rec)) != DML_OK || (st = dml__fsync_path(stage)) != DML_OK)
        goto out;
    /* The version appears whole or not at all; of two registrations of the
     * same model one rename wins, the other finds its directory there. */
    if (rename(stage, dest) != 0) {
        if (errno == EEXIST || errno == ENOTEMPTY) {
            *existed = 1;
            goto out;
        }
        st = dml_error_set_errno(errno, "%s: cannot move to %s", stage, dest);
        goto out;
    }
    have_stage = 0;
    snprintf(path, sizeof(path), "%s/versions", r->dir);
    st = dml__fsync_path(path);
out:
    if (have_stage)
        dml__rmtree(stage);
    if (m != NULL)
        dml_model_free(m);
    if (have_info)
        dml_model_info_free(&info);
    json_decref(extra);
    json_decref(rec);
    return st;
}

/* ---- aliases ----------------------------------------------------------- */

static void alias_path(const dml_registry_t *r, const char *alias, char *buf, size_t len)
{
    snprintf(buf, len, "%s/aliases/%s.json", r->dir, alias);
}

/* The alias's file, or NULL (DML_OK) when there is none. */
static dml_status_t read_alias(const dml_registry_t *r, const char *alias, json_t **out)
{
    char path[4300];

    *out = NULL;
    alias_path(r, alias, path, sizeof(path));
    if (access(path, F_OK) != 0)
        return errno == ENOENT ? DML_OK : dml_error_set_errno(errno, "%s", path);
    return read_entry(path, ALIAS_FORMAT, NULL, out);
}

dml_status_t dml_registry_resolve(dml_registry_t *r, const char *ref,
                                  char version[DML_REGISTRY_VERSION_LEN], char *path, size_t len)
{
    char dir[4200];
    json_t *a = NULL;
    dml_status_t st;
    size_t n = strlen(ref);

    version[0] = '\0';
    if (n >= 4 && n <= 16 && strspn(ref, "0123456789abcdef") == n) {
        char found[DML_REGISTRY_VERSION_LEN] = "";
        DIR *d;
        struct dirent *de;
        int count = 0;

        snprintf(dir, sizeof(dir), "%s/versions", r->dir);
        if ((d = opendir(dir)) == NULL)
            return dml_error_set_errno(errno, "%s", dir);
        while ((de = readdir(d)) != NULL)
            if (is_hash(de->d_name) && strncmp(de->d_name, ref, n) == 0) {
                memcpy(found, de->d_name, sizeof(found)); /* is_hash: 16 digits and NUL */
                count++;
            }
        closedir(d);
        if (count > 1)
            return dml_error_set(DML_ERR_INVALID_ARG, "%s: version prefix '%s' names %d versions",
                                 r->dir, ref, count);
        if (count == 1)
            snprintf(version, 17, "%s", found);
    }
    if (version[0] == '\0') {
        if (check_alias(ref) != DML_OK)
            return dml_error_set(DML_ERR_NOT_FOUND, "%s: no version or alias '%s'", r->dir, ref);
        if ((st = read_alias(r, ref, &a)) != DML_OK)
            return st;
        if (a == NULL)
            return dml_error_set(DML_ERR_NOT_FOUND, "%s: no version or alias '%s'", r->dir, ref);
        snprintf(version, 17, "%s", json_string_value(json_object_get(a, "version")));
        json_decref(a);
    }
    version_dir(r, version, dir, sizeof(dir));
    if (access(dir, F_OK) != 0)
        return dml_error_set(DML_ERR_NOT_FOUND,
                             "%s: '%s' names version %s, which is not there "
                             "(removed by hand?)",
                             r->dir, ref, version);
    if (path != NULL && (size_t)snprintf(path, len, "%s/model.h5", dir) >= len)
        return dml_error_set(DML_ERR_INVALID_ARG, "%s: path too long", dir);
    return DML_OK;
}

/* The model file at path loaded, its hash the version's name: what every
 * load through the registry and verify check. */
static dml_status_t check_model(const char *path, const char *version)
{
    dml_model_t *m = NULL;
    dml_model_info_t info;
    dml_status_t st;

    memset(&info, 0, sizeof(info));
    /* A version that exists but whose file is missing is damage, not a
     * reference to nothing: callers tell the two apart by the status. */
    if ((st = dml_model_load(path, 1, &m, &info)) != DML_OK)
        return dml_error_set(st == DML_ERR_NOT_FOUND || st == DML_ERR_INVALID_ARG ? DML_ERR_FORMAT
                                                                                  : st,
                             "version %s: %s", version, dml_error_message());
    if (strcmp(info.hash, version) != 0)
        st = dml_error_set(DML_ERR_CHECKSUM,
                           "version %s: its model file %s has hash %s, not %s "
                           "(the version's name): the file was replaced or changed after it was "
                           "registered",
                           version, path, info.hash, version);
    dml_model_free(m);
    dml_model_info_free(&info);
    return st;
}

dml_status_t dml_registry_resolve_model(dml_registry_t *r, const char *ref,
                                        char version[DML_REGISTRY_VERSION_LEN], char *path,
                                        size_t len)
{
    char v[DML_REGISTRY_VERSION_LEN], p[4300];
    dml_status_t st;

    if ((st = dml_registry_resolve(r, ref, v, p, sizeof(p))) != DML_OK ||
        (st = check_model(p, v)) != DML_OK)
        return st;
    if ((size_t)snprintf(path, len, "%s", p) >= len)
        return dml_error_set(DML_ERR_INVALID_ARG, "%s: path too long", p);
    memcpy(version, v, sizeof(v));
    return DML_OK;
}

dml_status_t dml_registry_resolve_spec(const char *spec, char *path, size_t len,
                                       char version[DML_REGISTRY_VERSION_LEN], int *is_ref)
{
    char dir[4096], marker[4200];
    const char *colon = strrchr(spec, ':');
    dml_registry_t *r = NULL;
    dml_status_t st;

    *is_ref = 0;
    if (colon == NULL || colon == spec || (size_t)(colon - spec) >= sizeof(dir))
        return DML_OK;
    memcpy(dir, spec, (size_t)(colon - spec));
    dir[colon - spec] = '\0';
    snprintf(marker, sizeof(marker), "%s/registry.json", dir);
    if (access(marker, F_OK) != 0)
        return DML_OK;
    *is_ref = 1;
    if ((st = dml_registry_open(dir, 0, &r)) != DML_OK)
        return st;
    st = dml_registry_resolve_model(r, colon + 1, version, path, len);
    dml_registry_close(r);
    return st;
}

/* Under the lock: the alias (a JSON object or NULL) to version, its history
 * extended with the action. */
static dml_status_t alias_write(dml_registry_t *r, const char *alias, json_t *old,
                                const char *version, const char *action, const char *note)
{
    char path[4300], when[32];
    double t = now_seconds();
    json_t *hist, *a, *entry;
    dml_status_t st;

    iso_time(t, when, sizeof(when));
    hist = old ? json_deep_copy(json_object_get(old, "history")) : json_array();
    entry = json_pack("{s:s, s:s, s:s, s:f, s:s}", "version", version, "action", action, "time",
                      when, "time_unix", t, "note", note ? note : "");
    a = json_pack("{s:s, s:s, s:s, s:s, s:o}", "format", ALIAS_FORMAT, "alias", alias, "version",
                  version, "set", when, "history", hist);
    if (hist == NULL || entry == NULL || a == NULL || json_array_append_new(hist, entry) != 0) {
        json_decref(a);
        return dml_error_set(DML_ERR_NO_MEMORY, "alias %s: no memory", alias);
    }
    alias_path(r, alias, path, sizeof(path));
    st = write_json(path, a);
    json_decref(a);
    return st;
}

dml_status_t dml_registry_alias_set(dml_registry_t *r, const char *alias, const char *ref,
                                    const char *expect, const char *note,
                                    char previous[DML_REGISTRY_VERSION_LEN])
{
    char version[DML_REGISTRY_VERSION_LEN];
    json_t *old = NULL;
    const char *cur;
    dml_status_t st;
    int fd;

    previous[0] = '\0';
    if ((st = check_alias(alias)) != DML_OK)
        return st;
    if ((fd = lock_registry(r)) < 0)
        return dml_error_status();
    /* Resolved under the lock: gc cannot remove it between. */
    if ((st = dml_registry_resolve(r, ref, version, NULL, 0)) != DML_OK)
        goto out;
    if ((st = read_alias(r, alias, &old)) != DML_OK)
        goto out;
    cur = old ? json_string_value(json_object_get(old, "version")) : "";
    snprintf(previous, 17, "%s", cur);
    if (expect != NULL) {
        const char *want = strcmp(expect, "none") == 0 ? "" : expect;
        if (strncmp(cur, want, strlen(want)) != 0 || (*want == '\0' && *cur != '\0') ||
            (*want != '\0' && *cur == '\0')) {
            st = dml_error_set(DML_ERR_MISMATCH,
                               "alias %s names %s, not %s as expected: changed "
                               "meanwhile; nothing done",
                               alias, *cur ? cur : "nothing", *want ? want : "nothing");
            goto out;
        }
    }
    if (strcmp(cur, version) == 0)
        goto out; /* already so: no history entry */
    st = alias_write(r, alias, old, version, "set", note);
out:
    json_decref(old);
    unlock_registry(fd);
    return st;
}

dml_status_t dml_registry_alias_rollback(dml_registry_t *r, const char *alias, const char *to,
                                         const char *note, char now[DML_REGISTRY_VERSION_LEN],
                                         char previous[DML_REGISTRY_VERSION_LEN])
{
    char version[DML_REGISTRY_VERSION_LEN] = "";
    json_t *old = NULL, *hist;
    const char *cur;
    dml_status_t st;
    size_t i;
    int fd;

    now[0] = previous[0] = '\0';
    if ((st = check_alias(alias)) != DML_OK)
        return st;
    if ((fd = lock_registry(r)) < 0)
        return dml_error_status();
    if ((st = read_alias(r, alias, &old)) != DML_OK)
        goto out;
    if (old == NULL) {
        st = dml_error_set(DML_ERR_NOT_FOUND, "%s: no alias '%s'", r->dir, alias);
        goto out;
    }
    cur = json_string_value(json_object_get(old, "version"));
    snprintf(previous, 17, "%s", cur);
    if (to != NULL) {
        if ((st = dml_registry_resolve(r, to, version, NULL, 0)) != DML_OK)
            goto out;
    } else {
        /* The newest history entry naming another version than the current. */
        hist = json_object_get(old, "history");
        for (i = json_array_size(hist); i-- > 0;) {
            const char *v = json_string_value(json_object_get(json_array_get(hist, i), "version"));
            if (v != NULL && strcmp(v, cur) != 0) {
                snprintf(version, sizeof(version), "%s", v);
                break;
            }
        }
        if (version[0] == '\0') {
            st = dml_error_set(DML_ERR_NOT_FOUND,
                               "alias %s has named no other version than %s: "
                               "nothing to roll back to",
                               alias, cur);
            goto out;
        }
        char before[DML_REGISTRY_VERSION_LEN];
        memcpy(before, version, sizeof(before));
        if ((st = dml_registry_resolve(r, before, version, NULL, 0)) != DML_OK) {
            st = dml_error_set(st,
                               "alias %s: the version it named before, %s, is gone (gc'ed?): "
                               "use rollback --to VERSION",
                               alias, before);
            goto out;
        }
    }
    snprintf(now, 17, "%s", version);
    if (strcmp(cur, version) != 0)
        st = alias_write(r, alias, old, version, "rollback", note);
out:
    json_decref(old);
    unlock_registry(fd);
    return st;
}

/* ---- listing ----------------------------------------------------------- */

/* Every alias file that reads, as an object alias -> version. */
static json_t *alias_map(const dml_registry_t *r)
{
    char dir[4200];
    json_t *map = json_object(), *a;
    DIR *d;
    struct dirent *de;

    snprintf(dir, sizeof(dir), "%s/aliases", r->dir);
    if (map == NULL || (d = opendir(dir)) == NULL)
        return map;
    while ((de = readdir(d)) != NULL) {
        char name[256];
        size_t n = strlen(de->d_name);
        if (n <= 5 || strcmp(de->d_name + n - 5, ".json") != 0 || de->d_name[0] == '.' ||
            n - 5 >= sizeof(name))
            continue;
        memcpy(name, de->d_name, n - 5);
        name[n - 5] = '\0';
        if (check_alias(name) != DML_OK || read_alias(r, name, &a) != DML_OK || a == NULL)
            continue;
        json_object_set(map, name, json_object_get(a, "version"));
        json_decref(a);
    }
    closedir(d);
    return map;
}

static json_t *aliases_of(json_t *map, const char *version)
{
    json_t *list = json_array(), *v;
    const char *name;
    json_object_foreach(map, name, v) if (strcmp(json_string_value(v), version) == 0)
        json_array_append_new(list, json_string(name));
    return list;
}

static int by_time(const void *a, const void *b)
{
    double x = json_real_value(json_object_get(*(json_t *const *)a, "registered_unix"));
    double y = json_real_value(json_object_get(*(json_t *const *)b, "registered_unix"));
    return x < y ? -1 : x > y;
}

/* The sound versions' records, oldest first (the caller frees the array). */
static dml_status_t versions(const dml_registry_t *r, json_t ***out, size_t *n)
{
    char dir[4200];
    json_t **v = NULL, *rec, **nv;
    size_t cap = 0;
    DIR *d;
    struct dirent *de;

    *out = NULL;
    *n = 0;
    snprintf(dir, sizeof(dir), "%s/versions", r->dir);
    if ((d = opendir(dir)) == NULL)
        return dml_error_set_errno(errno, "%s", dir);
    while ((de = readdir(d)) != NULL) {
        if (!is_hash(de->d_name) || read_version(r, de->d_name, &rec) != DML_OK)
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            if ((nv = realloc(v, cap * sizeof(*v))) == NULL) {
                json_decref(rec);
                break;
            }
            v = nv;
        }
        v[(*n)++] = rec;
    }
    closedir(d);
    qsort(v, *n, sizeof(*v), by_time);
    *out = v;
    return DML_OK;
}

static dml_status_t dump(json_t *v, char **json)
{
    *json = v ? json_dumps(v, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(v);
    return *json ? DML_OK : dml_error_set(DML_ERR_NO_MEMORY, "registry: no memory");
}

dml_status_t dml_registry_list_json(dml_registry_t *r, char **json)
{
    json_t **v, *arr = json_array(), *map = alias_map(r);
    size_t n, i;
    dml_status_t st = versions(r, &v, &n);

    if (st != DML_OK) {
        json_decref(arr);
        json_decref(map);
        return st;
    }
    for (i = 0; i < n; i++) {
        json_object_set_new(v[i], "aliases",
                            aliases_of(map, json_string_value(json_object_get(v[i], "version"))));
        json_array_append_new(arr, v[i]);
    }
    free(v);
    json_decref(map);
    return dump(arr, json);
}

dml_status_t dml_registry_show_json(dml_registry_t *r, const char *ref, char **json)
{
    char version[DML_REGISTRY_VERSION_LEN], path[4300];
    json_t *rec, *map;
    dml_status_t st;

    if ((st = dml_registry_resolve(r, ref, version, path, sizeof(path))) != DML_OK ||
        (st = read_version(r, version, &rec)) != DML_OK)
        return st;
    map = alias_map(r);
    json_object_set_new(rec, "aliases", aliases_of(map, version));
    json_object_set_new(rec, "path", dml_json_str(path));
    json_decref(map);
    return dump(rec, json);
}

dml_status_t dml_registry_alias_json(dml_registry_t *r, const char *alias, char **json)
{
    json_t *a;
    dml_status_t st;

    if ((st = check_alias(alias)) != DML_OK || (st = read_alias(r, alias, &a)) != DML_OK)
        return st;
    if (a == NULL)
        return dml_error_set(DML_ERR_NOT_FOUND, "%s: no alias '%s'", r->dir, alias);
    return dump(a, json);
}

/* ---- verify and gc ----------------------------------------------------- */

static void report(dml_registry_report_cb_t fn, void *arg, const char *entry, dml_status_t st,
                   const char *detail)
{
    if (fn != NULL)
        fn(arg, entry, st, detail);
}

static dml_status_t check_version(dml_registry_t *r, const char *version)
{
    char path[4400];
    json_t *rec;
    dml_status_t st;

    if ((st = read_version(r, version, &rec)) != DML_OK)
        return st;
    json_decref(rec);
    snprintf(path, sizeof(path), "%s/versions/%s/model.h5", r->dir, version);
    return check_model(path, version);
}

dml_status_t dml_registry_verify(dml_registry_t *r, dml_registry_report_cb_t fn, void *arg,
                                 int *problems)
{
    char dir[4200], entry[600], path[4300];
    DIR *d;
    struct dirent *de;
    dml_status_t st;
    json_t *a;

    *problems = 0;
    snprintf(dir, sizeof(dir), "%s/versions", r->dir);
    if ((d = opendir(dir)) == NULL)
        return dml_error_set_errno(errno, "%s", dir);
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(entry, sizeof(entry), "versions/%s", de->d_name);
        if (!is_hash(de->d_name)) {
            (*problems)++;
            report(fn, arg, entry, DML_ERR_FORMAT, "foreign entry: not a version (16 hex digits)");
            continue;
        }
        st = check_version(r, de->d_name);
        if (st != DML_OK)
            (*problems)++;
        report(fn, arg, entry, st, st == DML_OK ? "sound" : dml_error_message());
    }
    closedir(d);
    snprintf(dir, sizeof(dir), "%s/aliases", r->dir);
    if ((d = opendir(dir)) == NULL)
        return dml_error_set_errno(errno, "%s", dir);
    while ((de = readdir(d)) != NULL) {
        char name[256];
        size_t n = strlen(de->d_name);
        if (de->d_name[0] == '.' || strstr(de->d_name, ".json.tmp.") != NULL)
            continue;
        snprintf(entry, sizeof(entry), "aliases/%s", de->d_name);
        if (n <= 5 || n - 5 >= sizeof(name) || strcmp(de->d_name + n - 5, ".json") != 0) {
            (*problems)++;
            report(fn, arg, entry, DML_ERR_FORMAT, "foreign entry: not an alias file");
            continue;
        }
        memcpy(name, de->d_name, n - 5);
        name[n - 5] = '\0';
        if ((st = check_alias(name)) == DML_OK && (st = read_alias(r, name, &a)) == DML_OK) {
            snprintf(path, sizeof(path), "%s/versions/%s", r->dir,
                     json_string_value(json_object_get(a, "version")));
            if (access(path, F_OK) != 0)
                st = dml_error_set(DML_ERR_NOT_FOUND, "names version %s, which is not there",
                                   json_string_value(json_object_get(a, "version")));
            else
                snprintf(path, sizeof(path), "names %s",
                         json_string_value(json_object_get(a, "version")));
            json_decref(a);
        }
        if (st != DML_OK)
            (*problems)++;
        report(fn, arg, entry, st, st == DML_OK ? path : dml_error_message());
    }
    closedir(d);
    return DML_OK;
}

dml_status_t dml_registry_gc(dml_registry_t *r, int keep, int dry_run, dml_registry_report_cb_t fn,
                             void *arg, int *removed)
{
    char dir[4200], src[4500], dst[4300], entry[600];
    json_t **v = NULL, *map = NULL;
    size_t n = 0, i;
    dml_status_t st;
    DIR *d;
    struct dirent *de;
    struct stat sb;
    int fd;

    *removed = 0;
    if (keep < 1)
        return dml_error_set(DML_ERR_INVALID_ARG, "gc: keep must be at least 1 (the newest "
                                                  "registration may be about to get its alias)");
    if ((fd = lock_registry(r)) < 0)
        return dml_error_status();
    if ((st = versions(r, &v, &n)) != DML_OK)
        goto out;
    map = alias_map(r);
    for (i = 0; i + (size_t)keep < n; i++) {
        const char *ver = json_string_value(json_object_get(v[i], "version"));
        json_t *names = aliases_of(map, ver);
        int held = json_array_size(names) > 0;
        json_decref(names);
        if (held)
            continue;
        snprintf(entry, sizeof(entry), "versions/%s", ver);
        if (!dry_run) {
            /* Out of versions/ in one rename, then removed: a reader never
             * finds half a version. */
            snprintf(src, sizeof(src), "%s/versions/%s", r->dir, ver);
            snprintf(dst, sizeof(dst), "%s/tmp/gc-%s-%ld", r->dir, ver, (long)getpid());
            if (rename(src, dst) != 0 || dml__rmtree(dst) != 0) {
                st = dml_error_set_errno(errno, "%s: cannot remove", src);
                goto out;
            }
        }
        (*removed)++;
        report(fn, arg, entry, DML_OK, dry_run ? "would be removed" : "removed");
    }
    snprintf(dir, sizeof(dir), "%s/tmp", r->dir);
    if ((d = opendir(dir)) != NULL) {
        while ((de = readdir(d)) != NULL) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            snprintf(src, sizeof(src), "%s/%s", dir, de->d_name);
            if (lstat(src, &sb) != 0 || difftime(time(NULL), sb.st_mtime) < STALE_SECONDS)
                continue;
            snprintf(entry, sizeof(entry), "tmp/%s", de->d_name);
            if (!dry_run && dml__rmtree(src) != 0)
                continue;
            (*removed)++;
            report(fn, arg, entry, DML_OK,
                   dry_run ? "stale leftover: would be removed" : "stale leftover removed");
        }
        closedir(d);
    }
out:
    for (i = 0; i < n; i++)
        json_decref(v[i]);
    free(v);
    json_decref(map);
    unlock_registry(fd);
    return st;
}
