/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * fuzz_args.c: libFuzzer target for the plugin's argument parser, which reads
 * what users type (--dml-gpus, --dml-net, also through the environment) and
 * what admins write (plugstack.conf). The input is split at NUL bytes into
 * strings; each is parsed as an option value and all together as plugstack
 * arguments. Beyond memory safety (ASan, UBSan), the results must hold:
 * accepted values are in range, stored strings fit and are terminated, and
 * every refusal explains itself.
 */
#include "config.h"

#include "args.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1), *argv[64], err[256];
    dml_spank_config_t cfg;
    dml_net_t net;
    int argc = 0, per;
    size_t i, start = 0;

    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    for (i = 0; i <= size && argc < 64; i++) {
        if (buf[i] == '\0') {
            argv[argc++] = buf + start;
            start = i + 1;
        }
    }
    for (i = 0; i < (size_t)argc; i++) {
        err[0] = '\0';
        if (dml_spank_parse_gpus(argv[i], &per, err, sizeof(err)) == 0)
            CHECK(per >= -1 && per <= DML_TOPO_MAX_GPUS);
        else
            CHECK(strstr(err, "expected auto, none") != NULL);
        err[0] = '\0';
        if (dml_spank_parse_net(argv[i], &net, err, sizeof(err)) == 0)
            CHECK(net >= DML_NET_AUTO && net <= DML_NET_SHM);
        else
            CHECK(strstr(err, "expected auto, ib, tcp or shm") != NULL);
    }
    err[0] = '\0';
    if (dml_spank_parse_config(argc, argv, &cfg, err, sizeof(err)) == 0) {
        CHECK(strlen(cfg.topology) < sizeof(cfg.topology));
        CHECK(strlen(cfg.hca_exclude) < sizeof(cfg.hca_exclude));
        CHECK(strlen(cfg.netdev) < sizeof(cfg.netdev));
        CHECK((cfg.bind | cfg.override | cfg.gpu_ipc | cfg.enabled_by_default) <= 1);
    } else {
        CHECK(strncmp(err, "plugstack.conf: ", 16) == 0);
    }
    free(buf);
    return 0;
}
