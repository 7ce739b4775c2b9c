/*
 * Endpoint handlers for the KServe v2 REST API, /predict and /healthz.
 */
#include "http/handlers.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codec/json.h"
#include "codec/raw.h"

#define ERROR_BYTES 1024

int oxs__http_status_code(oxs_status_t status, bool *retry_after)
{
    *retry_after = false;
    switch (status) {
    case OXS_OK:
        return 200;
    case OXS_ERR_INVALID_ARGUMENT:
    case OXS_ERR_UNSUPPORTED:
        return 400;
    case OXS_ERR_NOT_FOUND:
        return 404;
    case OXS_ERR_TOO_LARGE:
        return 413;
    case OXS_ERR_QUEUE_FULL:
        *retry_after = true;
        return 503;
    case OXS_ERR_UNAVAILABLE:
    case OXS_ERR_SHUTTING_DOWN:
        return 503;
    case OXS_ERR_TIMEOUT:
        return 504;
    case OXS_ERR_CANCELED:
        return 499; /* logged only: the client closed its connection */
    case OXS_ERR_RUNTIME:
    case OXS_ERR_OUT_OF_MEMORY:
    case OXS_ERR_INTERNAL:
        return 500;
    }
    return 500;
}

const char *oxs__http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 499:
        return "Client Closed Request";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Replies */

__attribute__((format(printf, 3, 4))) static void reply_error(oxs__http_exchange_t *exchange,
                                                              int status, const char *format, ...)
{
    char message[ERROR_BYTES];
    va_list args;

    va_start(args, format);
    vsnprintf(message, sizeof(message), format, args);
    va_end(args);

    exchange->status = status;
    oxs_buf_reset(exchange->out);
    oxs_json_encode_error(exchange->out, message);
    oxs_buf_reset(exchange->error);
    oxs_buf_puts(exchange->error, message);
}

/* Replies with the HTTP status of a library status and its message (or the default one). */
static void reply_status(oxs__http_exchange_t *exchange, oxs_status_t status, const char *message)
{
    bool retry_after;
    int code = oxs__http_status_code(status, &retry_after);

    if (message == NULL || message[0] == '\0')
        message = oxs_status_message(status);
    reply_error(exchange, code, "%s", message);
    exchange->retry_after = retry_after;
}

static void set_log_model(oxs__http_exchange_t *exchange, const char *name)
{
    oxs_buf_reset(exchange->model);
    oxs_buf_puts(exchange->model, name);
}

/* ------------------------------------------------------------------------------------------ */
/* Models */

/* Finds the route's model; on failure replies and returns NULL. The caller releases the model. */
static oxs_model_t *find_model(oxs__http_exchange_t *exchange, const char *name, int64_t version)
{
    oxs_model_t *model = NULL;
    oxs_status_t status;

    set_log_model(exchange, name);
    status = oxs_server_get_model(exchange->ctx->server, name, version, &model);
    if (status == OXS_ERR_NOT_FOUND) {
        if (version > 0)
            reply_error(exchange, 404, "model \"%s\" version %" PRId64 " not found", name, version);
        else
            reply_error(exchange, 404, "model \"%s\" not found", name);
        return NULL;
    }
    if (status != OXS_OK) {
        reply_status(exchange, status, NULL);
        return NULL;
    }
    return model;
}

/* Replies 503 and returns false unless the model is READY. */
static bool require_ready(oxs__http_exchange_t *exchange, const oxs_model_t *model)
{
    oxs_model_state_t state = oxs_model_state(model);
    const char *reason = oxs_model_state_reason(model);

    if (state == OXS_MODEL_READY)
        return true;
    reply_error(exchange, 503, "model \"%s\" version %" PRId64 " is %s, not READY%s%s",
                oxs_model_name(model), oxs_model_version(model), oxs_model_state_name(state),
                reason[0] != '\0' ? ": " : "", reason);
    return false;
}

/* Returns true when every registered model is READY. */
static bool all_models_ready(oxs_server_t *server)
{
    size_t count = oxs_server_model_count(server);

    for (size_t i = 0; i < count; i++) {
        oxs_model_t *model = NULL;
        bool ready;

        if (oxs_server_model_at(server, i, &model) != OXS_OK)
            continue; /* unregistered since the count was read */
        ready = oxs_model_state(model) == OXS_MODEL_READY;
        oxs_model_release(model);
        if (!ready)
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Inference */

/* Creates a request for model, decodes the body into it and submits it. On success the
 * exchange's status stays 0 and the session sends the response when the inference completes. */
static void submit_inference(oxs__http_exchange_t *exchange, oxs_model_t *model,
                             oxs__http_encoding_t encoding)
{
    oxs_request_t *request = NULL;
    oxs_json_reply_t *reply = NULL;
    char error[ERROR_BYTES] = "";
    oxs_status_t status;

    if (!require_ready(exchange, model))
        return;
    if (encoding == OXS__ENCODE_PREDICT && exchange->json_len >= 0) {
        reply_error(exchange, 400,
                    "Inference-Header-Content-Length: the binary data extension is served on "
                    "/v2/models/{name}/infer, not on /predict");
        return;
    }

    status = oxs_request_create(exchange->ctx->server, model, &request);
    if (status != OXS_OK) {
        reply_status(exchange, status, NULL);
        goto cleanup;
    }
    /* The header first, so that a timeout parameter in the body overrides it. */
    if (exchange->timeout_ms >= 0) {
        status = oxs_request_set_timeout_us(request, exchange->timeout_ms * 1000, error,
                                            sizeof(error));
        if (status != OXS_OK) {
            reply_status(exchange, status, error);
            goto cleanup;
        }
    }
    if (encoding == OXS__ENCODE_PREDICT) {
        status = oxs_request_set_id(request, exchange->request_id, strlen(exchange->request_id));
        if (status != OXS_OK) {
            reply_status(exchange, status, NULL);
            goto cleanup;
        }
        status = oxs_json_decode_predict(request, exchange->body, exchange->body_len, error,
                                         sizeof(error));
    } else if (exchange->json_len == 0) {
        status = oxs_raw_decode_infer(request, exchange->body, exchange->body_len, error,
                                      sizeof(error));
        /* A raw request has no JSON to ask for JSON outputs, so every output goes as bytes. */
        reply = oxs_json_reply_create(request, true);
        if (status == OXS_OK && reply == NULL)
            status = OXS_ERR_OUT_OF_MEMORY;
    } else {
        size_t json_len = exchange->json_len > 0 ? (size_t)exchange->json_len : exchange->body_len;
        status = oxs_json_decode_infer(request, exchange->body, exchange->body_len, json_len,
                                       &reply, error, sizeof(error));
    }
    if (status != OXS_OK) {
        reply_status(exchange, status, error);
        goto cleanup;
    }

    status = oxs__http_session_submit(exchange->session, request, encoding, reply, error,
                                      sizeof(error));
    if (status != OXS_OK) {
        reply_status(exchange, status, error);
        goto cleanup;
    }
    request = NULL; /* owned by the library until the completion */
    exchange->status = 0;

cleanup:
    if (request != NULL)
        oxs_request_destroy(request);
}

int oxs__http_encode_result(oxs__http_encoding_t encoding, const oxs_json_reply_t *reply,
                            const oxs_response_t *response, oxs_buf_t *out, oxs_buf_t *error,
                            bool *retry_after, size_t *json_len)
{
    oxs_status_t status = oxs_response_status(response);
    char encode_error[ERROR_BYTES] = "";
    const char *message;
    int code;

    *json_len = 0;
    if (status == OXS_OK) {
        *retry_after = false;
        if (encoding == OXS__ENCODE_PREDICT) {
            oxs_json_encode_predict(out, response);
            return 200;
        }
        status = oxs_json_encode_infer(out, response, reply, json_len, encode_error,
                                       sizeof(encode_error));
        if (status == OXS_OK)
            return 200;
        oxs_buf_reset(out);
        *json_len = 0;
    }

    code = oxs__http_status_code(status, retry_after);
    message = encode_error[0] != '\0' ? encode_error : oxs_response_error(response);
    if (message == NULL || message[0] == '\0')
        message = oxs_status_message(status);
    oxs_json_encode_error(out, message);
    oxs_buf_reset(error);
    /* The log copy is cut to the buffer's maximum; the client gets the whole message. */
    oxs_buf_append(error, message, error->max > 0 ? strnlen(message, error->max) : strlen(message));
    return code;
}

/* Picks the model for POST /predict: --default-model, or the only model. */
static oxs_model_t *find_predict_model(oxs__http_exchange_t *exchange)
{
    oxs_server_t *server = exchange->ctx->server;
    oxs_model_t *model = NULL;
    size_t count;

    if (exchange->ctx->default_model != NULL)
        return find_model(exchange, exchange->ctx->default_model, 0);

    count = oxs_server_model_count(server);
    if (count == 0) {
        reply_error(exchange, 404, "no model is loaded");
        return NULL;
    }
    if (count > 1) {
        reply_error(exchange, 400,
                    "POST /predict needs a default model because %zu models are loaded; use "
                    "POST /models/{name}/predict or start the server with --default-model",
                    count);
        return NULL;
    }
    if (oxs_server_model_at(server, 0, &model) != OXS_OK) {
        reply_error(exchange, 404, "no model is loaded");
        return NULL;
    }
    set_log_model(exchange, oxs_model_name(model));
    return model;
}

/* ------------------------------------------------------------------------------------------ */
/* Endpoints */

static void handle_server_metadata(oxs__http_exchange_t *exchange)
{
    exchange->status = 200;
    oxs_buf_puts(exchange->out, "{\"name\":\"onnxserve\",\"version\":");
    oxs_json_write_string(exchange->out, OXS_VERSION, strlen(OXS_VERSION));
    oxs_buf_puts(exchange->out, ",\"extensions\":[\"binary_tensor_data\",\"model_configuration\"]}");
}

static void handle_health(oxs__http_exchange_t *exchange, const char *key, bool ok)
{
    exchange->status = ok ? 200 : 503;
    oxs_buf_printf(exchange->out, "{\"%s\":%s}", key, ok ? "true" : "false");
    if (!ok) {
        oxs_buf_reset(exchange->error);
        oxs_buf_puts(exchange->error, exchange->ctx->stopping ? "server is shutting down"
                                                             : "a model is not READY");
    }
}

static void handle_model_metadata(oxs__http_exchange_t *exchange, oxs_model_t *model)
{
    exchange->status = 200;
    oxs_json_encode_model_metadata(exchange->out, model);
}

static void handle_model_ready(oxs__http_exchange_t *exchange, oxs_model_t *model)
{
    bool ready = oxs_model_state(model) == OXS_MODEL_READY;

    exchange->status = ready ? 200 : 503;
    oxs_buf_puts(exchange->out, "{\"name\":");
    oxs_json_write_string(exchange->out, oxs_model_name(model), strlen(oxs_model_name(model)));
    oxs_buf_printf(exchange->out, ",\"ready\":%s}", ready ? "true" : "false");
    if (!ready) {
        oxs_buf_reset(exchange->error);
        oxs_buf_printf(exchange->error, "model is %s",
                       oxs_model_state_name(oxs_model_state(model)));
    }
}

static void write_healthz_model(oxs_buf_t *out, const oxs_model_t *model)
{
    const char *name = oxs_model_name(model);
    const char *state = oxs_model_state_name(oxs_model_state(model));
    const char *reason = oxs_model_state_reason(model);

    oxs_buf_puts(out, "{\"name\":");
    oxs_json_write_string(out, name, strlen(name));
    oxs_buf_printf(out, ",\"version\":%" PRId64 ",\"state\":", oxs_model_version(model));
    oxs_json_write_string(out, state, strlen(state));
    oxs_buf_puts(out, ",\"reason\":");
    oxs_json_write_string(out, reason, strlen(reason));
    oxs_buf_putc(out, '}');
}

static void handle_healthz(oxs__http_exchange_t *exchange)
{
    oxs_server_t *server = exchange->ctx->server;
    oxs_buf_t *out = exchange->out;
    const char *runtime = oxs_runtime_version();
    int64_t uptime_s = (oxs__http_now_us() - exchange->ctx->start_us) / 1000000;
    /* A model may change state between this check and the list below, so the two can differ. */
    bool ok = all_models_ready(server);
    size_t count = oxs_server_model_count(server);
    bool first = true;

    oxs_buf_printf(out, "{\"status\":\"%s\",\"version\":", ok ? "ok" : "degraded");
    oxs_json_write_string(out, OXS_VERSION, strlen(OXS_VERSION));
    oxs_buf_printf(out, ",\"uptime_seconds\":%" PRId64 ",\"onnxruntime_version\":", uptime_s);
    oxs_json_write_string(out, runtime, strlen(runtime));
    oxs_buf_puts(out, ",\"models\":[");
    for (size_t i = 0; i < count; i++) {
        oxs_model_t *model = NULL;

        if (oxs_server_model_at(server, i, &model) != OXS_OK)
            continue;
        if (!first)
            oxs_buf_putc(out, ',');
        first = false;
        write_healthz_model(out, model);
        oxs_model_release(model);
    }
    oxs_buf_puts(out, "],\"gpu_memory\":null}");
    exchange->status = 200;
}

void oxs__http_handle(oxs__http_exchange_t *exchange)
{
    const oxs__http_route_t *route = exchange->route;
    oxs_model_t *model = NULL;

    exchange->status = 500;
    exchange->retry_after = false;

    switch (route->endpoint) {
    case OXS__EP_SERVER_METADATA:
        handle_server_metadata(exchange);
        return;
    case OXS__EP_HEALTH_LIVE:
        handle_health(exchange, "live", true);
        return;
    default:
        break;
    }

    if (exchange->ctx->server == NULL) {
        reply_error(exchange, 503, "no inference server is attached");
        return;
    }

    switch (route->endpoint) {
    case OXS__EP_HEALTH_READY:
        handle_health(exchange, "ready",
                      !exchange->ctx->stopping && all_models_ready(exchange->ctx->server));
        break;
    case OXS__EP_HEALTHZ:
        handle_healthz(exchange);
        break;
    case OXS__EP_MODEL_METADATA:
        model = find_model(exchange, route->model, route->version);
        if (model != NULL)
            handle_model_metadata(exchange, model);
        break;
    case OXS__EP_MODEL_READY:
        model = find_model(exchange, route->model, route->version);
        if (model != NULL)
            handle_model_ready(exchange, model);
        break;
    case OXS__EP_MODEL_CONFIG:
        model = find_model(exchange, route->model, route->version);
        if (model != NULL && require_ready(exchange, model)) {
            exchange->status = 200;
            oxs_json_encode_model_config(exchange->out, model);
        }
        break;
    case OXS__EP_MODEL_INFER:
        model = find_model(exchange, route->model, route->version);
        if (model != NULL)
            submit_inference(exchange, model, OXS__ENCODE_INFER);
        break;
    case OXS__EP_PREDICT_MODEL:
        model = find_model(exchange, route->model, 0);
        if (model != NULL)
            submit_inference(exchange, model, OXS__ENCODE_PREDICT);
        break;
    case OXS__EP_PREDICT_DEFAULT:
        model = find_predict_model(exchange);
        if (model != NULL)
            submit_inference(exchange, model, OXS__ENCODE_PREDICT);
        break;
    case OXS__EP_SERVER_METADATA:
    case OXS__EP_HEALTH_LIVE:
        break;
    }

    if (model != NULL)
        oxs_model_release(model);
}
