/* jinja_names.c — the filter and test names the interpreter knows, checked
 * over a parsed template as Jinja2 checks them when it compiles one. */
#include <string.h>

#include "tokenizer/jinja_internal.h"

/* Jinja2 resolves filter and test names at compile time. */
static const char *const FILTERS[] = {
    "abs",    "attr",       "batch",       "capitalize", "center",   "count",
    "d",      "default",    "dictsort",    "e",          "escape",   "filesizeformat",
    "first",  "float",      "forceescape", "format",     "groupby",  "indent",
    "int",    "items",      "join",        "last",       "length",   "list",
    "lower",  "map",        "max",         "min",        "pprint",   "random",
    "reject", "rejectattr", "replace",     "reverse",    "round",    "safe",
    "select", "selectattr", "slice",       "sort",       "string",   "striptags",
    "sum",    "title",      "tojson",      "trim",       "truncate", "unique",
    "upper",  "urlencode",  "urlize",      "wordcount",  "wordwrap", "xmlattr",
    "keys",   "values",     NULL};
static const char *const TESTS[] = {
    "boolean", "callable", "defined",  "divisibleby", "eq",    "equalto",  "escaped",
    "even",    "false",    "filter",   "float",       "ge",    "gt",       "greaterthan",
    "in",      "integer",  "iterable", "le",          "lower", "lessthan", "lt",
    "mapping", "ne",       "none",     "number",      "odd",   "sameas",   "sequence",
    "string",  "test",     "true",     "undefined",   "upper", "==",       "!=",
    "<",       "<=",       ">",        ">=",          NULL};

static bool known(const char *const *names, const char *s, size_t n) {
    for (int i = 0; names[i]; i++)
        if (strlen(names[i]) == n && !memcmp(names[i], s, n)) return true;
    return false;
}

/* Jinja2 resolves filter and test names when it compiles the template,
 * except inside "soft" frames (if statements, inline if-expressions),
 * where an unknown name fails only when it runs. */
static ci_status check_names(const jn_node *n, bool soft, int depth) {
    if (!n) return ci_ok();
    if (depth > 4 * JN_MAX_PARSE_DEPTH)
        return ci_errorf(CI_ERR_FORMAT, "chat template line %d: template nested too deeply",
                         n->line);
    if ((n->kind == JN_FILTER && !known(FILTERS, n->str, n->slen)) ||
        (n->kind == JN_TEST && !known(TESTS, n->str, n->slen))) {
        if (!soft)
            return ci_errorf(CI_ERR_FORMAT, "chat template line %d: no %s named '%s'", n->line,
                             n->kind == JN_FILTER ? "filter" : "test", n->str);
    }
    bool s_a = soft, s_b = soft, s_c = soft, s_d = soft, s_t = soft, s_k = soft;
    switch (n->kind) {
    case JN_IF:
    case JN_COND: s_a = s_b = s_c = true; break;
    case JN_FOR: s_b = s_c = s_d = s_t = false; break;
    case JN_MACRO: s_b = s_k = false; break;
    case JN_CALLBLOCK: s_b = s_k = false; break;
    case JN_FILTERBLOCK: s_a = s_b = false; break;
    case JN_WITH: s_b = false; break;
    case JN_SET:
        if (!n->a) s_b = s_c = false;
        break;
    default: break;
    }
    CI_TRY(check_names(n->a, s_a, depth + 1));
    CI_TRY(check_names(n->b, s_b, depth + 1));
    CI_TRY(check_names(n->c, s_c, depth + 1));
    CI_TRY(check_names(n->d, s_d, depth + 1));
    CI_TRY(check_names(n->t, s_t, depth + 1));
    for (size_t i = 0; i < n->nkids; i++)
        CI_TRY(check_names(n->kids[i], s_k, depth + 1));
    return ci_ok();
}

ci_status jn_check_names(const jn_node *root) {
    return check_names(root, false, 0);
}
