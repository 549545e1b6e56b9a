/* models.c — GET /v1/models (the one served model) and GET
 * /v1/models/{id} (that model object, or a 404 OpenAI error for any other
 * id), as OpenAI and vLLM answer them. */
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>

#include "server/http_response.h"

static json_t *model_object(srv_ctx *ctx) {
    json_t *m = json_object();
    json_object_set_new(m, "id", json_string(ctx->model_name));
    json_object_set_new(m, "object", json_string("model"));
    json_object_set_new(m, "created", json_integer(ctx->started));
    json_object_set_new(m, "owned_by", json_string("cinfer"));
    json_object_set_new(m, "root", json_string(ctx->cfg->model_dir));
    json_object_set_new(m, "parent", json_null());
    if (ctx->max_model_len > 0)
        json_object_set_new(m, "max_model_len", json_integer(ctx->max_model_len));
    return m;
}

static void list_models(srv_ctx *ctx, struct evhttp_request *req) {
    json_t *data = json_array();
    json_array_append_new(data, model_object(ctx));
    json_t *o = json_object();
    json_object_set_new(o, "object", json_string("list"));
    json_object_set_new(o, "data", data);
    srv_send_json(ctx, req, 200, o);
}

/* GET /v1/models/{id} (the id percent-decoded; it may contain '/') */
static void one_model(srv_ctx *ctx, struct evhttp_request *req) {
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    char *id = path ? evhttp_uridecode(path + strlen("/v1/models/"), 0, NULL) : NULL;
    if (!id) {
        srv_send_errorf(ctx, req, 500, NULL, "out of memory");
        return;
    }
    if (strcmp(id, ctx->model_name)) {
        srv_err e;
        srv_errf(&e, 404, "model",
                 "The model '%.100s' does not exist (this server serves '%.100s')", id,
                 ctx->model_name);
        srv_send_error(ctx, req, &e);
    } else {
        srv_send_json(ctx, req, 200, model_object(ctx));
    }
    free(id);
}

void srv_handle_models(srv_ctx *ctx, struct evhttp_request *req, int one) {
    if (one)
        one_model(ctx, req);
    else
        list_models(ctx, req);
}
