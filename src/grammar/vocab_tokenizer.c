/* vocab_tokenizer.c — a ci_grammar_vocab from a loaded tokenizer: each id's
 * exact output bytes. Byte-level BPE (GPT-2 / Llama-3 / Qwen) maps each
 * character of the token string back to its byte; SentencePiece-style
 * vocabularies turn "<0xNN>" byte tokens into the byte and U+2581 into a
 * space (the decoder's strip of one leading space at the start of a text is
 * not modelled: a grammar sees the space). Special tokens are never allowed;
 * non-special added tokens are their literal content. */
#include <stdlib.h>
#include <string.h>

#include "grammar/vocab.h"
#include "tokenizer/decode.h"
#include "tokenizer/tok_json.h"
#include "tokenizer/tok_struct.h"
#include "tokenizer/tokenizer.h"

static bool has_dec(const tk_dec *d, int type) {
    if (!d) return false;
    if (d->type == type) return true;
    for (size_t i = 0; i < d->n_items; i++)
        if (has_dec(&d->items[i], type)) return true;
    return false;
}

/* The decoder drops a leading space of the text: Strip(" ", start >= 1)
 * after Fuse, or Metaspace that prepends. */
static bool strips_space(const tk_dec *d) {
    if (!d) return false;
    if (d->type == TK_DEC_STRIP && d->start >= 1 && d->content_len == 1 && d->content[0] == ' ')
        return true;
    if (d->type == TK_DEC_METASPACE && d->prepend_scheme != TK_PREPEND_NEVER) return true;
    for (size_t i = 0; i < d->n_items; i++)
        if (strips_space(&d->items[i])) return true;
    return false;
}

static int hexv(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The bytes of one model token into out (capacity >= 4 * len); its length. */
static uint32_t token_bytes(const ci_tokenizer *t, bool byte_level, const char *s, uint32_t len,
                            uint8_t *out) {
    if (t->byte_fallback && len == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && hexv(s[3]) >= 0 &&
        hexv(s[4]) >= 0) {
        out[0] = (uint8_t)(hexv(s[3]) * 16 + hexv(s[4]));
        return 1;
    }
    uint32_t n = 0;
    for (uint32_t i = 0; i < len;) {
        uint32_t cp;
        size_t l = tk_utf8_decode((const unsigned char *)s + i, len - i, &cp);
        if (!l) {
            out[n++] = (uint8_t)s[i++];
            continue;
        }
        int b = byte_level ? tk_cp_to_byte(cp) : -1;
        if (b >= 0) {
            out[n++] = (uint8_t)b;
        } else if (!byte_level && cp == 0x2581) {
            out[n++] = ' ';
        } else {
            memcpy(out + n, s + i, l);
            n += (uint32_t)l;
        }
        i += (uint32_t)l;
    }
    return n;
}

ci_status ci_grammar_vocab_from_tokenizer(const ci_tokenizer *t, const int32_t *eos_ids, int n_eos,
                                          ci_grammar_vocab **out) {
    return ci_grammar_vocab_from_tokenizer_n(t, 0, eos_ids, n_eos, out);
}

ci_status ci_grammar_vocab_from_tokenizer_n(const ci_tokenizer *t, int n_vocab,
                                            const int32_t *eos_ids, int n_eos,
                                            ci_grammar_vocab **out) {
    *out = NULL;
    int n_tok = ci_tokenizer_vocab_size(t);
    if (n_tok <= 0) return ci_errorf(CI_ERR_INVALID, "grammar vocab: empty tokenizer");
    int n = n_vocab > n_tok ? n_vocab : n_tok;
    bool byte_level = has_dec(t->dec, TK_DEC_BYTELEVEL);
    const uint8_t **ptr = calloc((size_t)n, sizeof *ptr);
    uint32_t *lens = calloc((size_t)n, sizeof *lens);
    size_t total = 0;
    for (int i = 0; i < n_tok && i < t->n_ids; i++)
        if (t->id_str[i]) total += 4u * t->id_len[i] + 1;
    for (size_t k = 0; k < t->n_added; k++)
        total += t->added[k].len + 1;
    uint8_t *buf = malloc(total + 1);
    if (!ptr || !lens || !buf) {
        free(ptr);
        free(lens);
        free(buf);
        return ci_errorf(CI_ERR_NOMEM, "out of memory");
    }
    size_t off = 0;
    for (int i = 0; i < n_tok && i < t->n_ids; i++) {
        if (!t->id_str[i] || ci_tokenizer_is_special(t, i)) continue;
        ptr[i] = buf + off;
        lens[i] = token_bytes(t, byte_level, t->id_str[i], t->id_len[i], buf + off);
        off += lens[i];
    }
    for (size_t k = 0; k < t->n_added; k++) {
        const tk_added *a = &t->added[k];
        if (a->id < 0 || a->id >= n) continue;
        if (a->special) {
            ptr[a->id] = NULL;
            lens[a->id] = 0;
            continue;
        }
        memcpy(buf + off, a->content, a->len);
        ptr[a->id] = buf + off;
        lens[a->id] = (uint32_t)a->len;
        off += a->len;
    }
    ci_status s = ci_grammar_vocab_create(ptr, lens, n, eos_ids, n_eos, out);
    if (s.code == CI_OK) (*out)->strip_space = strips_space(t->dec);
    free(ptr);
    free(lens);
    free(buf);
    return s;
}
