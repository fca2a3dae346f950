/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * rendezvous.c: the step's rendezvous port and the list of variables the
 * plugin set (rendezvous.h), kept apart from the Slurm glue for the tests.
 */
#include "config.h"

#include "rendezvous.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The last port of a list of ports and ranges, or 0 if it is not one. */
static unsigned dml__last_port(const char *s)
{
    unsigned last = 0;
    const char *p = s;

    if (s == NULL || *s == '\0')
        return 0;
    while (*p != '\0') {
        char *end;
        unsigned long a, b;
        if (*p < '0' || *p > '9')
            return 0;
        a = strtoul(p, &end, 10);
        b = a;
        if (*end == '-') {
            if (end[1] < '0' || end[1] > '9')
                return 0;
            b = strtoul(end + 1, &end, 10);
        }
        if (a == 0 || b < a || b > 65535)
            return 0;
        last = (unsigned)b;
        if (*end == ',' && end[1] != '\0')
            p = end + 1;
        else if (*end == '\0')
            p = end;
        else
            return 0;
    }
    return last;
}

int dml_spank_resv_ports_ok(const char *resv_ports)
{
    return dml__last_port(resv_ports) != 0;
}

unsigned dml_spank_master_port(uint32_t job, uint32_t step, const char *resv_ports)
{
    unsigned port = dml__last_port(resv_ports);
    uint32_t h;

    if (port != 0)
        return port;
    /* A mix in which every bit of both ids moves every bit of the result
     * (murmur3's finaliser): ids that differ by a multiple of anything do
     * not land on the same port the way job*20+step%20 did. */
    h = job * 0x9e3779b1u ^ (step + 0x7f4a7c15u) * 0x85ebca77u;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return DML_PORT_BASE + h % DML_PORT_SPAN;
}

/* FNV-1a: a value's fingerprint in the marker (not a secret: it tells the
 * plugin's own value from a user's change, not an attacker's). */
static uint32_t dml__fnv(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

int dml_spank_mark(char *buf, size_t len, const char *name, const char *value)
{
    size_t used = strlen(buf);
    int n = snprintf(buf + used, len - used, "%s%s:%08x", used ? "," : "", name,
                     (unsigned)dml__fnv(value));

    if (n < 0 || (size_t)n >= len - used) {
        buf[used] = '\0';
        return -1;
    }
    return 0;
}

int dml_spank_marked(const char *marker, const char *name, const char *value)
{
    char want[128];
    size_t n;
    const char *p = marker;

    if (snprintf(want, sizeof(want), "%s:%08x", name, (unsigned)dml__fnv(value)) >=
        (int)sizeof(want))
        return 0;
    n = strlen(want);
    while (p != NULL && *p != '\0') {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, want, n) == 0)
            return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}
