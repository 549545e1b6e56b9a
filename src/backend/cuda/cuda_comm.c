/* cuda_comm.c — tensor / pipeline parallelism on GPUs: the backend's
 * collectives (all_reduce, send / recv, gather_cols) over NCCL, one GPU per
 * rank and the ranks threads of one process (engine/ranks.c), and the
 * vocabulary share of the embedding.
 *
 * Each rank's communicator over a comm (be->comm: its stage's tensor
 * group; be->pp_comm: every rank) is made once per epoch of the comm
 * (backend/comm.h) by the comm_ready op, which every rank calls at the
 * start of a step before anything that may fail: the first rank to ask
 * makes the NCCL id, every rank joins with a nonblocking
 * ncclCommInitRankConfig and polls it until all have, giving up (and
 * aborting its half-made communicator) if the group is aborted meanwhile:
 * a rank that fails before it joins cannot leave the others waiting. A
 * rank whose step fails aborts the comms; their hooks abort the NCCL
 * communicators (a peer's kernel waiting for the failed rank ends), the
 * ops then answer CI_COMM_ABORTED_MSG, and the reset that ends the step
 * starts a new epoch: the next step builds the communicators again. An
 * operation a nonblocking communicator leaves in progress is polled the
 * same way (settle), under the lock the abort hook takes.
 *
 * Collectives are enqueued on the backend's stream like any kernel (no host
 * sync). F32 and BF16 reduce in their own type (NCCL's ring sums in BF16
 * with BF16 activations, as vLLM's NCCL path does). */
#include <nccl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/comm.h"
#include "backend/cuda/cuda.h"
#include "backend/cuda/cuda_internal.h"
#include "backend/cuda/cuda_kernels.h"

typedef struct cu_nccl {
    ncclComm_t comm;
    unsigned epoch;
    int live;           /* atomic: comm is this epoch's, made, not aborted or destroyed */
    pthread_mutex_t mu; /* the hook's abort against this rank's polling of comm */
} cu_nccl;

static int make_id(void *id, size_t n) {
    ncclUniqueId u;
    if (n != sizeof u || ncclGetUniqueId(&u) != ncclSuccess) return -1;
    memcpy(id, &u, sizeof u);
    return 0;
}

/* the comm's abort hook (any rank's thread): NCCL's abort ends this rank's
 * pending collectives; the exchange makes it the communicator's only end */
static void abort_hook(void *arg) {
    cu_nccl *n = arg;
    pthread_mutex_lock(&n->mu);
    if (__atomic_exchange_n(&n->live, 0, __ATOMIC_ACQ_REL)) ncclCommAbort(n->comm);
    pthread_mutex_unlock(&n->mu);
}

static ci_status aborted(const char *what) {
    return ci_errorf(CI_ERR_BACKEND, "%s: %s", what, CI_COMM_ABORTED_MSG);
}

static ci_status nccl_error(ci_comm *cm, const char *what, ncclResult_t r) {
    if (ci_comm_aborted(cm)) return aborted(what);
    return ci_errorf(CI_ERR_BACKEND, "nccl %s: %s", what, ncclGetErrorString(r));
}

/* r, or what the operation r left in progress on n's communicator ends in
 * (ncclInvalidUsage once the hook aborted it) */
static ncclResult_t settle(cu_nccl *n, ncclResult_t r) {
    while (r == ncclInProgress) {
        pthread_mutex_lock(&n->mu);
        if (!__atomic_load_n(&n->live, __ATOMIC_ACQUIRE))
            r = ncclInvalidUsage;
        else if (ncclCommGetAsyncError(n->comm, &r) != ncclSuccess)
            r = ncclInternalError;
        pthread_mutex_unlock(&n->mu);
        if (r == ncclInProgress) sched_yield();
    }
    return r;
}

/* joins the group's communicator of this epoch without blocking: polls the
 * nonblocking init, and aborts it itself if the group fails meanwhile (no
 * hook is registered yet: nothing else touches the half-made comm) */
static ncclResult_t join(cu_nccl *n, ci_comm *cm, ncclUniqueId id, int rank, int *gave_up) {
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    ncclResult_t r = ncclCommInitRankConfig(&n->comm, ci_comm_size(cm), id, rank, &cfg);
    if (r != ncclSuccess && r != ncclInProgress) return r;
    for (;;) {
        ncclResult_t st = ncclInProgress;
        if (ncclCommGetAsyncError(n->comm, &st) != ncclSuccess) st = ncclInternalError;
        if (st != ncclInProgress) {
            if (st != ncclSuccess) ncclCommAbort(n->comm);
            return st;
        }
        if (ci_comm_aborted(cm)) {
            ncclCommAbort(n->comm);
            *gave_up = 1;
            return ncclInternalError;
        }
        const struct timespec nap = {0, 50 * 1000}; /* init takes ~0.1-1 s */
        nanosleep(&nap, NULL);
    }
}

/* this rank's communicator over cm (rank `rank` of it), made in the
 * current epoch if it is not yet */
static ci_status group(ci_cuda *c, ci_comm *cm, int rank, cu_nccl **slot, const char *what,
                       cu_nccl **out) {
    const char *why = ci_cuda_nccl_load();
    if (why) return ci_errorf(CI_ERR_UNSUPPORTED, "%s: %s", what, why);
    if (!*slot) {
        cu_nccl *n = calloc(1, sizeof *n);
        if (!n) return ci_errorf(CI_ERR_NOMEM, "%s: out of memory", what);
        pthread_mutex_init(&n->mu, NULL);
        *slot = n;
    }
    cu_nccl *n = *slot;
    const unsigned epoch = ci_comm_epoch(cm);
    if (__atomic_load_n(&n->live, __ATOMIC_ACQUIRE) && n->epoch == epoch) {
        *out = n;
        return ci_ok();
    }
    /* an old epoch's, never aborted (reset without a failure): every op on
     * it completed with the step, so abort is a local free */
    pthread_mutex_lock(&n->mu);
    if (__atomic_exchange_n(&n->live, 0, __ATOMIC_ACQ_REL)) ncclCommAbort(n->comm);
    pthread_mutex_unlock(&n->mu);
    ncclUniqueId id;
    if (ci_comm_device_id(cm, epoch, &id, sizeof id, make_id)) return aborted(what);
    CI_CU_TRY(cudaSetDevice(c->device));
    int gave_up = 0;
    const ncclResult_t r = join(n, cm, id, rank, &gave_up);
    if (gave_up) return aborted(what);
    if (r != ncclSuccess) return nccl_error(cm, what, r);
    n->epoch = epoch;
    __atomic_store_n(&n->live, 1, __ATOMIC_RELEASE);
    ci_comm_on_abort(cm, rank, abort_hook, n);
    /* an abort between the join and the hook's registration found no hook:
     * seen here (the flag is set before the hooks are collected) */
    if (ci_comm_aborted(cm)) {
        abort_hook(n);
        return aborted(what);
    }
    *out = n;
    return ci_ok();
}

static int nccl_type(ci_dtype t, ncclDataType_t *out) {
    if (t == CI_F32)
        *out = ncclFloat32;
    else if (t == CI_BF16)
        *out = ncclBfloat16;
    else
        return 0;
    return 1;
}

ci_status ci_cuda_all_reduce(ci_backend *be, ci_tensor *x) {
    if (!be->comm || ci_comm_size(be->comm) <= 1) return ci_ok();
    ci_cuda *c = ci_cuda_of(be);
    ncclDataType_t t;
    if (!nccl_type(x->dtype, &t))
        return ci_errorf(CI_ERR_INVALID, "cuda all_reduce: %s tensor", ci_dtype_name(x->dtype));
    cu_nccl *n = NULL;
    CI_TRY(group(c, be->comm, be->rank, &c->nccl_tp, "all_reduce", &n));
    const ncclResult_t r = settle(n, ncclAllReduce(x->data, x->data, (size_t)(x->rows * x->cols), t,
                                                   ncclSum, n->comm, c->stream));
    return r == ncclSuccess ? ci_ok() : nccl_error(be->comm, "all_reduce", r);
}

/* x's bytes to (send) or from rank peer of the pipeline group */
static ci_status p2p(ci_backend *be, void *x, size_t n, int peer, int send) {
    ci_cuda *c = ci_cuda_of(be);
    const char *what = send ? "send" : "recv";
    if (!be->pp_comm) return ci_errorf(CI_ERR_INVALID, "cuda %s: no pipeline group", what);
    cu_nccl *g = NULL;
    CI_TRY(group(c, be->pp_comm, be->pp_rank, &c->nccl_pp, what, &g));
    const ncclResult_t r = settle(g, send ? ncclSend(x, n, ncclUint8, peer, g->comm, c->stream)
                                          : ncclRecv(x, n, ncclUint8, peer, g->comm, c->stream));
    return r == ncclSuccess ? ci_ok() : nccl_error(be->pp_comm, what, r);
}

ci_status ci_cuda_send(ci_backend *be, const ci_tensor *x, int peer) {
    return p2p(be, x->data, (size_t)(x->rows * x->cols) * ci_dtype_size(x->dtype), peer, 1);
}

ci_status ci_cuda_recv(ci_backend *be, ci_tensor *x, int peer) {
    return p2p(be, x->data, (size_t)(x->rows * x->cols) * ci_dtype_size(x->dtype), peer, 0);
}

ci_status ci_cuda_embedding_shard(ci_backend *be, const ci_tensor *table, int64_t row0,
                                  const int32_t *ids, int n, ci_tensor *out) {
    ci_cuda *c = ci_cuda_of(be);
    if (out->dtype != be->act_dtype || table->dtype != out->dtype || out->cols != table->cols ||
        out->rows < n || row0 < 0)
        return ci_errorf(CI_ERR_INVALID, "cuda embedding_shard: table %s [%lld] -> out %s [%lld]",
                         ci_dtype_name(table->dtype), (long long)table->cols,
                         ci_dtype_name(out->dtype), (long long)out->cols);
    CI_CU_LAUNCH("embedding_shard",
                 ci_cu_gather_rows_from((ci_cu_stream)c->stream, table->data, row0, table->rows,
                                        table->cols * (int64_t)ci_dtype_size(table->dtype), ids, n,
                                        out->data));
    return ci_ok();
}

/* rank r's columns of a V-column split over `size` ranks: the config's
 * vocabulary rule (ci_config_tp_split: [r V / size, (r + 1) V / size)) */
static void cols_of(int64_t V, int size, int r, int64_t *c0, int64_t *nc) {
    *c0 = (int64_t)r * V / size;
    *nc = (int64_t)(r + 1) * V / size - *c0;
}

ci_status ci_cuda_gather_cols(ci_backend *be, const ci_tensor *part, ci_tensor *out, int root) {
    ci_cuda *c = ci_cuda_of(be);
    const int size = ci_comm_size(be->comm), me = be->rank;
    const size_t es = ci_dtype_size(part->dtype);
    int64_t c0, nc;
    cols_of(out->cols, size, me, &c0, &nc);
    if (part->dtype != out->dtype || out->rows < part->rows || part->cols != nc)
        return ci_errorf(CI_ERR_INVALID,
                         "cuda gather_cols: part [%lld][%lld] of rank %d, out [%lld][%lld]",
                         (long long)part->rows, (long long)part->cols, me, (long long)out->rows,
                         (long long)out->cols);
    const int64_t rows = part->rows;
    if (size <= 1) {
        CI_CU_TRY(cudaMemcpy2DAsync(out->data, (size_t)out->cols * es, part->data, (size_t)nc * es,
                                    (size_t)nc * es, (size_t)rows, cudaMemcpyDeviceToDevice,
                                    c->stream));
        return ci_ok();
    }
    cu_nccl *n = NULL;
    CI_TRY(group(c, be->comm, me, &c->nccl_tp, "gather_cols", &n));
    ncclComm_t comm = n->comm;
    if (me != root) {
        const ncclResult_t r = settle(
            n, ncclSend(part->data, (size_t)(rows * nc) * es, ncclUint8, root, comm, c->stream));
        return r == ncclSuccess ? ci_ok() : nccl_error(be->comm, "gather_cols", r);
    }
    /* the root: every other rank's part into the staging buffer (grown
     * outside graph capture only: the ranks run eagerly), then each part's
     * columns into place */
    size_t need = 0;
    for (int r = 0; r < size; r++) {
        int64_t rc0, rnc;
        cols_of(out->cols, size, r, &rc0, &rnc);
        if (r != root) need += (size_t)(rows * rnc) * es;
    }
    if (need > c->gather_bytes) {
        CI_CU_TRY(cudaStreamSynchronize(c->stream));
        if (c->gather_buf) CI_CU_TRY(cudaFree(c->gather_buf));
        c->gather_buf = NULL;
        c->gather_bytes = 0;
        CI_CU_TRY(cudaMalloc(&c->gather_buf, need));
        c->gather_bytes = need;
    }
    /* in a group, the calls only queue (ncclGroupEnd runs them) */
    ncclResult_t r = ncclGroupStart();
    size_t off = 0;
    for (int k = 0; k < size && r == ncclSuccess; k++) {
        int64_t rc0, rnc;
        cols_of(out->cols, size, k, &rc0, &rnc);
        if (k == root) continue;
        r = ncclRecv((char *)c->gather_buf + off, (size_t)(rows * rnc) * es, ncclUint8, k, comm,
                     c->stream);
        off += (size_t)(rows * rnc) * es;
    }
    const ncclResult_t e = settle(n, ncclGroupEnd());
    if (r == ncclSuccess) r = e;
    if (r != ncclSuccess) return nccl_error(be->comm, "gather_cols", r);
    off = 0;
    for (int k = 0; k < size; k++) {
        int64_t rc0, rnc;
        cols_of(out->cols, size, k, &rc0, &rnc);
        const void *src = k == root ? part->data : (const char *)c->gather_buf + off;
        if (k != root) off += (size_t)(rows * rnc) * es;
        if (rnc == 0) continue;
        CI_CU_TRY(cudaMemcpy2DAsync((char *)out->data + (size_t)rc0 * es, (size_t)out->cols * es,
                                    src, (size_t)rnc * es, (size_t)rnc * es, (size_t)rows,
                                    cudaMemcpyDeviceToDevice, c->stream));
    }
    return ci_ok();
}

ci_status ci_cuda_comm_ready(ci_backend *be) {
    ci_cuda *c = ci_cuda_of(be);
    cu_nccl *comm = NULL;
    if (be->comm && ci_comm_size(be->comm) > 1)
        CI_TRY(group(c, be->comm, be->rank, &c->nccl_tp, "tensor group", &comm));
    if (be->pp_comm && ci_comm_size(be->pp_comm) > 1)
        CI_TRY(group(c, be->pp_comm, be->pp_rank, &c->nccl_pp, "pipeline group", &comm));
    return ci_ok();
}

ci_status ci_cuda_thread_attach(ci_backend *be) {
    CI_CU_TRY(cudaSetDevice(ci_cuda_of(be)->device));
    return ci_ok();
}

void ci_cuda_comm_free(ci_cuda *c) {
    cu_nccl *n[2] = {c->nccl_tp, c->nccl_pp};
    for (int i = 0; i < 2; i++) {
        if (!n[i]) continue;
        /* the communicator freed locally: the ranks' steps are over, so no
         * abort (and no hook) can come any more (the runner's backend goes
         * after the comms: its hook is not unregistered, never called) */
        if (__atomic_exchange_n(&n[i]->live, 0, __ATOMIC_ACQ_REL)) ncclCommAbort(n[i]->comm);
        pthread_mutex_destroy(&n[i]->mu);
        free(n[i]);
    }
    c->nccl_tp = c->nccl_pp = NULL;
    if (c->gather_buf) cudaFree(c->gather_buf);
    c->gather_buf = NULL;
    c->gather_bytes = 0;
}
