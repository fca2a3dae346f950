/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * ucx_probe.c: which UCX transports and devices a task will find, asked of
 * UCX itself (its transport layer, the enumeration `ucx_info -d` prints), and
 * kept to those the task's UCX_TLS and UCX_NET_DEVICES let through. For
 * --dml-verbose only: a line that shows the fast path is there (or that it
 * is not) before the program starts.
 *
 * libuct is opened at run time: the plugin does not depend on UCX, and the
 * probe runs only in a verbose task's own process, just before it execs.
 */
#include "config.h"

#include "ucx_probe.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_UCT_API_UCT_H
#include <uct/api/uct.h>

/* Whether transport tl is one of those list names: itself, or an alias UCX
 * gives a family of transports. */
static int dml__tl_allowed(const char *list, const char *tl)
{
    static const struct {
        const char *alias, *members;
    } aliases[] = {{"sm", ",posix,sysv,xpmem,cma,knem,"},
                   {"shm", ",posix,sysv,xpmem,cma,knem,"},
                   {"rc", ",rc_verbs,rc_mlx5,"},
                   {"ud", ",ud_verbs,ud_mlx5,"},
                   {"dc", ",dc_mlx5,"},
                   {"cuda", ",cuda_copy,cuda_ipc,gdr_copy,"},
                   {"rocm", ",rocm_copy,rocm_ipc,rocm_gdr,"}};
    char item[64], pat[72];
    const char *p = list;
    size_t a;

    if (list == NULL || strcmp(list, "all") == 0 || strcmp(list, "any") == 0)
        return 1;
    snprintf(pat, sizeof(pat), ",%s,", tl);
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        snprintf(item, sizeof(item), "%.*s", (int)(n < sizeof(item) ? n : sizeof(item) - 1), p);
        if (strcmp(item, tl) == 0)
            return 1;
        for (a = 0; a < sizeof(aliases) / sizeof(aliases[0]); a++)
            if (strcmp(item, aliases[a].alias) == 0 && strstr(aliases[a].members, pat) != NULL)
                return 1;
        p += n + (p[n] == ',');
    }
    return 0;
}

static int dml__dev_allowed(const char *list, const char *dev, uct_device_type_t type)
{
    char pat[128], l[1024];

    /* UCX_NET_DEVICES selects network devices only */
    if (type != UCT_DEVICE_TYPE_NET || list == NULL || strcmp(list, "all") == 0)
        return 1;
    snprintf(pat, sizeof(pat), ",%s,", dev);
    snprintf(l, sizeof(l), ",%s,", list);
    return strstr(l, pat) != NULL;
}

int dml_ucx_probe(const char *tls, const char *devices, char *out, size_t len)
{
    ucs_status_t (*query_components)(uct_component_h **, unsigned *);
    void (*release_components)(uct_component_h *);
    ucs_status_t (*component_query)(uct_component_h, uct_component_attr_t *);
    ucs_status_t (*md_config_read)(uct_component_h, const char *, const char *, uct_md_config_t **);
    ucs_status_t (*md_open)(uct_component_h, const char *, const uct_md_config_t *, uct_md_h *);
    ucs_status_t (*md_query_tl)(uct_md_h, uct_tl_resource_desc_t **, unsigned *);
    void (*release_tl)(uct_tl_resource_desc_t *);
    void (*md_close)(uct_md_h);
    void (*config_release)(void *);
    uct_component_h *comps = NULL;
    unsigned ncomps = 0, c, m, r;
    size_t used = 0;
    void *lib;

    out[0] = '\0';
    if ((lib = dlopen("libuct.so.0", RTLD_NOW | RTLD_LOCAL)) == NULL)
        return -1;
    *(void **)&query_components = dlsym(lib, "uct_query_components");
    *(void **)&release_components = dlsym(lib, "uct_release_component_list");
    *(void **)&component_query = dlsym(lib, "uct_component_query");
    *(void **)&md_config_read = dlsym(lib, "uct_md_config_read");
    *(void **)&md_open = dlsym(lib, "uct_md_open");
    *(void **)&md_query_tl = dlsym(lib, "uct_md_query_tl_resources");
    *(void **)&release_tl = dlsym(lib, "uct_release_tl_resource_list");
    *(void **)&md_close = dlsym(lib, "uct_md_close");
    *(void **)&config_release = dlsym(lib, "uct_config_release");
    if (!query_components || !release_components || !component_query || !md_config_read ||
        !md_open || !md_query_tl || !release_tl || !md_close || !config_release ||
        query_components(&comps, &ncomps) != UCS_OK) {
        dlclose(lib);
        return -1;
    }
    for (c = 0; c < ncomps; c++) {
        uct_component_attr_t attr;
        memset(&attr, 0, sizeof(attr));
        attr.field_mask = UCT_COMPONENT_ATTR_FIELD_MD_RESOURCE_COUNT;
        if (component_query(comps[c], &attr) != UCS_OK || attr.md_resource_count == 0)
            continue;
        attr.md_resources = calloc(attr.md_resource_count, sizeof(*attr.md_resources));
        if (attr.md_resources == NULL)
            continue;
        attr.field_mask = UCT_COMPONENT_ATTR_FIELD_MD_RESOURCES;
        if (component_query(comps[c], &attr) == UCS_OK) {
            for (m = 0; m < attr.md_resource_count; m++) {
                uct_md_config_t *cfg = NULL;
                uct_md_h md = NULL;
                uct_tl_resource_desc_t *res = NULL;
                unsigned nres = 0;
                if (md_config_read(comps[c], NULL, NULL, &cfg) != UCS_OK)
                    continue;
                if (md_open(comps[c], attr.md_resources[m].md_name, cfg, &md) == UCS_OK) {
                    if (md_query_tl(md, &res, &nres) == UCS_OK) {
                        for (r = 0; r < nres && used + 64 < len; r++)
                            if (dml__tl_allowed(tls, res[r].tl_name) &&
                                dml__dev_allowed(devices, res[r].dev_name, res[r].dev_type))
                                used += (size_t)snprintf(out + used, len - used, "%s%s/%s",
                                                         used ? "," : "", res[r].tl_name,
                                                         res[r].dev_name);
                        release_tl(res);
                    }
                    md_close(md);
                }
                config_release(cfg);
            }
        }
        free(attr.md_resources);
    }
    release_components(comps);
    dlclose(lib);
    return 0;
}

#else

int dml_ucx_probe(const char *tls, const char *devices, char *out, size_t len)
{
    (void)tls, (void)devices;
    if (len > 0)
        out[0] = '\0';
    return -1;
}

#endif
