/* test_tp.c — tensor parallelism on the CPU backend (issue 15): the model
 * split over 2 and 4 ranks (threads, one CPU backend each, an in-process
 * all-reduce after o and down) against the whole model and the HF float32
 * goldens of tinyqwen2-code (4 heads, 2 kv heads: at 4 ranks each kv head
 * serves two ranks; the embedding and LM head split by vocabulary rows).
 * Checks: greedy continuations token for token with the goldens,
 * last-prompt logits within 1e-4 of the whole model's, a two-sequence
 * batch, and one-line refusals of sizes that do not divide.
 * Then the engine (tensor_parallel_size, the runner's rank threads): a
 * batch of requests sharing a prefix, with prefix caching, and again in a
 * cache small enough to preempt, at TP 2 and 4 give TP 1's greedy tokens;
 * an aborted collective frees the ranks waiting in it.
 * Quick mode (ASan or CINFER_TEST_QUICK=1): 3 prompts, fewer requests. */
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

#include "backend/comm.h"
#include "engine/engine.h"
#include "engine/microbatch.h"
#include "engine/ranks.h"
#include "engine/runner.h"
#include "model/model.h"
#include "test.h"

#define MAXR 4
#define NBLK 64
#define BS 16

/* one tensor-parallel group: a model share, a KV cache and a backend per rank */
typedef struct group {
    int size, pp; /* pp: the ranks are pipeline stages, not tensor-parallel shares */
    int out;      /* the rank whose logits are the model's */
    ci_comm *comm;
    ci_backend *be[MAXR];
    ci_model *m[MAXR];
    ci_kv_cache *kv[MAXR];
    /* the step in flight */
    const ci_batch *b;
    float *logits[MAXR];
    ci_status st[MAXR];
} group;

typedef struct rank_arg {
    group *g;
    int r;
} rank_arg;

static void *rank_main(void *p) {
    rank_arg *a = p;
    group *g = a->g;
    g->st[a->r] = ci_model_forward(g->m[a->r], g->b, g->kv[a->r], g->logits[a->r]);
    return NULL;
}

/* every rank runs the step at once (their all-reduces meet) */
static ci_status group_forward(group *g, const ci_batch *b) {
    g->b = b;
    pthread_t th[MAXR];
    rank_arg a[MAXR];
    for (int r = 1; r < g->size; r++) {
        a[r] = (rank_arg){g, r};
        pthread_create(&th[r], NULL, rank_main, &a[r]);
    }
    a[0] = (rank_arg){g, 0};
    rank_main(&a[0]);
    for (int r = 1; r < g->size; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < g->size; r++)
        if (g->st[r].code != CI_OK) return g->st[r];
    return ci_ok();
}

static int group_open(group *g, const char *path, int size, int pp, int V) {
    memset(g, 0, sizeof *g);
    g->size = size;
    g->pp = pp;
    g->out = pp ? size - 1 : 0;
    CHECK_OK(ci_comm_create(size, &g->comm));
    for (int r = 0; r < size; r++) {
        ci_backend_options o = {1, 0, CI_ACT_DEFAULT};
        CHECK_OK(ci_backend_create("cpu", &o, &g->be[r]));
        g->be[r]->comm = pp ? NULL : g->comm;
        g->be[r]->rank = pp ? 0 : r;
        g->be[r]->pp_comm = pp ? g->comm : NULL;
        g->be[r]->pp_rank = pp ? r : 0;
        ci_model_options mo = {0};
        mo.max_batch_tokens = 512;
        if (pp) {
            mo.pp_stage = r;
            mo.pp_size = size;
        } else {
            mo.tp_rank = r;
            mo.tp_size = size;
        }
        ci_status s = ci_model_load(path, g->be[r], &mo, &g->m[r]);
        CHECK_OK(s);
        if (s.code != CI_OK) return 0;
        CHECK_OK(ci_model_kv_cache_create(g->m[r], NBLK, BS, &g->kv[r]));
        g->logits[r] = malloc(sizeof(float) * 2 * (size_t)V);
    }
    return 1;
}

static void group_close(group *g) {
    for (int r = 0; r < g->size; r++) {
        if (g->kv[r]) ci_kv_cache_destroy(g->be[r], g->kv[r]);
        ci_model_free(g->m[r]);
        if (g->be[r]) ci_backend_destroy(g->be[r]);
        free(g->logits[r]);
    }
    ci_comm_destroy(g->comm);
}

/* A batch of S sequences, sequence s at cache blocks [s * NBLK / 2, ...):
 * tokens ids[s][0..n[s]) at positions start[s].., logits of each last row. */
typedef struct tbatch {
    int32_t ids[1024], pos[1024], slots[1024], qs[3], cl[2], bt[2 * NBLK], li[2];
    ci_batch b;
} tbatch;

static void tbatch_make(tbatch *t, int S, const int32_t *const *ids, const int *n,
                        const int *start) {
    memset(t, 0, sizeof *t);
    int T = 0, maxq = 0, maxc = 0;
    for (int s = 0; s < S; s++) {
        t->qs[s] = T;
        for (int i = 0; i < n[s]; i++, T++) {
            const int p = start[s] + i, blk = s * (NBLK / 2) + p / BS;
            t->ids[T] = ids[s][i];
            t->pos[T] = p;
            t->slots[T] = blk * BS + p % BS;
        }
        t->cl[s] = start[s] + n[s];
        t->li[s] = T - 1;
        for (int k = 0; k < NBLK / 2; k++)
            t->bt[s * (NBLK / 2) + k] = s * (NBLK / 2) + k;
        if (n[s] > maxq) maxq = n[s];
        if (t->cl[s] > maxc) maxc = t->cl[s];
    }
    t->qs[S] = T;
    ci_batch *b = &t->b;
    b->num_tokens = T;
    b->num_seqs = S;
    b->num_logits = S;
    b->max_blocks_per_seq = NBLK / 2;
    b->max_query_len = maxq;
    b->max_context_len = maxc;
    b->token_ids = t->ids;
    b->positions = t->pos;
    b->query_start = t->qs;
    b->context_lens = t->cl;
    b->block_tables = t->bt;
    b->slot_mapping = t->slots;
    b->logits_indices = t->li;
}

static int argmax(const float *x, int V) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static int32_t *json_ids(json_t *arr, int *n) {
    *n = (int)json_array_size(arr);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(*n > 0 ? *n : 1));
    for (int i = 0; i < *n; i++)
        ids[i] = (int32_t)json_integer_value(json_array_get(arr, (size_t)i));
    return ids;
}

/* Greedy continuation of one prompt on group g (ng tokens); the logits of
 * the last prompt position go to plog. Returns tokens that match want. */
static int greedy(group *g, const int32_t *prompt, int n, int ng, const int32_t *want, int V,
                  float *plog) {
    tbatch t;
    const int32_t *ids[1] = {prompt};
    int nn[1] = {n}, start[1] = {0};
    tbatch_make(&t, 1, ids, nn, start);
    CHECK_OK(group_forward(g, &t.b));
    memcpy(plog, g->logits[g->out], sizeof(float) * (size_t)V);
    int match = 0, pos = n;
    for (int k = 0; k < ng; k++) {
        const int32_t tok = argmax(g->logits[g->out], V);
        if (tok != want[k]) break;
        match++;
        if (k + 1 == ng) break;
        const int32_t *one[1] = {&tok};
        int n1[1] = {1}, s1[1] = {pos++};
        tbatch_make(&t, 1, one, n1, s1);
        CHECK_OK(group_forward(g, &t.b));
    }
    return match;
}

/* ---- micro-batches: whole sequences, every token and logits row once ---- */

/* The ranks' KV-sizing step (runner.c on devices): every rank loads
 * before any cache exists (ci_ranks_load), runs the largest step on a
 * scratch cache of its own (ci_ranks_begin_profile) with the runner's
 * logits those of TP 1, then gets its cache (ci_ranks_kv_create) and serves
 * an ordinary step; at TP 2 and at TP 2 x PP 2. */
static void test_ranks_profile(const char *path, int V) {
    const int par[][2] = {{2, 1}, {2, 2}};
    int32_t prompt[40];
    for (int i = 0; i < 40; i++)
        prompt[i] = (int32_t)((i * 37 + 11) % 500);
    const int32_t *ids[1] = {prompt};
    const int n[1] = {40}, start[1] = {0};
    static tbatch t;
    tbatch_make(&t, 1, ids, n, start);
    /* TP 1's logits of the step */
    ci_backend *b1;
    ci_backend_options o1 = {1, 0, CI_ACT_DEFAULT};
    CHECK_OK(ci_backend_create("cpu", &o1, &b1));
    ci_model_options mo1 = {.max_batch_tokens = 512};
    ci_model *m1 = NULL;
    ci_kv_cache *kv1 = NULL;
    CHECK_OK(ci_model_load(path, b1, &mo1, &m1));
    if (!m1) return;
    CHECK_OK(ci_model_kv_cache_create(m1, NBLK, BS, &kv1));
    float *ref = malloc(sizeof(float) * (size_t)V);
    CHECK_OK(ci_model_forward(m1, &t.b, kv1, ref));
    for (size_t k = 0; k < sizeof par / sizeof par[0]; k++) {
        ci_ranks *g = NULL;
        CHECK_OK(ci_ranks_create(par[k][0], par[k][1], &g));
        if (!g) break;
        ci_backend *be = NULL;
        CHECK_OK(ci_backend_create("cpu", &o1, &be));
        ci_ranks_bind(g, be);
        ci_model_options mo = {.max_batch_tokens = 512};
        ci_ranks_runner_options(g, &mo);
        ci_model *m = NULL;
        ci_kv_cache *scratch = NULL, *kv = NULL;
        ci_microbatches mbs = {0};
        CHECK_OK(ci_model_load(path, be, &mo, &m));
        CHECK_OK(ci_ranks_load(g, path, "cpu", &o1, &mo));
        CHECK_OK(ci_model_kv_cache_create(m, NBLK, BS, &scratch));
        ci_status s = ci_ranks_begin_profile(g, &t.b, NBLK, BS);
        if (!s.code) s = ci_ranks_forward(g, m, scratch, &t.b, &mbs);
        CHECK_OK(ci_ranks_end(g, s));
        ci_kv_cache_destroy(be, scratch);
        const float *lg = ci_model_logits(m)->data;
        double d = 0;
        for (int v = 0; v < V; v++)
            d = fmax(d, fabs((double)lg[v] - ref[v]));
        printf("ranks TP=%d PP=%d: profiling step on scratch caches, logits within %.2g of TP=1\n",
               par[k][0], par[k][1], d);
        CHECK(d < 1e-3);
        /* the caches, then an ordinary step */
        CHECK_OK(ci_ranks_kv_create(g, NBLK, BS));
        CHECK_OK(ci_model_kv_cache_create(m, NBLK, BS, &kv));
        s = ci_ranks_begin(g, &t.b, NULL, NULL, 0);
        if (!s.code) s = ci_ranks_forward(g, m, kv, &t.b, &mbs);
        CHECK_OK(ci_ranks_end(g, s));
        d = 0;
        for (int v = 0; v < V; v++)
            d = fmax(d, fabs((double)lg[v] - ref[v]));
        CHECK(d < 1e-3);
        ci_ranks_free(g);
        ci_microbatches_free(&mbs);
        if (kv) ci_kv_cache_destroy(be, kv);
        ci_model_free(m);
        ci_backend_destroy(be);
    }
    free(ref);
    ci_kv_cache_destroy(b1, kv1);
    ci_model_free(m1);
    ci_backend_destroy(b1);
}

static void test_microbatch(void) {
    /* 5 sequences of 7, 1, 30, 2, 12 tokens; logits rows: sequence 0 none
     * (a prefill chunk), 1 one, 2 two (a draft verified), 3 and 4 one */
    int32_t qs[6] = {0, 7, 8, 38, 40, 52}, cl[5] = {7, 9, 60, 3, 12}, li[5] = {7, 36, 37, 39, 51};
    int32_t ids[52], pos[52], slots[52], bt[5 * 4] = {0};
    for (int i = 0; i < 52; i++)
        ids[i] = pos[i] = slots[i] = i;
    ci_batch b = {52, 5, 5, 4, 30, 60, ids, pos, qs, cl, bt, slots, li, 0, NULL};
    ci_microbatches m = {0};
    for (int want = 1; want <= 6; want++) {
        CHECK_OK(ci_microbatch_split(&b, want, &m));
        CHECK(m.n == (want < 5 ? want : 5));
        int T = 0, S = 0, L = 0, bad = 0;
        for (int k = 0; k < m.n; k++) {
            const ci_batch *p = &m.part[k].b;
            bad += p->token_ids != ids + T || p->context_lens != cl + S ||
                   p->block_tables != bt + S * 4 || p->query_start[0] != 0 ||
                   p->query_start[p->num_seqs] != p->num_tokens || m.part[k].logits_row0 != L ||
                   p->num_seqs < 1;
            for (int i = 0; i < p->num_logits; i++)
                bad += p->logits_indices[i] + T != li[L + i] || p->logits_indices[i] < 0 ||
                       p->logits_indices[i] >= p->num_tokens;
            T += p->num_tokens;
            S += p->num_seqs;
            L += p->num_logits;
        }
        CHECKF(!bad && T == 52 && S == 5 && L == 5,
               "micro-batches of %d: %d bad, %d tokens, %d "
               "sequences, %d rows",
               want, bad, T, S, L);
    }
    /* leading decodes (3 of 1 token, then 30 and 2): each part counts those
     * of the parent's that it holds */
    int32_t qs2[6] = {0, 1, 2, 3, 33, 35}, li2[5] = {0, 1, 2, 32, 34};
    ci_batch d = {35, 5, 5, 4, 30, 60, ids, pos, qs2, cl, bt, slots, li2, 3, NULL};
    for (int want = 1; want <= 5; want++) {
        CHECK_OK(ci_microbatch_split(&d, want, &m));
        int S = 0, bad = 0;
        for (int k = 0; k < m.n; k++) {
            const ci_batch *p = &m.part[k].b;
            int lead = 0;
            while (lead < p->num_seqs && S + lead < 3)
                lead++;
            bad += p->num_decode_seqs != lead;
            S += p->num_seqs;
        }
        CHECKF(!bad, "micro-batches of %d: %d parts miscount their decodes", want, bad);
    }
    int32_t unsorted[5] = {36, 7, 37, 39, 51}; /* rows not in sequence order: left whole */
    b.logits_indices = unsorted;
    CHECK_OK(ci_microbatch_split(&b, 3, &m));
    CHECK(m.n == 1 && m.part[0].b.logits_indices == unsorted);
    ci_microbatches_free(&m);
}

/* ---- the comm: an aborted step frees the ranks waiting in it ---- */

typedef struct comm_arg {
    ci_comm *c;
    int rank, rc;
    float x[8];
} comm_arg;

static void *comm_rank(void *p) {
    comm_arg *a = p;
    a->rc = ci_comm_all_reduce_f32(a->c, a->rank, a->x, 8);
    return NULL;
}

static void test_comm(void) {
    ci_comm *c;
    CHECK_OK(ci_comm_create(3, &c));
    comm_arg a[3];
    pthread_t th[3];
    /* ranks 0 and 1 enter the all-reduce, rank 2 fails before it */
    for (int r = 0; r < 2; r++) {
        a[r] = (comm_arg){c, r, 0, {0}};
        pthread_create(&th[r], NULL, comm_rank, &a[r]);
    }
    ci_comm_abort(c);
    for (int r = 0; r < 2; r++) {
        pthread_join(th[r], NULL);
        CHECK(a[r].rc == -1);
    }
    ci_comm_reset(c);
    /* the next step's all-reduce works: sums in rank order on every rank */
    for (int r = 0; r < 3; r++) {
        a[r] = (comm_arg){c, r, 0, {0}};
        for (int i = 0; i < 8; i++)
            a[r].x[i] = (float)(r * 10 + i);
        pthread_create(&th[r], NULL, comm_rank, &a[r]);
    }
    int bad = 0;
    for (int r = 0; r < 3; r++) {
        pthread_join(th[r], NULL);
        CHECK(a[r].rc == 0);
        for (int i = 0; i < 8; i++)
            bad += a[r].x[i] != (float)(30 + 3 * i);
    }
    CHECK(bad == 0);
    ci_comm_destroy(c);
}

/* A device group's bookkeeping on the comm (CUDA's NCCL communicators):
 * one id per epoch, made by the first rank that asks; an abort runs each
 * registered hook once and refuses ids until the reset, which starts the
 * next epoch with a new id. */
static int g_made, g_hooks[3];
static int make_id(void *id, size_t n) {
    memset(id, 0, n);
    *(int *)id = ++g_made;
    return 0;
}
static void hook(void *arg) {
    g_hooks[*(int *)arg]++;
}
static void test_comm_device(void) {
    ci_comm *c;
    CHECK_OK(ci_comm_create(3, &c));
    const unsigned e0 = ci_comm_epoch(c);
    int id[3] = {0}, rk[3] = {0, 1, 2};
    for (int r = 0; r < 3; r++) {
        CHECK(ci_comm_device_id(c, e0, &id[r], sizeof id[r], make_id) == 0);
        ci_comm_on_abort(c, r, hook, &rk[r]);
    }
    CHECK(g_made == 1 && id[0] == 1 && id[1] == 1 && id[2] == 1);
    ci_comm_abort(c);
    ci_comm_abort(c); /* hooks run once */
    CHECK(g_hooks[0] == 1 && g_hooks[1] == 1 && g_hooks[2] == 1);
    CHECK(ci_comm_aborted(c));
    CHECK(ci_comm_device_id(c, e0, &id[0], sizeof id[0], make_id) == -1);
    ci_comm_reset(c);
    const unsigned e1 = ci_comm_epoch(c);
    CHECK(e1 != e0 && !ci_comm_aborted(c));
    CHECK(ci_comm_device_id(c, e0, &id[0], sizeof id[0], make_id) == -1); /* an old epoch */
    CHECK(ci_comm_device_id(c, e1, &id[0], sizeof id[0], make_id) == 0 && id[0] == 2);
    CHECK(ci_comm_device_id(c, e1, &id[1], sizeof id[1], make_id) == 0 && id[1] == 2);
    CHECK(ci_comm_device_id(c, e1, &id[2], CI_COMM_ID_BYTES + 1, make_id) == -1);
    ci_comm_destroy(c);
}

/* ---- the engine ---- */

enum { NJ = 8, SHARED = 100, MT = 8 };
typedef struct ejobs {
    int nj, mt;
    int32_t *prompt[NJ];
    int np[NJ];
    int32_t out[NJ][MT];
    int nout[NJ];
} ejobs;

static uint32_t rs = 12345;
static uint32_t rnd32(void) {
    rs = rs * 1664525u + 1013904223u;
    return rs >> 8;
}

/* jobs whose J->mt tokens equal ref's */
static int count_same(const ejobs *J, const int32_t (*ref)[MT]) {
    int same = 0;
    for (int i = 0; i < J->nj; i++)
        same += J->nout[i] == J->mt && !memcmp(J->out[i], ref[i], sizeof(int32_t) * J->mt);
    return same;
}

/* Adds jobs [i0, i1) (greedy, ignore_eos) and steps the engine until every
 * request has finished, appending each job's tokens to J->out (ids: the
 * jobs' request ids, -1 before they are added); *errors (may be NULL)
 * counts the outputs that end with an error. */
static void run_jobs(ci_engine *e, ejobs *J, int64_t *ids, int i0, int i1, int *errors) {
    for (int i = i0; i < i1; i++) {
        ci_engine_sampling sp = ci_engine_default_sampling();
        sp.temperature = 0.0f;
        sp.max_tokens = J->mt;
        sp.ignore_eos = 1;
        CHECK_OK(ci_engine_add_request(e, J->prompt[i], J->np[i], &sp, 0, &ids[i]));
    }
    while (ci_engine_has_unfinished(e)) {
        const ci_engine_output *o;
        int n;
        ci_status s = ci_engine_step(e, &o, &n);
        CHECK_OK(s);
        if (s.code) break;
        for (int k = 0; k < n; k++) {
            if (errors) *errors += o[k].finish_reason == CINFER_FINISH_ERROR;
            for (int i = 0; i < J->nj; i++)
                if (ids[i] == o[k].request_id)
                    for (int t = 0; t < o[k].num_token_ids && J->nout[i] < MT; t++)
                        J->out[i][J->nout[i]++] = o[k].token_ids[t];
        }
    }
}

/* speculative decoding for run_engine: tokens per step (0: off) and the
 * draft model (NULL: n-gram) */
static int g_spec;
static const char *g_spec_model;
static double g_spec_accept; /* the last run's accepted / drafted tokens */

/* Runs every job (job 0 first, alone, so that the others can hit its
 * prefix) at tp ranks; returns preemptions, sets *hits. */
static int64_t run_engine(ejobs *J, const char *model_dir, int tp, int pp, int prefix,
                          int64_t kv_tokens, int mbt, int64_t *hits) {
    ci_engine_config c = ci_engine_default_config();
    c.num_speculative_tokens = g_spec;
    c.speculative_model = g_spec ? g_spec_model : NULL;
    c.model_dir = model_dir;
    c.tensor_parallel_size = tp;
    c.pipeline_parallel_size = pp;
    c.num_threads = tp * pp; /* one per rank */
    c.enable_prefix_caching = prefix;
    c.kv_cache_tokens = kv_tokens > 0 ? kv_tokens : 4096; /* not the 256 MiB default per rank */
    c.max_num_batched_tokens = mbt;
    ci_engine *e = NULL;
    ci_status s = ci_engine_create(&c, &e);
    CHECK_OK(s);
    if (s.code) return -1;
    int64_t ids[NJ];
    for (int i = 0; i < NJ; i++)
        ids[i] = -1; /* not added yet */
    memset(J->nout, 0, sizeof J->nout);
    run_jobs(e, J, ids, 0, 1, NULL);
    run_jobs(e, J, ids, 1, J->nj, NULL);
    ci_engine_metrics m = ci_engine_get_metrics(e);
    *hits = m.prefix_cache_hit_tokens;
    g_spec_accept =
        m.spec_draft_tokens > 0 ? (double)m.spec_accepted_tokens / (double)m.spec_draft_tokens : 0;
    ci_engine_destroy(e);
    return m.num_preemptions;
}

/* A rank's failure mid-step (fault site "rank": rank 1 skips its forward
 * at step 3 while the others wait for it in a collective): that step fails
 * as a whole, its requests end with an error, and the engine serves the
 * next requests with TP=1's tokens. */
static int fault_fired;
static ci_status rank_fault(void *user, ci_fault_site site, int64_t step, int64_t rank,
                            int64_t seed) {
    (void)user;
    (void)seed;
    if (site == CI_FAULT_RANK && step == 3 && rank == 1 && !fault_fired++)
        return ci_errorf(CI_ERR_INTERNAL, "injected fault on rank 1");
    return ci_ok();
}

static void test_rank_fault(ejobs *J, const char *model_dir, int tp, int pp, int32_t (*ref)[MT]) {
    ci_engine_config c = ci_engine_default_config();
    c.model_dir = model_dir;
    c.tensor_parallel_size = tp;
    c.pipeline_parallel_size = pp;
    c.num_threads = tp * pp;
    c.kv_cache_tokens = 4096;
    ci_engine *e = NULL;
    CHECK_OK(ci_engine_create(&c, &e));
    if (!e) return;
    fault_fired = 0;
    ci_engine_set_fault_hook(e, rank_fault, NULL);
    int errors = 0;
    for (int round = 0; round < 2; round++) {
        int64_t ids[NJ];
        memset(J->nout, 0, sizeof J->nout);
        run_jobs(e, J, ids, 0, J->nj, round == 0 ? &errors : NULL);
    }
    const int same = count_same(J, (const int32_t(*)[MT])ref);
    printf("engine TP=%d PP=%d, rank 1 fails at step 3: %d requests ended with an error, then "
           "%d/%d requests as TP=1\n",
           tp, pp, errors, same, J->nj);
    CHECK(fault_fired == 1);
    CHECK(errors > 0);
    CHECK(same == J->nj);
    ci_engine_destroy(e);
}

static void test_engine_tp(const char *model_dir, int quick) {
    ejobs J = {.nj = NJ, .mt = quick ? 6 : MT};
    int32_t shared[SHARED];
    for (int i = 0; i < SHARED; i++)
        shared[i] = (int32_t)(rnd32() % 8000);
    for (int i = 0; i < J.nj; i++) {
        J.np[i] = SHARED + 1 + (int)(rnd32() % 40);
        J.prompt[i] = malloc(sizeof(int32_t) * (size_t)J.np[i]);
        memcpy(J.prompt[i], shared, sizeof shared);
        for (int t = SHARED; t < J.np[i]; t++)
            J.prompt[i][t] = (int32_t)(rnd32() % 8000);
    }
    int64_t hits;
    run_engine(&J, model_dir, 1, 1, 0, 0, 2048, &hits);
    int32_t ref[NJ][MT];
    memcpy(ref, J.out, sizeof ref);
    const int par[][2] = {{2, 1}, {4, 1}, {1, 2}, {2, 2}}; /* tp, pp */
    for (size_t k = 0; k < sizeof par / sizeof par[0]; k++) {
        const int tp = par[k][0], pp = par[k][1];
        /* batched, prefix caching */
        run_engine(&J, model_dir, tp, pp, 1, 0, 2048, &hits);
        int same = count_same(&J, (const int32_t(*)[MT])ref);
        printf("engine TP=%d PP=%d, prefix caching: %d/%d requests as TP=1, %lld prefix tokens "
               "hit\n",
               tp, pp, same, J.nj, (long long)hits);
        CHECK(same == J.nj);
        CHECK(hits >= (J.nj - 1) * 96);
        /* a cache of ~1.5 requests and 64-token steps: chunked prefill and preemption */
        const int64_t pre = run_engine(&J, model_dir, tp, pp, 1, 200, 64, &hits);
        same = count_same(&J, (const int32_t(*)[MT])ref);
        printf("engine TP=%d PP=%d, small cache: %d/%d requests as TP=1, %lld preemptions\n", tp,
               pp, same, J.nj, (long long)pre);
        CHECK(same == J.nj);
        CHECK(pre > 0);
    }
    test_rank_fault(&J, model_dir, 2, 1, ref);
    test_rank_fault(&J, model_dir, 2, 2, ref);
    /* speculative decoding across ranks: the target verifies on every rank,
     * the draft (the model drafting for itself: every token accepted when
     * its cache follows the step's tokens) runs whole on the runner's;
     * n-gram drafts need no model. TP=1's greedy tokens either way. */
    for (int method = 0; method < 2; method++) {
        g_spec = 3;
        g_spec_model = method ? NULL : model_dir;
        for (size_t k = 0; k < sizeof par / sizeof par[0]; k += 3) { /* 2 x 1, 2 x 2 */
            const int tp = par[k][0], pp = par[k][1];
            run_engine(&J, model_dir, tp, pp, 1, 0, 2048, &hits);
            int same = count_same(&J, (const int32_t(*)[MT])ref);
            printf("engine TP=%d PP=%d, %s drafts: %d/%d requests as TP=1, %.0f%% of drafts "
                   "accepted\n",
                   tp, pp, method ? "n-gram" : "self", same, J.nj, 100 * g_spec_accept);
            CHECK(same == J.nj);
            if (!method) CHECK(g_spec_accept > 0.9);
        }
    }
    g_spec = 0;
    for (int i = 0; i < J.nj; i++)
        free(J.prompt[i]);
}

/* The architecture fixtures (tests/data, random weights; test_fixtures
 * holds TP=1 to transformers' goldens): Llama, Llama with YaRN, Mistral
 * (1 kv head: replicated on every rank), Qwen2 (q/k/v bias, tied
 * embeddings), Qwen3 (q/k-norm), and the sliding-window ones when present,
 * through the engine at TP 2 and 4, PP 2 and TP 2 x PP 2 against TP 1:
 * greedy tokens of 4 batched requests. */
static void test_fixtures_tp(void) {
    const char *names[] = {"llama", "llama_yarn",  "mistral",  "qwen2",
                           "qwen3", "mistral_swa", "qwen2_swa"};
    const int par[][2] = {{2, 1}, {4, 1}, {1, 2}, {2, 2}};
    for (size_t f = 0; f < sizeof names / sizeof names[0]; f++) {
        char dir[4200], cfg[4300];
        snprintf(dir, sizeof dir, "%s/tests/data/%s", test_source_dir(), names[f]);
        snprintf(cfg, sizeof cfg, "%s/config.json", dir);
        FILE *fp = fopen(cfg, "rb");
        if (!fp) {
            printf("fixture %s: not generated, skipped\n", names[f]);
            continue;
        }
        fclose(fp);
        ejobs J = {.nj = 4, .mt = MT};
        for (int i = 0; i < J.nj; i++) {
            J.np[i] = 3 + (int)(rnd32() % 60);
            J.prompt[i] = malloc(sizeof(int32_t) * (size_t)J.np[i]);
            for (int t = 0; t < J.np[i]; t++)
                J.prompt[i][t] = (int32_t)(rnd32() % 500);
        }
        int64_t hits;
        run_engine(&J, dir, 1, 1, 1, 0, 2048, &hits);
        int32_t ref[NJ][MT];
        memcpy(ref, J.out, sizeof ref);
        int ok = 0, runs = 0;
        for (size_t k = 0; k < sizeof par / sizeof par[0]; k++) {
            run_engine(&J, dir, par[k][0], par[k][1], 1, 0, 2048, &hits);
            int same = count_same(&J, (const int32_t(*)[MT])ref);
            CHECKF(same == J.nj, "fixture %s TP=%d PP=%d: %d of %d requests as TP=1", names[f],
                   par[k][0], par[k][1], same, J.nj);
            ok += same == J.nj;
            runs++;
        }
        printf("fixture %s: %d/%d of TP x PP = 2x1, 4x1, 1x2, 2x2 give TP=1's tokens\n", names[f],
               ok, runs);
        for (int i = 0; i < J.nj; i++)
            free(J.prompt[i]);
    }
}

int main(void) {
    const char *qe = getenv("CINFER_TEST_QUICK");
    const int quick = CI_ASAN || (qe && qe[0] && qe[0] != '0');
    char path[4096], gpath[4200];
    snprintf(path, sizeof path, "%s/models/tinyqwen2-code", test_source_dir());
    snprintf(gpath, sizeof gpath, "%s/golden_public.json", path);
    json_error_t jerr;
    json_t *gold = json_load_file(gpath, 0, &jerr);
    if (!gold) test_skip("golden_public.json not found");
    json_t *prompts = json_object_get(gold, "prompts");
    const int np = quick ? 3 : (int)json_array_size(prompts);
    const int V = 8192;

    group whole;
    if (!group_open(&whole, path, 1, 0, V)) return test_finish("test_tp");
    float *ref = malloc(sizeof(float) * (size_t)V * (size_t)np), *plog = malloc(sizeof(float) * V);
    /* whole, TP 2 and 4, then pipelines of 2 and 3 stages (6 layers) */
    const int runs[][2] = {{1, 0}, {2, 0}, {4, 0}, {2, 1}, {3, 1}};
    for (size_t ri = 0; ri < sizeof runs / sizeof runs[0]; ri++) {
        const int size = runs[ri][0], pp = runs[ri][1];
        const char *kind = pp ? "PP" : "TP";
        group g;
        if (size > 1 && !group_open(&g, path, size, pp, V)) break;
        group *G = size > 1 ? &g : &whole;
        if (size > 1 && !pp) /* each rank holds its vocabulary rows only */
            for (int r = 0; r < size; r++)
                CHECKF(G->m[r]->w.embed.rows == V / size && G->m[r]->w.lm_head.rows == V / size,
                       "TP=%d rank %d: embedding %lld, LM head %lld rows", size, r,
                       (long long)G->m[r]->w.embed.rows, (long long)G->m[r]->w.lm_head.rows);
        int exact = 0;
        double maxd = 0;
        for (int i = 0; i < np; i++) {
            json_t *pr = json_array_get(prompts, (size_t)i);
            int n, ng;
            int32_t *ids = json_ids(json_object_get(pr, "prompt_token_ids"), &n);
            int32_t *want = json_ids(json_object_get(pr, "greedy_token_ids"), &ng);
            if (quick && ng > 16) ng = 16;
            const int match = greedy(G, ids, n, ng, want, V, plog);
            exact += match == ng;
            if (match != ng)
                fprintf(stderr, "TP=%d prompt %d: first mismatch at %d\n", size, i, match);
            if (size == 1) memcpy(ref + (size_t)i * V, plog, sizeof(float) * V);
            for (int v = 0; v < V; v++) {
                const double d = fabs((double)plog[v] - ref[(size_t)i * V + v]);
                if (!(d <= maxd)) maxd = d;
            }
            free(ids);
            free(want);
        }
        printf("%s=%d: %d/%d golden continuations exact; last-prompt logits max |diff| vs "
               "TP=1 %.3g\n",
               kind, size, exact, np, maxd);
        CHECKF(exact == np, "%s=%d: %d of %d prompts exact", kind, size, exact, np);
        /* a pipeline runs the same arithmetic in the same order: exact */
        CHECKF(maxd <= (pp ? 0.0 : 1e-4), "%s=%d: logits differ from TP=1 by %g", kind, size, maxd);
        if (size > 1) {
            /* two sequences in one step: a prompt and a chunk after 5 tokens
             * of another, each row as the same sequence alone */
            json_t *p0 = json_array_get(prompts, 0),
                   *p1 = json_array_get(prompts, 14); /* 53 tokens */
            int n0, n1;
            int32_t *a = json_ids(json_object_get(p0, "prompt_token_ids"), &n0);
            int32_t *b = json_ids(json_object_get(p1, "prompt_token_ids"), &n1);
            tbatch t;
            const int32_t *ids5[1] = {b};
            int five[1] = {5}, zero[1] = {0};
            tbatch_make(&t, 1, ids5, five, zero);
            CHECK_OK(group_forward(G, &t.b)); /* sequence 0's cache = b's first 5 */
            const int32_t *ids2[2] = {b + 5, a};
            int nn[2] = {n1 - 5, n0}, st[2] = {5, 0};
            tbatch_make(&t, 2, ids2, nn, st);
            /* sequence 1 of the batch lives in the second half of the cache */
            CHECK_OK(group_forward(G, &t.b));
            float *both = malloc(sizeof(float) * 2 * (size_t)V);
            memcpy(both, G->logits[G->out], sizeof(float) * 2 * (size_t)V);
            int nb[1] = {n1}, na[1] = {n0};
            const int32_t *ib[1] = {b}, *ia[1] = {a};
            tbatch_make(&t, 1, ib, nb, zero);
            CHECK_OK(group_forward(G, &t.b));
            double d0 = 0, d1 = 0;
            for (int v = 0; v < V; v++)
                d0 = fmax(d0, fabs(both[v] - G->logits[G->out][v]));
            tbatch_make(&t, 1, ia, na, zero);
            CHECK_OK(group_forward(G, &t.b));
            for (int v = 0; v < V; v++)
                d1 = fmax(d1, fabs(both[V + v] - G->logits[G->out][v]));
            CHECKF(d0 <= 1e-4 && d1 <= 1e-4, "%s=%d batch of two: rows differ by %g / %g", kind,
                   size, d0, d1);
            free(both);
            free(a);
            free(b);
            group_close(&g);
        }
    }
    /* sizes that do not divide the model: one line at load */
    {
        ci_backend *be;
        CHECK_OK(ci_backend_create("cpu", NULL, &be));
        ci_model_options mo = {0};
        mo.tp_size = 3;
        ci_model *m = NULL;
        ci_status s = ci_model_load(path, be, &mo, &m);
        CHECK(s.code == CI_ERR_UNSUPPORTED && strstr(s.msg, "num_attention_heads 4"));
        printf("TP=3: %s\n", s.msg);
        mo.tp_size = 8;
        s = ci_model_load(path, be, &mo, &m);
        CHECK(s.code == CI_ERR_UNSUPPORTED && !m);
        mo.tp_size = 2;
        mo.tp_rank = 2;
        s = ci_model_load(path, be, &mo, &m);
        CHECK(s.code == CI_ERR_INVALID && !m);
        ci_backend_destroy(be);
    }
    free(ref);
    free(plog);
    group_close(&whole);
    test_microbatch();
    test_ranks_profile(path, V);
    test_comm();
    test_comm_device();
    test_engine_tp(path, quick);
    test_fixtures_tp();
    json_decref(gold);
    return test_finish("test_tp");
}
