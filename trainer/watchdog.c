/*
 * watchdog.c: a stuck rank is reported, not waited for for ever.
 *
 * When one rank stops (SIGSTOP, a hung node, a rank stuck in a system
 * call), the others wait in their next collective, spinning at full CPU with
 * nothing said, until the job's time limit. The large-scale trainers have a
 * watchdog for this (PyTorch's NCCL watchdog, NCCL's RAS); this is ours.
 *
 * Each rank counts its progress: the trainer beats (dml__watchdog_beat)
 * before every collective of the training loop and after it. A thread on
 * every rank sends rank 0 a heartbeat (the count, the step, how long since
 * the last beat) every `period` seconds on a communicator of its own, and
 * rank 0 sends every rank a digest back. Rank 0 reports a rank it has not
 * heard from for `timeout` seconds, or one whose count has not moved for
 * `timeout` seconds while it is behind the others (they wait in a
 * collective it has not reached); the other ranks report rank 0 when its
 * digests stop. The report names each such rank with its host, PID and last
 * step, and goes to the caller's callback, which ends the job (the library
 * neither prints nor exits).
 *
 * Messages are tiny and at most one per peer is in flight. At stop the
 * ranks tell each other how many they sent, and each receives the rest, so
 * that no request is left pending when the communicator is freed.
 */
#include "config.h"

#include "dml_mpi.h"
#include "train_private.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DML__WD_TAG_BEAT 1
#define DML__WD_TAG_DIGEST 2

typedef struct {
    uint64_t count, step, age_ms;
} dml__wd_msg_t;

typedef struct {
    char host[64];
    int64_t pid;
} dml__wd_who_t;

struct dml__watchdog {
    MPI_Comm comm;
    int rank, size;
    double timeout, period;
    void (*on_stall)(void *, const char *);
    void *arg;
    dml__wd_who_t *who;
    pthread_t thread;
    int running;            /* the thread was started */
    atomic_int quit;
    /* the main thread's progress */
    atomic_uint_fast64_t count, step, last_ns;
    /* the thread's view (rank 0: every rank's; others: rank 0's digest) */
    dml__wd_msg_t *seen;
    double *heard;
    MPI_Request *rreq, *sreq;
    dml__wd_msg_t *rbuf, *sbuf;
    uint64_t *sent, *got;
};

static double dml__wd_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void dml__watchdog_beat(dml__watchdog_t *w, uint64_t step)
{
    if (w == NULL)
        return;
    atomic_fetch_add(&w->count, 1);
    atomic_store(&w->step, step);
    atomic_store(&w->last_ns, (uint_fast64_t)(dml__wd_now() * 1e9));
}

static dml__wd_msg_t dml__wd_mine(dml__watchdog_t *w, double now)
{
    dml__wd_msg_t m;
    /* the main thread may have beaten since `now` was taken */
    const double age = now - (double)atomic_load(&w->last_ns) * 1e-9;
    m.count = atomic_load(&w->count);
    m.step = atomic_load(&w->step);
    m.age_ms = age > 0 ? (uint64_t)(1e3 * age) : 0;
    return m;
}

/* Sends m to peer unless the last one is still in flight. */
static void dml__wd_send(dml__watchdog_t *w, int peer, int tag, dml__wd_msg_t m)
{
    int done = 1;

    if (w->sreq[peer] != MPI_REQUEST_NULL)
        MPI_Test(&w->sreq[peer], &done, MPI_STATUS_IGNORE);
    if (!done)
        return;
    w->sbuf[peer] = m;
    if (MPI_Isend(&w->sbuf[peer], 3, MPI_UINT64_T, peer, tag, w->comm, &w->sreq[peer]) == MPI_SUCCESS)
        w->sent[peer]++;
}

/* Takes what peer sent since the last call (reposting the receive). */
static void dml__wd_recv(dml__watchdog_t *w, int peer, int tag, double now)
{
    int done = 0;

    while (w->rreq[peer] != MPI_REQUEST_NULL &&
           MPI_Test(&w->rreq[peer], &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && done) {
        w->seen[peer] = w->rbuf[peer];
        w->heard[peer] = now;
        w->got[peer]++;
        MPI_Irecv(&w->rbuf[peer], 3, MPI_UINT64_T, peer, tag, w->comm, &w->rreq[peer]);
    }
}

static size_t dml__wd_name(const dml__watchdog_t *w, int r, char *buf, size_t len)
{
    return (size_t)snprintf(buf, len, "rank %d (pid %lld on %s)", r, (long long)w->who[r].pid,
                            w->who[r].host);
}

/* Rank 0: who is stuck, if anyone. */
static int dml__wd_judge(dml__watchdog_t *w, double now, char *rep, size_t len)
{
    uint64_t most = 0, stuck = 0;
    size_t used = 0;
    int r;

    w->seen[0] = dml__wd_mine(w, now);
    w->heard[0] = now;
    for (r = 0; r < w->size; r++)
        most = w->seen[r].count > most ? w->seen[r].count : most;
    for (r = 0; r < w->size && used + 256 < len; r++) {
        const double silent = now - w->heard[r], still = 1e-3 * (double)w->seen[r].age_ms + silent;
        const int behind = w->seen[r].count < most && still > w->timeout;
        if (silent <= w->timeout && !behind)
            continue;
        stuck++;
        used += (size_t)snprintf(rep + used, len - used, "%s", used ? "; " : "");
        used += dml__wd_name(w, r, rep + used, len - used);
        if (silent > w->timeout)
            used += (size_t)snprintf(rep + used, len - used, " has not been heard from for %.0f s "
                                     "(last at step %llu)", silent,
                                     (unsigned long long)w->seen[r].step);
        else
            used += (size_t)snprintf(rep + used, len - used, " has not arrived where the others "
                                     "wait: no progress for %.0f s, at step %llu", still,
                                     (unsigned long long)w->seen[r].step);
    }
    if (stuck == 0)
        return 0;
    snprintf(rep + used, len - used, " (stall timeout %.0f s); the other ranks wait in a "
             "collective for it", w->timeout);
    return 1;
}

static void *dml__wd_thread(void *arg)
{
    dml__watchdog_t *w = arg;
    char rep[2048];
    double next = dml__wd_now(), prev = next, quiet_until = 0;
    int r, reported = 0;

    while (!atomic_load(&w->quit)) {
        const double now = dml__wd_now();
        if (now < next) {
            usleep((useconds_t)(1e6 * (next - now < 0.05 ? next - now : 0.05)));
            continue;
        }
        next = now + w->period;
        /* This process itself was not running (stopped and continued, as a
         * launcher does before it kills): what it knows is stale, and the
         * others have not been silent, it has. Start its view afresh. */
        if (now - prev > w->timeout / 2) {
            for (r = 0; r < w->size; r++)
                w->heard[r] = now;
            quiet_until = now + w->timeout;
        }
        prev = now;
        if (w->rank == 0) {
            for (r = 1; r < w->size; r++)
                dml__wd_recv(w, r, DML__WD_TAG_BEAT, now);
            for (r = 1; r < w->size; r++)
                dml__wd_send(w, r, DML__WD_TAG_DIGEST, dml__wd_mine(w, now));
            if (!reported && now >= quiet_until && dml__wd_judge(w, now, rep, sizeof(rep))) {
                reported = 1;
                w->on_stall(w->arg, rep);
            }
        } else {
            dml__wd_recv(w, 0, DML__WD_TAG_DIGEST, now);
            dml__wd_send(w, 0, DML__WD_TAG_BEAT, dml__wd_mine(w, now));
            /* Rank 0 silent: the first other rank reports it (and ends the
             * job, which takes its caller a moment); the next ones only
             * well after, should it be stuck too. */
            if (!reported && now >= quiet_until &&
                now - w->heard[0] > w->timeout + (w->rank - 1) * (w->period + 5)) {
                size_t used = dml__wd_name(w, 0, rep, sizeof(rep));
                snprintf(rep + used, sizeof(rep) - used, " has not been heard from for %.0f s "
                         "(last at step %llu; stall timeout %.0f s); the other ranks wait in a "
                         "collective for it", now - w->heard[0],
                         (unsigned long long)w->seen[0].step, w->timeout);
                reported = 1;
                w->on_stall(w->arg, rep);
            }
        }
    }
    return NULL;
}

static void dml__wd_free(dml__watchdog_t *w)
{
    if (w->comm != MPI_COMM_NULL)
        MPI_Comm_free(&w->comm);
    free(w->who), free(w->seen), free(w->heard), free(w->rreq), free(w->sreq);
    free(w->rbuf), free(w->sbuf), free(w->sent), free(w->got);
    free(w);
}

dml_status_t dml__watchdog_start(MPI_Comm comm, double timeout, void (*on_stall)(void *, const char *),
                                 void *arg, dml__watchdog_t **out)
{
    dml__watchdog_t *w = calloc(1, sizeof(*w));
    dml__wd_who_t me;
    dml_status_t st = DML_OK;
    int provided = 0, r, n;
    double now = dml__wd_now();

    *out = NULL;
    MPI_Query_thread(&provided);
    if (w == NULL)
        return dml_mpi_agree(comm, dml_error_set(DML_ERR_NO_MEMORY, "no memory"), NULL);
    w->comm = MPI_COMM_NULL;
    if (MPI_Comm_dup(comm, &w->comm) != MPI_SUCCESS) {
        free(w);
        return dml_error_set(DML_ERR_MPI, "MPI_Comm_dup for the watchdog failed");
    }
    MPI_Comm_rank(w->comm, &w->rank);
    MPI_Comm_size(w->comm, &w->size);
    n = w->size;
    w->timeout = timeout;
    /* often enough to notice in time, seldom enough to cost nothing */
    w->period = timeout / 8 < 2 ? (timeout / 8 > 0.05 ? timeout / 8 : 0.05) : 2;
    w->on_stall = on_stall;
    w->arg = arg;
    w->who = calloc((size_t)n, sizeof(*w->who));
    w->seen = calloc((size_t)n, sizeof(*w->seen));
    w->heard = calloc((size_t)n, sizeof(*w->heard));
    w->rreq = calloc((size_t)n, sizeof(*w->rreq));
    w->sreq = calloc((size_t)n, sizeof(*w->sreq));
    w->rbuf = calloc((size_t)n, sizeof(*w->rbuf));
    w->sbuf = calloc((size_t)n, sizeof(*w->sbuf));
    w->sent = calloc((size_t)n, sizeof(*w->sent));
    w->got = calloc((size_t)n, sizeof(*w->got));
    if (!w->who || !w->seen || !w->heard || !w->rreq || !w->sreq || !w->rbuf || !w->sbuf ||
        !w->sent || !w->got)
        st = dml_error_set(DML_ERR_NO_MEMORY, "no memory for the watchdog");
    else if (provided < MPI_THREAD_MULTIPLE)
        st = dml_error_set(DML_ERR_UNSUPPORTED, "the stall watchdog needs MPI_THREAD_MULTIPLE "
                           "(this MPI gives level %d)", provided);
    if ((st = dml_mpi_agree(w->comm, st, NULL)) != DML_OK) {
        dml__wd_free(w);
        return st;
    }
    memset(&me, 0, sizeof(me));
    gethostname(me.host, sizeof(me.host) - 1);
    me.pid = (int64_t)getpid();
    MPI_Allgather(&me, (int)sizeof(me), MPI_BYTE, w->who, (int)sizeof(me), MPI_BYTE, w->comm);
    for (r = 0; r < n; r++) {
        w->rreq[r] = w->sreq[r] = MPI_REQUEST_NULL;
        w->heard[r] = now;
    }
    atomic_store(&w->last_ns, (uint_fast64_t)(now * 1e9));
    /* rank 0 hears every rank; the others hear rank 0 */
    for (r = 0; r < n; r++)
        if ((w->rank == 0) != (r == 0))
            MPI_Irecv(&w->rbuf[r], 3, MPI_UINT64_T, r, w->rank == 0 ? DML__WD_TAG_BEAT : DML__WD_TAG_DIGEST,
                      w->comm, &w->rreq[r]);
    if (pthread_create(&w->thread, NULL, dml__wd_thread, w) != 0)
        st = dml_error_set(DML_ERR_NO_MEMORY, "cannot start the watchdog thread");
    else
        w->running = 1;
    if ((st = dml_mpi_agree(w->comm, st, NULL)) != DML_OK) {
        dml__watchdog_stop(w);
        return st;
    }
    *out = w;
    return DML_OK;
}

void dml__watchdog_stop(dml__watchdog_t *w)
{
    uint64_t *counts;
    int r;

    if (w == NULL)
        return;
    atomic_store(&w->quit, 1);
    if (w->running)
        pthread_join(w->thread, NULL);
    /* Every send matched: each rank learns how many its peers sent it and
     * takes the rest, then nothing is pending. */
    counts = calloc((size_t)w->size, sizeof(uint64_t));
    if (counts != NULL) {
        MPI_Alltoall(w->sent, 1, MPI_UINT64_T, counts, 1, MPI_UINT64_T, w->comm);
        for (r = 0; r < w->size; r++) {
            while (w->rreq[r] != MPI_REQUEST_NULL && w->got[r] < counts[r]) {
                MPI_Wait(&w->rreq[r], MPI_STATUS_IGNORE);
                if (++w->got[r] < counts[r])
                    MPI_Irecv(&w->rbuf[r], 3, MPI_UINT64_T, r,
                              w->rank == 0 ? DML__WD_TAG_BEAT : DML__WD_TAG_DIGEST, w->comm,
                              &w->rreq[r]);
            }
            if (w->rreq[r] != MPI_REQUEST_NULL) {
                MPI_Cancel(&w->rreq[r]);
                MPI_Wait(&w->rreq[r], MPI_STATUS_IGNORE);
            }
            if (w->sreq[r] != MPI_REQUEST_NULL)
                MPI_Wait(&w->sreq[r], MPI_STATUS_IGNORE);
        }
        free(counts);
    }
    dml__wd_free(w);
}
