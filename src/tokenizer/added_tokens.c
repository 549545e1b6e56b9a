/* added_tokens.c — added and special tokens: loading, and matching them
 * in text before the model runs (raw text for normalized=false tokens,
 * normalized text for the others), as HF's AddedVocabulary. */
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "tokenizer/added_tokens.h"
#include "tokenizer/normalize.h"
#include "tokenizer/tok_json.h"
#include "tokenizer/tok_struct.h"
#include "tokenizer/util.h"

static ci_status nomem(void) {
    return ci_errorf(CI_ERR_NOMEM, "tokenizer: out of memory");
}

static ci_status build_set(ci_tokenizer *t, tk_added_set *set, bool normalized) {
    set->idx = malloc((t->n_added ? t->n_added : 1) * sizeof *set->idx);
    if (!set->idx) return nomem();
    set->n = 0;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].normalized == normalized && t->added[i].len > 0)
            set->idx[set->n++] = (int32_t)i;
    /* insertion sort by (first byte, length desc, declaration order):
     * added-token lists are short */
    for (size_t i = 1; i < set->n; i++) {
        int32_t x = set->idx[i];
        size_t j = i;
        const tk_added *ax = &t->added[x];
        while (j > 0) {
            const tk_added *ay = &t->added[set->idx[j - 1]];
            unsigned cx = (unsigned char)ax->content[0], cy = (unsigned char)ay->content[0];
            bool less =
                cx < cy ||
                (cx == cy && (ax->len > ay->len || (ax->len == ay->len && x < set->idx[j - 1])));
            if (!less) break;
            set->idx[j] = set->idx[j - 1];
            j--;
        }
        set->idx[j] = x;
    }
    size_t k = 0;
    for (unsigned c = 0; c <= 256; c++) {
        while (k < set->n && (unsigned char)t->added[set->idx[k]].content[0] < c)
            k++;
        set->first[c] = (uint32_t)k;
    }
    return ci_ok();
}

ci_status tk_added_load(ci_tokenizer *t, json_t *root) {
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_array(added)) return ci_ok();
    size_t n = json_array_size(added);
    t->added = calloc(n ? n : 1, sizeof *t->added);
    if (!t->added) return nomem();
    tk_buf norm = {0};
    ci_status st = ci_ok();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(added, i);
        char path[48];
        snprintf(path, sizeof path, "added_tokens[%zu]", i);
        tk_added *a = &t->added[i];
        const char *c = NULL;
        size_t cl = 0;
        a->id = (int32_t)json_integer_value(json_object_get(o, "id")); /* checked in count_ids */
        if ((st = tk_json_str(o, "content", path, true, &c, &cl)).code) break;
        if ((st = tk_json_bool(o, "special", path, false, &a->special)).code) break;
        if ((st = tk_json_bool(o, "lstrip", path, false, &a->lstrip)).code) break;
        if ((st = tk_json_bool(o, "rstrip", path, false, &a->rstrip)).code) break;
        if ((st = tk_json_bool(o, "single_word", path, false, &a->single_word)).code) break;
        if ((st = tk_json_bool(o, "normalized", path, !a->special, &a->normalized)).code) break;
        char *full = tk_arena_strdup(&t->arena, c, cl);
        if (!full) {
            st = nomem();
            break;
        }
        if ((st = tk_strmap_put(&t->added_map, full, cl, a->id)).code) break;
        t->id_str[a->id] = full;
        t->id_len[a->id] = (uint32_t)cl;
        t->id_special[a->id] = a->special;
        a->content = full;
        a->len = cl;
        if (a->normalized && t->norm && cl > 0) {
            if ((st = tk_norm_apply(t->norm, c, cl, &norm)).code) break;
            char *nc = tk_arena_strdup(&t->arena, norm.p, norm.len);
            if (!nc) {
                st = nomem();
                break;
            }
            a->content = nc;
            a->len = norm.len;
        }
        t->n_added = i + 1;
    }
    tk_buf_free(&norm);
    CI_TRY(st);
    CI_TRY(build_set(t, &t->raw_set, false));
    CI_TRY(build_set(t, &t->norm_set, true));
    return ci_ok();
}

static bool is_word_char(uint32_t cp) {
    if (cp == '_') return true;
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
           (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO);
}

static bool ends_with_word(const char *s, size_t n) {
    if (n == 0) return false;
    size_t k = n - 1;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
        k--;
    uint32_t cp = 0;
    return tk_utf8_decode((const unsigned char *)s + k, n - k, &cp) && is_word_char(cp);
}

static bool starts_with_word(const char *s, size_t n) {
    uint32_t cp = 0;
    return n > 0 && tk_utf8_decode((const unsigned char *)s, n, &cp) && is_word_char(cp);
}

ci_status tk_segs_push(tk_segs *s, size_t a, size_t b, int32_t id) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        tk_seg *v = realloc(s->v, cap * sizeof *v);
        if (!v) return nomem();
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (tk_seg){a, b, id};
    return ci_ok();
}

/* Splits s on added tokens of `set` (leftmost-longest, as HF's AddedVocabulary). */
ci_status tk_added_split(const ci_tokenizer *t, const tk_added_set *set, const char *s, size_t n,
                         tk_segs *out) {
    out->n = 0;
    size_t start_offset = 0, i = 0;
    while (set->n && i < n) {
        unsigned c = (unsigned char)s[i];
        const tk_added *hit = NULL;
        for (uint32_t k = set->first[c]; k < set->first[c + 1]; k++) {
            const tk_added *a = &t->added[set->idx[k]];
            if (a->len <= n - i && !memcmp(s + i, a->content, a->len)) {
                hit = a;
                break;
            }
        }
        if (!hit) {
            i++;
            continue;
        }
        size_t start = i, stop = i + hit->len;
        if (hit->single_word) {
            bool start_space = start == 0 || !ends_with_word(s, start);
            bool stop_space = stop == n || !starts_with_word(s + stop, n - stop);
            if (!start_space || !stop_space) {
                i = stop;
                continue;
            }
        }
        if (hit->lstrip) {
            while (start > start_offset) {
                size_t k = start - 1;
                while (k > start_offset && ((unsigned char)s[k] & 0xC0) == 0x80)
                    k--;
                uint32_t cp = 0;
                if (!tk_utf8_decode((const unsigned char *)s + k, start - k, &cp) ||
                    !tk_is_whitespace(cp))
                    break;
                start = k;
            }
        }
        if (hit->rstrip) {
            while (stop < n) {
                uint32_t cp = 0;
                size_t l = tk_utf8_decode((const unsigned char *)s + stop, n - stop, &cp);
                if (!l || !tk_is_whitespace(cp)) break;
                stop += l;
            }
        }
        if (start > start_offset) CI_TRY(tk_segs_push(out, start_offset, start, -1));
        CI_TRY(tk_segs_push(out, start, stop, hit->id));
        start_offset = i = stop;
    }
    if (start_offset < n) CI_TRY(tk_segs_push(out, start_offset, n, -1));
    return ci_ok();
}
