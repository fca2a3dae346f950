/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * gpu_load.c: libdml_nn's way to its GPU module (gpu.h), dlopen'ed the
 * first time a GPU is asked for and kept for the life of the process (CUDA
 * registers the module's kernels at load; unloading it would pull them from
 * under any thread still holding a network).
 *
 * Where it looks, in order: beside libdml_nn itself (the build tree: both
 * in nn/.libs), in slurm-dml/ beside it (an installed tree, wherever it was
 * copied or moved), then the pkglibdir configure chose. The library never
 * reads the environment, so there is no variable that points elsewhere.
 */
#include "config.h"

#include "gpu.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static const dml__gpu_ops_t *g_ops;
static char g_why[8192];

static void load(void)
{
    char self[4096] = "", paths[3][4200], *slash;
    const dml__gpu_ops_t *ops;
    Dl_info info;
    void *h;
    int i, n = 0;
    size_t used = 0;

    if (dladdr((void *)dml__gpu_ops, &info) != 0 && info.dli_fname != NULL &&
        info.dli_fname[0] == '/') {
        snprintf(self, sizeof(self), "%s", info.dli_fname);
        if ((slash = strrchr(self, '/')) != NULL)
            *slash = '\0';
        snprintf(paths[n++], sizeof(paths[0]), "%s/%s", self, DML_GPU_MODULE);
        snprintf(paths[n++], sizeof(paths[0]), "%s/slurm-dml/%s", self, DML_GPU_MODULE);
    }
    snprintf(paths[n++], sizeof(paths[0]), "%s/%s", DML_PKGLIBDIR, DML_GPU_MODULE);
    for (i = 0; i < n; i++) {
        if (access(paths[i], F_OK) != 0)
            continue;
        /* RTLD_LOCAL: CUDA's symbols stay the module's own. */
        if ((h = dlopen(paths[i], RTLD_NOW | RTLD_LOCAL)) == NULL) {
            snprintf(g_why, sizeof(g_why),
                     "the GPU module %.4200s cannot be loaded: %.3000s (is CUDA's runtime "
                     "installed on this node?)",
                     paths[i], dlerror());
            return;
        }
        ops = dlsym(h, DML_GPU_OPS_SYMBOL);
        if (ops == NULL || ops->abi != DML_GPU_ABI) {
            snprintf(g_why, sizeof(g_why),
                     "the GPU module %.4200s is not this build's (%s); reinstall "
                     "slurm-dml",
                     paths[i], ops == NULL ? "no " DML_GPU_OPS_SYMBOL : "another interface");
            return;
        }
        g_ops = ops;
        return;
    }
    used =
        (size_t)snprintf(g_why, sizeof(g_why),
                         "this build's GPU module %s is not installed (looked in", DML_GPU_MODULE);
    for (i = 0; i < n && used < sizeof(g_why); i++)
        used +=
            (size_t)snprintf(g_why + used, sizeof(g_why) - used, "%s %s", i ? "," : "", paths[i]);
    if (used < sizeof(g_why))
        snprintf(g_why + used, sizeof(g_why) - used, ")");
}

const dml__gpu_ops_t *dml__gpu_ops(const char **why)
{
    pthread_once(&g_once, load);
    if (why != NULL)
        *why = g_ops != NULL ? "" : g_why;
    return g_ops;
}
