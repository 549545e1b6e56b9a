/* cmd_chat.c — `cinfer chat`: an interactive conversation in the terminal
 * (as llama.cpp's conversation mode or `vllm chat`). Each turn renders the
 * whole history with the chat template (the generation prompt added),
 * generates through the engine and streams the reply as it comes; the
 * prefix cache makes the re-sent history cheap. Input is read line by line
 * from stdin, so it works without a terminal too: a line ending in '\'
 * continues on the next line, a line `"""` opens a block closed by another
 * `"""`. Commands: /reset, /system TEXT, /exit (or EOF). Ctrl-C during a
 * reply stops it (the partial reply is kept); at the prompt it exits. */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/chat_session.h"
#include "cli/common.h"
#include "cli/engine_flags.h"
#include "cli/sampling_flags.h"
#include "engine/generate.h"
#include "tokenizer/tokenizer.h"

/* A growable byte buffer (input lines, a reply). */
typedef struct {
    char *p;
    size_t n, cap;
} buf;

static ci_status buf_add(buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 256;
        while (nc < b->n + n + 1)
            nc *= 2;
        char *q = realloc(b->p, nc);
        if (!q) return ci_errorf(CI_ERR_NOMEM, "out of memory");
        b->p = q;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return ci_ok();
}

static volatile sig_atomic_t g_interrupted;
static void on_sigint(int sig) {
    (void)sig;
    g_interrupted = 1;
}

/* Reads one message into *in (emptied first): a line, lines joined by a
 * trailing '\', or a """ block. Returns 0 at EOF with nothing read. */
static int read_message(FILE *f, bool tty, buf *in, char **line, size_t *cap) {
    in->n = 0;
    if (in->p) in->p[0] = '\0';
    bool block = false, any = false;
    if (tty) fputs("> ", stdout), fflush(stdout);
    for (;;) {
        ssize_t got = getline(line, cap, f);
        if (got < 0) return any || in->n > 0;
        any = true;
        size_t n = (size_t)got;
        while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r'))
            n--;
        bool fence = n == 3 && !memcmp(*line, "\"\"\"", 3);
        if (fence && !block && in->n == 0) { /* opens a block */
            block = true;
        } else if (fence && block) { /* closes it */
            return 1;
        } else if (block) { /* lines joined by '\n', none after the last */
            if ((in->n && buf_add(in, "\n", 1).code) || buf_add(in, *line, n).code) return 1;
        } else if (n > 0 && (*line)[n - 1] == '\\') { /* continues */
            if (buf_add(in, *line, n - 1).code || buf_add(in, "\n", 1).code) return 1;
        } else {
            buf_add(in, *line, n);
            return 1;
        }
        if (tty) fputs(". ", stdout), fflush(stdout);
    }
}

typedef struct chat_ctx {
    ci_engine *e;
    ci_chat_session cs;
    ci_engine_sampling sp;
    bool verbose, tty;
    buf reply;
} chat_ctx;

/* One turn: render the history (the user message is its last turn),
 * generate and stream the reply, keep it in the history. */
static ci_status reply_turn(chat_ctx *c) {
    char *prompt = NULL;
    size_t plen = 0;
    int32_t *ids = NULL;
    size_t nids = 0;
    ci_status s = ci_chat_session_render(&c->cs, &prompt, &plen);
    /* the template writes BOS etc. itself, as apply_chat_template does */
    if (!s.code)
        s = ci_tokenizer_encode(ci_engine_tokenizer(c->e), prompt, plen, false, &ids, &nids);
    int ctx = ci_engine_max_model_len(c->e);
    if (!s.code && (long)nids >= ctx)
        s = ci_errorf(CI_ERR_CAPACITY,
                      "the conversation has %zu tokens; the context is %d (/reset to start over)",
                      nids, ctx);
    if (!s.code && c->verbose)
        fprintf(stderr, "[prompt: %zu tokens]\n%s\n[/prompt]\n", nids, prompt);
    free(prompt);
    ci_engine_sampling sp = c->sp;
    if (sp.max_tokens > ctx - (int)nids) sp.max_tokens = ctx - (int)nids;
    int64_t id = 0;
    if (!s.code) s = ci_engine_add_request(c->e, ids, (int)nids, &sp, 0, &id);
    free(ids);
    c->reply.n = 0;
    if (c->reply.p) c->reply.p[0] = '\0';
    int ntok = 0;
    double t0 = ci_now();
    bool aborted = false;
    g_interrupted = 0;
    while (!s.code && ci_engine_has_unfinished(c->e)) {
        if (g_interrupted && !aborted) {
            ci_engine_abort(c->e, id);
            aborted = true;
        }
        const ci_engine_output *o;
        int k;
        s = ci_engine_step(c->e, &o, &k);
        for (int i = 0; !s.code && i < k; i++) {
            ntok += o[i].num_token_ids;
            if (!o[i].text_len) continue;
            fwrite(o[i].text, 1, o[i].text_len, stdout);
            fflush(stdout);
            s = buf_add(&c->reply, o[i].text, o[i].text_len);
        }
    }
    if (!s.code || c->reply.n) fputc('\n', stdout);
    fflush(stdout);
    if (s.code) return s;
    if (c->verbose) {
        double dt = ci_now() - t0;
        fprintf(stderr, "[%d tokens, %.1f tok/s%s]\n", ntok, dt > 0 ? ntok / dt : 0.0,
                aborted ? ", interrupted" : "");
    }
    return ci_chat_session_add(&c->cs, "assistant", c->reply.p ? c->reply.p : "", c->reply.n);
}

/* A /command: returns 1 to exit, 0 when handled, -1 when not a command. */
static int command(chat_ctx *c, const char *in) {
    if (!strcmp(in, "/exit") || !strcmp(in, "/quit")) return 1;
    if (!strcmp(in, "/reset")) {
        ci_chat_session_reset(&c->cs);
        fprintf(stderr, "[history cleared]\n");
        return 0;
    }
    if (!strncmp(in, "/system", 7) && (in[7] == '\0' || in[7] == ' ' || in[7] == '\n')) {
        const char *t = in[7] ? in + 8 : "";
        ci_status s = ci_chat_session_set_system(&c->cs, t);
        if (s.code)
            fprintf(stderr, "error: %s\n", s.msg);
        else
            fprintf(stderr, *t ? "[system message set]\n" : "[system message removed]\n");
        return 0;
    }
    if (in[0] == '/' && in[1] && in[1] != '/') {
        fprintf(stderr,
                "unknown command %s (/reset, /system TEXT, /exit; start with // to send "
                "a message beginning with /)\n",
                in);
        return 0;
    }
    return -1;
}

int cmd_chat(int argc, char **argv) {
    const char *model_dir = NULL, *system = NULL, *tmpl = NULL;
    bool verbose = false;
    ci_sampling_flags sf = ci_sampling_flags_default(1024);
    ci_engine_flags ef = ci_engine_flags_default();
    const ci_arg args[] = {
        {"--model", "-m", CI_ARG_STR, &model_dir, "DIR", "Hugging Face model directory"},
        {"--system", NULL, CI_ARG_STR, &system, "TEXT", "system message (/system changes it)"},
        {"--chat-template", NULL, CI_ARG_STR, &tmpl, "FILE",
         "this Jinja template instead of the model's"},
        {"--verbose-prompt", NULL, CI_ARG_FLAG, &verbose, "",
         "print each rendered prompt and its token count, and reply speeds, on stderr"},
        CI_SAMPLING_FLAG_ARGS(sf),
        CI_ENGINE_FLAG_ARGS(ef),
    };
    const char *usage =
        "usage: cinfer chat -m DIR [--system TEXT] [options]\n"
        "An interactive chat with the model's chat template; replies stream as they are\n"
        "generated and the conversation is kept across turns. Reads stdin line by line (a\n"
        "terminal or a pipe). A line ending in \\ continues on the next line; a line \"\"\"\n"
        "starts a block that ends at the next \"\"\" line. Commands: /reset (forget the\n"
        "conversation), /system TEXT (set the system message; /system alone removes it),\n"
        "/exit (or EOF). Ctrl-C stops a reply. --max-tokens (default 1024) bounds a reply.";
    ci_status s = ci_ok();
    ci_args_result r = ci_args_parse(usage, args, sizeof args / sizeof args[0], argc, argv, &s);
    if (r == CI_ARGS_HELP) return 0;
    if (r == CI_ARGS_ERROR) return ci_cli_fail(s);
    if (!model_dir) return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "chat: -m DIR is required"));
    chat_ctx c = {0};
    s = ci_sampling_flags_params(&sf, &c.sp);
    if (s.code) return ci_cli_fail(s);
    if (c.sp.seed < 0) c.sp.seed = (int64_t)time(NULL);
    ci_engine_config ec;
    s = ci_engine_flags_config(&ef, model_dir, &ec);
    if (s.code) return ci_cli_fail(s);
    /* one conversation: the KV cache holds one sequence unless told otherwise */
    if (ef.max_num_seqs == CI_FLAG_DEVICE_DEFAULT) ec.max_num_seqs = 1;
    s = ci_chat_session_open(&c.cs, model_dir, tmpl);
    if (s.code) return ci_cli_fail(s);
    s = ci_chat_session_set_system(&c.cs, system);
    if (!s.code) s = ci_cli_engine_create(&ec, &c.e);
    if (s.code) {
        ci_chat_session_close(&c.cs);
        return ci_cli_fail(s);
    }
    c.verbose = verbose;
    c.tty = isatty(STDIN_FILENO);
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    if (c.tty)
        fprintf(stderr, "cinfer chat: /reset, /system TEXT, /exit; end a line with \\ or use "
                        "\"\"\" for several lines\n");
    buf in = {0};
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    while (read_message(stdin, c.tty, &in, &line, &cap)) {
        const char *msg = in.p ? in.p : "";
        int cmd = command(&c, msg);
        if (cmd > 0) break;
        if (cmd == 0 || !*msg) continue;
        if (msg[0] == '/' && msg[1] == '/') msg++; /* "//x" sends "/x" */
        s = ci_chat_session_add(&c.cs, "user", msg, strlen(msg));
        if (!s.code) {
            sigaction(SIGINT, &sa, NULL); /* Ctrl-C stops the reply, not the program */
            s = reply_turn(&c);
            signal(SIGINT, SIG_DFL);
        }
        if (s.code) {
            ci_chat_session_pop(&c.cs); /* the user turn that got no reply */
            fprintf(stderr, "error: %s\n", s.msg);
            if (s.code != CI_ERR_INVALID && s.code != CI_ERR_CAPACITY) {
                rc = 1; /* an engine fault: stop */
                break;
            }
        }
    }
    free(line);
    free(in.p);
    free(c.reply.p);
    ci_engine_destroy(c.e);
    ci_chat_session_close(&c.cs);
    return rc;
}
