/* Randomized soak of the engine core: 1,000 requests (shared prefixes,
 * random lengths, priorities, n in {1,2,3}, random aborts, a stop rule) run
 * through schedule -> batch -> fake model -> update until all finish.
 *
 * The fake model keeps a real paged "KV cache" of (token, position) per slot:
 * it applies the step's block copies, writes each new token through
 * slot_mapping, then reads every sequence's whole context back through its
 * block table and checks it equals the sequence's tokens. So prefix hits,
 * copy-on-write, forks and recompute after preemption are all checked end to
 * end, plus the invariant check after every step and a clean pool at the end.
 * CINFER_SOAK_SEED and CINFER_SOAK_REQUESTS override the defaults. */
#include <time.h>

#include "engine/batch.h"
#include "test.h"

static uint64_t rng_state;
static uint64_t rnd(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}
static int rnd_in(int lo, int hi) {
    return lo + (int)(rnd() % (uint64_t)(hi - lo + 1));
}

#define STOP_MOD 101

typedef struct soak_cfg {
    const char *name;
    int num_requests, num_blocks, block_size, budget, max_seqs, prefix_caching;
    float watermark;
} soak_cfg;

static void soak(const soak_cfg *sc, uint64_t seed) {
    rng_state = seed * 2654435761u + 0x1234567u;
    const int NUM_BLOCKS = sc->num_blocks, BLOCK = sc->block_size, num_requests = sc->num_requests;
    size_t nslots = (size_t)NUM_BLOCKS * (size_t)BLOCK;
    int32_t *kv_tok = calloc(nslots, sizeof *kv_tok), *kv_pos = calloc(nslots, sizeof *kv_pos);
    int64_t *kv_stamp = calloc(nslots, sizeof *kv_stamp);

    ci_sched_config c = ci_sched_default_config();
    c.block.num_blocks = NUM_BLOCKS;
    c.block.block_size = BLOCK;
    c.block.watermark = sc->watermark;
    c.block.enable_prefix_caching = sc->prefix_caching;
    c.max_num_batched_tokens = sc->budget;
    c.max_num_seqs = sc->max_seqs;
    c.aging_steps = 50;
    ci_scheduler *s = NULL;
    CHECK_OK(ci_sched_create(&c, &s));
    ci_batch_builder b;
    CHECK_OK(ci_batch_builder_init_for(&b, s));
    ci_block_manager *bm = ci_sched_block_manager(s);

    /* shared prefixes */
    enum { NPREF = 8 };
    static int32_t prefixes[NPREF][320];
    int prefix_len[NPREF];
    for (int i = 0; i < NPREF; i++) {
        prefix_len[i] = rnd_in(16, 320);
        for (int j = 0; j < prefix_len[i]; j++)
            prefixes[i][j] = rnd_in(0, 49999);
    }
    int *group_n = calloc((size_t)num_requests + 64, sizeof *group_n);
    int *group_done = calloc((size_t)num_requests + 64, sizeof *group_done);
    int64_t *group_ids = calloc((size_t)num_requests + 64, sizeof *group_ids);
    /* sequence ids are dense: at most 3 per request (n <= 3) */
    int *group_of_id = calloc(3 * (size_t)num_requests + 64, sizeof *group_of_id);
    int32_t prompt[1024];
    int32_t *sampled = malloc((size_t)sc->max_seqs * sizeof *sampled);

    int added = 0, rejected = 0, aborts = 0, finished = 0, by_reason[5] = {0};
    int64_t steps = 0, copies = 0, max_running = 0, slot_errors = 0, kv_errors = 0;
    clock_t t0 = clock();
    int ok = 1;
    while (ok && (added < num_requests || ci_sched_has_unfinished(s))) {
        /* arrivals */
        int k = ci_sched_has_unfinished(s) ? rnd_in(0, 4) : 1;
        for (int i = 0; i < k && added < num_requests; i++) {
            int len = 0;
            if (rnd() % 10 < 4) {
                int p = rnd_in(0, NPREF - 1);
                int take = rnd() % 3 ? prefix_len[p] : rnd_in(1, prefix_len[p]);
                memcpy(prompt, prefixes[p], (size_t)take * sizeof *prompt);
                len = take;
            }
            int extra = rnd_in(len ? 0 : 1, 600 - len);
            for (int j = 0; j < extra; j++)
                prompt[len++] = rnd_in(0, 49999);
            ci_request_params rp = {prompt, len, rnd_in(1, 150), rnd_in(1, 3), rnd_in(0, 3),
                                    0,      NULL};
            if (rnd() % 100 == 0) { /* can never fit: rejected up front */
                rp.num_prompt = 1000;
                rp.max_tokens = NUM_BLOCKS * BLOCK;
                for (int j = len; j < 1000; j++)
                    prompt[j] = 7;
                int64_t id;
                ci_status st = ci_sched_add(s, &rp, &id);
                CHECK(st.code == CI_ERR_CAPACITY);
                rejected++;
                continue;
            }
            int64_t id;
            ci_status st = ci_sched_add(s, &rp, &id);
            CHECK_OK(st);
            if (st.code != CI_OK) {
                ok = 0;
                break;
            }
            group_ids[added] = id;
            group_of_id[id] = added;
            group_n[added] = rp.n;
            added++;
        }
        /* random aborts */
        if (added > 0 && rnd() % 100 < 3) {
            int g = rnd_in(0, added - 1), n = 0;
            CHECK_OK(ci_sched_abort(s, group_ids[g], &n));
            aborts += n;
        }

        const ci_sched_output *o;
        ci_status st = ci_sched_schedule(s, &o);
        CHECK_OK(st);
        if (st.code != CI_OK) break;
        steps++;
        if (ci_sched_num_running(s) > max_running) max_running = ci_sched_num_running(s);
        CHECK(o->num_tokens <= c.max_num_batched_tokens && o->num_entries <= c.max_num_seqs);
        const ci_batch *bt;
        st = ci_batch_build(&b, o, &bt);
        CHECK_OK(st);
        if (st.code != CI_OK) break;

        /* fake model: block copies, then K/V writes, then read back */
        for (int i = 0; i < o->num_copies; i++) {
            memcpy(kv_tok + o->copies[i].dst * BLOCK, kv_tok + o->copies[i].src * BLOCK,
                   BLOCK * sizeof(int32_t));
            memcpy(kv_pos + o->copies[i].dst * BLOCK, kv_pos + o->copies[i].src * BLOCK,
                   BLOCK * sizeof(int32_t));
        }
        copies += o->num_copies;
        for (int t = 0; t < bt->num_tokens; t++) {
            int32_t slot = bt->slot_mapping[t];
            if (slot < 0 || slot >= (int32_t)nslots || kv_stamp[slot] == steps ||
                ci_bm_ref_count(bm, slot / BLOCK) != 1 || ci_bm_is_cached(bm, slot / BLOCK)) {
                slot_errors++;
                continue;
            }
            kv_stamp[slot] = steps;
            kv_tok[slot] = bt->token_ids[t];
            kv_pos[slot] = bt->positions[t];
        }
        for (int i = 0; i < bt->num_seqs; i++) {
            const ci_sequence *q = o->entries[i].seq;
            const int32_t *row = bt->block_tables + (size_t)i * (size_t)bt->max_blocks_per_seq;
            for (int p = 0; p < bt->context_lens[i]; p++) {
                int32_t slot = row[p / BLOCK] * BLOCK + p % BLOCK;
                if (kv_tok[slot] != q->tokens[p] || kv_pos[slot] != p) kv_errors++;
            }
        }
        CHECKF(slot_errors == 0 && kv_errors == 0, "step %lld: %lld slot errors, %lld KV errors",
               (long long)steps, (long long)slot_errors, (long long)kv_errors);
        if (slot_errors || kv_errors) break;

        for (int i = 0; i < o->num_samples; i++)
            sampled[i] = rnd_in(0, 49999);
        const ci_sched_result *r;
        int nr;
        st = ci_sched_update(s, sampled, o->num_samples, &r, &nr);
        CHECK_OK(st);
        if (st.code != CI_OK) break;
        /* the engine's stop rule */
        for (int i = 0; i < nr; i++)
            if (r[i].token % STOP_MOD == 0) CHECK_OK(ci_sched_finish(s, r[i].seq, CI_FINISH_STOP));
        st = ci_sched_check(s);
        CHECKF(st.code == CI_OK, "step %lld: %s", (long long)steps, st.msg);
        if (st.code != CI_OK) break;

        ci_sequence *q;
        while ((q = ci_sched_pop_finished(s))) {
            finished++;
            by_reason[q->finish_reason]++;
            if (q->finish_reason == CI_FINISH_LENGTH) CHECK(ci_seq_num_output(q) == q->max_tokens);
            if (q->finish_reason == CI_FINISH_STOP)
                CHECK(ci_seq_num_output(q) >= 1 && q->tokens[q->num_tokens - 1] % STOP_MOD == 0);
            CHECK(ci_seq_num_output(q) <= q->max_tokens && q->num_blocks == 0);
            int g = group_of_id[q->group_id];
            CHECK(group_ids[g] == q->group_id && q->sample_index < group_n[g]);
            group_done[g]++;
            ci_seq_destroy(q);
        }
        if (steps > 200000) {
            CHECK(!"soak did not converge");
            break;
        }
    }
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    ci_sched_stats ss = ci_sched_get_stats(s);
    ci_bm_stats bs = ci_bm_get_stats(bm);
    CHECK(added == num_requests);
    CHECK(!ci_sched_has_unfinished(s));
    CHECK(ci_bm_num_used(bm) == 0 && ci_bm_num_available(bm) == NUM_BLOCKS);
    CHECK_OK(ci_sched_check(s));
    CHECK(finished == added + ss.forks);
    CHECK(by_reason[CI_FINISH_ABORT] == aborts);
    int missing = 0;
    for (int g = 0; g < added; g++)
        missing += group_done[g] < 1;
    CHECK(missing == 0);
    CHECK(ss.preemptions > 0 && copies > 0);
    CHECK((bs.prefix_hit_tokens > 0) == (sc->prefix_caching != 0));
    printf("soak %s seed %llu: %d requests (+%d rejected), %lld steps, %lld sequences finished "
           "(stop %d, length %d, abort %d), forks %lld, max running %lld\n",
           sc->name, (unsigned long long)seed, added, rejected, (long long)ss.steps,
           (long long)finished, by_reason[CI_FINISH_STOP], by_reason[CI_FINISH_LENGTH],
           by_reason[CI_FINISH_ABORT], (long long)ss.forks, (long long)max_running);
    printf("  preemptions %lld, prefill tokens %lld, decode tokens %lld, prefix hit %lld of %lld "
           "queried "
           "tokens, CoW copies %lld, evictions %lld, dedups %lld, %.2f s\n",
           (long long)ss.preemptions, (long long)ss.prefill_tokens, (long long)ss.decode_tokens,
           (long long)bs.prefix_hit_tokens, (long long)bs.prefix_queried_tokens,
           (long long)bs.cow_copies, (long long)bs.evictions, (long long)bs.dedups, secs);
    free(group_n);
    free(group_done);
    free(group_ids);
    free(group_of_id);
    free(sampled);
    free(kv_tok);
    free(kv_pos);
    free(kv_stamp);
    ci_batch_builder_free(&b);
    ci_sched_destroy(s);
}

int main(void) {
    const char *e = getenv("CINFER_SOAK_SEED");
    uint64_t seed = e ? strtoull(e, NULL, 10) : 1;
    e = getenv("CINFER_SOAK_REQUESTS");
    int n = e ? atoi(e) : 1000;
    /* the main soak, then smaller runs: no prefix cache; a tight cache with a
     * small budget and blocks of 4 (more preemption, CoW, eviction); blocks of
     * 7 tokens and no watermark */
    const soak_cfg cfgs[] = {
        {"default", n, 512, 16, 512, 64, 1, 0.01f},
        {"no-prefix-cache", n / 3 + 1, 512, 16, 512, 64, 0, 0.01f},
        {"tight", n / 3 + 1, 800, 4, 64, 16, 1, 0.05f},
        {"odd-block", n / 3 + 1, 600, 7, 100, 24, 1, 0.0f},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++)
        soak(&cfgs[i], seed + i);
    return test_finish("test_engine_soak");
}
