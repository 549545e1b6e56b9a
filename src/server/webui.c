/* webui.c — GET /: a chat page (HTML + JS, no external resources) that
 * streams from /v1/chat/completions. */
#include <event2/http.h>
#include <string.h>

#include "server/http_response.h"
#include "server/webui.h"

static int g_webui_on = 1;

void srv_webui_set_enabled(int on) {
    g_webui_on = on;
}

int srv_webui_handle(srv_ctx *ctx, struct evhttp_request *req, const char *path) {
    if (!g_webui_on || (strcmp(path, "/") && strcmp(path, "/index.html"))) return 0;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) return 0;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_add_header(h, "Content-Security-Policy",
                      "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'");
    srv_send_body(ctx, req, 200, "text/html; charset=utf-8", (const char *)ci_webui_page,
                  ci_webui_page_len);
    return 1;
}
