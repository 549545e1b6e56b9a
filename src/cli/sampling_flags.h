/* sampling_flags.h — the sampling options of the commands that generate
 * (generate, chat): parsed into ci_sampling_flags, checked with option
 * names in the messages, and turned into engine sampling parameters. */
#ifndef CINFER_CLI_SAMPLING_FLAGS_H
#define CINFER_CLI_SAMPLING_FLAGS_H

#include <stdbool.h>

#include "cli/args.h"
#include "engine/engine.h"

typedef struct ci_sampling_flags {
    long max_tokens, top_k, seed;
    double temperature, top_p, min_p;
    double repetition_penalty, presence_penalty, frequency_penalty;
    bool ignore_eos;
    ci_arg_list stop;
} ci_sampling_flags;

/* temperature 1, everything off, seed -1, no stop strings. */
ci_sampling_flags ci_sampling_flags_default(long max_tokens);

#define CI_SAMPLING_FLAG_ARGS(f)                                                                     \
    {"--max-tokens", "-n", CI_ARG_INT, &(f).max_tokens, "N", "tokens to generate"},                  \
        {"--temperature", NULL, CI_ARG_FLOAT, &(f).temperature, "T", "0 = greedy (default 1.0)"},    \
        {"--top-k", NULL, CI_ARG_INT, &(f).top_k, "K", "keep the K most likely tokens (0 = off)"},   \
        {"--top-p", NULL, CI_ARG_FLOAT, &(f).top_p, "P", "nucleus sampling mass (default 1 = off)"}, \
        {"--min-p",  NULL, CI_ARG_FLOAT,                                                             \
         &(f).min_p, "P",  "drop tokens below P * max prob (0 = off)"},                              \
        {"--repetition-penalty",                                                                     \
         NULL,                                                                                       \
         CI_ARG_FLOAT,                                                                               \
         &(f).repetition_penalty,                                                                    \
         "R",                                                                                        \
         "HF repetition penalty over prompt + output, > 0 (default 1 = off)"},                       \
        {"--presence-penalty",                                                                       \
         NULL,                                                                                       \
         CI_ARG_FLOAT,                                                                               \
         &(f).presence_penalty,                                                                      \
         "P",                                                                                        \
         "OpenAI presence penalty over the output, [-2, 2] (default 0)"},                            \
        {"--frequency-penalty",                                                                      \
         NULL,                                                                                       \
         CI_ARG_FLOAT,                                                                               \
         &(f).frequency_penalty,                                                                     \
         "P",                                                                                        \
         "OpenAI frequency penalty over the output, [-2, 2] (default 0)"},                           \
        {"--stop",  NULL,  CI_ARG_STRS,                                                              \
         &(f).stop, "STR", "stop at this string (not part of the output)"},                          \
        {"--seed", NULL, CI_ARG_INT, &(f).seed, "S", "sampling seed (default: from the clock)"}, {   \
        "--ignore-eos", NULL, CI_ARG_FLAG, &(f).ignore_eos, "", "do not stop at EOS"                 \
    }

/* Checks the values (messages name the option) and fills *sp from the
 * engine defaults; sp->stop points into f (keep f alive). seed -1 stays
 * -1 (derived from the request id). */
ci_status ci_sampling_flags_params(const ci_sampling_flags *f, ci_engine_sampling *sp);

#endif
