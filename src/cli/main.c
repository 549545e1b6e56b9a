/* main.c — `cinfer` subcommand dispatch. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf("usage: cinfer <generate|tokenize|detokenize|perplexity> [options]\n");
        return argc < 2 ? 1 : 0;
    }
    fprintf(stderr, "error: unknown command '%s'\n", argv[1]);
    return 1;
}
