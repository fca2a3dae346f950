/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * loader.c: every rank's batches of one seeded global permutation per epoch.
 *
 * The order of an epoch is a permutation of all samples computed from (seed,
 * epoch) alone. Global batch k is positions [k*W*B, (k+1)*W*B) of it, and rank
 * r takes its balanced slice. So each sample is seen exactly once per epoch,
 * the samples of a global step are those a 1-rank run with batch W*B sees, and
 * the position is one number (the global cursor): resuming at any world size
 * continues the same sequence.
 *
 * Reads: shards are opened with HDF5's MPI-IO driver; labels and ids (12
 * bytes a sample) are read whole at create; a batch's feature rows are sorted,
 * coalesced into runs and read with one hyperslab-union H5Dread per shard. An
 * in-memory cache replaces reads when the data fits the budget: a private copy
 * per rank in huge pages when one per rank fits, else one copy per node in an
 * MPI shared-memory window. Huge pages matter for shuffled epochs: a random
 * row of a multi-GiB cache misses the TLB with 4 KiB pages, and that miss, not
 * the copy, was most of a row's cost (measured: 1.6x more rows/s with them).
 * Shared memory cannot have them (shmem THP is off on stock kernels).
 * Prefetch: one I/O thread fills a ring of batches ahead of the caller and
 * does the uint8->float conversion and normalisation there; it is the only
 * HDF5 caller while it runs (parallel HDF5 is not thread-safe), under
 * dml_io_hdf5_lock(), and since the MPI-IO driver calls MPI, it needs
 * MPI_THREAD_MULTIPLE unless the cache makes it I/O-free.
 */
#include "config.h"

#include "dml_mpi.h"
#include "dml_simd.h"
#include "io_private.h"
#include "dml_clock.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <unistd.h>

/* The lock is libdml_h5's, shared with every component linked into the
 * process; these are its name in io's public interface. */
void dml_io_hdf5_lock(void)
{
    dml__h5_lock();
}

void dml_io_hdf5_unlock(void)
{
    dml__h5_unlock();
}

/* ---- the permutation -------------------------------------------------- */

/* xoshiro256** seeded through splitmix64: fast, and the same on every
 * platform, so the order is reproducible anywhere. */
typedef struct {
    uint64_t s[4];
} dml__rng_t;

static uint64_t dml__splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void dml__rng_seed(dml__rng_t *r, uint64_t seed, uint64_t epoch)
{
    uint64_t x = seed * 0xd1342543de82ef95ULL + epoch;
    int i;

    for (i = 0; i < 4; i++)
        r->s[i] = dml__splitmix64(&x);
}

static inline uint64_t dml__rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t dml__rng_next(dml__rng_t *r)
{
    uint64_t *s = r->s, res = dml__rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = dml__rotl(s[3], 45);
    return res;
}

/* Uniform in [0, n) without modulo bias (Lemire's method). */
static uint64_t dml__rng_below(dml__rng_t *r, uint64_t n)
{
    unsigned __int128 m = (unsigned __int128)dml__rng_next(r) * n;
    uint64_t l = (uint64_t)m;

    if (l < n) {
        uint64_t t = -n % n;
        while (l < t) {
            m = (unsigned __int128)dml__rng_next(r) * n;
            l = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

/* Fisher-Yates from the front: step i fixes position i for good, so a
 * permutation can be made as far as it is needed (*done: positions fixed so
 * far), and the loader spreads an epoch's shuffle over its batches instead of
 * stalling at the epoch's start (a second for tens of millions of samples). */
static void dml__shuffle_to(dml__rng_t *r, uint64_t *a, uint64_t n, uint64_t *done, uint64_t upto)
{
    uint64_t i, j, t, js[64];

    if (upto > n)
        upto = n;
    /* In groups: the group's draws first, so that the random a[j] can be
     * fetched from memory in parallel rather than one miss after another. */
    for (i = *done; i < upto;) {
        uint64_t m = upto - i < 64 ? upto - i : 64, k;
        for (k = 0; k < m; k++) {
            js[k] = i + k + dml__rng_below(r, n - i - k);
            __builtin_prefetch(&a[js[k]], 1, 0);
        }
        for (k = 0; k < m; k++, i++) {
            j = js[k];
            t = a[i];
            a[i] = a[j];
            a[j] = t;
        }
    }
    if (i > *done)
        *done = i;
}

static void dml__shuffle(dml__rng_t *r, uint64_t *a, uint64_t n)
{
    uint64_t done = 0;

    dml__shuffle_to(r, a, n, &done, n);
}

dml_status_t dml_loader_permutation(dml_shuffle_t shuffle, uint64_t seed, uint64_t epoch,
                                    uint64_t n, uint64_t window, uint64_t block, uint64_t *perm)
{
    dml__rng_t r;
    uint64_t i;

    dml__rng_seed(&r, seed, epoch);
    switch (shuffle) {
    case DML_SHUFFLE_NONE:
        for (i = 0; i < n; i++)
            perm[i] = i;
        return DML_OK;
    case DML_SHUFFLE_FULL:
        for (i = 0; i < n; i++)
            perm[i] = i;
        dml__shuffle(&r, perm, n);
        return DML_OK;
    case DML_SHUFFLE_WINDOW: {
        /* Blocks of consecutive samples in random order, streamed through a
         * buffer of `window` samples from which each output is drawn at
         * random: a batch's samples come from the blocks in the window, and
         * mixing reaches across blocks without a permutation of everything
         * having to be read at random. */
        uint64_t nb, b, w, *border, *buf, out = 0, filled = 0;

        if (block == 0 || window == 0)
            return dml_error_set(DML_ERR_INVALID_ARG, "window shuffle needs block and window > 0");
        nb = (n + block - 1) / block;
        w = window < n ? window : n;
        border = malloc((nb ? nb : 1) * sizeof(uint64_t));
        buf = malloc((w ? w : 1) * sizeof(uint64_t));
        if (border == NULL || buf == NULL) {
            free(border);
            free(buf);
            return dml_error_set(DML_ERR_NO_MEMORY,
                                 "no memory for a window shuffle of %llu "
                                 "samples",
                                 (unsigned long long)n);
        }
        for (b = 0; b < nb; b++)
            border[b] = b;
        dml__shuffle(&r, border, nb);
        for (b = 0; b < nb; b++) {
            uint64_t s0 = border[b] * block, s1 = s0 + block < n ? s0 + block : n;
            for (i = s0; i < s1; i++) {
                if (filled < w) {
                    buf[filled++] = i;
                } else {
                    uint64_t j = dml__rng_below(&r, w);
                    perm[out++] = buf[j];
                    buf[j] = i;
                }
            }
        }
        dml__shuffle(&r, buf, filled);
        for (i = 0; i < filled; i++)
            perm[out++] = buf[i];
        free(border);
        free(buf);
        return DML_OK;
    }
    }
    return dml_error_set(DML_ERR_INVALID_ARG, "unknown shuffle mode %d", (int)shuffle);
}

/* ---- the loader -------------------------------------------------------- */

typedef struct {
    dml_batch_t b;
    float *x;
    int32_t *y;
    uint64_t *id;
} dml__slot_t;

typedef struct {
    uint64_t idx; /* sample index */
    uint64_t out; /* position in the rank's batch */
} dml__order_t;

struct dml_loader {
    dml_dataset_t *ds;
    MPI_Comm comm;
    int rank, size;
    dml_loader_config_t cfg;
    uint64_t N, F;
    size_t xsz;
    uint32_t S;
    const uint64_t *start; /* shard prefix sums, from the dataset */
    hid_t *file, *dx, *dy, *did, *fsx, *fsy, *fsid;
    int opened;
    float *scale, *bias;
    int norm_uniform; /* the same scale and bias for every feature */

    /* the cache: private (huge pages) or shared by the node's ranks */
    int cached, cache_private;
    MPI_Comm nodecomm;
    MPI_Win win;
    uint8_t *cx;
    size_t cx_len; /* of a private cache's mapping */
    /* A cached row holds the sample's features, id and label, padded to
     * whole cache lines: a random row is then its features' lines and
     * nothing else (labels and ids apart were two more misses a row). */
    size_t cstride, c_id, c_y;

    /* labels and ids of every sample: 12 bytes each, read whole at create so
     * that a batch costs one read per run of rows, not three */
    int32_t *y_all;
    uint64_t *id_all;
    size_t y_len, id_len, perm_len; /* of their mappings */

    /* producer side: only the I/O thread touches these while it runs */
    uint64_t p_epoch, p_pos, perm_epoch, perm_done;
    dml__rng_t p_rng; /* of a full shuffle made as far as perm_done */
    uint64_t *perm;
    dml__order_t *order;
    uint8_t *raw;

    /* the ring */
    int K, head, count, held, stop, threaded, thread_live;
    int starved;   /* consecutive batches the consumer found the ring empty */
    int p_waiting; /* the producer sleeps on cv_empty (the ring was full) */
    int spin;      /* the consumer may poll an empty ring before sleeping */
    dml__slot_t *slot;
    pthread_t thread;
    pthread_t advisor; /* asks the kernel to read the shards ahead: */
    int advisor_live;
    uint32_t advise0, advise_step; /* shards advise0, + advise_step, ... */
    pthread_mutex_t mu;
    pthread_cond_t cv_full, cv_empty;
    dml_status_t failed;
    char failed_msg[1024];

    /* consumer side */
    uint64_t c_epoch, c_cursor;
    double wait;
};

void dml_loader_config_init(dml_loader_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->batch = 128;
    cfg->seed = 0;
    cfg->shuffle = DML_SHUFFLE_FULL;
    cfg->window = 65536;
    cfg->block = 256;
    cfg->cache = DML_CACHE_AUTO;
    cfg->prefetch = 4;
    cfg->verify = 1;
    cfg->norm = DML_NORM_GLOBAL;
}

/* How long an empty ring is polled before sleeping (see
 * dml__spin_for_batch): a few batches' making at 128 small samples. */
#define DML__SPIN_SECONDS 200e-6

static int dml__order_cmp(const void *a, const void *b)
{
    uint64_t x = ((const dml__order_t *)a)->idx, y = ((const dml__order_t *)b)->idx;
    return x < y ? -1 : x > y;
}

static uint32_t dml__shard_of(const dml_loader_t *ld, uint64_t idx)
{
    uint32_t lo = 0, hi = ld->S - 1;

    while (lo < hi) {
        uint32_t mid = (lo + hi + 1) / 2;
        if (ld->start[mid] <= idx)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Converts one stored row to normalised floats. This loop is most of the
 * loader's CPU time: restrict lets it vectorise, and DML_HOT's AVX-512 and
 * AVX2 clones do 16 or 8 elements per instruction where the CPU has them
 * (AVX-512: 1.4x the rows/s of AVX2 on a shuffled 2 GiB cache), rounding
 * alike on every CPU and as batch inference does. */
DML_HOT static void dml__convert_u8(const uint8_t *restrict row, const float *restrict sc,
                                    const float *restrict bi, float *restrict out, uint64_t F)
{
    uint64_t f;

    for (f = 0; f < F; f++)
        out[f] = (float)row[f] * sc[f] + bi[f];
}

DML_HOT static void dml__convert_f32(const float *restrict row, const float *restrict sc,
                                     const float *restrict bi, float *restrict out, uint64_t F)
{
    uint64_t f;

    for (f = 0; f < F; f++)
        out[f] = row[f] * sc[f] + bi[f];
}

/* The same with one scale and bias for all features (--norm global, the
 * default): two fewer streams to load, a quarter faster. Batch inference
 * converts whole batches with it. */
DML_HOT void dml_normalize_u8(const uint8_t *restrict in, uint64_t n, float scale, float bias,
                              float *restrict out)
{
    uint64_t i;

    for (i = 0; i < n; i++)
        out[i] = (float)in[i] * scale + bias;
}

static inline void dml__convert(const dml_loader_t *ld, const uint8_t *row, float *out)
{
    if (ld->ds->schema.dtype == DML_DTYPE_UINT8 && ld->norm_uniform)
        dml_normalize_u8(row, ld->F, ld->scale[0], ld->bias[0], out);
    else if (ld->ds->schema.dtype == DML_DTYPE_UINT8)
        dml__convert_u8(row, ld->scale, ld->bias, out, ld->F);
    else
        dml__convert_f32((const float *)(const void *)row, ld->scale, ld->bias, out, ld->F);
}

/* Reads the features of sorted rows order[k0..k1) (all in shard s) into
 * raw[k0..k1): runs of consecutive rows become one hyperslab block each, and
 * one H5Dread takes them all. */
static dml_status_t dml__read_shard_rows(dml_loader_t *ld, uint32_t s, uint64_t k0, uint64_t k1)
{
    hsize_t st[DML_DATASET_MAX_RANK + 1] = {0}, cnt[DML_DATASET_MAX_RANK + 1];
    hsize_t mdim[2] = {k1 - k0, ld->F};
    hid_t ms = -1;
    uint64_t k = k0;
    int first = 1, d, ok = 0;

    for (d = 0; d < ld->ds->schema.rank; d++)
        cnt[d + 1] = ld->ds->schema.shape[d];
    while (k < k1) {
        uint64_t r0 = ld->order[k].idx, len = 1;
        while (k + len < k1 && ld->order[k + len].idx == r0 + len)
            len++;
        st[0] = r0 - ld->start[s];
        cnt[0] = len;
        if (H5Sselect_hyperslab(ld->fsx[s], first ? H5S_SELECT_SET : H5S_SELECT_OR, st, NULL, cnt,
                                NULL) < 0)
            goto out;
        first = 0;
        k += len;
    }
    ms = H5Screate_simple(2, mdim, NULL);
    if (ms >= 0 && H5Dread(ld->dx[s], dml__h5_type(ld->ds->schema.dtype), ms, ld->fsx[s],
                           H5P_DEFAULT, ld->raw + k0 * ld->xsz) >= 0)
        ok = 1;
out:
    if (ms >= 0)
        H5Sclose(ms);
    if (!ok)
        return dml_error_set(DML_ERR_IO,
                             "%s/%s: read of %llu samples failed (file changed, "
                             "truncated or unreadable)",
                             ld->ds->dir, ld->ds->shard_names[s], (unsigned long long)(k1 - k0));
    return DML_OK;
}

/* Makes the next batch of the producer's position into slot. */
static dml_status_t dml__make_batch(dml_loader_t *ld, dml__slot_t *sl)
{
    const uint64_t W = (uint64_t)ld->size, R = (uint64_t)ld->rank, N = ld->N;
    uint64_t G = W * ld->cfg.batch, g, per, rem, n, off, k;
    dml_status_t status = DML_OK;

    if (ld->p_pos >= N) {
        ld->p_epoch++;
        ld->p_pos = 0;
    }
    if (ld->perm_epoch != ld->p_epoch) {
        if (ld->cfg.shuffle == DML_SHUFFLE_FULL) {
            /* made as far as needed, batch by batch (dml__shuffle_to) */
            for (k = 0; k < N; k++)
                ld->perm[k] = k;
            dml__rng_seed(&ld->p_rng, ld->cfg.seed, ld->p_epoch);
            ld->perm_done = 0;
        } else {
            status = dml_loader_permutation(ld->cfg.shuffle, ld->cfg.seed, ld->p_epoch, N,
                                            ld->cfg.window, ld->cfg.block, ld->perm);
            if (status != DML_OK)
                return status;
        }
        ld->perm_epoch = ld->p_epoch;
    }
    g = G < N - ld->p_pos ? G : N - ld->p_pos;
    if (ld->cfg.shuffle == DML_SHUFFLE_FULL)
        dml__shuffle_to(&ld->p_rng, ld->perm, N, &ld->perm_done, ld->p_pos + g);
    per = g / W;
    rem = g % W;
    n = per + (R < rem);
    off = R * per + (R < rem ? R : rem);
    for (k = 0; k < n; k++) {
        ld->order[k].idx = ld->perm[ld->p_pos + off + k];
        ld->order[k].out = k;
    }
    /* Sorted reads for files; memory needs no sorting. */
    if (ld->cfg.shuffle != DML_SHUFFLE_NONE && !ld->cached)
        qsort(ld->order, n, sizeof(dml__order_t), dml__order_cmp);

    if (ld->cached) {
        /* Random rows miss every cache level: ask for a row a few samples
         * ahead while converting this one. */
        const uint64_t ahead = 8, lines = ld->cstride / 64;
        const uint8_t *cx = ld->cx;
        for (k = 0; k < n && k < ahead; k++)
            for (uint64_t c = 0; c < lines; c++)
                __builtin_prefetch(cx + ld->order[k].idx * ld->cstride + c * 64, 0, 0);
        for (k = 0; k < n; k++) {
            const uint8_t *row = cx + ld->order[k].idx * ld->cstride;
            uint64_t o = ld->order[k].out, c;
            if (k + ahead < n)
                for (c = 0; c < lines; c++)
                    __builtin_prefetch(cx + ld->order[k + ahead].idx * ld->cstride + c * 64, 0, 0);
            dml__convert(ld, row, sl->x + o * ld->F);
            memcpy(&sl->y[o], row + ld->c_y, sizeof(int32_t));
            memcpy(&sl->id[o], row + ld->c_id, sizeof(uint64_t));
        }
    } else {
        uint64_t k0 = 0;
        dml_io_hdf5_lock();
        while (k0 < n && status == DML_OK) {
            uint32_t s = dml__shard_of(ld, ld->order[k0].idx);
            uint64_t k1 = k0 + 1;
            while (k1 < n && ld->order[k1].idx < ld->start[s + 1])
                k1++;
            status = dml__read_shard_rows(ld, s, k0, k1);
            k0 = k1;
        }
        dml_io_hdf5_unlock();
        if (status != DML_OK)
            return status;
        for (k = 0; k < n; k++) {
            uint64_t i = ld->order[k].idx, o = ld->order[k].out;
            dml__convert(ld, ld->raw + k * ld->xsz, sl->x + o * ld->F);
            sl->y[o] = ld->y_all[i];
            sl->id[o] = ld->id_all[i];
        }
    }
    sl->b.n = n;
    sl->b.global_n = g;
    sl->b.epoch = ld->p_epoch;
    sl->b.pos = ld->p_pos;
    sl->b.epoch_end = ld->p_pos + g == N;
    sl->b.x = sl->x;
    sl->b.y = sl->y;
    sl->b.id = sl->id;
    ld->p_pos += g;
    return DML_OK;
}

static void *dml__producer(void *arg)
{
    dml_loader_t *ld = arg;
    dml_status_t status;
    int i;

    for (;;) {
        pthread_mutex_lock(&ld->mu);
        while (!ld->stop && ld->count == ld->K) {
            ld->p_waiting = 1;
            pthread_cond_wait(&ld->cv_empty, &ld->mu);
        }
        ld->p_waiting = 0;
        if (ld->stop) {
            pthread_mutex_unlock(&ld->mu);
            break;
        }
        i = (ld->head + ld->count) % ld->K;
        pthread_mutex_unlock(&ld->mu);

        status = dml__make_batch(ld, &ld->slot[i]);

        pthread_mutex_lock(&ld->mu);
        if (status != DML_OK) {
            ld->failed = status;
            snprintf(ld->failed_msg, sizeof(ld->failed_msg), "%s", dml_error_message());
            pthread_cond_broadcast(&ld->cv_full);
            pthread_mutex_unlock(&ld->mu);
            break;
        }
        __atomic_store_n(&ld->count, ld->count + 1, __ATOMIC_RELEASE);
        /* A consumer that keeps outpacing the producer is woken when the
         * ring is nearly full, not for each batch: every wake-up is a futex
         * call and a context switch that the producer pays for (a tenth of
         * its time: docs/benchmarks/design-notes.md), and it waits as long
         * in all. One
         * that waits only now and then is woken by the first batch. */
        if (ld->count >= (ld->starved >= 2 && ld->K > 1 ? ld->K - 1 : 1))
            pthread_cond_broadcast(&ld->cv_full);
        pthread_mutex_unlock(&ld->mu);
    }
    return NULL;
}

static dml_status_t dml__thread_start(dml_loader_t *ld)
{
    int rc;

    ld->stop = 0;
    if (!ld->threaded)
        return DML_OK;
    rc = pthread_create(&ld->thread, NULL, dml__producer, ld);
    if (rc != 0)
        return dml_error_set_errno(rc, "%s: cannot start the prefetch thread", ld->ds->dir);
    ld->thread_live = 1;
    return DML_OK;
}

static void dml__thread_stop(dml_loader_t *ld)
{
    if (!ld->thread_live)
        return;
    pthread_mutex_lock(&ld->mu);
    ld->stop = 1;
    pthread_cond_broadcast(&ld->cv_empty);
    pthread_mutex_unlock(&ld->mu);
    pthread_join(ld->thread, NULL);
    ld->thread_live = 0;
}

/* The ring is empty, the producer at work on another CPU: poll for its
 * batch a little before sleeping. A consumer that sleeps is woken by a
 * futex call, and where its CPU went idle meanwhile (a virtual machine's
 * vCPU halts) the wake-up costs tens of microseconds, as long as making a
 * batch of 128 small samples: a data-bound consumer then spent a third of
 * its time being woken. sched_yield() lets anything runnable on this CPU,
 * the producer included, go first. Not where this thread is pinned to one
 * CPU: the producer would need the CPU being polled on. */
static void dml__spin_for_batch(dml_loader_t *ld, double t0)
{
    int i;

    for (i = 0; __atomic_load_n(&ld->count, __ATOMIC_ACQUIRE) == 0; i++) {
        if ((i & 63) == 63 && dml__now() - t0 > DML__SPIN_SECONDS)
            return;
        sched_yield();
    }
}

dml_status_t dml_loader_next(dml_loader_t *ld, const dml_batch_t **batch)
{
    dml__slot_t *sl;
    double t0;
    int wake = 0;

    if (ld->failed != DML_OK)
        return dml_error_set(ld->failed, "%s", ld->failed_msg);
    t0 = dml__now();
    if (!ld->threaded) {
        dml_status_t status = dml__make_batch(ld, &ld->slot[0]);
        if (status != DML_OK) {
            ld->failed = status;
            snprintf(ld->failed_msg, sizeof(ld->failed_msg), "%s", dml_error_message());
            return status;
        }
        sl = &ld->slot[0];
    } else {
        pthread_mutex_lock(&ld->mu);
        if (ld->held) {
            ld->head = (ld->head + 1) % ld->K;
            __atomic_store_n(&ld->count, ld->count - 1, __ATOMIC_RELEASE);
            ld->held = 0;
        }
        /* A producer asleep on a full ring is woken once the ring is down
         * to half, to make several batches in one go: each wake-up is a
         * futex call, and where every core runs a rank the woken producer
         * takes the core from this thread at once. With batches still in
         * the ring that is done after this one is handed over, so it is
         * not time spent waiting for data. */
        wake = ld->p_waiting && ld->count <= ld->K / 2;
        ld->starved = ld->count == 0 ? ld->starved + 1 : 0;
        if (wake && ld->count == 0) {
            pthread_cond_broadcast(&ld->cv_empty);
            wake = 0;
        }
        if (ld->count == 0 && ld->failed == DML_OK && ld->spin) {
            pthread_mutex_unlock(&ld->mu);
            dml__spin_for_batch(ld, t0);
            pthread_mutex_lock(&ld->mu);
        }
        while (ld->count == 0 && ld->failed == DML_OK)
            pthread_cond_wait(&ld->cv_full, &ld->mu);
        if (ld->count == 0) {
            pthread_mutex_unlock(&ld->mu);
            ld->wait += dml__now() - t0;
            return dml_error_set(ld->failed, "%s", ld->failed_msg);
        }
        sl = &ld->slot[ld->head];
        ld->held = 1;
        if (wake)
            ld->p_waiting = 0; /* one wake-up is enough */
        pthread_mutex_unlock(&ld->mu);
    }
    ld->wait += dml__now() - t0;
    if (wake)
        pthread_cond_broadcast(&ld->cv_empty);
    if (sl->b.epoch_end) {
        ld->c_epoch = sl->b.epoch + 1;
        ld->c_cursor = 0;
    } else {
        ld->c_epoch = sl->b.epoch;
        ld->c_cursor = sl->b.pos + sl->b.global_n;
    }
    *batch = &sl->b;
    return DML_OK;
}

void dml_loader_get_state(const dml_loader_t *ld, dml_loader_state_t *state)
{
    state->seed = ld->cfg.seed;
    state->epoch = ld->c_epoch;
    state->cursor = ld->c_cursor;
}

dml_status_t dml_loader_set_state(dml_loader_t *ld, const dml_loader_state_t *state)
{
    dml_status_t status = DML_OK;

    if (state->seed != ld->cfg.seed)
        status = dml_error_set(DML_ERR_MISMATCH,
                               "loader state was saved with seed %llu, this run "
                               "uses seed %llu",
                               (unsigned long long)state->seed, (unsigned long long)ld->cfg.seed);
    else if (state->cursor > ld->N)
        status = dml_error_set(DML_ERR_MISMATCH,
                               "loader state cursor %llu is past the %llu "
                               "samples of %s (another dataset?)",
                               (unsigned long long)state->cursor, (unsigned long long)ld->N,
                               ld->ds->dir);
    status = dml_mpi_agree(ld->comm, status, NULL);
    if (status != DML_OK)
        return status;
    dml__thread_stop(ld);
    ld->head = ld->count = ld->held = ld->starved = 0;
    ld->failed = DML_OK;
    ld->p_epoch = ld->c_epoch = state->epoch;
    ld->p_pos = ld->c_cursor = state->cursor;
    if (ld->p_pos == ld->N) {
        ld->p_epoch = ld->c_epoch = state->epoch + 1;
        ld->p_pos = ld->c_cursor = 0;
    }
    return dml_mpi_agree(ld->comm, dml__thread_start(ld), NULL);
}

uint64_t dml_loader_steps_per_epoch(const dml_loader_t *ld)
{
    uint64_t G = (uint64_t)ld->size * ld->cfg.batch;
    return (ld->N + G - 1) / G;
}

int dml_loader_cached(const dml_loader_t *ld)
{
    return ld->cached;
}
int dml_loader_cache_shared(const dml_loader_t *ld)
{
    return ld->cached && !ld->cache_private;
}
int dml_loader_threaded(const dml_loader_t *ld)
{
    return ld->threaded;
}
double dml_loader_wait_seconds(const dml_loader_t *ld)
{
    return ld->wait;
}

/* ---- create and destroy ------------------------------------------------ */

/* Memory that random rows are read from: in 2 MiB pages where the kernel
 * gives them for madvise (the common THP setting), so that a random row costs
 * a cache miss rather than a TLB miss too. *len is the mapping's length. */
static void *dml__huge_alloc(size_t bytes, size_t *len)
{
    const size_t huge = (size_t)2 << 20;
    void *p;

    *len = (bytes + huge - 1) / huge * huge;
    if (*len == 0)
        *len = huge;
    p = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, *len, MADV_HUGEPAGE); /* a hint: 4 KiB pages still work */
#endif
    return p;
}

static dml_status_t dml__open_shards(dml_loader_t *ld)
{
    dml__h5_quiet_t q;
    dml_status_t status = DML_OK, st;
    hid_t fapl;
    uint32_t s;

    fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_mpio(fapl, ld->comm, MPI_INFO_NULL) < 0) {
        if (fapl >= 0)
            H5Pclose(fapl);
        return dml_error_set(DML_ERR_HDF5, "%s: cannot set up the MPI-IO file driver", ld->ds->dir);
    }
    dml__h5_quiet_begin(&q);
    /* H5Fopen with the MPI-IO driver is collective: every rank opens every
     * shard, even after a failure, so that no rank waits alone. */
    for (s = 0; s < ld->S; s++) {
        char *path = dml__path_join(ld->ds->dir, ld->ds->shard_names[s]);
        ld->file[s] = path ? H5Fopen(path, H5F_ACC_RDONLY, fapl) : -1;
        if (ld->file[s] < 0) {
            if (status == DML_OK && path == NULL) {
                status = dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", ld->ds->dir);
            } else if (status == DML_OK) {
                char why[256];
                status = dml__open_failure(path, why, sizeof(why));
                status = status == DML_ERR_NOT_FOUND
                             ? dml_error_set(status, "%s: shard %u is missing", path, s)
                             : dml_error_set(status, "%s: %s", path, why);
            }
            free(path);
            continue;
        }
        st = dml__shard_check(ld->ds, s, ld->file[s], path, NULL, NULL, NULL);
        if (st != DML_OK && status == DML_OK)
            status = st;
        if (st == DML_OK) {
            ld->dx[s] = H5Dopen2(ld->file[s], "x", H5P_DEFAULT);
            ld->dy[s] = H5Dopen2(ld->file[s], "y", H5P_DEFAULT);
            ld->did[s] = H5Dopen2(ld->file[s], "id", H5P_DEFAULT);
            ld->fsx[s] = ld->dx[s] >= 0 ? H5Dget_space(ld->dx[s]) : -1;
            ld->fsy[s] = ld->dy[s] >= 0 ? H5Dget_space(ld->dy[s]) : -1;
            ld->fsid[s] = ld->did[s] >= 0 ? H5Dget_space(ld->did[s]) : -1;
            if ((ld->fsx[s] < 0 || ld->fsy[s] < 0 || ld->fsid[s] < 0) && status == DML_OK)
                status = dml_error_set(DML_ERR_FORMAT, "%s: cannot open its datasets", path);
        }
        free(path);
    }
    dml__h5_quiet_end(&q);
    H5Pclose(fapl);
    ld->opened = 1;
    return status;
}

static void dml__close_shards(dml_loader_t *ld)
{
    uint32_t s;

    if (!ld->opened)
        return;
    for (s = 0; s < ld->S; s++) {
        if (ld->fsx[s] >= 0)
            H5Sclose(ld->fsx[s]);
        if (ld->fsy[s] >= 0)
            H5Sclose(ld->fsy[s]);
        if (ld->fsid[s] >= 0)
            H5Sclose(ld->fsid[s]);
        if (ld->dx[s] >= 0)
            H5Dclose(ld->dx[s]);
        if (ld->dy[s] >= 0)
            H5Dclose(ld->dy[s]);
        if (ld->did[s] >= 0)
            H5Dclose(ld->did[s]);
        if (ld->file[s] >= 0)
            H5Fclose(ld->file[s]); /* collective for MPI-IO files */
    }
    ld->opened = 0;
}

/* Reads rows [a, b) of shard s: features into x and/or labels and ids into
 * y and id (NULL: skip). */
static int dml__read_range(dml_loader_t *ld, uint32_t s, uint64_t a, uint64_t b, uint8_t *x,
                           int32_t *y, uint64_t *id)
{
    const uint64_t r0 = a - ld->start[s], n = b - a;

    if (x != NULL &&
        dml__h5_read_rows(ld->dx[s], ld->fsx[s], dml__h5_type(ld->ds->schema.dtype), r0, n, x) != 0)
        return -1;
    if (y != NULL &&
        (dml__h5_read_rows(ld->dy[s], ld->fsy[s], H5T_NATIVE_INT32, r0, n, y) != 0 ||
         dml__h5_read_rows(ld->did[s], ld->fsid[s], H5T_NATIVE_UINT64, r0, n, id) != 0))
        return -1;
    return 0;
}

/* Every rank reads all labels and ids (independent reads). */
static dml_status_t dml__read_labels(dml_loader_t *ld)
{
    dml__h5_quiet_t q;
    dml_status_t status = DML_OK;
    uint32_t s;

    dml__h5_quiet_begin(&q);
    for (s = 0; s < ld->S && status == DML_OK; s++)
        if (dml__read_range(ld, s, ld->start[s], ld->start[s + 1], NULL, ld->y_all + ld->start[s],
                            ld->id_all + ld->start[s]) != 0)
            status = dml_error_set(DML_ERR_IO, "%s/%s: cannot read labels and ids", ld->ds->dir,
                                   ld->ds->shard_names[s]);
    dml__h5_quiet_end(&q);
    return status;
}

/* Reads rows [r0, r1) of the dataset into the cache: contiguous reads of
 * many rows into a bounce buffer, then each row to its place with its id and
 * label (HDF5 scattering into the strided rows itself was far slower:
 * docs/benchmarks/design-notes.md). */
static dml_status_t dml__cache_read(dml_loader_t *ld, uint64_t r0, uint64_t r1)
{
    const uint64_t chunk = ((uint64_t)8 << 20) / ld->xsz + 1;
    dml_status_t status = DML_OK;
    dml__h5_quiet_t q;
    uint8_t *buf;
    uint32_t s;

    buf = malloc(chunk * ld->xsz);
    if (buf == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory to fill the cache", ld->ds->dir);
    dml__h5_quiet_begin(&q);
    for (s = 0; s < ld->S && status == DML_OK; s++) {
        uint64_t a = r0 > ld->start[s] ? r0 : ld->start[s];
        uint64_t b = r1 < ld->start[s + 1] ? r1 : ld->start[s + 1];
        while (a < b && status == DML_OK) {
            uint64_t m = b - a < chunk ? b - a : chunk, i;
            if (dml__read_range(ld, s, a, a + m, buf, NULL, NULL) != 0) {
                status = dml_error_set(DML_ERR_IO, "%s/%s: read into the cache failed", ld->ds->dir,
                                       ld->ds->shard_names[s]);
                break;
            }
            for (i = 0; i < m; i++) {
                uint8_t *row = ld->cx + (a + i) * ld->cstride;
                memcpy(row, buf + i * ld->xsz, ld->xsz);
                memcpy(row + ld->c_id, &ld->id_all[a + i], sizeof(uint64_t));
                memcpy(row + ld->c_y, &ld->y_all[a + i], sizeof(int32_t));
            }
            a += m;
        }
    }
    dml__h5_quiet_end(&q);
    free(buf);
    return status;
}

/* Free memory (not counting the page cache), in bytes; 0 if unknown. */
static uint64_t dml__mem_free(void)
{
    long pages = sysconf(_SC_AVPHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    return pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : 0;
}

/* Decides and fills the cache. The budget is per node: a private copy per
 * rank when the node's ranks' copies all fit it, else one copy per node in
 * shared memory, each rank of the node reading an equal contiguous part. */
static dml_status_t dml__cache_fill(dml_loader_t *ld)
{
    enum { NONE, SHARED, PRIVATE };
    const uint64_t N = ld->N;
    uint64_t bytes, budget = ld->cfg.cache_budget;
    int lrank, lsize, mode = NONE, rc, disp;
    MPI_Aint size;
    void *base = NULL;

    if (ld->cfg.cache == DML_CACHE_OFF)
        return DML_OK;
    ld->c_id = (ld->xsz + 7) / 8 * 8;
    ld->c_y = ld->c_id + sizeof(uint64_t);
    ld->cstride = (ld->c_y + sizeof(int32_t) + 63) / 64 * 64;
    bytes = N * ld->cstride;
    rc = MPI_Comm_split_type(ld->comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &ld->nodecomm);
    if (rc != MPI_SUCCESS)
        return dml_mpi_error(rc, "MPI_Comm_split_type for the node cache");
    MPI_Comm_rank(ld->nodecomm, &lrank);
    MPI_Comm_size(ld->nodecomm, &lsize);
    if (lrank == 0) {
        if (budget == 0)
            budget = dml__mem_free() / 2;
        if (bytes * (uint64_t)lsize <= budget)
            mode = PRIVATE;
        else if (ld->cfg.cache == DML_CACHE_ON || bytes <= budget)
            mode = SHARED;
    }
    MPI_Bcast(&mode, 1, MPI_INT, 0, ld->nodecomm);
    if (mode == NONE)
        return DML_OK;

    if (mode == PRIVATE) {
        int ok;
        ld->cx = dml__huge_alloc(bytes, &ld->cx_len);
        ok = ld->cx != NULL;
        /* all of the node's ranks take the same way: the window is collective */
        MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, ld->nodecomm);
        if (ok) {
            ld->cached = ld->cache_private = 1;
            return dml__cache_read(ld, 0, N);
        }
        if (ld->cx != NULL)
            munmap(ld->cx, ld->cx_len);
        ld->cx = NULL; /* no room after all: share one copy */
    }
    rc = MPI_Win_allocate_shared(lrank == 0 ? (MPI_Aint)bytes : 0, 1, MPI_INFO_NULL, ld->nodecomm,
                                 &base, &ld->win);
    if (rc != MPI_SUCCESS) {
        ld->win = MPI_WIN_NULL;
        if (ld->cfg.cache == DML_CACHE_ON)
            return dml_mpi_error(rc, "node cache: shared memory window");
        return DML_OK; /* auto: read from the files instead */
    }
    rc = MPI_Win_shared_query(ld->win, 0, &size, &disp, &base);
    if (rc != MPI_SUCCESS)
        return dml_mpi_error(rc, "node cache: MPI_Win_shared_query");
    ld->cx = base;
    MPI_Win_lock_all(MPI_MODE_NOCHECK, ld->win);
    ld->cached = 1; /* from here on destroy must unlock the window */
    {
        dml_status_t status = dml__cache_read(ld, N * (uint64_t)lrank / (uint64_t)lsize,
                                              N * (uint64_t)(lrank + 1) / (uint64_t)lsize);
        MPI_Win_sync(ld->win);
        MPI_Barrier(ld->nodecomm);
        MPI_Win_sync(ld->win);
        return status;
    }
}

/* ---- read-ahead of shards read through HDF5 -------------------------------
 *
 * Where batches are read from the files, the first epoch of a cold dataset
 * reads its rows where the order puts them: in a shuffled epoch each is a
 * small random read from the disk, and the prefetch thread waits for every
 * one (with each rank pinned to one core it then also waits for its core at
 * every one). Where the node's memory holds the shards twice over, the ranks
 * of a node ask the kernel to read them ahead in the background instead
 * (POSIX_FADV_WILLNEED), each rank a share of the shards: large sequential
 * reads, done by the time the first epoch gets far. Where the data does not
 * fit, read-ahead would only push out pages still to be used, and the kernel's
 * own read-ahead of the loader's sorted reads is all there is. A thread makes
 * the calls, as the kernel may hold a caller until the requests are queued. */

static uint64_t dml__mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kb = 0;

    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return kb > 0 ? (uint64_t)kb * 1024 : dml__mem_free();
}

static void *dml__advise_main(void *arg)
{
    const dml_loader_t *ld = arg;
    uint32_t s;

    for (s = ld->advise0; s < ld->S; s += ld->advise_step) {
        char *path = dml__path_join(ld->ds->dir, ld->ds->shard_names[s]);
        int fd = path != NULL ? open(path, O_RDONLY | O_CLOEXEC) : -1;
        if (fd >= 0) {
            (void)posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
            close(fd);
        }
        free(path);
    }
    return NULL;
}

/* Collective over the loader's communicator. Advice only: nothing fails. */
static void dml__advise_start(dml_loader_t *ld)
{
    int lrank, lsize, fits = 0;

    /* the cache's node communicator, where it made one */
    if (ld->nodecomm == MPI_COMM_NULL &&
        MPI_Comm_split_type(ld->comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &ld->nodecomm) !=
            MPI_SUCCESS) {
        ld->nodecomm = MPI_COMM_NULL;
        return;
    }
    MPI_Comm_rank(ld->nodecomm, &lrank);
    MPI_Comm_size(ld->nodecomm, &lsize);
    /* the stored bytes: features, and 12 of label and id, per sample */
    if (lrank == 0)
        fits = ld->N * (ld->xsz + 12) <= dml__mem_available() / 2;
    MPI_Bcast(&fits, 1, MPI_INT, 0, ld->nodecomm);
    if (!fits || (uint32_t)lrank >= ld->S)
        return;
    ld->advise0 = (uint32_t)lrank;
    ld->advise_step = (uint32_t)lsize;
    ld->advisor_live = pthread_create(&ld->advisor, NULL, dml__advise_main, ld) == 0;
}

void dml_loader_destroy(dml_loader_t *ld)
{
    int k;

    if (ld == NULL)
        return;
    dml__thread_stop(ld);
    if (ld->advisor_live)
        pthread_join(ld->advisor, NULL);
    dml__close_shards(ld);
    if (ld->cache_private)
        munmap(ld->cx, ld->cx_len);
    if (ld->win != MPI_WIN_NULL) {
        if (ld->cached)
            MPI_Win_unlock_all(ld->win);
        MPI_Win_free(&ld->win);
    }
    if (ld->nodecomm != MPI_COMM_NULL)
        MPI_Comm_free(&ld->nodecomm);
    if (ld->comm != MPI_COMM_NULL)
        MPI_Comm_free(&ld->comm);
    if (ld->slot != NULL)
        for (k = 0; k < ld->K; k++) {
            free(ld->slot[k].x);
            free(ld->slot[k].y);
            free(ld->slot[k].id);
        }
    free(ld->slot);
    pthread_mutex_destroy(&ld->mu);
    pthread_cond_destroy(&ld->cv_full);
    pthread_cond_destroy(&ld->cv_empty);
    free(ld->file);
    free(ld->dx);
    free(ld->dy);
    free(ld->did);
    free(ld->fsx);
    free(ld->fsy);
    free(ld->fsid);
    free(ld->scale);
    free(ld->bias);
    if (ld->perm != NULL)
        munmap(ld->perm, ld->perm_len);
    free(ld->order);
    free(ld->raw);
    if (ld->y_all != NULL)
        munmap(ld->y_all, ld->y_len);
    if (ld->id_all != NULL)
        munmap(ld->id_all, ld->id_len);
    free(ld);
}

static dml_status_t dml__norm_setup(dml_loader_t *ld)
{
    const dml_stats_t *st = ld->cfg.norm_stats ? ld->cfg.norm_stats : &ld->ds->stats;
    uint64_t f;

    if (st->features != ld->F)
        return dml_error_set(DML_ERR_MISMATCH,
                             "%s: %llu features, the normalisation statistics "
                             "have %llu",
                             ld->ds->dir, (unsigned long long)ld->F,
                             (unsigned long long)st->features);
    for (f = 0; f < ld->F; f++) {
        double m = 0, s = 1;
        if (ld->cfg.norm == DML_NORM_GLOBAL) {
            m = st->global_mean;
            s = st->global_std;
        } else if (ld->cfg.norm == DML_NORM_FEATURE) {
            /* Near-constant features (image borders) would be blown up by
             * their tiny std: floor it at a tenth of the global std. */
            m = st->mean[f];
            s = st->std[f] > 0.1 * st->global_std ? st->std[f] : 0.1 * st->global_std;
        }
        if (!(s > 0))
            s = 1;
        ld->scale[f] = (float)(1.0 / s);
        ld->bias[f] = (float)(-m / s);
    }
    ld->norm_uniform = 1;
    for (f = 1; f < ld->F; f++)
        if (ld->scale[f] != ld->scale[0] || ld->bias[f] != ld->bias[0])
            ld->norm_uniform = 0;
    return DML_OK;
}

/* The loader's settings, checked before anything is allocated. */
static dml_status_t dml__loader_check_config(const dml_loader_config_t *cfg)
{
    if (cfg->batch == 0)
        return dml_error_set(DML_ERR_INVALID_ARG, "batch size must be at least 1");
    if (cfg->shuffle == DML_SHUFFLE_WINDOW && (cfg->window == 0 || cfg->block == 0))
        return dml_error_set(DML_ERR_INVALID_ARG, "window shuffle needs a window and a block of "
                                                  "at least 1 sample");
    if (cfg->prefetch < 0)
        return dml_error_set(DML_ERR_INVALID_ARG, "prefetch depth %d is negative", cfg->prefetch);
    return DML_OK;
}

/* Every buffer the loader keeps for its life: the per-shard handles (all
 * -1, so that destroy closes only what was opened), the permutation and
 * labels of the whole dataset, and the prefetch slots. This rank's only:
 * the caller agrees on the outcome. */
static dml_status_t dml__loader_alloc(dml_loader_t *ld)
{
    const uint64_t B = ld->cfg.batch;
    uint32_t s;
    int k;

    ld->K = ld->cfg.prefetch > 0 ? ld->cfg.prefetch : 1;
    ld->file = malloc(ld->S * sizeof(hid_t));
    ld->dx = malloc(ld->S * sizeof(hid_t));
    ld->dy = malloc(ld->S * sizeof(hid_t));
    ld->did = malloc(ld->S * sizeof(hid_t));
    ld->fsx = malloc(ld->S * sizeof(hid_t));
    ld->fsy = malloc(ld->S * sizeof(hid_t));
    ld->fsid = malloc(ld->S * sizeof(hid_t));
    ld->scale = malloc(ld->F * sizeof(float));
    ld->bias = malloc(ld->F * sizeof(float));
    ld->perm = dml__huge_alloc(ld->N * sizeof(uint64_t), &ld->perm_len);
    ld->order = malloc(B * sizeof(dml__order_t));
    ld->raw = malloc(B * ld->xsz);
    ld->y_all = dml__huge_alloc(ld->N * sizeof(int32_t), &ld->y_len);
    ld->id_all = dml__huge_alloc(ld->N * sizeof(uint64_t), &ld->id_len);
    ld->slot = calloc((size_t)ld->K, sizeof(dml__slot_t));
    if (!ld->file || !ld->dx || !ld->dy || !ld->did || !ld->fsx || !ld->fsy || !ld->fsid ||
        !ld->scale || !ld->bias || !ld->perm || !ld->order || !ld->raw || !ld->y_all ||
        !ld->id_all || !ld->slot)
        return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory for the loader (batch %llu)",
                             ld->ds->dir, (unsigned long long)B);
    for (s = 0; s < ld->S; s++)
        ld->file[s] = ld->dx[s] = ld->dy[s] = ld->did[s] = ld->fsx[s] = ld->fsy[s] = ld->fsid[s] =
            -1;
    for (k = 0; k < ld->K; k++) {
        ld->slot[k].x = malloc(B * ld->F * sizeof(float));
        ld->slot[k].y = malloc(B * sizeof(int32_t));
        ld->slot[k].id = malloc(B * sizeof(uint64_t));
        if (!ld->slot[k].x || !ld->slot[k].y || !ld->slot[k].id)
            return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory for prefetch buffers",
                                 ld->ds->dir);
    }
    return DML_OK;
}

/* cfg->verify: the ranks split the checksum pass (shard s on rank s mod
 * W) and agree on the outcome. */
static dml_status_t dml__loader_verify(dml_loader_t *ld)
{
    dml_status_t mine = DML_OK;
    uint32_t s;

    for (s = (uint32_t)ld->rank; s < ld->S && mine == DML_OK; s += (uint32_t)ld->size)
        mine = dml_dataset_validate(ld->ds, s, 1, NULL, NULL, NULL);
    return dml_mpi_agree(ld->comm, mine, NULL);
}

dml_status_t dml_loader_create(dml_dataset_t *ds, MPI_Comm comm, const dml_loader_config_t *cfg,
                               dml_loader_t **ld_out)
{
    dml_loader_t *ld;
    dml_status_t status;
    int rc, level = MPI_THREAD_SINGLE;
    cpu_set_t cpus;

    ld = calloc(1, sizeof(*ld));
    if (ld == NULL)
        return dml_mpi_agree(comm, dml_error_set(DML_ERR_NO_MEMORY, "no memory for a loader"),
                             NULL);
    ld->comm = ld->nodecomm = MPI_COMM_NULL;
    ld->win = MPI_WIN_NULL;
    pthread_mutex_init(&ld->mu, NULL);
    pthread_cond_init(&ld->cv_full, NULL);
    pthread_cond_init(&ld->cv_empty, NULL);
    rc = MPI_Comm_dup(comm, &ld->comm);
    if (rc != MPI_SUCCESS) {
        status = dml_mpi_error(rc, "MPI_Comm_dup for the loader");
        dml_loader_destroy(ld);
        return status;
    }
    MPI_Comm_rank(ld->comm, &ld->rank);
    MPI_Comm_size(ld->comm, &ld->size);
    ld->ds = ds;
    ld->cfg = *cfg;
    ld->N = ds->samples;
    ld->F = dml_schema_features(&ds->schema);
    ld->xsz = (size_t)ld->F * dml_dtype_size(ds->schema.dtype);
    ld->S = ds->shards;
    ld->start = ds->shard_start;
    ld->perm_epoch = UINT64_MAX;

    status = dml__loader_check_config(cfg);
    if (status == DML_OK)
        status = dml__loader_alloc(ld);
    if (status == DML_OK)
        status = dml__norm_setup(ld);
    status = dml_mpi_agree(ld->comm, status, NULL);
    if (status != DML_OK)
        goto err;
    /* Every rank opens every shard (collective), whatever happened before. */
    status = dml_mpi_agree(ld->comm, dml__open_shards(ld), NULL);
    if (status != DML_OK)
        goto err;
    if (cfg->verify && (status = dml__loader_verify(ld)) != DML_OK)
        goto err;
    status = dml_mpi_agree(ld->comm, dml__read_labels(ld), NULL);
    if (status != DML_OK)
        goto err;
    status = dml_mpi_agree(ld->comm, dml__cache_fill(ld), NULL);
    if (status != DML_OK)
        goto err;
    if (!ld->cached)
        dml__advise_start(ld);

    MPI_Query_thread(&level);
    ld->threaded = cfg->prefetch > 0 && (ld->cached || level == MPI_THREAD_MULTIPLE);
    ld->spin = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 && CPU_COUNT(&cpus) > 1;
    status = dml_mpi_agree(ld->comm, dml__thread_start(ld), NULL);
    if (status != DML_OK)
        goto err;
    *ld_out = ld;
    return DML_OK;
err:
    dml_loader_destroy(ld);
    return status;
}
