/* main.c — `cinfer` subcommand dispatch. */
#include <stdio.h>
#include <string.h>

#include "cinfer_version.h"
#include "cli/common.h"

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} ci_command;

static const ci_command COMMANDS[] = {
    {"generate", cmd_generate, "generate text from a prompt"},
    {"chat", cmd_chat, "interactive chat in the terminal (the model's chat template)"},
    {"tokenize", cmd_tokenize, "text on stdin -> token ids (JSON)"},
    {"detokenize", cmd_detokenize, "token ids (JSON) on stdin -> text"},
    {"perplexity", cmd_perplexity, "mean NLL / perplexity of a text file"},
    {"bench", cmd_bench,
     "benchmarks: bench throughput (offline), latency (one batch), serve (online)"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server"},
    {"render-chat", cmd_render_chat, "chat request (JSON) on stdin -> prompt text"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: cinfer <command> [options]   (cinfer <command> --help for details)\n"
               "       cinfer --version\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(f, "  %-12s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("cinfer %s (commit %s)\nbackends: %s\n", CINFER_VERSION, CINFER_GIT_COMMIT,
               CINFER_BACKENDS);
        return 0;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "error: unknown command '%s' (try 'cinfer --help')\n", argv[1]);
    return 1;
}
