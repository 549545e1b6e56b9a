/* normalize.c — normalizers: NFC/NFD/NFKC/NFKD (utf8proc), Lowercase,
 * Prepend, Replace, Strip, Sequence. */
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "tokenizer/normalize.h"
#include "tokenizer/regex.h"
#include "tokenizer/tok_json.h"
#include "tokenizer/util.h"

static void norm_clear(tk_norm *n) {
    free(n->s1);
    free(n->s2);
    if (n->re) pcre2_code_free(n->re);
    for (size_t i = 0; i < n->n_items; i++)
        norm_clear(&n->items[i]);
    free(n->items);
}

void tk_norm_free(tk_norm *n) {
    if (!n) return;
    norm_clear(n);
    free(n);
}

static char *dup_n(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* Parses a {"String": s} or {"Regex": r} pattern. */
static ci_status parse_pattern(json_t *pat, const char *path, pcre2_code **re) {
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
                         "tokenizer.json: %s.pattern: expected a \"String\" or \"Regex\" string",
                         path);
    return tk_regex_compile(json_string_value(s), json_string_length(s), literal, re, path);
}

static ci_status parse_one(json_t *j, const char *path, tk_norm *n, int depth) {
    memset(n, 0, sizeof *n);
    if (!json_is_object(j))
        return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s: expected an object", path);
    const char *type = NULL;
    size_t tl = 0;
    CI_TRY(tk_json_str(j, "type", path, true, &type, &tl));
    char sub[128];
    if (!strcmp(type, "NFC"))
        n->type = TK_NORM_NFC;
    else if (!strcmp(type, "NFD"))
        n->type = TK_NORM_NFD;
    else if (!strcmp(type, "NFKC"))
        n->type = TK_NORM_NFKC;
    else if (!strcmp(type, "NFKD"))
        n->type = TK_NORM_NFKD;
    else if (!strcmp(type, "Lowercase"))
        n->type = TK_NORM_LOWER;
    else if (!strcmp(type, "Prepend")) {
        n->type = TK_NORM_PREPEND;
        const char *s = NULL;
        size_t l = 0;
        CI_TRY(tk_json_str(j, "prepend", path, true, &s, &l));
        if (!(n->s1 = dup_n(s, l))) return ci_errorf(CI_ERR_NOMEM, "out of memory");
        n->l1 = l;
    } else if (!strcmp(type, "Replace")) {
        n->type = TK_NORM_REPLACE;
        const char *s = NULL;
        size_t l = 0;
        CI_TRY(tk_json_str(j, "content", path, true, &s, &l));
        if (!(n->s2 = dup_n(s, l))) return ci_errorf(CI_ERR_NOMEM, "out of memory");
        n->l2 = l;
        CI_TRY(parse_pattern(json_object_get(j, "pattern"), path, &n->re));
    } else if (!strcmp(type, "Strip")) {
        n->type = TK_NORM_STRIP;
        CI_TRY(tk_json_bool(j, "strip_left", path, true, &n->left));
        CI_TRY(tk_json_bool(j, "strip_right", path, true, &n->right));
    } else if (!strcmp(type, "Sequence")) {
        n->type = TK_NORM_SEQ;
        if (depth > 8)
            return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s: sequences nested too deep", path);
        json_t *arr = json_object_get(j, "normalizers");
        if (!json_is_array(arr))
            return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s.normalizers: expected an array",
                             path);
        size_t cnt = json_array_size(arr);
        n->items = calloc(cnt ? cnt : 1, sizeof *n->items);
        if (!n->items) return ci_errorf(CI_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < cnt; i++) {
            snprintf(sub, sizeof sub, "%.80s.normalizers[%zu]", path, i);
            n->n_items = i + 1;
            CI_TRY(parse_one(json_array_get(arr, i), sub, &n->items[i], depth + 1));
        }
        n->n_items = cnt;
    } else {
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         "tokenizer.json: %s: unsupported normalizer type \"%s\"", path, type);
    }
    return ci_ok();
}

ci_status tk_norm_parse(json_t *j, const char *path, tk_norm **out) {
    *out = NULL;
    if (!j || json_is_null(j)) return ci_ok();
    tk_norm *n = calloc(1, sizeof *n);
    if (!n) return ci_errorf(CI_ERR_NOMEM, "out of memory");
    ci_status s = parse_one(j, path, n, 0);
    if (s.code != CI_OK) {
        tk_norm_free(n);
        return s;
    }
    *out = n;
    return ci_ok();
}

static ci_status apply_unicode(int type, const char *s, size_t n, tk_buf *out) {
    int opts = UTF8PROC_STABLE;
    switch (type) {
    case TK_NORM_NFC: opts |= UTF8PROC_COMPOSE; break;
    case TK_NORM_NFD: opts |= UTF8PROC_DECOMPOSE; break;
    case TK_NORM_NFKC: opts |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    default: opts |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
    }
    if (n == 0) return ci_ok();
    utf8proc_uint8_t *res = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &res,
                                      (utf8proc_option_t)opts);
    if (r < 0) {
        free(res);
        return ci_errorf(CI_ERR_INVALID, "normalizer: %s", utf8proc_errmsg(r));
    }
    ci_status st = tk_buf_put(out, res, (size_t)r);
    free(res);
    return st;
}

static ci_status apply_lower(const char *s, size_t n, tk_buf *out) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp = 0;
        size_t l = tk_utf8_decode((const unsigned char *)s + i, n - i, &cp);
        if (!l) return ci_errorf(CI_ERR_INTERNAL, "normalizer: invalid UTF-8");
        char enc[4];
        size_t el = tk_utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), enc);
        CI_TRY(tk_buf_put(out, enc, el));
        i += l;
    }
    return ci_ok();
}

static ci_status apply_one(const tk_norm *nm, const char *s, size_t n, tk_buf *out, size_t limit);

static ci_status apply_seq(const tk_norm *nm, const char *s, size_t n, tk_buf *out, size_t limit) {
    tk_buf cur = {0}, nxt = {0};
    ci_status st = tk_buf_put(&cur, s, n);
    for (size_t i = 0; st.code == CI_OK && i < nm->n_items; i++) {
        nxt.len = 0;
        st = apply_one(&nm->items[i], cur.p, cur.len, &nxt, limit);
        if (st.code == CI_OK && nxt.len > limit)
            st = ci_errorf(CI_ERR_INVALID, "normalizer: output too large");
        tk_buf t = cur;
        cur = nxt;
        nxt = t;
    }
    if (st.code == CI_OK) st = tk_buf_put(out, cur.p, cur.len);
    tk_buf_free(&cur);
    tk_buf_free(&nxt);
    return st;
}

static ci_status apply_one(const tk_norm *nm, const char *s, size_t n, tk_buf *out, size_t limit) {
    switch (nm->type) {
    case TK_NORM_NFC:
    case TK_NORM_NFD:
    case TK_NORM_NFKC:
    case TK_NORM_NFKD: return apply_unicode(nm->type, s, n, out);
    case TK_NORM_LOWER: return apply_lower(s, n, out);
    case TK_NORM_PREPEND:
        if (n) CI_TRY(tk_buf_put(out, nm->s1, nm->l1));
        return tk_buf_put(out, s, n);
    case TK_NORM_REPLACE: return tk_regex_replace(nm->re, s, n, nm->s2, nm->l2, out, limit);
    case TK_NORM_STRIP: {
        size_t a = 0, b = n;
        while (nm->left && a < b) {
            uint32_t cp = 0;
            size_t l = tk_utf8_decode((const unsigned char *)s + a, b - a, &cp);
            if (!l || !tk_is_whitespace(cp)) break;
            a += l;
        }
        while (nm->right && b > a) {
            size_t k = b - 1;
            while (k > a && ((unsigned char)s[k] & 0xC0) == 0x80)
                k--;
            uint32_t cp = 0;
            size_t l = tk_utf8_decode((const unsigned char *)s + k, b - k, &cp);
            if (!l || !tk_is_whitespace(cp)) break;
            b = k;
        }
        return tk_buf_put(out, s + a, b - a);
    }
    case TK_NORM_SEQ: return apply_seq(nm, s, n, out, limit);
    }
    return ci_errorf(CI_ERR_INTERNAL, "normalizer: bad type");
}

ci_status tk_norm_apply(const tk_norm *nm, const char *s, size_t n, tk_buf *out) {
    out->len = 0;
    CI_TRY(tk_buf_reserve(out, n));
    out->p[0] = '\0';
    if (!nm) return tk_buf_put(out, s, n);
    /* Guard against configurations that blow text up (a Replace of the
     * empty string, repeated): far beyond anything a real tokenizer does. */
    size_t limit = n > SIZE_MAX / 64 ? SIZE_MAX : n * 32 + 4096;
    return apply_one(nm, s, n, out, limit);
}
