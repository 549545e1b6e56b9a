/* json_fast.c — a strict, allocation-light scanner for the two big values
 * of tokenizer.json (model.vocab and model.merges: ~300k strings for a
 * 150k vocab). Parsing them through jansson's DOM costs most of the load
 * time; here they are located and parsed directly, and the rest of the
 * document (with those two values blanked) still goes through jansson. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/json_fast.h"
#include "tokenizer/util.h"

#define MAX_DEPTH 2048

static void skip_ws(tk_js *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int hex4(const char *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

bool tk_js_string(tk_js *j, tk_buf *out) {
    if (out) out->len = 0;
    if (j->p >= j->end || *j->p != '"') return false;
    j->p++;
    for (;;) {
        const char *run = j->p;
        while (j->p < j->end && *j->p != '"' && *j->p != '\\' && (unsigned char)*j->p >= 0x20 &&
               (unsigned char)*j->p < 0x80)
            j->p++;
        if (out && j->p > run && tk_buf_put(out, run, (size_t)(j->p - run)).code) return false;
        if (j->p >= j->end) return false;
        unsigned char c = (unsigned char)*j->p;
        if (c == '"') {
            j->p++;
            if (out && tk_buf_reserve(out, 0).code) return false;
            if (out) out->p[out->len] = '\0';
            return true;
        }
        if (c < 0x20) return false;
        if (c >= 0x80) {
            uint32_t cp;
            size_t l = tk_utf8_decode((const unsigned char *)j->p, (size_t)(j->end - j->p), &cp);
            if (!l) return false;
            if (out && tk_buf_put(out, j->p, l).code) return false;
            j->p += l;
            continue;
        }
        /* escape */
        if (j->end - j->p < 2) return false;
        char e = j->p[1];
        j->p += 2;
        char ch;
        switch (e) {
        case '"': ch = '"'; break;
        case '\\': ch = '\\'; break;
        case '/': ch = '/'; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case 'u': {
            if (j->end - j->p < 4) return false;
            int v = hex4(j->p);
            if (v < 0) return false;
            j->p += 4;
            uint32_t cp = (uint32_t)v;
            if (v >= 0xD800 && v <= 0xDBFF) {
                if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u') return false;
                int lo = hex4(j->p + 2);
                if (lo < 0xDC00 || lo > 0xDFFF) return false;
                j->p += 6;
                cp = 0x10000 + (((uint32_t)v - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
            } else if (v >= 0xDC00 && v <= 0xDFFF) {
                return false;
            }
            char enc[4];
            size_t l = tk_utf8_encode(cp, enc);
            if (out && tk_buf_put(out, enc, l).code) return false;
            continue;
        }
        default: return false;
        }
        if (out && tk_buf_put(out, &ch, 1).code) return false;
    }
}

static bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

/* Number per the JSON grammar; *is_int set when it has no fraction or
 * exponent, *val then holds it (saturated). */
static bool js_number(tk_js *j, bool *is_int, long long *val) {
    const char *p = j->p;
    bool neg = false;
    if (p < j->end && *p == '-') neg = true, p++;
    if (p >= j->end || !is_digit(*p)) return false;
    long long v = 0;
    bool big = false;
    if (*p == '0') {
        p++;
    } else {
        while (p < j->end && is_digit(*p)) {
            if (v > (1LL << 40))
                big = true;
            else
                v = v * 10 + (*p - '0');
            p++;
        }
    }
    bool integer = true;
    if (p < j->end && *p == '.') {
        integer = false;
        p++;
        if (p >= j->end || !is_digit(*p)) return false;
        while (p < j->end && is_digit(*p))
            p++;
    }
    if (p < j->end && (*p == 'e' || *p == 'E')) {
        integer = false;
        p++;
        if (p < j->end && (*p == '+' || *p == '-')) p++;
        if (p >= j->end || !is_digit(*p)) return false;
        while (p < j->end && is_digit(*p))
            p++;
    }
    j->p = p;
    *is_int = integer && !big;
    *val = neg ? -v : v;
    return true;
}

static bool lit(tk_js *j, const char *w) {
    size_t n = strlen(w);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0) return false;
    j->p += n;
    return true;
}

static bool skip_value(tk_js *j, int depth) {
    if (depth > MAX_DEPTH) return false;
    skip_ws(j);
    if (j->p >= j->end) return false;
    switch (*j->p) {
    case '"': return tk_js_string(j, NULL);
    case 't': return lit(j, "true");
    case 'f': return lit(j, "false");
    case 'n': return lit(j, "null");
    case '[':
        j->p++;
        skip_ws(j);
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            return true;
        }
        for (;;) {
            if (!skip_value(j, depth + 1)) return false;
            skip_ws(j);
            if (j->p >= j->end) return false;
            if (*j->p == ',') {
                j->p++;
                continue;
            }
            if (*j->p == ']') {
                j->p++;
                return true;
            }
            return false;
        }
    case '{':
        j->p++;
        skip_ws(j);
        if (j->p < j->end && *j->p == '}') {
            j->p++;
            return true;
        }
        for (;;) {
            skip_ws(j);
            if (!tk_js_string(j, NULL)) return false;
            skip_ws(j);
            if (j->p >= j->end || *j->p != ':') return false;
            j->p++;
            if (!skip_value(j, depth + 1)) return false;
            skip_ws(j);
            if (j->p >= j->end) return false;
            if (*j->p == ',') {
                j->p++;
                continue;
            }
            if (*j->p == '}') {
                j->p++;
                return true;
            }
            return false;
        }
    default: {
        bool is_int;
        long long v;
        return js_number(j, &is_int, &v);
    }
    }
}

/* Walks an object, calling back on each key with j->p at the value (after
 * whitespace); the callback must consume the value. */
typedef bool (*key_fn)(tk_js *j, const char *key, size_t klen, void *ctx, int depth);

static bool walk_object(tk_js *j, key_fn fn, void *ctx, int depth, tk_buf *key) {
    skip_ws(j);
    if (j->p >= j->end || *j->p != '{') return false;
    j->p++;
    skip_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return true;
    }
    for (;;) {
        skip_ws(j);
        if (!tk_js_string(j, key)) return false;
        skip_ws(j);
        if (j->p >= j->end || *j->p != ':') return false;
        j->p++;
        skip_ws(j);
        if (!fn(j, key->p, key->len, ctx, depth + 1)) return false;
        skip_ws(j);
        if (j->p >= j->end) return false;
        if (*j->p == ',') {
            j->p++;
            continue;
        }
        if (*j->p == '}') {
            j->p++;
            return true;
        }
        return false;
    }
}

typedef struct ranges {
    tk_js_ranges *r;
    const char *base;
    tk_buf key;
} ranges;

static bool model_key(tk_js *j, const char *k, size_t kl, void *ctx, int depth) {
    ranges *rg = ctx;
    size_t start = (size_t)(j->p - rg->base);
    if (!skip_value(j, depth)) return false;
    size_t end = (size_t)(j->p - rg->base);
    if (kl == 5 && !memcmp(k, "vocab", 5)) {
        rg->r->vocab_a = start;
        rg->r->vocab_b = end;
    } else if (kl == 6 && !memcmp(k, "merges", 6)) {
        rg->r->merges_a = start;
        rg->r->merges_b = end;
    }
    return true;
}

static bool root_key(tk_js *j, const char *k, size_t kl, void *ctx, int depth) {
    ranges *rg = ctx;
    if (kl == 5 && !memcmp(k, "model", 5) && j->p < j->end && *j->p == '{') {
        /* a later "model" replaces an earlier one, as in jansson */
        rg->r->vocab_a = rg->r->vocab_b = rg->r->merges_a = rg->r->merges_b = 0;
        tk_buf key = {0};
        bool ok = walk_object(j, model_key, ctx, depth, &key);
        tk_buf_free(&key);
        return ok;
    }
    if (kl == 5 && !memcmp(k, "model", 5))
        rg->r->vocab_a = rg->r->vocab_b = rg->r->merges_a = rg->r->merges_b = 0;
    return skip_value(j, depth);
}

bool tk_js_find_ranges(const char *s, size_t n, tk_js_ranges *r) {
    memset(r, 0, sizeof *r);
    tk_js j = {s, s + n};
    ranges rg = {r, s, {0}};
    bool ok = walk_object(&j, root_key, &rg, 0, &rg.key);
    tk_buf_free(&rg.key);
    if (!ok) return false;
    skip_ws(&j);
    if (j.p != j.end) return false;
    /* only objects/arrays are taken over; anything else is left to jansson
     * so that its type errors are reported as usual */
    if (r->vocab_b == 0 || s[r->vocab_a] != '{') return false;
    if (r->merges_b != 0 && s[r->merges_a] != '[') return false;
    return true;
}

bool tk_js_int(tk_js *j, bool *is_int, long long *v) {
    skip_ws(j);
    return js_number(j, is_int, v);
}

bool tk_js_skip(tk_js *j) {
    return skip_value(j, 0);
}

void tk_js_ws(tk_js *j) {
    skip_ws(j);
}
