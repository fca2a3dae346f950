/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * fuzz_topo.c: libFuzzer target for the task mapping. The first byte picks
 * one of the node topologies of topo-xml/ (recorded, hand-written and
 * degenerate ones: a socket without Core objects, a memory-only NUMA node, an
 * AMD node, a node whose ports are all down), loaded once; the next bytes
 * choose the number of tasks, GPUs per task and network; the rest, split at
 * NUL bytes, are the step's GPU list, its visible GPU list, its CPU list and
 * the HCAs to exclude, as Slurm and users give them. The mapping must never
 * crash (a division by a core count of zero did), and what it returns must
 * hold: every task gets CPUs and at least one unit of them, GPUs only from
 * the step's list, and every refusal explains itself.
 */
#include "config.h"

#include "dml_topo.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TOPO_DIR
#error TOPO_DIR must name tests/spank/topo-xml
#endif

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static const char *const fixtures[] = {"dgx-h100.xml",
                                       "dgx-h100-port-down.xml",
                                       "dgx-h100-ib-down.xml",
                                       "coral-lassen.xml",
                                       "cts1-pascal.xml",
                                       "g4dnmetal.xml",
                                       "32em64t-2n8c2t-pci-normalio.xml",
                                       "amd-mi250x.xml",
                                       "nocores.xml",
                                       "memonly.xml",
                                       "cpuonly.xml"};
#define NFIX (sizeof(fixtures) / sizeof(fixtures[0]))
static dml_topo_t *topos[NFIX];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf, *field[4] = {NULL, NULL, NULL, NULL}, note[256], hcas[DML_TOPO_STR];
    dml_task_map_t *maps;
    dml_topo_request_t r;
    unsigned k;
    size_t i, start, nf = 0, f;

    if (size < 4)
        return 0;
    f = data[0] % NFIX;
    if (topos[f] == NULL) {
        char path[1024];
        dml_topo_limit_plugins();
        snprintf(path, sizeof(path), "%s/%s", TOPO_DIR, fixtures[f]);
        CHECK(dml_topo_load(path, &topos[f]) == DML_OK);
    }
    memset(&r, 0, sizeof(r));
    r.ntasks = 1 + data[1] % 64;
    r.gpus_per_task = (int)(data[2] % 5) - 1; /* none, auto, 1..3 */
    r.net = (dml_net_t)(data[3] % 4);
    r.note = note;
    r.note_len = sizeof(note);
    buf = malloc(size - 4 + 1);
    maps = calloc(r.ntasks, sizeof(*maps));
    if (buf == NULL || maps == NULL) {
        free(buf);
        free(maps);
        return 0;
    }
    memcpy(buf, data + 4, size - 4);
    buf[size - 4] = '\0';
    for (i = 0, start = 0; i <= size - 4 && nf < 4; i++)
        if (buf[i] == '\0') {
            field[nf++] = buf + start;
            start = i + 1;
        }
    /* an empty field is "not given" */
    r.gpus = field[0] && field[0][0] ? field[0] : NULL;
    r.visible = field[1] && field[1][0] ? field[1] : NULL;
    r.cpus = field[2] && field[2][0] ? field[2] : NULL;
    r.hca_exclude = field[3] && field[3][0] ? field[3] : NULL;
    if (dml_topo_map(topos[f], &r, maps) == DML_OK) {
        for (k = 0; k < r.ntasks; k++) {
            CHECK(maps[k].cpus[0] != '\0');
            CHECK(maps[k].ncores >= 1);
            CHECK(maps[k].ngpus >= 0 && maps[k].ngpus <= DML_TOPO_MAX_GPUS);
            CHECK(maps[k].net == DML_NET_IB || maps[k].net == DML_NET_TCP ||
                  maps[k].net == DML_NET_SHM);
            CHECK(strlen(maps[k].visible) < sizeof(maps[k].visible));
            if (r.gpus_per_task < 0)
                CHECK(maps[k].ngpus == 0);
        }
    } else {
        CHECK(dml_error_message()[0] != '\0');
    }
    dml_topo_usable_hcas(topos[f], r.hca_exclude, hcas, sizeof(hcas));
    CHECK(strlen(hcas) < sizeof(hcas));
    free(buf);
    free(maps);
    return 0;
}
