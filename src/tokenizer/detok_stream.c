/* detok_stream.c — incremental detokenization (as HF's DecodeStream):
 * decode a short window of ids with and without the new id and emit the
 * new suffix once it does not end in U+FFFD (an incomplete character). */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/decode.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/util.h"

struct ci_detok_stream {
    const ci_tokenizer *t;
    bool skip;
    int32_t *ids;
    size_t n, cap;
    size_t prefix_index;
    tk_buf prefix;
    tk_buf emit;
    tk_decode_ws ws;
};

ci_status ci_detok_stream_create(const ci_tokenizer *tok, bool skip_special_tokens,
                                 ci_detok_stream **out) {
    *out = NULL;
    if (!tok) return ci_errorf(CI_ERR_INVALID, "detok stream: NULL tokenizer");
    ci_detok_stream *s = calloc(1, sizeof *s);
    if (!s) return ci_errorf(CI_ERR_NOMEM, "detok stream: out of memory");
    s->t = tok;
    s->skip = skip_special_tokens;
    ci_status st = tk_buf_reserve(&s->prefix, 64);
    if (st.code == CI_OK) st = tk_buf_reserve(&s->emit, 64);
    if (st.code != CI_OK) {
        ci_detok_stream_free(s);
        return st;
    }
    s->prefix.p[0] = s->emit.p[0] = '\0';
    *out = s;
    return ci_ok();
}

void ci_detok_stream_free(ci_detok_stream *s) {
    if (!s) return;
    free(s->ids);
    tk_buf_free(&s->prefix);
    tk_buf_free(&s->emit);
    tk_decode_ws_free(&s->ws);
    free(s);
}

static bool ends_fffd(const tk_buf *b) {
    return b->len >= 3 && !memcmp(b->p + b->len - 3, "\xEF\xBF\xBD", 3);
}

static ci_status set_buf(tk_buf *dst, const char *s, size_t n) {
    dst->len = 0;
    return tk_buf_put(dst, s, n);
}

ci_status ci_detok_stream_put(ci_detok_stream *s, int32_t id, const char **text, size_t *len) {
    *text = "";
    *len = 0;
    const ci_tokenizer *t = s->t;
    if (id < 0) return ci_errorf(CI_ERR_INVALID, "detok stream: negative token id %d", (int)id);
    /* an id the tokenizer does not know (a padded embedding row) decodes to
     * nothing, as HF tokenizers skip it */
    if (id >= t->n_ids || !t->id_str[id]) return ci_ok();
    /* skipped ids never reach the decoder: they cannot change the text */
    if (s->skip && t->id_special[id]) return ci_ok();
    if (s->prefix.len == 0 && s->n > 0) {
        CI_TRY(tk_decode_into(t, s->ids, s->n, s->skip, &s->ws));
        if (!ends_fffd(&s->ws.out)) {
            CI_TRY(set_buf(&s->prefix, s->ws.out.p, s->ws.out.len));
            s->prefix_index = s->n;
        }
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        int32_t *v = realloc(s->ids, cap * sizeof *v);
        if (!v) return ci_errorf(CI_ERR_NOMEM, "detok stream: out of memory");
        s->ids = v;
        s->cap = cap;
    }
    s->ids[s->n++] = id;
    CI_TRY(tk_decode_into(t, s->ids, s->n, s->skip, &s->ws));
    const tk_buf *str = &s->ws.out;
    if (str->len > s->prefix.len && !ends_fffd(str) &&
        !memcmp(str->p, s->prefix.p, s->prefix.len)) {
        CI_TRY(set_buf(&s->emit, str->p + s->prefix.len, str->len - s->prefix.len));
        size_t new_prefix_index = s->n - s->prefix_index;
        memmove(s->ids, s->ids + s->prefix_index, new_prefix_index * sizeof *s->ids);
        s->n = new_prefix_index;
        CI_TRY(tk_decode_into(t, s->ids, s->n, s->skip, &s->ws));
        CI_TRY(set_buf(&s->prefix, s->ws.out.p, s->ws.out.len));
        s->prefix_index = new_prefix_index;
        *text = s->emit.p;
        *len = s->emit.len;
    }
    return ci_ok();
}

ci_status ci_detok_stream_finish(ci_detok_stream *s, const char **text, size_t *len) {
    *text = "";
    *len = 0;
    CI_TRY(tk_decode_into(s->t, s->ids, s->n, s->skip, &s->ws));
    const tk_buf *str = &s->ws.out;
    s->emit.len = 0;
    if (str->len > s->prefix.len && !memcmp(str->p, s->prefix.p, s->prefix.len))
        CI_TRY(set_buf(&s->emit, str->p + s->prefix.len, str->len - s->prefix.len));
    s->emit.p[s->emit.len] = '\0';
    s->n = 0;
    s->prefix_index = 0;
    s->prefix.len = 0;
    s->prefix.p[0] = '\0';
    *text = s->emit.p;
    *len = s->emit.len;
    return ci_ok();
}
