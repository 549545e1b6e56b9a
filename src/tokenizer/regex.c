/* regex.c — the PCRE2 patterns of tokenizer.json (Split pre-tokenizers,
 * Replace normalizers): compiling (UTF+UCP, JIT) and replacing. */
#include "tokenizer/regex.h"

ci_status tk_regex_compile(const char *pat, size_t len, bool literal, pcre2_code **out,
                           const char *what) {
    int err;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP;
    if (literal) opts = PCRE2_UTF | PCRE2_LITERAL;
    if (tk_utf8_validate(pat, len) != len)
        return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s: pattern is not valid UTF-8", what);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, len, opts, &err, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[120];
        pcre2_get_error_message(err, msg, sizeof msg);
        return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s: bad regex at offset %zu: %s", what,
                         (size_t)off, (const char *)msg);
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    *out = re;
    return ci_ok();
}

ci_status tk_regex_next(const pcre2_code *re, pcre2_match_data *md, const char *s, size_t n,
                        size_t pos, int *found, size_t *ms, size_t *me) {
    *found = 0;
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) return ci_ok();
    if (rc < 0) {
        PCRE2_UCHAR msg[120];
        pcre2_get_error_message(rc, msg, sizeof msg);
        return ci_errorf(CI_ERR_INVALID, "regex match failed: %s", (const char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *found = 1;
    *ms = ov[0];
    *me = ov[1];
    return ci_ok();
}

/* Replaces every match of re in s by rep. */
ci_status tk_regex_replace(const pcre2_code *re, const char *s, size_t n, const char *rep,
                           size_t rep_len, tk_buf *out, size_t limit) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) return ci_errorf(CI_ERR_NOMEM, "out of memory");
    size_t pos = 0, last = 0;
    ci_status st = ci_ok();
    while (pos <= n) {
        int found;
        size_t ms, me;
        if ((st = tk_regex_next(re, md, s, n, pos, &found, &ms, &me)).code) goto done;
        if (!found || me < ms) break;
        if ((st = tk_buf_put(out, s + last, ms - last)).code) goto done;
        if ((st = tk_buf_put(out, rep, rep_len)).code) goto done;
        if (out->len > limit) {
            st = ci_errorf(CI_ERR_INVALID, "normalizer: output too large");
            goto done;
        }
        last = me;
        if (me == ms) {
            if (me >= n) break;
            /* empty match: copy one char and move on */
            size_t l = tk_utf8_len((unsigned char)s[me]);
            if ((st = tk_buf_put(out, s + me, l)).code) goto done;
            last = pos = me + l;
        } else {
            pos = me;
        }
    }
    st = tk_buf_put(out, s + last, n - last);
done:
    pcre2_match_data_free(md);
    return st;
}
