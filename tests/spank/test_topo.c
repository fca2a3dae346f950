/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_topo.c: the task mapping on recorded and hand-written node topologies
 * (topo-xml/README.md), compared line by line with the expected mapping, as
 * mpibind's test suite does. Each line is what dml-topo prints for a task.
 */
#include "config.h"

#include "dml_topo.h"

#include <CUnit/Basic.h>
#include "cunit_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef TOPO_DIR
#error TOPO_DIR must name tests/spank/topo-xml
#endif

static dml_task_map_t maps[64];

static dml_status_t map_lines(const char *xml, dml_topo_request_t *req, char lines[][512])
{
    char path[1024];
    dml_topo_t *t;
    dml_status_t st;
    unsigned k;

    snprintf(path, sizeof(path), "%s/%s", TOPO_DIR, xml);
    st = dml_topo_load(path, &t);
    if (st != DML_OK)
        return st;
    st = dml_topo_map(t, req, maps);
    for (k = 0; st == DML_OK && k < req->ntasks; k++)
        snprintf(lines[k], 512, "gpus=%s cpus=%s cores=%u numa=%d net=%s hca=%s netdev=%s",
                 maps[k].ngpus ? maps[k].visible : "-", maps[k].cpus, maps[k].ncores, maps[k].numa,
                 dml_net_name(maps[k].net), maps[k].hcas[0] ? maps[k].hcas : "-",
                 maps[k].netdev[0] ? maps[k].netdev : "-");
    dml_topo_free(t);
    return st;
}

static void expect(const char *xml, dml_topo_request_t *req, const char *const *want)
{
    char lines[64][512];
    unsigned k;

    CU_ASSERT_EQUAL_FATAL(map_lines(xml, req, lines), DML_OK);
    for (k = 0; k < req->ntasks; k++) {
        if (strcmp(lines[k], want[k]) != 0)
            fprintf(stderr, "\n%s task %u:\n  got  %s\n  want %s\n", xml, k, lines[k], want[k]);
        CU_ASSERT_STRING_EQUAL(lines[k], want[k]);
    }
}

static dml_topo_request_t req_n(unsigned n)
{
    dml_topo_request_t r;
    memset(&r, 0, sizeof(r));
    r.ntasks = n;
    return r;
}

/* DGX H100 class: one compute HCA per GPU behind the same switch. */
static void test_dgx_1_2_4_8(void)
{
    dml_topo_request_t r;
    static const char *const one[] = {
        "gpus=0,1,2,3,4,5,6,7 cpus=0-223 cores=112 numa=0 net=ib hca=mlx5_0:1,mlx5_1:1,mlx5_2:1,"
        "mlx5_3:1,mlx5_4:1,mlx5_5:1,mlx5_6:1,mlx5_7:1 netdev=ib0"};
    static const char *const two[] = {"gpus=0,1,2,3 cpus=0-55,112-167 cores=56 numa=0 net=ib "
                                      "hca=mlx5_0:1,mlx5_1:1,mlx5_2:1,mlx5_3:1 netdev=ib0",
                                      "gpus=4,5,6,7 cpus=56-111,168-223 cores=56 numa=1 net=ib "
                                      "hca=mlx5_4:1,mlx5_5:1,mlx5_6:1,mlx5_7:1 netdev=ib4"};
    static const char *const four[] = {
        "gpus=0,1 cpus=0-27,112-139 cores=28 numa=0 net=ib hca=mlx5_0:1,mlx5_1:1 netdev=ib0",
        "gpus=2,3 cpus=28-55,140-167 cores=28 numa=0 net=ib hca=mlx5_2:1,mlx5_3:1 netdev=ib2",
        "gpus=4,5 cpus=56-83,168-195 cores=28 numa=1 net=ib hca=mlx5_4:1,mlx5_5:1 netdev=ib4",
        "gpus=6,7 cpus=84-111,196-223 cores=28 numa=1 net=ib hca=mlx5_6:1,mlx5_7:1 netdev=ib6"};
    static const char *const eight[] = {
        "gpus=0 cpus=0-13,112-125 cores=14 numa=0 net=ib hca=mlx5_0:1 netdev=ib0",
        "gpus=1 cpus=14-27,126-139 cores=14 numa=0 net=ib hca=mlx5_1:1 netdev=ib1",
        "gpus=2 cpus=28-41,140-153 cores=14 numa=0 net=ib hca=mlx5_2:1 netdev=ib2",
        "gpus=3 cpus=42-55,154-167 cores=14 numa=0 net=ib hca=mlx5_3:1 netdev=ib3",
        "gpus=4 cpus=56-69,168-181 cores=14 numa=1 net=ib hca=mlx5_4:1 netdev=ib4",
        "gpus=5 cpus=70-83,182-195 cores=14 numa=1 net=ib hca=mlx5_5:1 netdev=ib5",
        "gpus=6 cpus=84-97,196-209 cores=14 numa=1 net=ib hca=mlx5_6:1 netdev=ib6",
        "gpus=7 cpus=98-111,210-223 cores=14 numa=1 net=ib hca=mlx5_7:1 netdev=ib7"};

    r = req_n(1);
    expect("dgx-h100.xml", &r, one);
    r = req_n(2);
    expect("dgx-h100.xml", &r, two);
    r = req_n(4);
    expect("dgx-h100.xml", &r, four);
    r = req_n(8);
    expect("dgx-h100.xml", &r, eight);
}

/* More tasks than GPUs: neighbours share a GPU, its HCA, and split its cores. */
static void test_dgx_fewer_gpus_than_tasks(void)
{
    dml_topo_request_t r = req_n(16);
    char lines[64][512];

    CU_ASSERT_EQUAL_FATAL(map_lines("dgx-h100.xml", &r, lines), DML_OK);
    CU_ASSERT_STRING_EQUAL(lines[0],
                           "gpus=0 cpus=0-6,112-118 cores=7 numa=0 net=ib hca=mlx5_0:1 netdev=ib0");
    CU_ASSERT_STRING_EQUAL(
        lines[1], "gpus=0 cpus=7-13,119-125 cores=7 numa=0 net=ib hca=mlx5_0:1 netdev=ib0");
    CU_ASSERT_STRING_EQUAL(
        lines[15], "gpus=7 cpus=105-111,217-223 cores=7 numa=1 net=ib hca=mlx5_7:1 netdev=ib7");
}

/* Slurm gave the step GPUs 2 and 3, renumbered 0 and 1 (ConstrainDevices). */
static void test_dgx_restricted_gpus(void)
{
    dml_topo_request_t r = req_n(2);
    static const char *const want[] = {
        "gpus=0 cpus=0-27,112-139 cores=28 numa=0 net=ib hca=mlx5_2:1 netdev=ib2",
        "gpus=1 cpus=28-55,140-167 cores=28 numa=0 net=ib hca=mlx5_3:1 netdev=ib3"};
    r.gpus = "2,3";
    r.visible = "0,1";
    expect("dgx-h100.xml", &r, want);
}

/* MIG slices of GPU 5 are local to GPU 5; a MIG id without its parent is not
 * local to anything and the task goes to the NUMA nodes in turn. */
static void test_dgx_mig(void)
{
    dml_topo_request_t r = req_n(3);
    static const char *const want[] = {
        "gpus=MIG-GPU-00000000-0000-4000-8000-000000000005/1/0 cpus=56-83,168-195 cores=28 numa=1 "
        "net=ib hca=mlx5_5:1 netdev=ib5",
        "gpus=MIG-GPU-00000000-0000-4000-8000-000000000005/2/0 cpus=84-111,196-223 cores=28 numa=1 "
        "net=ib hca=mlx5_5:1 netdev=ib5",
        "gpus=MIG-0e1a2b3c-0000-5000-8000-000000000000 cpus=0-55,112-167 cores=56 numa=0 net=ib "
        "hca=mlx5_0:1 netdev=ib0"};
    r.gpus = "MIG-GPU-00000000-0000-4000-8000-000000000005/1/0,"
             "MIG-GPU-00000000-0000-4000-8000-000000000005/2/0,"
             "MIG-0e1a2b3c-0000-5000-8000-000000000000";
    expect("dgx-h100.xml", &r, want);
}

/* A compute port is down: its GPU's task takes the idle port nearest to it
 * (the socket's storage HCA), and no other task loses its own. */
static void test_dgx_port_down(void)
{
    dml_topo_request_t r = req_n(8);
    char lines[64][512];
    int k;

    CU_ASSERT_EQUAL_FATAL(map_lines("dgx-h100-port-down.xml", &r, lines), DML_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(lines[2], "hca=mlx5_8:1 netdev=ib8"));
    for (k = 0; k < 8; k++) {
        char own[32];
        snprintf(own, sizeof(own), "hca=mlx5_%d:1 ", k);
        if (k != 2)
            CU_ASSERT_PTR_NOT_NULL(strstr(lines[k], own));
        CU_ASSERT_PTR_NULL(strstr(lines[k], "mlx5_2:"));
    }
    /* The site excludes the storage HCAs: an equally near compute port is
     * shared instead. */
    r.hca_exclude = "mlx5_8,mlx5_9";
    CU_ASSERT_EQUAL_FATAL(map_lines("dgx-h100-port-down.xml", &r, lines), DML_OK);
    CU_ASSERT_PTR_NULL(strstr(lines[2], "mlx5_8"));
    CU_ASSERT_PTR_NULL(strstr(lines[2], "mlx5_2:"));
    CU_ASSERT_PTR_NOT_NULL(strstr(lines[2], "net=ib hca=mlx5_"));
}

/* CPUs restricted by Slurm to socket 0: tasks whose GPUs sit on socket 1
 * still get allowed cores only. */
static void test_dgx_restricted_cpus(void)
{
    dml_topo_request_t r = req_n(2);
    static const char *const want[] = {"gpus=0,1,2,3 cpus=0-13 cores=14 numa=0 net=ib "
                                       "hca=mlx5_0:1,mlx5_1:1,mlx5_2:1,mlx5_3:1 netdev=ib0",
                                       "gpus=4,5,6,7 cpus=14-27 cores=14 numa=0 net=ib "
                                       "hca=mlx5_4:1,mlx5_5:1,mlx5_6:1,mlx5_7:1 netdev=ib4"};
    r.cpus = "0-27";
    expect("dgx-h100.xml", &r, want);
}

/* Lassen: GPUs paired with the ports of the HCA on their socket. */
static void test_lassen(void)
{
    dml_topo_request_t r = req_n(4);
    static const char *const want[] = {
        "gpus=0 cpus=8-47 cores=10 numa=0 net=ib hca=mlx5_0:1 netdev=hsi0",
        "gpus=1 cpus=48-87 cores=10 numa=0 net=ib hca=mlx5_1:1 netdev=hsi1",
        "gpus=2 cpus=96-135 cores=10 numa=8 net=ib hca=mlx5_2:1 netdev=hsi2",
        "gpus=3 cpus=136-175 cores=10 numa=8 net=ib hca=mlx5_3:1 netdev=hsi3"};
    expect("coral-lassen.xml", &r, want);
}

/* Pascal: two GPUs, one HCA shared; the hwloc fixture: one driven GPU. */
static void test_pascal_and_hwloc_fixture(void)
{
    dml_topo_request_t r = req_n(2);
    static const char *const pascal[] = {
        "gpus=0 cpus=0-8,36-44 cores=9 numa=0 net=ib hca=mlx5_0:1 netdev=hsi0",
        "gpus=1 cpus=9-17,45-53 cores=9 numa=0 net=ib hca=mlx5_0:1 netdev=hsi0"};
    static const char *const hw[] = {
        "gpus=0 cpus=8-11,24-27 cores=4 numa=1 net=ib hca=mlx5_0:1 netdev=ib0",
        "gpus=0 cpus=12-15,28-31 cores=4 numa=1 net=ib hca=mlx5_0:1 netdev=ib0"};
    expect("cts1-pascal.xml", &r, pascal);
    expect("32em64t-2n8c2t-pci-normalio.xml", &r, hw);
}

/* No InfiniBand (g4dn: EFA is not IB): TCP over the Ethernet device; IB asked
 * for is refused with the reason; shared memory on request. */
static void test_no_infiniband(void)
{
    dml_topo_request_t r = req_n(4);
    char lines[64][512];
    static const char *const want[] = {
        "gpus=0,1 cpus=0-11,48-59 cores=12 numa=0 net=tcp hca=- netdev=eth0",
        "gpus=2,3 cpus=12-23,60-71 cores=12 numa=0 net=tcp hca=- netdev=eth0",
        "gpus=4,5 cpus=24-35,72-83 cores=12 numa=1 net=tcp hca=- netdev=eth0",
        "gpus=6,7 cpus=36-47,84-95 cores=12 numa=1 net=tcp hca=- netdev=eth0"};
    expect("g4dnmetal.xml", &r, want);
    r.net = DML_NET_IB;
    CU_ASSERT_EQUAL(map_lines("g4dnmetal.xml", &r, lines), DML_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "no active InfiniBand port"));
    r.net = DML_NET_SHM;
    CU_ASSERT_EQUAL_FATAL(map_lines("dgx-h100.xml", &r, lines), DML_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(lines[0], "net=shm hca=- netdev=lo"));
    r.net = DML_NET_TCP;
    r.netdev = "lo";
    CU_ASSERT_EQUAL_FATAL(map_lines("dgx-h100.xml", &r, lines), DML_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(lines[3], "net=tcp hca=- netdev=lo"));
}

static void test_bad_requests(void)
{
    dml_topo_request_t r = req_n(2);
    char lines[64][512], note[256];

    /* A GPU the node does not have is handed out as named, without
     * locality, and said so: never a failed task. */
    r.gpus = "0,9";
    r.note = note;
    r.note_len = sizeof(note);
    CU_ASSERT_EQUAL_FATAL(map_lines("dgx-h100.xml", &r, lines), DML_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(lines[0], "gpus=0 cpus=0-55,112-167"));
    CU_ASSERT_PTR_NOT_NULL(strstr(lines[1], "gpus=9 cpus=56-111,168-223"));
    CU_ASSERT_PTR_NOT_NULL(strstr(note, "1 of its GPUs are not among this node's 8"));
    r.gpus = "0,x9";
    CU_ASSERT_EQUAL(map_lines("dgx-h100.xml", &r, lines), DML_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "GPU \"x9\": expected an index"));
    r.note = NULL;
    r.gpus = NULL;
    r.gpus_per_task = 5;
    CU_ASSERT_EQUAL(map_lines("dgx-h100.xml", &r, lines), DML_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "5 GPUs per task for 2 tasks needs 10"));
    r.gpus_per_task = 0;
    r.cpus = "500-600";
    CU_ASSERT_EQUAL(map_lines("dgx-h100.xml", &r, lines), DML_ERR_INVALID_ARG);
    r.cpus = "zero";
    CU_ASSERT_EQUAL(map_lines("dgx-h100.xml", &r, lines), DML_ERR_INVALID_ARG);
    /* ranges hwloc would take as "up to its largest index" (a 512 MB bitmap) */
    r.cpus = "-3";
    CU_ASSERT_EQUAL(map_lines("dgx-h100.xml", &r, lines), DML_ERR_INVALID_ARG);
    r.cpus = "0-";
    CU_ASSERT_EQUAL(map_lines("dgx-h100.xml", &r, lines), DML_ERR_INVALID_ARG);
    r.cpus = NULL;
    r.gpus = "0,1";
    r.visible = "0";
    CU_ASSERT_EQUAL(map_lines("dgx-h100.xml", &r, lines), DML_ERR_INVALID_ARG);
    r.visible = NULL;
    r.gpus_per_task = -1;
    CU_ASSERT_EQUAL_FATAL(map_lines("dgx-h100.xml", &r, lines), DML_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(lines[0], "gpus=- cpus=0-55,112-167"));
    CU_ASSERT_PTR_NOT_NULL(strstr(lines[1], "gpus=- cpus=56-111,168-223"));
    {
        dml_topo_t *t;
        CU_ASSERT_EQUAL(dml_topo_load("/nonexistent.xml", &t), DML_ERR_FORMAT);
        CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "/nonexistent.xml"));
    }
}

/* With N GPUs per task and fewer tasks than GPUs, the tasks spread over the
 * node's sockets: 2 tasks x 1 GPU on a 2 x 2 GPU node get one per socket. */
static void test_spread_over_sockets(void)
{
    dml_topo_request_t r = req_n(2);
    static const char *const lassen[] = {
        "gpus=0 cpus=8-87 cores=20 numa=0 net=ib hca=mlx5_0:1 netdev=hsi0",
        "gpus=2 cpus=96-175 cores=20 numa=8 net=ib hca=mlx5_2:1 netdev=hsi2"};
    static const char *const dgx[] = {
        "gpus=0,1 cpus=0-55,112-167 cores=56 numa=0 net=ib hca=mlx5_0:1,mlx5_1:1 netdev=ib0",
        "gpus=4,5 cpus=56-111,168-223 cores=56 numa=1 net=ib hca=mlx5_4:1,mlx5_5:1 netdev=ib4"};
    r.gpus_per_task = 1;
    expect("coral-lassen.xml", &r, lassen);
    r.gpus_per_task = 2;
    expect("dgx-h100.xml", &r, dgx);
}

/* An AMD GPU node: its GPUs are mapped by locality and named through
 * ROCR_VISIBLE_DEVICES, never CUDA_VISIBLE_DEVICES. */
static void test_amd(void)
{
    dml_topo_request_t r = req_n(4);
    dml_topo_t *t;
    char path[1024];
    static const char *const want[] = {
        "gpus=0 cpus=0-3,16-19 cores=4 numa=0 net=ib hca=mlx5_0:1 netdev=ib0",
        "gpus=1 cpus=4-7,20-23 cores=4 numa=0 net=ib hca=mlx5_0:1 netdev=ib0",
        "gpus=2 cpus=8-11,24-27 cores=4 numa=1 net=ib hca=mlx5_1:1 netdev=ib1",
        "gpus=3 cpus=12-15,28-31 cores=4 numa=1 net=ib hca=mlx5_1:1 netdev=ib1"};
    expect("amd-mi250x.xml", &r, want);
    snprintf(path, sizeof(path), "%s/amd-mi250x.xml", TOPO_DIR);
    CU_ASSERT_EQUAL_FATAL(dml_topo_load(path, &t), DML_OK);
    CU_ASSERT_EQUAL(dml_topo_gpu_kind(t), DML_GPU_AMD);
    CU_ASSERT_STRING_EQUAL(dml_gpu_visible_var(dml_topo_gpu_kind(t)), "ROCR_VISIBLE_DEVICES");
    dml_topo_free(t);
    snprintf(path, sizeof(path), "%s/dgx-h100.xml", TOPO_DIR);
    CU_ASSERT_EQUAL_FATAL(dml_topo_load(path, &t), DML_OK);
    CU_ASSERT_STRING_EQUAL(dml_gpu_visible_var(dml_topo_gpu_kind(t)), "CUDA_VISIBLE_DEVICES");
    dml_topo_free(t);
}

/* Degenerate nodes: a socket whose PUs have no Core objects (once a
 * division by zero), a NUMA node with memory only: mapped on what is there. */
static void test_degenerate(void)
{
    dml_topo_request_t r = req_n(4);
    static const char *const nocores[] = {"gpus=0 cpus=0-1 cores=2 numa=0 net=tcp hca=- netdev=-",
                                          "gpus=0 cpus=2-3 cores=2 numa=0 net=tcp hca=- netdev=-",
                                          "gpus=1 cpus=4-5 cores=2 numa=1 net=tcp hca=- netdev=-",
                                          "gpus=1 cpus=6-7 cores=2 numa=1 net=tcp hca=- netdev=-"};
    static const char *const cpuonly[] = {"gpus=- cpus=0 cores=1 numa=0 net=tcp hca=- netdev=eth0",
                                          "gpus=- cpus=1 cores=1 numa=0 net=tcp hca=- netdev=eth0",
                                          "gpus=- cpus=2 cores=1 numa=0 net=tcp hca=- netdev=eth0",
                                          "gpus=- cpus=3 cores=1 numa=0 net=tcp hca=- netdev=eth0"};
    char lines[64][512], note[256];
    unsigned k;

    expect("nocores.xml", &r, nocores);
    r.gpus_per_task = -1;
    CU_ASSERT_EQUAL_FATAL(map_lines("nocores.xml", &r, lines), DML_OK);
    CU_ASSERT_STRING_EQUAL(lines[3], "gpus=- cpus=6-7 cores=2 numa=1 net=tcp hca=- netdev=-");
    r.gpus_per_task = 0;
    CU_ASSERT_EQUAL_FATAL(map_lines("memonly.xml", &r, lines), DML_OK);
    for (k = 0; k < 4; k++)
        CU_ASSERT_PTR_NOT_NULL(strstr(lines[k], "gpus=0 cpus="));
    /* a node without GPUs: a GPU list (a user's exported
     * CUDA_VISIBLE_DEVICES) is left alone, not an error */
    r.gpus = "0,1";
    r.note = note;
    r.note_len = sizeof(note);
    expect("cpuonly.xml", &r, cpuonly);
    CU_ASSERT_PTR_NOT_NULL(strstr(note, "GPU list \"0,1\": this node has no GPU the plugin maps"));
}

/* NCCL gets every usable port of the node, the same on every task. */
static void test_node_hcas(void)
{
    dml_topo_t *t;
    char path[1024], buf[DML_TOPO_STR];

    snprintf(path, sizeof(path), "%s/dgx-h100.xml", TOPO_DIR);
    CU_ASSERT_EQUAL_FATAL(dml_topo_load(path, &t), DML_OK);
    dml_topo_usable_hcas(t, NULL, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, "mlx5_0:1,mlx5_1:1,mlx5_2:1,mlx5_3:1,mlx5_8:1,mlx5_4:1,mlx5_5:1,"
                                "mlx5_6:1,mlx5_7:1,mlx5_9:1");
    dml_topo_usable_hcas(t, "mlx5_8,mlx5_9", buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(
        buf, "mlx5_0:1,mlx5_1:1,mlx5_2:1,mlx5_3:1,mlx5_4:1,mlx5_5:1,mlx5_6:1,mlx5_7:1");
    CU_ASSERT_EQUAL(dml_topo_hcas_down(t), 0);
    dml_topo_free(t);
    snprintf(path, sizeof(path), "%s/dgx-h100-ib-down.xml", TOPO_DIR);
    CU_ASSERT_EQUAL_FATAL(dml_topo_load(path, &t), DML_OK);
    dml_topo_usable_hcas(t, NULL, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, "");
    CU_ASSERT_EQUAL(dml_topo_hcas(t), 0);
    CU_ASSERT_EQUAL(dml_topo_hcas_down(t), 10);
    dml_topo_free(t);
}

/* hwloc's GL and OpenCL plugins (libX11, libOpenCL) are not loaded into the
 * process (main asks, as the plugin does, before any topology is loaded). */
static void test_no_gl_opencl(void)
{
    char line[1024];
    dml_topo_t *t;
    FILE *f;

    CU_ASSERT_EQUAL_FATAL(dml_topo_load(NULL, &t), DML_OK);
    dml_topo_free(t);
    f = fopen("/proc/self/maps", "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        CU_ASSERT_PTR_NULL(strstr(line, "hwloc_gl"));
        CU_ASSERT_PTR_NULL(strstr(line, "hwloc_opencl"));
        CU_ASSERT_PTR_NULL(strstr(line, "libOpenCL"));
        CU_ASSERT_PTR_NULL(strstr(line, "libX11"));
    }
    fclose(f);
}

/* The topology cache, written as root: a link planted at the temporary's
 * name, a directory of another user's, a cache of another host: refused,
 * nothing written through them. Needs root (CI runs as root). */
static void test_cache_root_safety(void)
{
    char dir[] = "/tmp/dml-topo-cache.XXXXXX", path[256], target[256], tmp[512], xml[2048];
    dml_topo_t *t, *back = NULL;
    struct stat sb;
    FILE *f;

    if (geteuid() != 0) {
        CU_ASSERT_PTR_NULL_FATAL(getenv("CI")); /* CI must run this as root */
        fprintf(stderr, "\n(cache tests need root: not run)\n");
        return;
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/cache", dir);
    CU_ASSERT_EQUAL_FATAL(dml_topo_load(NULL, &t), DML_OK);
    /* new directory, written, 0644 whatever the umask, loaded back */
    umask(077);
    CU_ASSERT_EQUAL(dml_topo_cache_write(t, path), DML_OK);
    umask(022);
    snprintf(tmp, sizeof(tmp), "%s/topology.xml", path);
    CU_ASSERT_EQUAL(stat(tmp, &sb), 0);
    CU_ASSERT_EQUAL(sb.st_mode & 0777, 0644);
    CU_ASSERT_EQUAL(stat(path, &sb), 0);
    CU_ASSERT_EQUAL(sb.st_mode & 0777, 0755);
    CU_ASSERT_EQUAL(dml_topo_cache_load(path, &back), DML_OK);
    dml_topo_free(back);
    back = NULL;
    /* a link planted at the temporary's name: the write fails, the link's
     * target is untouched */
    snprintf(target, sizeof(target), "%s/victim", dir);
    f = fopen(target, "w");
    fputs("precious", f);
    fclose(f);
    snprintf(tmp, sizeof(tmp), "%s/.topology.xml.%ld", path, (long)getpid());
    CU_ASSERT_EQUAL(symlink(target, tmp), 0);
    CU_ASSERT_NOT_EQUAL(dml_topo_cache_write(t, path), DML_OK);
    f = fopen(target, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_PTR_NOT_NULL(fgets(xml, sizeof(xml), f));
    CU_ASSERT_STRING_EQUAL(xml, "precious");
    fclose(f);
    unlink(tmp);
    /* a link on the directory's path (a parent): refused, nothing made
     * through it */
    {
        char real[256], via[300];
        snprintf(real, sizeof(real), "%s/real", dir);
        snprintf(tmp, sizeof(tmp), "%s/parentlink", dir);
        CU_ASSERT_EQUAL(mkdir(real, 0755), 0);
        CU_ASSERT_EQUAL(symlink(real, tmp), 0);
        snprintf(via, sizeof(via), "%s/cache", tmp);
        CU_ASSERT_NOT_EQUAL(dml_topo_cache_write(t, via), DML_OK);
        CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "\"parentlink\" on its path is a link"));
        snprintf(via, sizeof(via), "%s/cache", real);
        CU_ASSERT_NOT_EQUAL(stat(via, &sb), 0);
        CU_ASSERT_NOT_EQUAL(dml_topo_cache_load(tmp, &back), DML_OK);
        unlink(tmp);
    }
    /* the directory a link: refused */
    snprintf(tmp, sizeof(tmp), "%s/link", dir);
    CU_ASSERT_EQUAL(symlink(path, tmp), 0);
    CU_ASSERT_NOT_EQUAL(dml_topo_cache_write(t, tmp), DML_OK);
    CU_ASSERT_NOT_EQUAL(dml_topo_cache_load(tmp, &back), DML_OK);
    /* a directory of another user's, or writable by others: refused for
     * writing and for reading */
    CU_ASSERT_EQUAL(chown(path, 65534, 65534), 0);
    CU_ASSERT_EQUAL(dml_topo_cache_write(t, path), DML_ERR_PERMISSION);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "owned by uid 65534"));
    CU_ASSERT_EQUAL(dml_topo_cache_load(path, &back), DML_ERR_PERMISSION);
    CU_ASSERT_EQUAL(chown(path, 0, 0), 0);
    CU_ASSERT_EQUAL(chmod(path, 0777), 0);
    CU_ASSERT_EQUAL(dml_topo_cache_write(t, path), DML_ERR_PERMISSION);
    CU_ASSERT_EQUAL(chmod(path, 0755), 0);
    /* another host's cache (a fixture: no HostName of this host) */
    snprintf(xml, sizeof(xml), "cp %s/dgx-h100.xml %s/topology.xml", TOPO_DIR, path);
    CU_ASSERT_EQUAL(system(xml), 0);
    snprintf(tmp, sizeof(tmp), "%s/topology.xml", path);
    chmod(tmp, 0644);
    CU_ASSERT_EQUAL(dml_topo_cache_load(path, &back), DML_ERR_MISMATCH);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "written on host"));
    /* a cache file anyone may write: refused */
    CU_ASSERT_EQUAL(dml_topo_cache_write(t, path), DML_OK);
    chmod(tmp, 0666);
    CU_ASSERT_EQUAL(dml_topo_cache_load(path, &back), DML_ERR_PERMISSION);
    dml_topo_free(t);
    snprintf(xml, sizeof(xml), "rm -rf %s", dir);
    CU_ASSERT_EQUAL(system(xml), 0);
}

/* UCX gets the GPU vendor's transports whatever the network: CUDA's on
 * NVIDIA nodes with or without InfiniBand, ROCm's (never CUDA's) on AMD
 * ones; TCP asked for explicitly keeps only the copy transport. */
static void test_ucx_tls(void)
{
    static const struct {
        const char *xml;
        dml_net_t net;
        int gpus, tcp_only;
        const char *want;
    } cases[] = {{"dgx-h100.xml", DML_NET_IB, 1, 0, "rc,sm,cuda_copy,cuda_ipc,self"},
                 {"dgx-h100.xml", DML_NET_IB, 0, 0, "rc,sm,self"},
                 {"g4dnmetal.xml", DML_NET_TCP, 1, 0, "tcp,sm,cuda_copy,cuda_ipc,self"},
                 {"g4dnmetal.xml", DML_NET_TCP, 1, 1, "tcp,cuda_copy,self"},
                 {"g4dnmetal.xml", DML_NET_SHM, 1, 0, "sm,cuda_copy,cuda_ipc,self"},
                 {"g4dnmetal.xml", DML_NET_TCP, 0, 0, "tcp,sm,self"},
                 {"amd-mi250x.xml", DML_NET_IB, 1, 0, "rc,sm,rocm_copy,rocm_ipc,self"},
                 {"amd-mi250x.xml", DML_NET_TCP, 1, 0, "tcp,sm,rocm_copy,rocm_ipc,self"},
                 {"amd-mi250x.xml", DML_NET_SHM, 1, 0, "sm,rocm_copy,rocm_ipc,self"},
                 {"cpuonly.xml", DML_NET_TCP, 0, 1, "tcp,self"},
                 {"cpuonly.xml", DML_NET_SHM, 0, 0, "sm,self"}};
    unsigned i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[1024];
        dml_topo_t *t;
        const char *got;
        snprintf(path, sizeof(path), "%s/%s", TOPO_DIR, cases[i].xml);
        CU_ASSERT_EQUAL_FATAL(dml_topo_load(path, &t), DML_OK);
        got =
            dml_topo_ucx_tls(dml_topo_gpu_kind(t), cases[i].net, cases[i].gpus, cases[i].tcp_only);
        if (strcmp(got, cases[i].want) != 0)
            fprintf(stderr, "\n%s net=%s gpus=%d tcp_only=%d: UCX_TLS %s, want %s\n", cases[i].xml,
                    dml_net_name(cases[i].net), cases[i].gpus, cases[i].tcp_only, got,
                    cases[i].want);
        CU_ASSERT_STRING_EQUAL(got, cases[i].want);
        dml_topo_free(t);
    }
}

/* GPU lists as long as a node's may be (28 MIG UUIDs pass 1023 characters)
 * are handed out whole; a GPU named twice, and a network device name too
 * long to keep, are refused with the reason. */
static void test_long_and_duplicate_lists(void)
{
    dml_topo_request_t r = req_n(1);
    char list[DML_TOPO_GPULIST] = "", lines[64][512], netdev[100];
    unsigned k;
    size_t used = 0;

    for (k = 0; k < 28; k++)
        used += (size_t)snprintf(list + used, sizeof(list) - used,
                                 "%sMIG-%08x-0000-5000-8000-%012x", k ? "," : "", k, k);
    CU_ASSERT(strlen(list) > 1023);
    r.gpus = list;
    CU_ASSERT_EQUAL_FATAL(map_lines("dgx-h100.xml", &r, lines), DML_OK);
    CU_ASSERT_EQUAL(maps[0].ngpus, 28);
    CU_ASSERT_STRING_EQUAL(maps[0].visible, list);
    r = req_n(28);
    r.gpus = list;
    CU_ASSERT_EQUAL_FATAL(map_lines("dgx-h100.xml", &r, lines), DML_OK);
    CU_ASSERT_STRING_EQUAL(maps[27].visible, "MIG-0000001b-0000-5000-8000-00000000001b");

    r = req_n(2);
    r.gpus = "0,0";
    CU_ASSERT_EQUAL(map_lines("dgx-h100.xml", &r, lines), DML_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(dml_error_message(), "GPU list \"0,0\": GPU \"0\" is named twice"));
    r.gpus = "2,3";
    r.visible = "0,0";
    CU_ASSERT_EQUAL(map_lines("dgx-h100.xml", &r, lines), DML_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "is named twice"));
    /* Slurm's MIG lists name each slice's parent GPU: "0,0" is fine there */
    r.gpus = "0,0";
    r.visible = "MIG-0e1a2b3c-0000-5000-8000-000000000000,MIG-0e1a2b3c-0000-5000-8000-000000000001";
    CU_ASSERT_EQUAL(map_lines("dgx-h100.xml", &r, lines), DML_OK);

    r = req_n(1);
    memset(netdev, 'e', 64);
    netdev[64] = '\0';
    r.netdev = netdev;
    CU_ASSERT_EQUAL(map_lines("dgx-h100.xml", &r, lines), DML_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "longer than 63 characters"));
    netdev[63] = '\0';
    r.net = DML_NET_TCP;
    CU_ASSERT_EQUAL_FATAL(map_lines("dgx-h100.xml", &r, lines), DML_OK);
    CU_ASSERT_STRING_EQUAL(maps[0].netdev, netdev);
}

/* A CPU-only step with fewer tasks than NUMA nodes: each task gets the
 * cores of its share of them, none left idle. */
static void test_cpu_only_fewer_tasks_than_numa(void)
{
    dml_topo_request_t r = req_n(1);
    char lines[64][512];

    r.gpus_per_task = -1;
    CU_ASSERT_EQUAL_FATAL(map_lines("dgx-h100.xml", &r, lines), DML_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(lines[0], "gpus=- cpus=0-223 cores=112 "));
    r = req_n(2);
    r.gpus_per_task = -1;
    CU_ASSERT_EQUAL_FATAL(map_lines("dgx-h100.xml", &r, lines), DML_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(lines[0], "gpus=- cpus=0-55,112-167 cores=56 numa=0 "));
    CU_ASSERT_PTR_NOT_NULL(strstr(lines[1], "gpus=- cpus=56-111,168-223 cores=56 numa=1 "));
}

int main(int argc, char **argv)
{
    CU_pSuite s;
    unsigned int failures;

    /* as the plugin does, before hwloc's first use in the process */
    dml_topo_limit_plugins();
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 99;
    s = CU_add_suite("task mapping", NULL, NULL);
    CU_add_test(s, "DGX H100: 1, 2, 4, 8 tasks", test_dgx_1_2_4_8);
    CU_add_test(s, "DGX H100: fewer GPUs than tasks", test_dgx_fewer_gpus_than_tasks);
    CU_add_test(s, "DGX H100: GPUs restricted by Slurm", test_dgx_restricted_gpus);
    CU_add_test(s, "DGX H100: MIG identifiers", test_dgx_mig);
    CU_add_test(s, "DGX H100: inactive port", test_dgx_port_down);
    CU_add_test(s, "DGX H100: CPUs restricted by Slurm", test_dgx_restricted_cpus);
    CU_add_test(s, "Lassen: GPU/HCA pairs", test_lassen);
    CU_add_test(s, "Pascal and hwloc fixture: shared HCA", test_pascal_and_hwloc_fixture);
    CU_add_test(s, "no InfiniBand: TCP, refused IB, shm", test_no_infiniband);
    CU_add_test(s, "bad requests are named", test_bad_requests);
    CU_add_test(s, "N GPUs per task spread over the sockets", test_spread_over_sockets);
    CU_add_test(s, "AMD GPUs: ROCR_VISIBLE_DEVICES", test_amd);
    CU_add_test(s, "degenerate nodes, and GPU lists of a GPU-less node", test_degenerate);
    CU_add_test(s, "the node's usable ports, the same for every task", test_node_hcas);
    CU_add_test(s, "no GL or OpenCL plugin loaded", test_no_gl_opencl);
    CU_add_test(s, "topology cache: root-safe", test_cache_root_safety);
    CU_add_test(s, "UCX transports by GPU vendor, whatever the network", test_ucx_tls);
    CU_add_test(s, "long GPU lists whole, duplicates and long netdev refused",
                test_long_and_duplicate_lists);
    CU_add_test(s, "CPU-only: fewer tasks than NUMA nodes", test_cpu_only_fewer_tasks_than_numa);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    failures = dml_test_run(argc, argv);
    CU_cleanup_registry();
    return failures == 0 ? 0 : 1;
}
