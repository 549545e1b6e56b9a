/* decode.c — ids to text: token strings through the decoder chain
 * (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence). */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/decode.h"
#include "tokenizer/tok_json.h"
#include "tokenizer/tok_struct.h"
#include "tokenizer/util.h"

static void dec_clear(tk_dec *d) {
    free(d->pat);
    free(d->content);
    for (size_t i = 0; i < d->n_items; i++)
        dec_clear(&d->items[i]);
    free(d->items);
}

void tk_dec_free(tk_dec *d) {
    if (!d) return;
    dec_clear(d);
    free(d);
}

static char *dup_n(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static ci_status json_size(json_t *j, const char *key, const char *path, size_t dflt, size_t *out) {
    json_t *v = json_object_get(j, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return ci_ok();
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000000)
        return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s.%s: expected a small unsigned integer",
                         path, key);
    *out = (size_t)json_integer_value(v);
    return ci_ok();
}

static ci_status parse_one(json_t *j, const char *path, tk_dec *d, int depth) {
    memset(d, 0, sizeof *d);
    if (!json_is_object(j))
        return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s: expected an object", path);
    const char *type = NULL;
    size_t tl = 0;
    CI_TRY(tk_json_str(j, "type", path, true, &type, &tl));
    if (!strcmp(type, "ByteLevel")) {
        d->type = TK_DEC_BYTELEVEL;
    } else if (!strcmp(type, "ByteFallback")) {
        d->type = TK_DEC_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        d->type = TK_DEC_FUSE;
    } else if (!strcmp(type, "Replace")) {
        d->type = TK_DEC_REPLACE;
        json_t *pat = json_object_get(j, "pattern");
        json_t *s = json_is_object(pat) ? json_object_get(pat, "String") : NULL;
        if (!json_is_string(s))
            return ci_errorf(CI_ERR_UNSUPPORTED,
                             "tokenizer.json: %s.pattern: only {\"String\": ...} is supported",
                             path);
        if (json_string_length(s) == 0)
            return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s.pattern: empty string", path);
        const char *c = NULL;
        size_t cl = 0;
        CI_TRY(tk_json_str(j, "content", path, true, &c, &cl));
        d->pat = dup_n(json_string_value(s), json_string_length(s));
        d->pat_len = json_string_length(s);
        d->content = dup_n(c, cl);
        d->content_len = cl;
        if (!d->pat || !d->content) return ci_errorf(CI_ERR_NOMEM, "out of memory");
    } else if (!strcmp(type, "Strip")) {
        d->type = TK_DEC_STRIP;
        const char *c = NULL;
        size_t cl = 0;
        CI_TRY(tk_json_str(j, "content", path, true, &c, &cl));
        uint32_t cp = 0;
        if (cl == 0 || tk_utf8_decode((const unsigned char *)c, cl, &cp) != cl)
            return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s.content: expected one character",
                             path);
        d->content = dup_n(c, cl);
        if (!d->content) return ci_errorf(CI_ERR_NOMEM, "out of memory");
        d->content_len = cl;
        CI_TRY(json_size(j, "start", path, 0, &d->start));
        CI_TRY(json_size(j, "stop", path, 0, &d->stop));
    } else if (!strcmp(type, "Metaspace")) {
        d->type = TK_DEC_METASPACE;
        CI_TRY(tk_json_metaspace(j, path, d->rep, &d->rep_len, &d->prepend_scheme));
    } else if (!strcmp(type, "Sequence")) {
        d->type = TK_DEC_SEQ;
        if (depth > 8)
            return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s: sequences nested too deep", path);
        json_t *arr = json_object_get(j, "decoders");
        if (!json_is_array(arr))
            return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s.decoders: expected an array", path);
        size_t cnt = json_array_size(arr);
        d->items = calloc(cnt ? cnt : 1, sizeof *d->items);
        if (!d->items) return ci_errorf(CI_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < cnt; i++) {
            char sub[128];
            snprintf(sub, sizeof sub, "%.80s.decoders[%zu]", path, i);
            d->n_items = i + 1;
            CI_TRY(parse_one(json_array_get(arr, i), sub, &d->items[i], depth + 1));
        }
        d->n_items = cnt;
    } else {
        return ci_errorf(CI_ERR_UNSUPPORTED, "tokenizer.json: %s: unsupported decoder type \"%s\"",
                         path, type);
    }
    return ci_ok();
}

ci_status tk_dec_parse(json_t *j, const char *path, tk_dec **out) {
    *out = NULL;
    if (!j || json_is_null(j)) return ci_ok();
    tk_dec *d = calloc(1, sizeof *d);
    if (!d) return ci_errorf(CI_ERR_NOMEM, "out of memory");
    ci_status s = parse_one(j, path, d, 0);
    if (s.code != CI_OK) {
        tk_dec_free(d);
        return s;
    }
    *out = d;
    return ci_ok();
}

void tk_decode_ws_free(tk_decode_ws *ws) {
    tk_list_free(&ws->a);
    tk_list_free(&ws->b);
    tk_buf_free(&ws->out);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static ci_status flush_bytes(tk_list *out, tk_buf *bytes, size_t nbytes) {
    if (nbytes == 0) return ci_ok();
    if (tk_utf8_validate(bytes->p, bytes->len) == bytes->len)
        return tk_list_push(out, bytes->p, bytes->len);
    for (size_t k = 0; k < nbytes; k++)
        CI_TRY(tk_list_push(out, "\xEF\xBF\xBD", 3));
    return ci_ok();
}

/* One decoder step: in -> out (out cleared). tmp is scratch. */
static ci_status dec_step(const tk_dec *d, const tk_list *in, tk_list *out, tk_buf *tmp);

static ci_status dec_seq(const tk_dec *d, tk_list *in, tk_list *out, tk_buf *tmp) {
    /* ping-pong between in and out; the result must end in out */
    tk_list *src = in, *dst = out;
    for (size_t i = 0; i < d->n_items; i++) {
        CI_TRY(dec_step(&d->items[i], src, dst, tmp));
        tk_list *t = src;
        src = dst;
        dst = t;
    }
    if (src != out) {
        tk_list_clear(out);
        for (size_t i = 0; i < src->n; i++)
            CI_TRY(tk_list_push(out, TK_ITEM(src, i), TK_LEN(src, i)));
    }
    return ci_ok();
}

static ci_status dec_step(const tk_dec *d, const tk_list *in, tk_list *out, tk_buf *tmp) {
    tk_list_clear(out);
    switch (d->type) {
    case TK_DEC_BYTELEVEL: {
        tmp->len = 0;
        for (size_t i = 0; i < in->n; i++) {
            const char *s = TK_ITEM(in, i);
            size_t n = TK_LEN(in, i), start = tmp->len;
            bool ok = true;
            for (size_t k = 0; k < n;) {
                uint32_t cp = 0;
                size_t l = tk_utf8_decode((const unsigned char *)s + k, n - k, &cp);
                int b = l ? tk_cp_to_byte(cp) : -1;
                if (b < 0) {
                    ok = false;
                    break;
                }
                char c = (char)b;
                CI_TRY(tk_buf_put(tmp, &c, 1));
                k += l;
            }
            if (!ok) {
                tmp->len = start;
                CI_TRY(tk_buf_put(tmp, s, n));
            }
        }
        CI_TRY(tk_list_push(out, "", 0));
        /* lossy-convert straight into the list's data buffer */
        CI_TRY(tk_utf8_lossy_append(&out->data, tmp->p ? tmp->p : "", tmp->len));
        out->off[out->n] = out->data.len;
        return ci_ok();
    }
    case TK_DEC_REPLACE:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = TK_ITEM(in, i);
            size_t n = TK_LEN(in, i);
            CI_TRY(tk_list_push(out, "", 0));
            size_t k = 0, last = 0;
            while (k + d->pat_len <= n) {
                if (memcmp(s + k, d->pat, d->pat_len) == 0) {
                    CI_TRY(tk_list_append_last(out, s + last, k - last));
                    CI_TRY(tk_list_append_last(out, d->content, d->content_len));
                    k += d->pat_len;
                    last = k;
                } else {
                    k++;
                }
            }
            CI_TRY(tk_list_append_last(out, s + last, n - last));
        }
        return ci_ok();
    case TK_DEC_BYTEFALLBACK: {
        tmp->len = 0;
        size_t nbytes = 0;
        for (size_t i = 0; i < in->n; i++) {
            const char *s = TK_ITEM(in, i);
            size_t n = TK_LEN(in, i);
            int hi, lo;
            if (n == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>' &&
                (hi = hexval(s[3])) >= 0 && (lo = hexval(s[4])) >= 0) {
                char c = (char)(hi * 16 + lo);
                CI_TRY(tk_buf_put(tmp, &c, 1));
                nbytes++;
                continue;
            }
            CI_TRY(flush_bytes(out, tmp, nbytes));
            tmp->len = 0;
            nbytes = 0;
            CI_TRY(tk_list_push(out, s, n));
        }
        return flush_bytes(out, tmp, nbytes);
    }
    case TK_DEC_FUSE:
        CI_TRY(tk_list_push(out, "", 0));
        for (size_t i = 0; i < in->n; i++)
            CI_TRY(tk_list_append_last(out, TK_ITEM(in, i), TK_LEN(in, i)));
        return ci_ok();
    case TK_DEC_STRIP:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = TK_ITEM(in, i);
            size_t n = TK_LEN(in, i), a = 0, b = n, cl = d->content_len;
            for (size_t k = 0; k < d->start && b - a >= cl && !memcmp(s + a, d->content, cl); k++)
                a += cl;
            for (size_t k = 0; k < d->stop && b - a >= cl && !memcmp(s + b - cl, d->content, cl);
                 k++)
                b -= cl;
            CI_TRY(tk_list_push(out, s + a, b - a));
        }
        return ci_ok();
    case TK_DEC_METASPACE:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = TK_ITEM(in, i);
            size_t n = TK_LEN(in, i), k = 0;
            CI_TRY(tk_list_push(out, "", 0));
            bool drop = i == 0 && d->prepend_scheme != TK_PREPEND_NEVER;
            while (k < n) {
                if (n - k >= d->rep_len && !memcmp(s + k, d->rep, d->rep_len)) {
                    if (!drop) CI_TRY(tk_list_append_last(out, " ", 1));
                    k += d->rep_len;
                } else {
                    CI_TRY(tk_list_append_last(out, s + k, 1));
                    k++;
                }
            }
        }
        return ci_ok();
    case TK_DEC_SEQ: {
        /* copy input into a private ping-pong pair */
        tk_list a = {0};
        ci_status st = ci_ok();
        for (size_t i = 0; st.code == CI_OK && i < in->n; i++)
            st = tk_list_push(&a, TK_ITEM(in, i), TK_LEN(in, i));
        if (st.code == CI_OK) st = dec_seq(d, &a, out, tmp);
        tk_list_free(&a);
        return st;
    }
    }
    return ci_errorf(CI_ERR_INTERNAL, "decoder: bad type");
}

ci_status tk_decode_into(const ci_tokenizer *t, const int32_t *ids, size_t n, bool skip,
                         tk_decode_ws *ws) {
    tk_list_clear(&ws->a);
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0) return ci_errorf(CI_ERR_INVALID, "decode: negative token id %d", (int)id);
        if (id >= t->n_ids || !t->id_str[id]) continue; /* unknown: nothing, as HF */
        if (skip && t->id_special[id]) continue;
        CI_TRY(tk_list_push(&ws->a, t->id_str[id], t->id_len[id]));
    }
    tk_list *res = &ws->a;
    const char *sep = "";
    if (t->dec) {
        if (t->dec->type == TK_DEC_SEQ) {
            CI_TRY(dec_seq(t->dec, &ws->a, &ws->b, &ws->out));
        } else {
            CI_TRY(dec_step(t->dec, &ws->a, &ws->b, &ws->out));
        }
        res = &ws->b;
    } else {
        sep = " ";
    }
    ws->out.len = 0;
    CI_TRY(tk_buf_reserve(&ws->out, 0));
    ws->out.p[0] = '\0';
    for (size_t i = 0; i < res->n; i++) {
        if (i) CI_TRY(tk_buf_put(&ws->out, sep, strlen(sep)));
        CI_TRY(tk_buf_put(&ws->out, TK_ITEM(res, i), TK_LEN(res, i)));
    }
    return ci_ok();
}
