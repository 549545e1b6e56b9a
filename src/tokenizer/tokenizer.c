/* tokenizer.c — loading tokenizer.json / tokenizer_config.json, added
 * tokens, the encode pipeline and the post-processor. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/decode.h"
#include "tokenizer/json_fast.h"
#include "tokenizer/normalize.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tok_json.h"
#include "tokenizer/tok_struct.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/util.h"

#define TK_MAX_ID (1 << 24)

static ci_status nomem(void) {
    return ci_errorf(CI_ERR_NOMEM, "tokenizer: out of memory");
}

static ci_status json_id(json_t *v, const char *what, int32_t *out) {
    if (!json_is_integer(v))
        return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s: expected an integer id", what);
    json_int_t x = json_integer_value(v);
    if (x < 0 || x >= TK_MAX_ID)
        return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s: id %lld out of range [0, %d)", what,
                         (long long)x, TK_MAX_ID);
    *out = (int32_t)x;
    return ci_ok();
}

/* ---- teardown ---- */
void ci_tokenizer_free(ci_tokenizer *t) {
    if (!t) return;
    tk_strmap_free(&t->vocab);
    tk_pairmap_free(&t->merges);
    free(t->id_str);
    free(t->id_len);
    free(t->id_special);
    free(t->added);
    free(t->raw_set.idx);
    free(t->norm_set.idx);
    tk_strmap_free(&t->added_map);
    tk_norm_free(t->norm);
    tk_pretok_free(t->pretok);
    free(t->post.tmpl);
    tk_dec_free(t->dec);
    tk_arena_free(&t->arena);
    free(t);
}

/* ---- model ---- */
static ci_status set_id_str(ci_tokenizer *t, int32_t id, const char *s, size_t n) {
    t->id_str[id] = s;
    t->id_len[id] = (uint32_t)n;
    return ci_ok();
}

static ci_status opt_str(ci_tokenizer *t, json_t *model, const char *key, const char **out,
                         size_t *len) {
    const char *s = NULL;
    size_t n = 0;
    CI_TRY(tk_json_str(model, key, "model", false, &s, &n));
    *out = NULL;
    *len = 0;
    if (s) {
        if (!(*out = tk_arena_strdup(&t->arena, s, n))) return nomem();
        *len = n;
    }
    return ci_ok();
}

typedef struct vent {
    const char *key; /* in the arena */
    uint32_t len;
    int32_t id;
} vent;

typedef struct vents {
    vent *v;
    size_t n, cap;
} vents;

static ci_status vents_push(ci_tokenizer *t, vents *vs, const char *key, size_t len, int32_t id) {
    if (vs->n == vs->cap) {
        size_t cap = vs->cap ? vs->cap * 2 : 1024;
        vent *v = realloc(vs->v, cap * sizeof *v);
        if (!v) return nomem();
        vs->v = v;
        vs->cap = cap;
    }
    char *k = tk_arena_strdup(&t->arena, key, len);
    if (!k) return nomem();
    vs->v[vs->n++] = (vent){k, (uint32_t)len, id};
    return ci_ok();
}

static ci_status vocab_from_json(ci_tokenizer *t, json_t *vocab, vents *vs) {
    const char *key = NULL;
    size_t klen = 0;
    json_t *v;
    json_object_keylen_foreach(vocab, key, klen, v) {
        json_int_t x = json_is_integer(v) ? json_integer_value(v) : -1;
        if (x < 0 || x >= TK_MAX_ID) {
            char what[64];
            int32_t id = -1;
            snprintf(what, sizeof what, "model.vocab[\"%.32s\"]", key);
            CI_TRY(json_id(v, what, &id));
        }
        CI_TRY(vents_push(t, vs, key, klen, (int32_t)x));
    }
    return ci_ok();
}

/* model.vocab straight from the text (range found by tk_js_find_ranges,
 * so it is syntactically valid JSON and an object). */
static ci_status vocab_from_text(ci_tokenizer *t, const char *s, size_t n, vents *vs) {
    tk_js j = {s, s + n};
    tk_buf key = {0};
    ci_status st = ci_ok();
    tk_js_ws(&j);
    j.p++; /* '{' */
    tk_js_ws(&j);
    while (j.p < j.end && *j.p != '}') {
        if (!tk_js_string(&j, &key)) {
            st = ci_errorf(CI_ERR_FORMAT, "tokenizer.json: model.vocab: bad key");
            break;
        }
        tk_js_ws(&j);
        j.p++; /* ':' */
        bool is_int = false;
        long long x = -1;
        if (!tk_js_int(&j, &is_int, &x) || !is_int || x < 0 || x >= TK_MAX_ID) {
            st = ci_errorf(CI_ERR_FORMAT,
                           "tokenizer.json: model.vocab[\"%.32s\"]: expected an integer id in [0, "
                           "%d)",
                           key.p, TK_MAX_ID);
            break;
        }
        if ((st = vents_push(t, vs, key.p, key.len, (int32_t)x)).code) break;
        tk_js_ws(&j);
        if (j.p < j.end && *j.p == ',') j.p++;
        tk_js_ws(&j);
    }
    tk_buf_free(&key);
    return st;
}

/* Largest id over vocab and added tokens: the id table size. */
static ci_status count_ids(const vents *vs, json_t *added, int32_t *max_id) {
    int32_t mx = -1;
    for (size_t i = 0; i < vs->n; i++)
        if (vs->v[i].id > mx) mx = vs->v[i].id;
    size_t i = 0;
    json_t *v;
    json_array_foreach(added, i, v) {
        char what[64];
        snprintf(what, sizeof what, "added_tokens[%zu].id", i);
        if (!json_is_object(v))
            return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: added_tokens[%zu]: expected an object",
                             i);
        int32_t id = -1;
        CI_TRY(json_id(json_object_get(v, "id"), what, &id));
        if (id > mx) mx = id;
    }
    *max_id = mx;
    return ci_ok();
}

/* Adds merge i (a, b): both and their concatenation must be in the vocab. */
static ci_status add_merge(ci_tokenizer *t, size_t i, const char *a, size_t al, const char *b,
                           size_t bl, tk_buf *joined) {
    int32_t ia = tk_strmap_get(&t->vocab, a, al), ib = tk_strmap_get(&t->vocab, b, bl);
    if (ia < 0 || ib < 0)
        return ci_errorf(CI_ERR_FORMAT,
                         "tokenizer.json: model.merges[%zu]: token \"%.40s\" is not in the vocab",
                         i, ia < 0 ? a : b);
    joined->len = 0;
    CI_TRY(tk_buf_put(joined, a, al));
    if (t->cont_prefix_len && bl >= t->cont_prefix_len &&
        !memcmp(b, t->cont_prefix, t->cont_prefix_len)) {
        b += t->cont_prefix_len;
        bl -= t->cont_prefix_len;
    }
    CI_TRY(tk_buf_put(joined, b, bl));
    int32_t nid = tk_strmap_get(&t->vocab, joined->p, joined->len);
    if (nid < 0)
        return ci_errorf(CI_ERR_FORMAT,
                         "tokenizer.json: model.merges[%zu]: merged token \"%.40s\" is not in the "
                         "vocab",
                         i, joined->p);
    tk_pairmap_put(&t->merges, ia, ib, (uint32_t)i, nid);
    return ci_ok();
}

static ci_status bad_merge(size_t i) {
    return ci_errorf(CI_ERR_FORMAT,
                     "tokenizer.json: model.merges[%zu]: expected a \"a b\" string or a pair "
                     "[\"a\", \"b\"]",
                     i);
}

static ci_status split_merge_str(size_t i, const char *s, size_t n, size_t *al) {
    const char *sp = memchr(s, ' ', n);
    if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s)))
        return ci_errorf(CI_ERR_FORMAT,
                         "tokenizer.json: model.merges[%zu]: expected \"a b\" (one space)", i);
    *al = (size_t)(sp - s);
    return ci_ok();
}

static size_t count_elems(const char *s, size_t n) {
    /* upper bound on merges for sizing the map: one per '"' pair is
     * plenty; cheaper than a second parse */
    size_t q = 0;
    for (size_t i = 0; i < n; i++)
        q += s[i] == '"';
    return q / 2 + 1;
}

static ci_status merges_from_text(ci_tokenizer *t, const char *s, size_t n, tk_buf *joined) {
    CI_TRY(tk_pairmap_init(&t->merges, count_elems(s, n)));
    tk_js j = {s, s + n};
    tk_buf a = {0}, b = {0};
    ci_status st = ci_ok();
    tk_js_ws(&j);
    j.p++; /* '[' */
    tk_js_ws(&j);
    for (size_t i = 0; st.code == CI_OK && j.p < j.end && *j.p != ']'; i++) {
        if (*j.p == '"') {
            size_t al = 0;
            if (!tk_js_string(&j, &a))
                st = bad_merge(i);
            else if ((st = split_merge_str(i, a.p, a.len, &al)).code == CI_OK)
                st = add_merge(t, i, a.p, al, a.p + al + 1, a.len - al - 1, joined);
        } else if (*j.p == '[') {
            j.p++;
            tk_js_ws(&j);
            bool ok = tk_js_string(&j, &a);
            tk_js_ws(&j);
            ok = ok && j.p < j.end && *j.p == ',';
            if (ok) {
                j.p++;
                tk_js_ws(&j);
                ok = tk_js_string(&j, &b);
                tk_js_ws(&j);
                ok = ok && j.p < j.end && *j.p == ']';
            }
            if (!ok)
                st = bad_merge(i);
            else {
                j.p++;
                st = add_merge(t, i, a.p, a.len, b.p, b.len, joined);
            }
        } else {
            st = bad_merge(i);
        }
        tk_js_ws(&j);
        if (j.p < j.end && *j.p == ',') j.p++;
        tk_js_ws(&j);
    }
    tk_buf_free(&a);
    tk_buf_free(&b);
    return st;
}

static ci_status load_model(ci_tokenizer *t, json_t *root, const char *text,
                            const tk_js_ranges *fast) {
    json_t *model = json_object_get(root, "model");
    if (!model) return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: missing \"model\"");
    if (!json_is_object(model))
        return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: model: expected an object");
    json_t *type = json_object_get(model, "type");
    if (type && !json_is_string(type))
        return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: model.type: expected a string");
    if (type && strcmp(json_string_value(type), "BPE") != 0) {
        const char *ty = json_string_value(type);
        if (!strcmp(ty, "WordPiece") || !strcmp(ty, "Unigram") || !strcmp(ty, "WordLevel"))
            return ci_errorf(CI_ERR_UNSUPPORTED,
                             "tokenizer.json: model.type: \"%s\" models are not supported", ty);
        return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: model.type: unknown model type \"%.64s\"",
                         ty);
    }
    json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab))
        return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: model.vocab: expected an object");
    json_t *merges = json_object_get(model, "merges");
    if (merges && !json_is_null(merges) && !json_is_array(merges))
        return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: model.merges: expected an array");
    if (!type && !json_is_array(merges))
        return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: model.type: missing");
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_null(added) && !json_is_array(added))
        return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: added_tokens: expected an array");
    if (!json_is_array(added)) added = NULL;

    vents vs = {0};
    ci_status st =
        fast ? vocab_from_text(t, text + fast->vocab_a, fast->vocab_b - fast->vocab_a, &vs)
             : vocab_from_json(t, vocab, &vs);
    int32_t max_id = -1;
    if (st.code == CI_OK) st = count_ids(&vs, added, &max_id);
    if (st.code == CI_OK) {
        t->n_ids = max_id + 1;
        size_t n = t->n_ids > 0 ? (size_t)t->n_ids : 1;
        t->id_str = calloc(n, sizeof *t->id_str);
        t->id_len = calloc(n, sizeof *t->id_len);
        t->id_special = calloc(n, 1);
        if (!t->id_str || !t->id_len || !t->id_special) st = nomem();
    }
    if (st.code == CI_OK) st = tk_strmap_reserve(&t->vocab, vs.n);
    for (size_t i = 0; st.code == CI_OK && i < vs.n; i++) {
        st = tk_strmap_put(&t->vocab, vs.v[i].key, vs.v[i].len, vs.v[i].id);
        if (st.code == CI_OK) st = set_id_str(t, vs.v[i].id, vs.v[i].key, vs.v[i].len);
    }
    free(vs.v);
    CI_TRY(st);

    CI_TRY(opt_str(t, model, "continuing_subword_prefix", &t->cont_prefix, &t->cont_prefix_len));
    CI_TRY(opt_str(t, model, "end_of_word_suffix", &t->eow_suffix, &t->eow_suffix_len));
    CI_TRY(tk_json_bool(model, "byte_fallback", "model", false, &t->byte_fallback));
    CI_TRY(tk_json_bool(model, "fuse_unk", "model", false, &t->fuse_unk));
    CI_TRY(tk_json_bool(model, "ignore_merges", "model", false, &t->ignore_merges));
    json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) && !json_is_number(dropout))
        return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: model.dropout: expected a number");
    const char *unk = NULL;
    size_t unk_len = 0;
    CI_TRY(tk_json_str(model, "unk_token", "model", false, &unk, &unk_len));
    t->unk_id = unk ? tk_strmap_get(&t->vocab, unk, unk_len) : -1;
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_tok[b] = tk_strmap_get(&t->vocab, name, 6);
    }

    tk_buf joined = {0};
    if (fast && fast->merges_b) {
        st = merges_from_text(t, text + fast->merges_a, fast->merges_b - fast->merges_a, &joined);
    } else {
        size_t nm = merges ? json_array_size(merges) : 0;
        st = tk_pairmap_init(&t->merges, nm);
        for (size_t i = 0; st.code == CI_OK && i < nm; i++) {
            json_t *m = json_array_get(merges, i);
            if (json_is_string(m)) {
                const char *ms = json_string_value(m);
                size_t al = 0;
                st = split_merge_str(i, ms, json_string_length(m), &al);
                if (st.code == CI_OK)
                    st = add_merge(t, i, ms, al, ms + al + 1, json_string_length(m) - al - 1,
                                   &joined);
            } else if (json_is_array(m) && json_array_size(m) == 2 &&
                       json_is_string(json_array_get(m, 0)) &&
                       json_is_string(json_array_get(m, 1))) {
                json_t *ja = json_array_get(m, 0), *jb = json_array_get(m, 1);
                st = add_merge(t, i, json_string_value(ja), json_string_length(ja),
                               json_string_value(jb), json_string_length(jb), &joined);
            } else {
                st = bad_merge(i);
            }
        }
    }
    tk_buf_free(&joined);
    return st;
}

/* ---- post-processor ---- */
static ci_status tmpl_compose(tk_post *p, const int32_t *outer, size_t n_outer) {
    /* replace each -1 in outer by the current template */
    size_t cur_n = p->any ? p->n_tmpl : 1;
    int32_t one = -1;
    const int32_t *cur = p->any ? p->tmpl : &one;
    size_t total = 0;
    for (size_t i = 0; i < n_outer; i++)
        total += outer[i] == -1 ? cur_n : 1;
    int32_t *nt = malloc((total ? total : 1) * sizeof *nt);
    if (!nt) return nomem();
    size_t k = 0;
    for (size_t i = 0; i < n_outer; i++) {
        if (outer[i] == -1) {
            memcpy(nt + k, cur, cur_n * sizeof *nt);
            k += cur_n;
        } else {
            nt[k++] = outer[i];
        }
    }
    free(p->tmpl);
    p->tmpl = nt;
    p->n_tmpl = total;
    p->any = true;
    return ci_ok();
}

static ci_status parse_post(ci_tokenizer *t, json_t *j, const char *path, int depth) {
    if (!j || json_is_null(j)) return ci_ok();
    if (!json_is_object(j))
        return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s: expected an object", path);
    const char *type = NULL;
    size_t tl = 0;
    CI_TRY(tk_json_str(j, "type", path, true, &type, &tl));
    if (!strcmp(type, "ByteLevel")) return ci_ok();
    if (!strcmp(type, "Sequence")) {
        if (depth > 8)
            return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s: sequences nested too deep", path);
        json_t *arr = json_object_get(j, "processors");
        if (!json_is_array(arr))
            return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s.processors: expected an array",
                             path);
        for (size_t i = 0; i < json_array_size(arr); i++) {
            char sub[128];
            snprintf(sub, sizeof sub, "%.80s.processors[%zu]", path, i);
            CI_TRY(parse_post(t, json_array_get(arr, i), sub, depth + 1));
        }
        return ci_ok();
    }
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        int32_t ids[3] = {0, -1, 0};
        const char *keys[2] = {"cls", "sep"};
        for (int k = 0; k < 2; k++) {
            json_t *pair = json_object_get(j, keys[k]);
            if (!json_is_array(pair) || json_array_size(pair) != 2)
                return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s.%s: expected [token, id]", path,
                                 keys[k]);
            char what[160];
            snprintf(what, sizeof what, "%.80s.%s[1]", path, keys[k]);
            CI_TRY(json_id(json_array_get(pair, 1), what, &ids[k == 0 ? 0 : 2]));
        }
        return tmpl_compose(&t->post, ids, 3);
    }
    if (!strcmp(type, "TemplateProcessing")) {
        json_t *single = json_object_get(j, "single");
        json_t *specials = json_object_get(j, "special_tokens");
        if (!json_is_array(single))
            return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s.single: expected an array", path);
        if (specials && !json_is_null(specials) && !json_is_object(specials))
            return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s.special_tokens: expected an object",
                             path);
        tk_ids out = {0};
        ci_status st = ci_ok();
        for (size_t i = 0; st.code == CI_OK && i < json_array_size(single); i++) {
            json_t *it = json_array_get(single, i);
            json_t *sp = json_is_object(it) ? json_object_get(it, "SpecialToken") : NULL;
            json_t *sq = json_is_object(it) ? json_object_get(it, "Sequence") : NULL;
            if (json_is_object(sq)) {
                st = tk_ids_push(&out, -1);
            } else if (json_is_object(sp) && json_is_string(json_object_get(sp, "id"))) {
                const char *name = json_string_value(json_object_get(sp, "id"));
                json_t *def = specials ? json_object_get(specials, name) : NULL;
                json_t *ids = json_is_object(def) ? json_object_get(def, "ids") : NULL;
                if (!json_is_array(ids)) {
                    st = ci_errorf(CI_ERR_FORMAT,
                                   "tokenizer.json: %s.special_tokens: no ids for \"%.40s\"", path,
                                   name);
                    break;
                }
                for (size_t k = 0; st.code == CI_OK && k < json_array_size(ids); k++) {
                    int32_t id = -1;
                    char what[160];
                    snprintf(what, sizeof what, "%.80s.special_tokens[\"%.20s\"].ids[%zu]", path,
                             name, k);
                    st = json_id(json_array_get(ids, k), what, &id);
                    if (st.code == CI_OK) st = tk_ids_push(&out, id);
                }
            } else {
                st = ci_errorf(CI_ERR_FORMAT,
                               "tokenizer.json: %s.single[%zu]: expected SpecialToken or Sequence",
                               path, i);
            }
        }
        if (st.code == CI_OK) st = tmpl_compose(&t->post, out.v, out.n);
        tk_ids_free(&out);
        return st;
    }
    return ci_errorf(CI_ERR_UNSUPPORTED,
                     "tokenizer.json: %s: unsupported post-processor type \"%s\"", path, type);
}

/* ---- config ---- */
static ci_status config_token(ci_tokenizer *t, json_t *cfg, const char *key, int32_t *out) {
    *out = -1;
    json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) return ci_ok();
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v))
        return ci_errorf(CI_ERR_FORMAT,
                         "tokenizer_config.json: %s: expected a string or {\"content\": ...}", key);
    int32_t id = tk_strmap_get(&t->added_map, json_string_value(v), json_string_length(v));
    if (id < 0) id = tk_strmap_get(&t->vocab, json_string_value(v), json_string_length(v));
    *out = id;
    return ci_ok();
}

static ci_status load_all(ci_tokenizer *t, const char *js, size_t len, const char *cfg,
                          size_t cfg_len) {
    json_error_t err;
    tk_js_ranges fr;
    bool fast = tk_js_find_ranges(js, len, &fr);
    json_t *root = NULL;
    if (fast) {
        /* jansson gets the document with model.vocab and model.merges
         * blanked; those two are parsed from the text directly */
        tk_buf doc = {0};
        size_t a1 = fr.vocab_a, b1 = fr.vocab_b, a2 = fr.merges_a, b2 = fr.merges_b;
        const char *r1 = "{}", *r2 = "[]";
        if (b2 && a2 < a1) {
            size_t ta = a1, tb = b1;
            a1 = a2, b1 = b2, a2 = ta, b2 = tb;
            r1 = "[]", r2 = "{}";
        }
        ci_status bs = tk_buf_put(&doc, js, a1);
        if (bs.code == CI_OK) bs = tk_buf_put(&doc, r1, 2);
        if (b2) {
            if (bs.code == CI_OK) bs = tk_buf_put(&doc, js + b1, a2 - b1);
            if (bs.code == CI_OK) bs = tk_buf_put(&doc, r2, 2);
            if (bs.code == CI_OK) bs = tk_buf_put(&doc, js + b2, len - b2);
        } else if (bs.code == CI_OK) {
            bs = tk_buf_put(&doc, js + b1, len - b1);
        }
        if (bs.code == CI_OK) root = json_loadb(doc.p, doc.len, JSON_ALLOW_NUL, &err);
        tk_buf_free(&doc);
        if (bs.code != CI_OK) return bs;
        if (!root) fast = false; /* let the full parse report the error */
    }
    if (!root) root = json_loadb(js, len, JSON_ALLOW_NUL, &err);
    if (!root)
        return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: invalid JSON at line %d column %d: %s",
                         err.line, err.column, err.text);
    ci_status st = ci_ok();
    if (!json_is_object(root)) {
        st = ci_errorf(CI_ERR_FORMAT, "tokenizer.json: expected a JSON object at the top level");
        goto out;
    }
    if ((st = load_model(t, root, js, fast ? &fr : NULL)).code) goto out;
    if ((st = tk_norm_parse(json_object_get(root, "normalizer"), "normalizer", &t->norm)).code)
        goto out;
    if ((st = tk_pretok_parse(json_object_get(root, "pre_tokenizer"), "pre_tokenizer", &t->pretok))
            .code)
        goto out;
    if ((st = tk_dec_parse(json_object_get(root, "decoder"), "decoder", &t->dec)).code) goto out;
    if ((st = parse_post(t, json_object_get(root, "post_processor"), "post_processor", 0)).code)
        goto out;
    if ((st = tk_added_load(t, root)).code) goto out;
    for (size_t i = 0; i < t->post.n_tmpl; i++) {
        int32_t id = t->post.tmpl[i];
        if (id >= 0 && (id >= t->n_ids || !t->id_str[id])) {
            st = ci_errorf(CI_ERR_FORMAT,
                           "tokenizer.json: post_processor: special token id %d is not in the "
                           "vocab",
                           (int)id);
            goto out;
        }
    }
    t->bos_id = t->eos_id = -1;
    if (cfg) {
        json_t *c = json_loadb(cfg, cfg_len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &err);
        if (!c) {
            st = ci_errorf(CI_ERR_FORMAT,
                           "tokenizer_config.json: invalid JSON at line %d column %d: %s", err.line,
                           err.column, err.text);
            goto out;
        }
        if (!json_is_object(c)) {
            st = ci_errorf(CI_ERR_FORMAT, "tokenizer_config.json: expected a JSON object");
        } else {
            st = config_token(t, c, "bos_token", &t->bos_id);
            if (st.code == CI_OK) st = config_token(t, c, "eos_token", &t->eos_id);
        }
        json_decref(c);
    }
out:
    json_decref(root);
    return st;
}

ci_status ci_tokenizer_load_json(const char *tokenizer_json, size_t len, const char *config_json,
                                 size_t config_len, ci_tokenizer **out) {
    *out = NULL;
    if (!tokenizer_json) return ci_errorf(CI_ERR_INVALID, "tokenizer: no tokenizer.json text");
    ci_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return nomem();
    t->unk_id = t->bos_id = t->eos_id = -1;
    ci_status st = load_all(t, tokenizer_json, len, config_json, config_len);
    if (st.code != CI_OK) {
        ci_tokenizer_free(t);
        return st;
    }
    *out = t;
    return ci_ok();
}

static ci_status read_file(const char *path, char **buf, size_t *len) {
    *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return ci_errorf(CI_ERR_IO, "%s: cannot open", path);
    tk_buf b = {0};
    char chunk[65536];
    size_t n = 0;
    ci_status st = ci_ok();
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if ((st = tk_buf_put(&b, chunk, n)).code) break;
    if (st.code == CI_OK && ferror(f)) st = ci_errorf(CI_ERR_IO, "%s: read error", path);
    fclose(f);
    if (st.code != CI_OK) {
        tk_buf_free(&b);
        return st;
    }
    if (!b.p && (st = tk_buf_reserve(&b, 0)).code) return st;
    *buf = b.p;
    *len = b.len;
    return ci_ok();
}

ci_status ci_tokenizer_load(const char *model_dir, ci_tokenizer **out) {
    *out = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", model_dir);
    char *js, *cfg = NULL;
    size_t len, cfg_len = 0;
    CI_TRY(read_file(path, &js, &len));
    snprintf(path, sizeof path, "%s/tokenizer_config.json", model_dir);
    FILE *f = fopen(path, "rb");
    if (f) {
        fclose(f);
        ci_status st = read_file(path, &cfg, &cfg_len);
        if (st.code != CI_OK) {
            free(js);
            return st;
        }
    }
    ci_status st = ci_tokenizer_load_json(js, len, cfg, cfg_len, out);
    free(js);
    free(cfg);
    if (st.code != CI_OK) return ci_status_wrap(st, "%s", model_dir);
    return ci_ok();
}

/* ---- encode ---- */
typedef struct enc_ws {
    tk_segs s1, s2;
    tk_buf norm;
    tk_list pieces, scratch;
    tk_bpe_ws bpe;
} enc_ws;

static ci_status encode_text(const ci_tokenizer *t, const char *s, size_t n, bool at_start,
                             tk_ids *out, enc_ws *w) {
    CI_TRY(tk_norm_apply(t->norm, s, n, &w->norm));
    CI_TRY(tk_added_split(t, &t->norm_set, w->norm.p, w->norm.len, &w->s2));
    for (size_t j = 0; j < w->s2.n; j++) {
        tk_seg g = w->s2.v[j];
        if (g.id >= 0) {
            CI_TRY(tk_ids_push(out, g.id));
            continue;
        }
        tk_list_clear(&w->pieces);
        CI_TRY(tk_pretok_apply(t->pretok, w->norm.p + g.a, g.b - g.a, at_start && g.a == 0,
                               &w->pieces, &w->scratch));
        for (size_t k = 0; k < w->pieces.n; k++)
            CI_TRY(tk_bpe_encode(t, TK_ITEM(&w->pieces, k), TK_LEN(&w->pieces, k), out, &w->bpe));
    }
    return ci_ok();
}

ci_status ci_tokenizer_encode(const ci_tokenizer *t, const char *text, size_t len,
                              bool add_special_tokens, int32_t **ids, size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    if (!t || (!text && len)) return ci_errorf(CI_ERR_INVALID, "encode: NULL argument");
    if (!text) text = "";
    size_t bad = tk_utf8_validate(text, len);
    if (bad != len)
        return ci_errorf(CI_ERR_INVALID,
                         "encode: text is not valid UTF-8 (byte 0x%02X at offset %zu)",
                         (unsigned char)text[bad], bad);
    enc_ws w = {0};
    tk_ids out = {0};
    ci_status st = tk_added_split(t, &t->raw_set, text, len, &w.s1);
    for (size_t i = 0; st.code == CI_OK && i < w.s1.n; i++) {
        tk_seg g = w.s1.v[i];
        if (g.id >= 0)
            st = tk_ids_push(&out, g.id);
        else
            st = encode_text(t, text + g.a, g.b - g.a, g.a == 0, &out, &w);
    }
    if (st.code == CI_OK && add_special_tokens && t->post.any) {
        tk_ids fin = {0};
        for (size_t i = 0; st.code == CI_OK && i < t->post.n_tmpl; i++) {
            if (t->post.tmpl[i] >= 0) {
                st = tk_ids_push(&fin, t->post.tmpl[i]);
            } else {
                for (size_t k = 0; st.code == CI_OK && k < out.n; k++)
                    st = tk_ids_push(&fin, out.v[k]);
            }
        }
        tk_ids_free(&out);
        out = fin;
    }
    free(w.s1.v);
    free(w.s2.v);
    tk_buf_free(&w.norm);
    tk_list_free(&w.pieces);
    tk_list_free(&w.scratch);
    tk_bpe_ws_free(&w.bpe);
    if (st.code != CI_OK) {
        tk_ids_free(&out);
        return st;
    }
    if (!out.v) {
        out.v = malloc(sizeof *out.v);
        if (!out.v) return nomem();
    }
    *ids = out.v;
    *n_ids = out.n;
    return ci_ok();
}

ci_status ci_tokenizer_decode(const ci_tokenizer *t, const int32_t *ids, size_t n_ids,
                              bool skip_special_tokens, char **text, size_t *len) {
    *text = NULL;
    if (len) *len = 0;
    if (!t || (!ids && n_ids)) return ci_errorf(CI_ERR_INVALID, "decode: NULL argument");
    tk_decode_ws ws = {0};
    ci_status st = tk_decode_into(t, ids, n_ids, skip_special_tokens, &ws);
    if (st.code != CI_OK) {
        tk_decode_ws_free(&ws);
        return st;
    }
    *text = ws.out.p;
    if (len) *len = ws.out.len;
    ws.out.p = NULL;
    tk_decode_ws_free(&ws);
    return ci_ok();
}

int ci_tokenizer_vocab_size(const ci_tokenizer *t) {
    return t ? t->n_ids : 0;
}

int32_t ci_tokenizer_token_to_id(const ci_tokenizer *t, const char *token) {
    if (!t || !token) return -1;
    size_t n = strlen(token);
    int32_t id = tk_strmap_get(&t->added_map, token, n);
    return id >= 0 ? id : tk_strmap_get(&t->vocab, token, n);
}

const char *ci_tokenizer_id_to_token(const ci_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_ids) return NULL;
    return t->id_str[id];
}

bool ci_tokenizer_is_special(const ci_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_ids && t->id_special[id];
}

int32_t ci_tokenizer_bos_id(const ci_tokenizer *t) {
    return t ? t->bos_id : -1;
}

int32_t ci_tokenizer_eos_id(const ci_tokenizer *t) {
    return t ? t->eos_id : -1;
}
