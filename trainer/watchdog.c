/* SPDX-License-Identifier: BSD-3-Clause */
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
 * How long is too long: a fixed timeout where the caller gives one, else a
 * limit derived from the run itself, DML__WD_FACTOR times the longest time
 * any rank spent between two beats (recently, in a window of beats, or in a
 * checkpoint at any time in the run: those are rare and may take long), and
 * at least a floor. A fixed five minutes left a stuck rank unnoticed for
 * five minutes where steps take milliseconds; the derived limit follows the
 * run (a slow checkpoint, a large model) without being set by hand. Rank 0
 * derives it and sends it with its digest, so that every rank judges by the
 * same limit.
 *
 * A silent rank's last heartbeat may be older than its last step (steps can
 * be much shorter than the heartbeat period). But every collective the
 * others have left, it joined: it got at least as far as the others stand
 * (they wait for it in their next collective), and the report names the
 * later of the two.
 *
 * Messages are tiny and at most one per peer is in flight. At stop the
 * ranks tell each other how many they sent, and each receives the rest, so
 * that no request is left pending when the communicator is freed.
 */
#include "config.h"

#include "dml_mpi.h"
#include "train_private.h"
#include "dml_clock.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DML__WD_TAG_BEAT 1
#define DML__WD_TAG_DIGEST 2

/* A heartbeat (to rank 0): slow_us, the rank's longest time between beats
 * (microseconds); limit_us unused. A digest (from rank 0): slow_us, the
 * longest of every rank's, and limit_us, the limit rank 0 judges by. */
typedef struct {
    uint64_t count, step, age_ms, slow_us, limit_us;
} dml__wd_msg_t;

#define DML__WD_MSG_LEN 5  /* uint64 per message */
#define DML__WD_FACTOR 10  /* the derived limit: this many times the slowest */
#define DML__WD_WINDOW 512 /* beats in each half of the recent window */

typedef struct {
    char host[64];
    int64_t pid;
} dml__wd_who_t;

struct dml__watchdog {
    MPI_Comm comm;
    int rank, size;
    double timeout, floor, period; /* timeout 0: derived, at least floor */
    void (*on_stall)(void *, const char *);
    void *arg;
    dml__wd_who_t *who;
    pthread_t thread;
    int running; /* the thread was started */
    atomic_int quit;
    /* the main thread's progress */
    atomic_uint_fast64_t count, step, last_ns;
    atomic_uint_fast64_t slow_ns; /* the longest time between beats that counts */
    /* the main thread's own: the recent window's halves, and checkpoints */
    uint64_t win_cur_ns, win_prev_ns, rare_ns;
    unsigned win_n;
    /* the thread's view (rank 0: every rank's; others: rank 0's digest) */
    dml__wd_msg_t *seen;
    double *heard;
    MPI_Request *rreq, *sreq;
    dml__wd_msg_t *rbuf, *sbuf;
    uint64_t *sent, *got;
};

void dml__watchdog_beat(dml__watchdog_t *w, uint64_t step, dml__wd_kind_t kind)
{
    uint64_t now_ns, gap;

    if (w == NULL)
        return;
    now_ns = (uint64_t)(dml__now() * 1e9);
    gap = now_ns - (uint64_t)atomic_load(&w->last_ns);
    if (kind == DML__WD_RARE && gap > w->rare_ns)
        w->rare_ns = gap;
    else if (kind == DML__WD_STEP && gap > w->win_cur_ns)
        w->win_cur_ns = gap;
    /* Recent: this half of the window and the one before it. */
    if (++w->win_n == DML__WD_WINDOW) {
        w->win_prev_ns = w->win_cur_ns;
        w->win_cur_ns = 0;
        w->win_n = 0;
    }
    gap = w->win_cur_ns > w->win_prev_ns ? w->win_cur_ns : w->win_prev_ns;
    atomic_store(&w->slow_ns, gap > w->rare_ns ? gap : w->rare_ns);
    atomic_fetch_add(&w->count, 1);
    atomic_store(&w->step, step);
    atomic_store(&w->last_ns, now_ns);
}

static dml__wd_msg_t dml__wd_mine(dml__watchdog_t *w, double now)
{
    dml__wd_msg_t m;
    /* the main thread may have beaten since `now` was taken */
    const double age = now - (double)atomic_load(&w->last_ns) * 1e-9;
    m.count = atomic_load(&w->count);
    m.step = atomic_load(&w->step);
    m.age_ms = age > 0 ? (uint64_t)(1e3 * age) : 0;
    m.slow_us = (uint64_t)atomic_load(&w->slow_ns) / 1000;
    m.limit_us = 0;
    return m;
}

/* Rank 0: the limit, from every rank's slowest (in *slow, seconds). */
static double dml__wd_limit(const dml__watchdog_t *w, double *slow)
{
    uint64_t most = 0;
    double lim;
    int r;

    for (r = 0; r < w->size; r++)
        most = w->seen[r].slow_us > most ? w->seen[r].slow_us : most;
    *slow = 1e-6 * (double)most;
    if (w->timeout > 0)
        return w->timeout;
    lim = DML__WD_FACTOR * *slow;
    return lim > w->floor ? lim : w->floor;
}

/* How the limit came about, for the report. */
static void dml__wd_why(const dml__watchdog_t *w, double limit, double slow, char *buf, size_t len)
{
    if (w->timeout > 0)
        snprintf(buf, len, "stall timeout %.0f s", limit);
    else
        snprintf(buf, len,
                 "stall limit %.0f s: %d x the slowest recent step or checkpoint "
                 "(%.3g s), at least %.0f s",
                 limit, DML__WD_FACTOR, slow, w->floor);
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
    if (MPI_Isend(&w->sbuf[peer], DML__WD_MSG_LEN, MPI_UINT64_T, peer, tag, w->comm,
                  &w->sreq[peer]) == MPI_SUCCESS)
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
        MPI_Irecv(&w->rbuf[peer], DML__WD_MSG_LEN, MPI_UINT64_T, peer, tag, w->comm,
                  &w->rreq[peer]);
    }
}

static size_t dml__wd_name(const dml__watchdog_t *w, int r, char *buf, size_t len)
{
    return (size_t)snprintf(buf, len, "rank %d (pid %lld on %s)", r, (long long)w->who[r].pid,
                            w->who[r].host);
}

/* Rank 0: who is stuck, if anyone, by the limit lim. */
static int dml__wd_judge(dml__watchdog_t *w, double now, double lim, double slow, char *rep,
                         size_t len)
{
    uint64_t most = 0, stuck = 0, others = UINT64_MAX;
    size_t used = 0;
    char why[160];
    int r, pass;

    for (r = 0; r < w->size; r++)
        most = w->seen[r].count > most ? w->seen[r].count : most;
    /* Pass 0 finds where the ranks that are not stuck stand; pass 1 reports. */
    for (pass = 0; pass < 2; pass++)
        for (r = 0; r < w->size && used + 256 < len; r++) {
            const double silent = now - w->heard[r];
            const double still = 1e-3 * (double)w->seen[r].age_ms + silent;
            const int behind = w->seen[r].count < most && still > lim;
            uint64_t step = w->seen[r].step;
            if (silent <= lim && !behind) {
                if (pass == 0 && step < others)
                    others = step;
                continue;
            }
            if (pass == 0)
                continue;
            stuck++;
            used += (size_t)snprintf(rep + used, len - used, "%s", used ? "; " : "");
            used += dml__wd_name(w, r, rep + used, len - used);
            /* Silent for a while (stopped, its node gone), not only behind
             * (its main thread stuck while its heartbeats come): its last
             * heartbeat is old, and it went as far as the others stand. */
            if (silent > lim / 2) {
                if (others != UINT64_MAX && others > step)
                    step = others;
                used += (size_t)snprintf(rep + used, len - used,
                                         " has not been heard from for "
                                         "%.0f s (last at step %llu)",
                                         silent, (unsigned long long)step);
            } else {
                used += (size_t)snprintf(rep + used, len - used,
                                         " has not arrived where the "
                                         "others wait: no progress for %.0f s, at step %llu",
                                         still, (unsigned long long)step);
            }
        }
    if (stuck == 0)
        return 0;
    dml__wd_why(w, lim, slow, why, sizeof(why));
    snprintf(rep + used, len - used, " (%s); the other ranks wait in a collective for it", why);
    return 1;
}

static void *dml__wd_thread(void *arg)
{
    dml__watchdog_t *w = arg;
    char rep[2048], why[160];
    double next = dml__now(), prev = next, quiet_until = 0;
    /* until rank 0's first digest, the least limit it can derive */
    double lim = w->timeout > 0 ? w->timeout : w->floor, slow = 0;
    int r, reported = 0;

    while (!atomic_load(&w->quit)) {
        const double now = dml__now();
        if (now < next) {
            usleep((useconds_t)(1e6 * (next - now < 0.05 ? next - now : 0.05)));
            continue;
        }
        next = now + w->period;
        /* This process itself was not running (stopped and continued, as a
         * launcher does before it kills): what it knows is stale, and the
         * others have not been silent, it has. Start its view afresh. */
        if (now - prev > lim / 2) {
            for (r = 0; r < w->size; r++)
                w->heard[r] = now;
            quiet_until = now + lim;
        }
        prev = now;
        if (w->rank == 0) {
            dml__wd_msg_t d;
            for (r = 1; r < w->size; r++)
                dml__wd_recv(w, r, DML__WD_TAG_BEAT, now);
            w->seen[0] = dml__wd_mine(w, now);
            w->heard[0] = now;
            lim = dml__wd_limit(w, &slow);
            d = w->seen[0];
            d.slow_us = (uint64_t)(1e6 * slow);
            d.limit_us = (uint64_t)(1e6 * lim);
            for (r = 1; r < w->size; r++)
                dml__wd_send(w, r, DML__WD_TAG_DIGEST, d);
            if (!reported && now >= quiet_until &&
                dml__wd_judge(w, now, lim, slow, rep, sizeof(rep))) {
                reported = 1;
                w->on_stall(w->arg, rep);
            }
        } else {
            dml__wd_msg_t mine = dml__wd_mine(w, now);
            dml__wd_recv(w, 0, DML__WD_TAG_DIGEST, now);
            if (w->seen[0].limit_us > 0) {
                lim = 1e-6 * (double)w->seen[0].limit_us;
                slow = 1e-6 * (double)w->seen[0].slow_us;
            }
            dml__wd_send(w, 0, DML__WD_TAG_BEAT, mine);
            /* Rank 0 silent: the first other rank reports it (and ends the
             * job, which takes its caller a moment); the next ones only
             * well after, should it be stuck too. Rank 0 went as far as this
             * rank stands (see the top). */
            if (!reported && now >= quiet_until &&
                now - w->heard[0] > lim + (w->rank - 1) * (w->period + 5)) {
                size_t used = dml__wd_name(w, 0, rep, sizeof(rep));
                dml__wd_why(w, lim, slow, why, sizeof(why));
                snprintf(
                    rep + used, sizeof(rep) - used,
                    " has not been heard from for %.0f s "
                    "(last at step %llu; %s); the other ranks wait in a collective for it",
                    now - w->heard[0],
                    (unsigned long long)(w->seen[0].step > mine.step ? w->seen[0].step : mine.step),
                    why);
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

dml_status_t dml__watchdog_start(MPI_Comm comm, double timeout, double floor,
                                 void (*on_stall)(void *, const char *), void *arg,
                                 dml__watchdog_t **out)
{
    dml__watchdog_t *w = calloc(1, sizeof(*w));
    dml__wd_who_t me;
    dml_status_t st = DML_OK;
    int provided = 0, r, n;
    double now = dml__now();

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
    w->timeout = timeout > 0 ? timeout : 0;
    w->floor = floor;
    /* often enough to notice in time (the limit is never below the floor),
     * seldom enough to cost nothing */
    w->period = (timeout > 0 ? timeout : floor) / 8;
    w->period = w->period < 2 ? (w->period > 0.05 ? w->period : 0.05) : 2;
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
        st = dml_error_set(DML_ERR_UNSUPPORTED,
                           "the stall watchdog needs MPI_THREAD_MULTIPLE "
                           "(this MPI gives level %d)",
                           provided);
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
            MPI_Irecv(&w->rbuf[r], DML__WD_MSG_LEN, MPI_UINT64_T, r,
                      w->rank == 0 ? DML__WD_TAG_BEAT : DML__WD_TAG_DIGEST, w->comm, &w->rreq[r]);
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
                    MPI_Irecv(&w->rbuf[r], DML__WD_MSG_LEN, MPI_UINT64_T, r,
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
