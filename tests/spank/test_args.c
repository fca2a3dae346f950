/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_args.c: the --dml-* option values and plugstack.conf arguments, as
 * srun and admins rely on them: accepted values parse, everything else is
 * refused with a message that says what is accepted; the rendezvous port
 * (rendezvous.h): Slurm's reservation where there is one, else a port that
 * steps and jobs with nearby ids do not share.
 */
#include "config.h"

#include "args.h"
#include "rendezvous.h"

#include <CUnit/Basic.h>
#include "cunit_main.h"
#include <stdio.h>
#include <string.h>

static void test_gpus(void)
{
    char err[256];
    int n = 99;

    CU_ASSERT_EQUAL(dml_spank_parse_gpus(NULL, &n, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(dml_spank_parse_gpus("(null)", &n, err, sizeof(err)), 0); /* from sbatch */
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(dml_spank_parse_gpus("none", &n, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(n, -1);
    CU_ASSERT_EQUAL(dml_spank_parse_gpus("4", &n, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(n, 4);
    CU_ASSERT_EQUAL(dml_spank_parse_gpus("64", &n, err, sizeof(err)), 0);
    n = 7;
    CU_ASSERT_EQUAL(dml_spank_parse_gpus("0", &n, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(n, 7);
    CU_ASSERT_EQUAL(dml_spank_parse_gpus("65", &n, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(dml_spank_parse_gpus("-1", &n, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(dml_spank_parse_gpus("+2", &n, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(dml_spank_parse_gpus("2x", &n, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(dml_spank_parse_gpus("lots", &n, err, sizeof(err)), -1);
    CU_ASSERT_STRING_EQUAL(err, "--dml-gpus=lots: expected auto, none, or GPUs per task (1-64)");
    CU_ASSERT_EQUAL(n, 7);
}

static void test_net(void)
{
    char err[256];
    dml_net_t net = DML_NET_SHM;

    CU_ASSERT_EQUAL(dml_spank_parse_net("auto", &net, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(net, DML_NET_AUTO);
    CU_ASSERT_EQUAL(dml_spank_parse_net("ib", &net, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(net, DML_NET_IB);
    CU_ASSERT_EQUAL(dml_spank_parse_net("tcp", &net, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(net, DML_NET_TCP);
    CU_ASSERT_EQUAL(dml_spank_parse_net("shm", &net, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(net, DML_NET_SHM);
    CU_ASSERT_EQUAL(dml_spank_parse_net("IB", &net, err, sizeof(err)), -1);
    CU_ASSERT_STRING_EQUAL(err, "--dml-net=IB: expected auto, ib, tcp or shm");
    CU_ASSERT_EQUAL(net, DML_NET_SHM);
}

static void test_config(void)
{
    char err[256];
    dml_spank_config_t c;
    char *ok[] = {"default=on",
                  "bind=no",
                  "override=yes",
                  "gpu_ipc=true",
                  "topology=/etc/slurm/node.xml",
                  "hca_exclude=mlx5_8,mlx5_9",
                  "netdev=eno1"};
    char *unknown[] = {"bind=no", "bnd=yes"};
    char *noeq[] = {"verbose"};
    char *badbool[] = {"bind=maybe"};
    char *empty[] = {"topology="};
    char *cache[] = {"cache=none"};
    char *relcache[] = {"cache=run/x"};

    CU_ASSERT_EQUAL(dml_spank_parse_config(0, NULL, &c, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(c.enabled_by_default, 0); /* defaults: opt-in, bind, keep user values */
    CU_ASSERT_EQUAL(c.bind, 1);
    CU_ASSERT_EQUAL(c.override, 0);
    CU_ASSERT_EQUAL(c.gpu_ipc, -1); /* auto: own GPU first where a node runs several GPU tasks */
    CU_ASSERT_EQUAL(dml_spank_parse_config(7, ok, &c, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(c.enabled_by_default, 1);
    CU_ASSERT_EQUAL(c.bind, 0);
    CU_ASSERT_EQUAL(c.override, 1);
    CU_ASSERT_EQUAL(c.gpu_ipc, 1);
    CU_ASSERT_STRING_EQUAL(c.topology, "/etc/slurm/node.xml");
    CU_ASSERT_STRING_EQUAL(c.hca_exclude, "mlx5_8,mlx5_9");
    CU_ASSERT_STRING_EQUAL(c.netdev, "eno1");
    CU_ASSERT_EQUAL(dml_spank_parse_config(2, unknown, &c, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unknown argument 'bnd'"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "keys: default, bind"));
    CU_ASSERT_EQUAL(dml_spank_parse_config(1, noeq, &c, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "'verbose': expected key=value"));
    CU_ASSERT_EQUAL(dml_spank_parse_config(1, badbool, &c, err, sizeof(err)), -1);
    CU_ASSERT_STRING_EQUAL(err, "plugstack.conf: bind=maybe: expected yes or no");
    CU_ASSERT_EQUAL(dml_spank_parse_config(1, empty, &c, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(dml_spank_parse_config(0, NULL, &c, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(c.cache, "/run/slurm-dml");
    CU_ASSERT_EQUAL(dml_spank_parse_config(1, cache, &c, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(c.cache, "none");
    CU_ASSERT_EQUAL(dml_spank_parse_config(1, relcache, &c, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cache=run/x: expected an absolute directory"));
    {
        char *ipc_auto[] = {"gpu_ipc=yes", "gpu_ipc=auto"}, *ipc_no[] = {"gpu_ipc=no"},
             *ipc_bad[] = {"gpu_ipc=sometimes"};
        CU_ASSERT_EQUAL(dml_spank_parse_config(2, ipc_auto, &c, err, sizeof(err)), 0);
        CU_ASSERT_EQUAL(c.gpu_ipc, -1);
        CU_ASSERT_EQUAL(dml_spank_parse_config(1, ipc_no, &c, err, sizeof(err)), 0);
        CU_ASSERT_EQUAL(c.gpu_ipc, 0);
        CU_ASSERT_EQUAL(dml_spank_parse_config(1, ipc_bad, &c, err, sizeof(err)), -1);
        CU_ASSERT_STRING_EQUAL(err, "plugstack.conf: gpu_ipc=sometimes: expected auto, yes or no");
    }
}

/* MASTER_PORT: the reservation's last port (Slurm reserves one more than
 * the node's tasks; MPI libraries take them from the first); without one,
 * steps 20 apart, jobs 1000 apart and the interactive step (the pairs that
 * shared a port when it was 12000 + (job*20 + step%20) % 20000) get
 * different ports, all in range. */
static void test_master_port(void)
{
    static const unsigned steps[] = {0,  1,    10,         20,
                                     40, 1000, 0xfffffffau /* salloc's interactive step */};
    unsigned i, j, job, seen = 0, same = 0;

    CU_ASSERT_EQUAL(dml_spank_master_port(7, 0, "31001-31003"), 31003);
    CU_ASSERT_EQUAL(dml_spank_master_port(7, 20, "31004"), 31004);
    CU_ASSERT_EQUAL(dml_spank_master_port(7, 0, "31001,31005-31006"), 31006);
    CU_ASSERT(dml_spank_resv_ports_ok("31001-31003"));
    /* not a reservation: the derived port */
    CU_ASSERT_EQUAL(dml_spank_master_port(7, 0, ""), dml_spank_master_port(7, 0, NULL));
    CU_ASSERT_EQUAL(dml_spank_master_port(7, 0, "x"), dml_spank_master_port(7, 0, NULL));
    CU_ASSERT_EQUAL(dml_spank_master_port(7, 0, "31003-31001"), dml_spank_master_port(7, 0, NULL));
    CU_ASSERT_EQUAL(dml_spank_master_port(7, 0, "70000"), dml_spank_master_port(7, 0, NULL));
    CU_ASSERT_EQUAL(dml_spank_master_port(7, 0, "31001,"), dml_spank_master_port(7, 0, NULL));
    CU_ASSERT(!dml_spank_resv_ports_ok("31001-"));

    for (job = 1; job <= 5001; job += 1000) {
        for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
            unsigned p = dml_spank_master_port(job, steps[i], NULL);
            CU_ASSERT(p >= DML_PORT_BASE && p < DML_PORT_BASE + DML_PORT_SPAN && p < 32768);
            for (j = 0; j < i; j++)
                if (p == dml_spank_master_port(job, steps[j], NULL)) {
                    fprintf(stderr, "\njob %u: steps %u and %u share port %u\n", job, steps[i],
                            steps[j], p);
                    CU_FAIL("two steps of one job share a MASTER_PORT");
                }
            if (job > 1 && p == dml_spank_master_port(job - 1000, steps[i], NULL)) {
                fprintf(stderr, "\njobs %u and %u: step %u shares port %u\n", job - 1000, job,
                        steps[i], p);
                CU_FAIL("jobs 1000 apart share a MASTER_PORT");
            }
        }
    }
    /* Spread: of 100 consecutive jobs' first 20 steps, few pairs of
     * neighbouring ids collide (a uniform draw: about 2000/20768). */
    for (job = 100000; job < 100100; job++)
        for (i = 0; i < 20; i++) {
            seen++;
            same +=
                dml_spank_master_port(job, i, NULL) == dml_spank_master_port(job, i + 20, NULL) ||
                dml_spank_master_port(job, i, NULL) == dml_spank_master_port(job + 1000, i, NULL);
        }
    CU_ASSERT(same < seen / 100);
}

/* The record of what the plugin set: a variable still holding the value
 * the plugin gave it is the plugin's; one changed since is the user's. */
static void test_marker(void)
{
    char m[64] = "";

    CU_ASSERT_EQUAL(dml_spank_mark(m, sizeof(m), "RANK", "1"), 0);
    CU_ASSERT_EQUAL(dml_spank_mark(m, sizeof(m), "MASTER_PORT", "31003"), 0);
    CU_ASSERT(dml_spank_marked(m, "RANK", "1"));
    CU_ASSERT(dml_spank_marked(m, "MASTER_PORT", "31003"));
    CU_ASSERT(!dml_spank_marked(m, "MASTER_PORT", "23456"));
    CU_ASSERT(!dml_spank_marked(m, "LOCAL_RANK", "1"));
    CU_ASSERT(!dml_spank_marked(m, "RAN", "1"));
    CU_ASSERT(!dml_spank_marked("", "RANK", "1"));
    CU_ASSERT(!dml_spank_marked(NULL, "RANK", "1"));
    /* full: refused whole, the record unchanged */
    CU_ASSERT_EQUAL(dml_spank_mark(m, sizeof(m), "OPENBLAS_NUM_THREADS", "56"), -1);
    CU_ASSERT(dml_spank_marked(m, "MASTER_PORT", "31003"));
    CU_ASSERT(!dml_spank_marked(m, "OPENBLAS_NUM_THREADS", "56"));
}

int main(int argc, char **argv)
{
    CU_pSuite s;
    unsigned int failures;

    if (CU_initialize_registry() != CUE_SUCCESS)
        return 99;
    s = CU_add_suite("spank arguments", NULL, NULL);
    CU_add_test(s, "--dml-gpus values", test_gpus);
    CU_add_test(s, "--dml-net values", test_net);
    CU_add_test(s, "plugstack.conf arguments", test_config);
    CU_add_test(s, "MASTER_PORT: reserved, else apart for nearby steps and jobs", test_master_port);
    CU_add_test(s, "the record of the variables the plugin set", test_marker);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    failures = dml_test_run(argc, argv);
    CU_cleanup_registry();
    return failures == 0 ? 0 : 1;
}
