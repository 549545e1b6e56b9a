/* args.h — a small table-driven option parser shared by the subcommands. */
#ifndef CINFER_CLI_ARGS_H
#define CINFER_CLI_ARGS_H

#include <stdbool.h>

#include "util/status.h"

typedef enum ci_arg_kind {
    CI_ARG_FLAG,
    CI_ARG_STR,
    CI_ARG_INT,
    CI_ARG_FLOAT,
    CI_ARG_STRS /* repeatable: each use appends to a ci_arg_list */
} ci_arg_kind;

#define CI_ARG_LIST_MAX 16
typedef struct ci_arg_list {
    const char *v[CI_ARG_LIST_MAX];
    int n;
} ci_arg_list;

typedef struct ci_arg {
    const char *name;  /* "--model" */
    const char *alias; /* "-m" or NULL */
    ci_arg_kind kind;
    void *dest; /* bool*, const char**, long*, double*, ci_arg_list* */
    const char *metavar;
    const char *help;
} ci_arg;

typedef enum ci_args_result { CI_ARGS_OK, CI_ARGS_HELP, CI_ARGS_ERROR } ci_args_result;

/* Parses argv[1..] (argv[0] is the subcommand). On CI_ARGS_HELP the usage
 * has been printed to stdout; on error *err says which option. */
ci_args_result ci_args_parse(const char *usage, const ci_arg *args, int nargs, int argc,
                             char **argv, ci_status *err);
void ci_args_print_help(const char *usage, const ci_arg *args, int nargs);

#endif
