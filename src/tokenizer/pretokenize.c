/* pretokenize.c — pre-tokenizers: Split, ByteLevel, Metaspace, Sequence,
 * Whitespace, WhitespaceSplit, Digits. Regexes go through PCRE2 (UTF+UCP). */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/pretokenize.h"
#include "tokenizer/regex.h"
#include "tokenizer/tok_json.h"
#include "tokenizer/util.h"

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static void pt_clear(tk_pretok *p) {
    if (p->re) pcre2_code_free(p->re);
    for (size_t i = 0; i < p->n_items; i++)
        pt_clear(&p->items[i]);
    free(p->items);
}

void tk_pretok_free(tk_pretok *p) {
    if (!p) return;
    pt_clear(p);
    free(p);
}

static ci_status parse_one(json_t *j, const char *path, tk_pretok *p, int depth) {
    memset(p, 0, sizeof *p);
    if (!json_is_object(j))
        return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s: expected an object", path);
    const char *type = NULL;
    size_t tl = 0;
    CI_TRY(tk_json_str(j, "type", path, true, &type, &tl));
    if (!strcmp(type, "Split")) {
        p->type = TK_PT_SPLIT;
        json_t *pat = json_object_get(j, "pattern");
        if (!json_is_object(pat))
            return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s.pattern: expected an object", path);
        json_t *s = json_object_get(pat, "String");
        bool literal = true;
        if (!s) {
            s = json_object_get(pat, "Regex");
            literal = false;
        }
        if (!json_is_string(s))
            return ci_errorf(CI_ERR_FORMAT,
                             "tokenizer.json: %s.pattern: expected a \"String\" or \"Regex\"",
                             path);
        CI_TRY(
            tk_regex_compile(json_string_value(s), json_string_length(s), literal, &p->re, path));
        const char *b = NULL;
        size_t bl = 0;
        CI_TRY(tk_json_str(j, "behavior", path, true, &b, &bl));
        if (!strcmp(b, "Removed"))
            p->behavior = TK_SPLIT_REMOVED;
        else if (!strcmp(b, "Isolated"))
            p->behavior = TK_SPLIT_ISOLATED;
        else if (!strcmp(b, "MergedWithPrevious"))
            p->behavior = TK_SPLIT_MERGED_PREV;
        else if (!strcmp(b, "MergedWithNext"))
            p->behavior = TK_SPLIT_MERGED_NEXT;
        else if (!strcmp(b, "Contiguous"))
            p->behavior = TK_SPLIT_CONTIGUOUS;
        else
            return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s.behavior: unknown value \"%s\"",
                             path, b);
        CI_TRY(tk_json_bool(j, "invert", path, false, &p->invert));
    } else if (!strcmp(type, "ByteLevel")) {
        p->type = TK_PT_BYTELEVEL;
        CI_TRY(tk_json_bool(j, "add_prefix_space", path, true, &p->add_prefix_space));
        CI_TRY(tk_json_bool(j, "use_regex", path, true, &p->use_regex));
        if (p->use_regex)
            CI_TRY(tk_regex_compile(GPT2_PATTERN, sizeof GPT2_PATTERN - 1, false, &p->re, path));
    } else if (!strcmp(type, "Metaspace")) {
        p->type = TK_PT_METASPACE;
        CI_TRY(tk_json_metaspace(j, path, p->rep, &p->rep_len, &p->prepend_scheme));
        CI_TRY(tk_json_bool(j, "split", path, true, &p->split));
    } else if (!strcmp(type, "Sequence")) {
        p->type = TK_PT_SEQ;
        if (depth > 8)
            return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s: sequences nested too deep", path);
        json_t *arr = json_object_get(j, "pretokenizers");
        if (!json_is_array(arr))
            return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s.pretokenizers: expected an array",
                             path);
        size_t cnt = json_array_size(arr);
        p->items = calloc(cnt ? cnt : 1, sizeof *p->items);
        if (!p->items) return ci_errorf(CI_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < cnt; i++) {
            char sub[128];
            snprintf(sub, sizeof sub, "%.80s.pretokenizers[%zu]", path, i);
            p->n_items = i + 1;
            CI_TRY(parse_one(json_array_get(arr, i), sub, &p->items[i], depth + 1));
        }
        p->n_items = cnt;
    } else if (!strcmp(type, "WhitespaceSplit")) {
        p->type = TK_PT_WHITESPACE_SPLIT;
    } else if (!strcmp(type, "Whitespace")) {
        p->type = TK_PT_SPLIT;
        p->behavior = TK_SPLIT_REMOVED;
        p->invert = true;
        static const char pat[] = "\\w+|[^\\w\\s]+";
        CI_TRY(tk_regex_compile(pat, sizeof pat - 1, false, &p->re, path));
    } else if (!strcmp(type, "Digits")) {
        p->type = TK_PT_SPLIT;
        bool indiv = false;
        CI_TRY(tk_json_bool(j, "individual_digits", path, false, &indiv));
        p->behavior = TK_SPLIT_ISOLATED;
        const char *pat = indiv ? "\\p{N}" : "\\p{N}+";
        CI_TRY(tk_regex_compile(pat, strlen(pat), false, &p->re, path));
    } else {
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         "tokenizer.json: %s: unsupported pre-tokenizer type \"%s\"", path, type);
    }
    return ci_ok();
}

ci_status tk_pretok_parse(json_t *j, const char *path, tk_pretok **out) {
    *out = NULL;
    if (!j || json_is_null(j)) return ci_ok();
    tk_pretok *p = calloc(1, sizeof *p);
    if (!p) return ci_errorf(CI_ERR_NOMEM, "out of memory");
    ci_status s = parse_one(j, path, p, 0);
    if (s.code != CI_OK) {
        tk_pretok_free(p);
        return s;
    }
    *out = p;
    return ci_ok();
}

/* ---- splitting ---- */
typedef struct span {
    size_t a, b;
    bool m;
} span;

typedef struct spans {
    span *v;
    size_t n, cap;
} spans;

static ci_status spans_push(spans *s, size_t a, size_t b, bool m) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        span *v = realloc(s->v, cap * sizeof *v);
        if (!v) return ci_errorf(CI_ERR_NOMEM, "out of memory");
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (span){a, b, m};
    return ci_ok();
}

/* Regex matches over s as (offsets, is_match) covering the whole string. */
static ci_status find_matches(const pcre2_code *re, const char *s, size_t n, spans *out) {
    out->n = 0;
    if (n == 0) return spans_push(out, 0, 0, false);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) return ci_errorf(CI_ERR_NOMEM, "out of memory");
    ci_status st = ci_ok();
    size_t prev = 0, pos = 0;
    while (pos <= n) {
        int found;
        size_t ms, me;
        if ((st = tk_regex_next(re, md, s, n, pos, &found, &ms, &me)).code) goto done;
        if (!found || me < ms || ms < pos) break; /* \K tricks: stop */
        if (prev != ms && (st = spans_push(out, prev, ms, false)).code) goto done;
        if ((st = spans_push(out, ms, me, true)).code) goto done;
        prev = me;
        if (me == ms) {
            if (me >= n) break;
            pos = me + tk_utf8_len((unsigned char)s[me]);
        } else {
            pos = me;
        }
    }
    if (prev < n) st = spans_push(out, prev, n, false);
done:
    pcre2_match_data_free(md);
    return st;
}

/* Applies a split behavior in place (HF SplitDelimiterBehavior). */
static void apply_behavior(spans *sp, int behavior, bool invert) {
    if (invert)
        for (size_t i = 0; i < sp->n; i++)
            sp->v[i].m = !sp->v[i].m;
    size_t k = 0;
    bool prevm = false;
    switch (behavior) {
    case TK_SPLIT_ISOLATED: break;
    case TK_SPLIT_REMOVED:
        for (size_t i = 0; i < sp->n; i++)
            if (!sp->v[i].m) sp->v[k++] = sp->v[i];
        sp->n = k;
        break;
    case TK_SPLIT_MERGED_PREV:
        for (size_t i = 0; i < sp->n; i++) {
            span c = sp->v[i];
            if (c.m && !prevm && k > 0)
                sp->v[k - 1].b = c.b;
            else
                sp->v[k++] = c;
            prevm = c.m;
        }
        sp->n = k;
        break;
    case TK_SPLIT_MERGED_NEXT: {
        /* walk backwards, then the result is in reverse: build from the end */
        size_t w = sp->n; /* write index from the end */
        for (size_t ii = sp->n; ii-- > 0;) {
            span c = sp->v[ii];
            if (c.m && !prevm && w < sp->n)
                sp->v[w].a = c.a;
            else
                sp->v[--w] = c;
            prevm = c.m;
        }
        memmove(sp->v, sp->v + w, (sp->n - w) * sizeof *sp->v);
        sp->n -= w;
        break;
    }
    case TK_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < sp->n; i++) {
            span c = sp->v[i];
            if (k > 0 && c.m == prevm)
                sp->v[k - 1].b = c.b;
            else
                sp->v[k++] = c;
            prevm = c.m;
        }
        sp->n = k;
        break;
    }
}

static ci_status push_spans(const char *s, const spans *sp, tk_list *out) {
    for (size_t i = 0; i < sp->n; i++)
        if (sp->v[i].b > sp->v[i].a)
            CI_TRY(tk_list_push(out, s + sp->v[i].a, sp->v[i].b - sp->v[i].a));
    return ci_ok();
}

static ci_status push_bytelevel(const char *s, size_t n, tk_list *out) {
    if (n == 0) return ci_ok();
    CI_TRY(tk_list_push(out, "", 0));
    for (size_t i = 0; i < n; i++) {
        char enc[4];
        size_t l = tk_utf8_encode(tk_byte_cp((unsigned char)s[i]), enc);
        CI_TRY(tk_list_append_last(out, enc, l));
    }
    return ci_ok();
}

/* Splits one piece; results appended to out. */
static ci_status apply_piece(const tk_pretok *p, const char *s, size_t n, bool at_start,
                             tk_list *out, spans *sp, tk_buf *tmp);

static ci_status apply_list(const tk_pretok *p, const tk_list *in, bool at_start, tk_list *out,
                            spans *sp, tk_buf *tmp) {
    for (size_t i = 0; i < in->n; i++)
        CI_TRY(apply_piece(p, TK_ITEM(in, i), TK_LEN(in, i), at_start && i == 0, out, sp, tmp));
    return ci_ok();
}

static ci_status apply_piece(const tk_pretok *p, const char *s, size_t n, bool at_start,
                             tk_list *out, spans *sp, tk_buf *tmp) {
    switch (p->type) {
    case TK_PT_SPLIT:
        CI_TRY(find_matches(p->re, s, n, sp));
        apply_behavior(sp, p->behavior, p->invert);
        return push_spans(s, sp, out);
    case TK_PT_BYTELEVEL: {
        const char *src = s;
        size_t len = n;
        if (p->add_prefix_space && n > 0 && s[0] != ' ') {
            tmp->len = 0;
            CI_TRY(tk_buf_put(tmp, " ", 1));
            CI_TRY(tk_buf_put(tmp, s, n));
            src = tmp->p;
            len = tmp->len;
        }
        if (!p->use_regex) return push_bytelevel(src, len, out);
        CI_TRY(find_matches(p->re, src, len, sp));
        for (size_t i = 0; i < sp->n; i++)
            CI_TRY(push_bytelevel(src + sp->v[i].a, sp->v[i].b - sp->v[i].a, out));
        return ci_ok();
    }
    case TK_PT_METASPACE: {
        tmp->len = 0;
        if (n > 0) {
            bool starts = n >= p->rep_len && memcmp(s, p->rep, p->rep_len) == 0;
            bool pre = !starts && s[0] != ' ' &&
                       (p->prepend_scheme == TK_PREPEND_ALWAYS ||
                        (p->prepend_scheme == TK_PREPEND_FIRST && at_start));
            if (pre) CI_TRY(tk_buf_put(tmp, p->rep, p->rep_len));
        }
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ')
                CI_TRY(tk_buf_put(tmp, p->rep, p->rep_len));
            else
                CI_TRY(tk_buf_put(tmp, s + i, 1));
        }
        if (tmp->len == 0) return ci_ok();
        if (!p->split) return tk_list_push(out, tmp->p, tmp->len);
        /* split on the replacement, each piece starting with it */
        size_t start = 0;
        for (size_t i = 0; i + p->rep_len <= tmp->len;) {
            if (i > start && memcmp(tmp->p + i, p->rep, p->rep_len) == 0) {
                CI_TRY(tk_list_push(out, tmp->p + start, i - start));
                start = i;
                i += p->rep_len;
            } else {
                i++;
            }
        }
        return tk_list_push(out, tmp->p + start, tmp->len - start);
    }
    case TK_PT_WHITESPACE_SPLIT: {
        size_t i = 0;
        while (i < n) {
            uint32_t cp = 0;
            size_t l = tk_utf8_decode((const unsigned char *)s + i, n - i, &cp);
            if (!l) l = 1, cp = 0;
            if (tk_is_whitespace(cp)) {
                i += l;
                continue;
            }
            size_t a = i;
            while (i < n) {
                l = tk_utf8_decode((const unsigned char *)s + i, n - i, &cp);
                if (!l) l = 1, cp = 0;
                if (tk_is_whitespace(cp)) break;
                i += l;
            }
            CI_TRY(tk_list_push(out, s + a, i - a));
        }
        return ci_ok();
    }
    case TK_PT_SEQ: {
        tk_list cur = {0}, nxt = {0};
        ci_status st = tk_list_push(&cur, s, n);
        for (size_t k = 0; st.code == CI_OK && k < p->n_items; k++) {
            tk_list_clear(&nxt);
            st = apply_list(&p->items[k], &cur, at_start, &nxt, sp, tmp);
            tk_list t = cur;
            cur = nxt;
            nxt = t;
        }
        for (size_t i = 0; st.code == CI_OK && i < cur.n; i++)
            st = tk_list_push(out, TK_ITEM(&cur, i), TK_LEN(&cur, i));
        tk_list_free(&cur);
        tk_list_free(&nxt);
        return st;
    }
    }
    return ci_errorf(CI_ERR_INTERNAL, "pre-tokenizer: bad type");
}

ci_status tk_pretok_apply(const tk_pretok *p, const char *s, size_t n, bool at_start, tk_list *out,
                          tk_list *scratch) {
    (void)scratch;
    if (!p) return n ? tk_list_push(out, s, n) : ci_ok();
    spans sp = {0};
    tk_buf tmp = {0};
    ci_status st = apply_piece(p, s, n, at_start, out, &sp, &tmp);
    free(sp.v);
    tk_buf_free(&tmp);
    return st;
}
