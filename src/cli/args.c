#include "cli/args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ci_args_print_help(const char *usage, const ci_arg *args, int nargs) {
    printf("%s\n\noptions:\n", usage);
    for (int i = 0; i < nargs; i++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s %s", args[i].alias ? args[i].alias : "",
                 args[i].alias ? ", " : "", args[i].name,
                 args[i].kind == CI_ARG_FLAG ? "" : args[i].metavar);
        printf("  %-30s %s%s\n", left, args[i].help,
               args[i].kind == CI_ARG_STRS ? " (repeatable)" : "");
    }
    printf("  %-30s %s\n", "-h, --help", "show this help");
}

static ci_status parse_value(const ci_arg *a, const char *v) {
    char *end = NULL;
    errno = 0;
    switch (a->kind) {
    case CI_ARG_STR: *(const char **)a->dest = v; break;
    case CI_ARG_INT: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end)
            return ci_errorf(CI_ERR_INVALID, "option %s expects an integer, got '%s'", a->name, v);
        *(long *)a->dest = x;
        break;
    }
    case CI_ARG_FLOAT: {
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x))
            return ci_errorf(CI_ERR_INVALID, "option %s expects a number, got '%s'", a->name, v);
        *(double *)a->dest = x;
        break;
    }
    case CI_ARG_FLAG: *(bool *)a->dest = true; break;
    case CI_ARG_STRS: {
        ci_arg_list *l = a->dest;
        if (l->n >= CI_ARG_LIST_MAX)
            return ci_errorf(CI_ERR_INVALID, "option %s given more than %d times", a->name,
                             CI_ARG_LIST_MAX);
        l->v[l->n++] = v;
        break;
    }
    }
    return ci_ok();
}

ci_args_result ci_args_parse(const char *usage, const ci_arg *args, int nargs, int argc,
                             char **argv, ci_status *err) {
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
            ci_args_print_help(usage, args, nargs);
            return CI_ARGS_HELP;
        }
        const char *inline_val = NULL;
        char name[64];
        const char *eq = strncmp(s, "--", 2) == 0 ? strchr(s, '=') : NULL;
        if (eq && (size_t)(eq - s) < sizeof name) {
            memcpy(name, s, (size_t)(eq - s));
            name[eq - s] = '\0';
            inline_val = eq + 1;
            s = name;
        }
        const ci_arg *a = NULL;
        for (int k = 0; k < nargs && !a; k++)
            if (!strcmp(s, args[k].name) || (args[k].alias && !strcmp(s, args[k].alias)))
                a = &args[k];
        if (!a) {
            *err = ci_errorf(CI_ERR_INVALID, "unknown option '%s' (see --help)", argv[i]);
            return CI_ARGS_ERROR;
        }
        if (a->kind == CI_ARG_FLAG) {
            if (inline_val) {
                *err = ci_errorf(CI_ERR_INVALID, "option %s takes no value", a->name);
                return CI_ARGS_ERROR;
            }
            *(bool *)a->dest = true;
            continue;
        }
        const char *v = inline_val;
        if (!v) {
            if (i + 1 >= argc) {
                *err = ci_errorf(CI_ERR_INVALID, "option %s needs a value", a->name);
                return CI_ARGS_ERROR;
            }
            v = argv[++i];
        }
        *err = parse_value(a, v);
        if (err->code) return CI_ARGS_ERROR;
    }
    return CI_ARGS_OK;
}
