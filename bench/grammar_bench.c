/* grammar_bench.c — constrained decoding costs: compile time per grammar
 * source, and the per-token mask cost over a real vocabulary, cold (a trie
 * walk: the first time a matcher state is seen) and cached (the same states
 * again: a cache lookup and copy), plus accept.
 *
 * The token stream is a seeded random walk under the grammar (each step
 * picks an allowed token; EOS with a rising probability). Cold numbers are
 * from the first walk on a fresh grammar, counting only cache misses;
 * cached numbers replay the same tokens on a new matcher; budget numbers
 * replay them through fill_mask_budget far from the limit (what the engine
 * pays per token) and tight (one token more than the state needs: each mask
 * filtered, as in a request's last steps). Timings are the best of 3 runs
 * (tight: one run; the machine may be shared).
 *
 * usage: bench_grammar_bench [tokenizer_dir ...]
 *   (default: models/tinyqwen2-code and ../shared/tokenizers/llama3) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grammar/grammar.h"
#include "tokenizer/tokenizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* CPU time: the machine may be shared */
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct src {
    const char *name, *kind, *text; /* kind: gbnf, regex, schema, object */
} src;

static const src sources[] = {
    {"json_object", "object", ""},
    {"tool_args", "schema",
     "{\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\"},\"unit\":{\"type\":"
     "\"string\","
     "\"enum\":[\"celsius\",\"fahrenheit\"]},\"days\":{\"type\":\"integer\",\"minimum\":1,"
     "\"maximum\":14}},"
     "\"required\":[\"location\",\"unit\",\"days\"],\"additionalProperties\":false}"},
    {"person", "schema",
     "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"minLength\":1,"
     "\"maxLength\":64},"
     "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},\"email\":{\"type\":\"string\","
     "\"format\":\"email\"},"
     "\"born\":{\"type\":\"string\",\"format\":\"date\"},\"tags\":{\"type\":\"array\",\"items\":{"
     "\"type\":\"string\","
     "\"maxLength\":16},\"maxItems\":8}},\"required\":[\"name\",\"age\"],\"additionalProperties\":"
     "false}"},
    {"tree_refs", "schema",
     "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},"
     "\"label\":{\"anyOf\":["
     "{\"type\":\"string\"},{\"type\":\"null\"}]},\"children\":{\"type\":\"array\",\"items\":{\"$"
     "ref\":\"#/$defs/node\"}}},"
     "\"required\":[\"id\",\"children\"],\"additionalProperties\":false}},\"$ref\":\"#/$defs/"
     "node\"}"},
    {"big_object", "schema", NULL}, /* generated: 40 properties */
    {"email_regex", "regex", "[a-z0-9._%+-]{1,32}@[a-z0-9-]{1,32}\\.(com|org|net|io)"},
    {"arithmetic", "gbnf",
     "root ::= expr\nexpr ::= term (sp [-+] sp term)*\nterm ::= factor (sp [*/] sp factor)*\n"
     "factor ::= [0-9]+ | \"(\" sp expr sp \")\"\nsp ::= \" \"?\n"},
};

static char *big_schema(void) {
    static char buf[16384];
    size_t n = (size_t)snprintf(buf, sizeof buf, "{\"type\":\"object\",\"properties\":{");
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s\"field_%d\":{\"type\":\"%s\"}",
                              i ? "," : "", i,
                              i % 3 == 0   ? "string"
                              : i % 3 == 1 ? "integer"
                                           : "boolean");
    snprintf(buf + n, sizeof buf - n,
             "},\"required\":[\"field_0\",\"field_7\"],\"additionalProperties\":false}");
    return buf;
}

static ci_status compile(const src *s, ci_grammar **g) {
    const char *t = s->text ? s->text : big_schema();
    if (!strcmp(s->kind, "object")) return ci_grammar_json_object(g, NULL, 0);
    if (!strcmp(s->kind, "schema")) return ci_grammar_from_json_schema(t, strlen(t), g, NULL, 0);
    if (!strcmp(s->kind, "regex")) return ci_grammar_from_regex(t, strlen(t), g, NULL, 0);
    return ci_grammar_from_gbnf(t, strlen(t), g, NULL, 0);
}

static uint64_t rnd(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

#define MAX_STEPS 2000
#define TIGHT_STEPS 200

static void bench_vocab(const char *dir) {
    ci_tokenizer *tok = NULL;
    ci_status st = ci_tokenizer_load(dir, &tok);
    if (st.code != CI_OK) {
        printf("%s: skipped (%s)\n", dir, st.msg);
        return;
    }
    int32_t eos = ci_tokenizer_eos_id(tok);
    ci_grammar_vocab *v = NULL;
    double t0 = now();
    st = ci_grammar_vocab_from_tokenizer(tok, &eos, eos >= 0, &v);
    double tv = now() - t0;
    if (st.code != CI_OK) {
        printf("%s: %s\n", dir, st.msg);
        ci_tokenizer_free(tok);
        return;
    }
    int nv = ci_grammar_vocab_size(v);
    printf("\n%s: %d tokens, vocabulary trie built in %.1f ms\n", dir, nv, tv * 1e3);
    printf("%-12s %10s %7s %9s %12s %12s %12s %10s %9s %10s\n", "grammar", "compile_ms", "tokens",
           "misses", "cold_us/tok", "miss_us", "cached_us", "accept_us", "budget_us", "tight_us");
    uint32_t *mask = malloc(((size_t)nv + 31) / 32 * 4);
    int32_t *ids = malloc(MAX_STEPS * sizeof *ids), *allowed = malloc((size_t)nv * sizeof *allowed);
    for (size_t k = 0; k < sizeof sources / sizeof sources[0]; k++) {
        const src *s = &sources[k];
        ci_grammar *g = NULL;
        int reps = 20;
        t0 = now();
        for (int r = 0; r < reps; r++) {
            ci_grammar_free(g);
            g = NULL;
            if (compile(s, &g).code != CI_OK) break;
        }
        double tc = (now() - t0) / reps;
        if (!g) {
            printf("%-12s compile failed\n", s->name);
            continue;
        }
        /* pass 1: a random walk on the fresh grammar; a fill is cold when
         * the grammar's mask-miss counter moves. Best of 3 fresh grammars. */
        int n = 0, misses = 0;
        double t_all = 1e30, t_miss = 1e30, t_acc = 1e30;
        for (int rep = 0; rep < 3; rep++) {
            ci_grammar_free(g);
            g = NULL;
            compile(s, &g);
            ci_grammar_matcher *m = NULL;
            ci_grammar_matcher_create(g, v, &m);
            uint64_t rs = 0x9E3779B97F4A7C15ull + k;
            double ta = 0, tm = 0, tacc = 0;
            n = misses = 0;
            while (n < MAX_STEPS && !ci_grammar_matcher_is_done(m)) {
                uint64_t m0, m1;
                ci_grammar_mask_stats(g, NULL, &m0);
                double a = now();
                ci_grammar_matcher_fill_mask(m, mask);
                double d = now() - a;
                ci_grammar_mask_stats(g, NULL, &m1);
                ta += d;
                if (m1 != m0) {
                    misses++;
                    tm += d;
                }
                int na = 0;
                bool eos_ok = false;
                for (int i = 0; i < nv; i++)
                    if ((mask[i >> 5] >> (i & 31)) & 1) {
                        if (i == eos)
                            eos_ok = true;
                        else
                            allowed[na++] = i;
                    }
                if (!na || (eos_ok && rnd(&rs) % 100 < (uint64_t)(2 + n / 20))) break;
                ids[n] = allowed[rnd(&rs) % (uint64_t)na];
                a = now();
                ci_grammar_matcher_accept(m, ids[n]);
                tacc += now() - a;
                n++;
            }
            ci_grammar_matcher_free(m);
            if (ta < t_all) t_all = ta, t_miss = tm, t_acc = tacc;
        }
        /* pass 2: the same tokens again, every state now cached (best of 3) */
        double t_cached = 1e30;
        for (int rep = 0; rep < 3; rep++) {
            ci_grammar_matcher *m = NULL;
            ci_grammar_matcher_create(g, v, &m);
            double tc2 = 0;
            for (int i = 0; i < n; i++) {
                double a = now();
                ci_grammar_matcher_fill_mask(m, mask);
                tc2 += now() - a;
                ci_grammar_matcher_accept(m, ids[i]);
            }
            ci_grammar_matcher_free(m);
            if (tc2 < t_cached) t_cached = tc2;
        }
        /* pass 3: the same tokens through fill_mask_budget, as the engine calls
         * it: far from max_tokens (cached: the bound comes with the mask), and
         * one token more than the state needs (every step filters: the walk a
         * request's last steps take), the first TIGHT_STEPS steps */
        double t_far = 1e30, t_tight = 0;
        int n_tight = n < TIGHT_STEPS ? n : TIGHT_STEPS;
        for (int rep = 0; rep < 4; rep++) {
            ci_grammar_matcher *m = NULL;
            ci_grammar_matcher_create(g, v, &m);
            double tf = 0;
            for (int i = 0; i < (rep < 3 ? n : n_tight); i++) {
                int64_t left = rep < 3 ? 1 << 30 : (int64_t)ci_grammar_matcher_tokens_to_end(m) + 1;
                double a = now();
                ci_grammar_matcher_fill_mask_budget(m, mask, left);
                tf += now() - a;
                ci_grammar_matcher_accept(m, ids[i]);
            }
            ci_grammar_matcher_free(m);
            if (rep < 3 && tf < t_far) t_far = tf;
            if (rep == 3) t_tight = tf;
        }
        int steps = n ? n : 1;
        printf("%-12s %10.2f %7d %9d %12.1f %12.1f %12.2f %10.2f %9.2f %10.1f\n", s->name, tc * 1e3,
               n, misses, t_all / steps * 1e6, misses ? t_miss / misses * 1e6 : 0.0,
               t_cached / steps * 1e6, t_acc / steps * 1e6, t_far / steps * 1e6,
               n_tight ? t_tight / n_tight * 1e6 : 0.0);
        ci_grammar_free(g);
    }
    free(mask);
    free(ids);
    free(allowed);
    ci_grammar_vocab_free(v);
    ci_tokenizer_free(tok);
}

int main(int argc, char **argv) {
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            bench_vocab(argv[i]);
    } else {
        bench_vocab("models/tinyqwen2-code");
        bench_vocab("../shared/tokenizers/llama3");
    }
    return 0;
}
