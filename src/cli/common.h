/* common.h — helpers shared by the subcommands. */
#ifndef CINFER_CLI_COMMON_H
#define CINFER_CLI_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/status.h"

/* Prints "error: <msg>" on one line to stderr; returns the exit code 1. */
int ci_cli_fail(ci_status s);

/* Reads a whole stream (NUL-terminated). */
ci_status ci_read_stream(FILE *f, const char *what, char **out, size_t *len);
ci_status ci_read_path(const char *path, char **out, size_t *len);
/* A text file (path "-": stdin) that must hold no NUL byte (a template, a
 * prompt): NUL-terminated, malloc'd. */
ci_status ci_read_text(const char *path, char **out);

/* xorshift64: the benchmarks' seeded generator (random prompts, arrival
 * times); the state must be nonzero. */
uint64_t ci_cli_xorshift(uint64_t *s);

/* The offline benchmarks' requests: n prompts of input_len random token ids
 * (below vocab - 256, clear of special tokens) from *rng, greedy,
 * ignore_eos, output_len new tokens each; their ids go to ids_out[n] when it
 * is not NULL. *queued counts the ones added. */
typedef struct ci_engine ci_engine;
ci_status ci_cli_add_random_requests(ci_engine *e, long n, long input_len, long output_len,
                                     uint64_t *rng, int64_t *ids_out, long *queued);

/* Subcommands: argv[0] is the subcommand name. */
int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_bench_latency(int argc, char **argv); /* argv[0] = "latency" */
int cmd_bench_serve(int argc, char **argv);   /* `cinfer bench serve` */
int cmd_serve(int argc, char **argv);
int cmd_render_chat(int argc, char **argv);

#endif
