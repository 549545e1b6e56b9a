/* tok_json.c — typed members of tokenizer.json objects (jansson), with
 * errors that name the member's path. */
#include <string.h>

#include "tokenizer/tok_json.h"
#include "tokenizer/util.h"

ci_status tk_json_str(json_t *obj, const char *key, const char *path, bool required, const char **s,
                      size_t *len) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *s = NULL;
        *len = 0;
        if (required) return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s.%s: missing", path, key);
        return ci_ok();
    }
    if (!json_is_string(v))
        return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s.%s: expected a string", path, key);
    *s = json_string_value(v);
    *len = json_string_length(v);
    return ci_ok();
}

ci_status tk_json_bool(json_t *obj, const char *key, const char *path, bool dflt, bool *out) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return ci_ok();
    }
    if (!json_is_boolean(v))
        return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s.%s: expected a boolean", path, key);
    *out = json_is_true(v);
    return ci_ok();
}

ci_status tk_json_metaspace(json_t *j, const char *path, char rep[8], size_t *rep_len,
                            int *prepend_scheme) {
    const char *r = NULL;
    size_t rl = 0;
    CI_TRY(tk_json_str(j, "replacement", path, true, &r, &rl));
    uint32_t cp = 0;
    if (rl == 0 || rl > 4 || tk_utf8_decode((const unsigned char *)r, rl, &cp) != rl)
        return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s.replacement: expected one character",
                         path);
    memcpy(rep, r, rl);
    *rep_len = rl;
    json_t *ps = json_object_get(j, "prepend_scheme");
    if (ps && !json_is_null(ps)) {
        const char *v = json_string_value(ps);
        if (!v)
            return ci_errorf(CI_ERR_FORMAT, "tokenizer.json: %s.prepend_scheme: expected a string",
                             path);
        if (!strcmp(v, "always"))
            *prepend_scheme = TK_PREPEND_ALWAYS;
        else if (!strcmp(v, "first"))
            *prepend_scheme = TK_PREPEND_FIRST;
        else if (!strcmp(v, "never"))
            *prepend_scheme = TK_PREPEND_NEVER;
        else
            return ci_errorf(CI_ERR_FORMAT,
                             "tokenizer.json: %s.prepend_scheme: unknown value \"%s\"", path, v);
    } else {
        bool aps = false;
        CI_TRY(tk_json_bool(j, "add_prefix_space", path, true, &aps));
        *prepend_scheme = aps ? TK_PREPEND_ALWAYS : TK_PREPEND_NEVER;
    }
    return ci_ok();
}
