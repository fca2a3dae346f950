/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml_json.h: the tools' one way of putting a file name (or any C string
 * from the command line or the file system) into a --json answer. jansson
 * takes UTF-8 only, and json_string() returns NULL for anything else, so a
 * path with a stray byte would make the answer fail after the work was done.
 * dml_json_str() keeps valid UTF-8 as it is and turns each byte above ASCII
 * of anything else into '?': the answer is always made, and still names the
 * file recognisably. Used by dml-data and dml-registry; header-only and not
 * installed.
 */
#ifndef DML_JSON_H
#define DML_JSON_H

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* A new JSON string for s (NULL: ""), or NULL only when out of memory. */
static inline json_t *dml_json_str(const char *s)
{
    json_t *j = json_string(s ? s : "");
    char *c;
    size_t i;

    if (j != NULL || s == NULL || (c = strdup(s)) == NULL)
        return j;
    for (i = 0; c[i]; i++)
        if ((unsigned char)c[i] >= 0x80)
            c[i] = '?';
    j = json_string(c);
    free(c);
    return j;
}

#endif /* DML_JSON_H */
