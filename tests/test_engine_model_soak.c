/* test_engine_model_soak.c — randomized soak through the real engine on
 * tinyqwen2-code: requests arrive over time with random prompt lengths,
 * priorities, n, sampling parameters, stop strings and aborts, on a small
 * KV cache (preemption, eviction, copy-on-write). After every step:
 * ci_sched_check; every sample ends exactly once; token counts match the
 * finish reason; the KV pool is whole again at the end. CTest runs it in
 * each step loop (CINFER_TEST_ASYNC). */
#include <stdint.h>

#include "engine/engine.h"
#include "engine/scheduler.h"
#include "engine_test.h"
#include "test.h"

typedef struct req {
    int64_t id;
    int n, max_tokens, aborted, added;
    int ntok[4], fr[4];
} req;

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static void soak(const char *model_dir, int num_requests, int block_size, int mbt, int kv_tokens,
                 int prefix, int max_prompt) {
    ci_engine_config c = ci_engine_default_config();
    c.model_dir = model_dir;
    c.block_size = block_size;
    c.max_num_batched_tokens = mbt;
    c.max_num_seqs = 16;
    c.kv_cache_tokens = kv_tokens;
    c.enable_prefix_caching = prefix;
    c.aging_steps = 20;
    c.num_threads = 1;
    ci_engine *e = test_engine_create(&c, NULL); /* CINFER_TEST_ASYNC picks the step loop */
    if (!e) return;
    ci_status s;
    req *R = calloc((size_t)num_requests, sizeof *R);
    int *added = calloc((size_t)num_requests, sizeof *added), nadded = 0;
    int32_t shared[48];
    for (int i = 0; i < 48; i++)
        shared[i] = (int32_t)(rnd() % 8000);
    int next = 0, steps = 0, bad_check = 0, bad_out = 0, rejected = 0;
    const char *stops[2] = {"\n", "(n"};
    while (next < num_requests || ci_engine_has_unfinished(e)) {
        /* arrivals: a few per step */
        int arrivals = next < num_requests ? (int)(rnd() % 4) : 0;
        if (!ci_engine_has_unfinished(e) && arrivals == 0 && next < num_requests) arrivals = 1;
        for (int a = 0; a < arrivals && next < num_requests; a++, next++) {
            req *r = &R[next];
            int32_t prompt[128];
            int np = 1 + (int)(rnd() % (unsigned)max_prompt);
            int k = 0;
            if (rnd() % 3 == 0) {
                int sh = 16 + (int)(rnd() % 32);
                memcpy(prompt, shared, sizeof(int32_t) * (size_t)sh);
                k = sh;
            }
            for (int t = 0; t < np; t++)
                prompt[k++] = (int32_t)(rnd() % 8192);
            ci_engine_sampling sp = ci_engine_default_sampling();
            sp.max_tokens = 1 + (int)(rnd() % 6);
            sp.n = 1 + (int)(rnd() % 3);
            sp.temperature = rnd() % 2 ? 0.0f : 0.8f;
            sp.top_k = (int)(rnd() % 3) * 20;
            sp.top_p = rnd() % 2 ? 1.0f : 0.9f;
            sp.seed = rnd() % 2 ? (int64_t)(rnd() % 1000) : -1;
            sp.ignore_eos = (int)(rnd() % 2);
            sp.repetition_penalty = rnd() % 4 ? 1.0f : 1.2f;
            sp.presence_penalty = rnd() % 4 ? 0.0f : 0.5f;
            sp.min_tokens = (int)(rnd() % 2);
            if (rnd() % 4 == 0) {
                sp.stop = stops;
                sp.num_stop = 1 + (int)(rnd() % 2);
            }
            if (rnd() % 8 == 0) sp.logprobs = 2;
            if (rnd() % 20 == 0) sp.max_tokens = 0; /* invalid */
            r->n = sp.n;
            r->max_tokens = sp.max_tokens;
            s = ci_engine_add_request(e, prompt, k, &sp, (int)(rnd() % 4), &r->id);
            if (s.code) {
                rejected++;
                r->id = -1;
                CHECK(sp.max_tokens == 0);
            } else {
                r->added = 1;
                added[nadded++] = next;
            }
        }
        /* aborts */
        if (next > 0 && rnd() % 8 == 0) {
            req *r = &R[rnd() % (unsigned)next];
            if (r->added && !r->aborted) {
                int live = 0;
                for (int k = 0; k < r->n; k++)
                    live |= r->fr[k] == 0;
                if (live && ci_engine_abort(e, r->id).code == CI_OK) r->aborted = 1;
            }
        }
        const ci_engine_output *o;
        int n;
        s = ci_engine_step(e, &o, &n);
        if (s.code) {
            CHECKF(0, "step: %s", s.msg);
            break;
        }
        steps++;
        ci_status cs = ci_sched_check(ci_engine_scheduler(e));
        if (cs.code && !bad_check++) CHECKF(0, "step %d: %s", steps, cs.msg);
        for (int i = 0; i < n; i++) {
            /* ids increase in add order: binary search over added ones */
            int lo = 0, hi = nadded - 1, found = -1;
            while (lo <= hi) {
                int mid = (lo + hi) / 2;
                int64_t id = R[added[mid]].id;
                if (id == o[i].request_id) {
                    found = added[mid];
                    break;
                }
                if (id < o[i].request_id)
                    lo = mid + 1;
                else
                    hi = mid - 1;
            }
            if (found < 0 || o[i].sample_index >= R[found].n || R[found].fr[o[i].sample_index]) {
                if (!bad_out++)
                    CHECKF(0, "unexpected output for request %lld", (long long)o[i].request_id);
                continue;
            }
            req *r = &R[found];
            r->ntok[o[i].sample_index] += o[i].num_token_ids;
            if (o[i].finish_reason) r->fr[o[i].sample_index] = o[i].finish_reason;
        }
        if (steps > 200000) {
            CHECK(0);
            break;
        }
    }
    int unfinished = 0, badcount = 0, aborted = 0;
    for (int i = 0; i < num_requests; i++) {
        req *r = &R[i];
        if (!r->added) continue;
        for (int k = 0; k < r->n; k++) {
            if (!r->fr[k]) {
                if (unfinished < 5)
                    printf("unfinished: req %d id %lld n %d sample %d max %d ntok %d aborted %d fr "
                           "%d %d %d\n",
                           i, (long long)r->id, r->n, k, r->max_tokens, r->ntok[k], r->aborted,
                           r->fr[0], r->fr[1], r->fr[2]);
                unfinished++;
            }
            if (r->fr[k] == CI_FINISH_ABORT) aborted++;
            if (r->ntok[k] > r->max_tokens ||
                (r->fr[k] == CI_FINISH_LENGTH && r->ntok[k] != r->max_tokens))
                badcount++;
        }
    }
    CHECKF(unfinished == 0, "%d samples never finished", unfinished);
    CHECKF(badcount == 0, "%d samples with wrong token counts", badcount);
    ci_engine_metrics m = ci_engine_get_metrics(e);
    ci_block_manager *bm = ci_sched_block_manager(ci_engine_scheduler(e));
    CHECK(m.kv_blocks_used == 0 && ci_bm_num_available(bm) == m.num_kv_blocks);
    CHECK(m.num_running == 0 && m.num_waiting == 0);
    printf("soak: %d requests (%d rejected, %d samples aborted), %d steps, %lld preemptions, "
           "prefix hits %lld "
           "tokens, peak %d of %d blocks\n",
           num_requests, rejected, aborted, steps, (long long)m.num_preemptions,
           (long long)m.prefix_cache_hit_tokens, m.peak_kv_blocks_used, m.num_kv_blocks);
    CHECK(m.num_preemptions > 0);
    free(R);
    free(added);
    ci_engine_destroy(e);
}

int main(void) {
    char model_dir[4096], path[4200];
    snprintf(model_dir, sizeof model_dir, "%s/models/tinyqwen2-code", test_source_dir());
    snprintf(path, sizeof path, "%s/model.safetensors", model_dir);
    FILE *f = fopen(path, "rb");
    if (!f) test_skip("no tinyqwen2-code model");
    fclose(f);
    int quick = CI_ASAN || getenv("CINFER_TEST_QUICK");
    soak(model_dir, quick ? 300 : 1000, 4, 48, quick ? 128 : 256, 1, quick ? 32 : 64);
    soak(model_dir, quick ? 100 : 300, 16, 64, 256, 0, quick ? 32 : 64);
    return test_finish("test_engine_model_soak");
}
