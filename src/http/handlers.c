/*
 * Endpoint handlers for the KServe v2 REST API, /predict and /healthz.
 */
#include "http/handlers.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <jansson.h>

#include "codec/json.h"
#include "codec/raw.h"
#include "http/frontend.h"

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
    case OXS_ERR_FORBIDDEN:
        return 403;
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
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
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
    if (status == OXS_ERR_NOT_FOUND && version > 0 &&
        oxs_server_get_model(exchange->ctx->server, name, 0, &model) == OXS_OK) {
        oxs_model_release(model);
        reply_error(exchange, 404,
                    "model \"%s\" version %" PRId64 " not found: its version_policy does not "
                    "select it, or it has no folder; GET /v2/models/%s lists the versions "
                    "served",
                    name, version, name);
        return NULL;
    }
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
    /* Version 0 is the record of the model as a whole (no version folder, or not loaded). */
    if (oxs_model_version(model) == 0)
        reply_error(exchange, 503, "model \"%s\" is %s, not READY%s%s", oxs_model_name(model),
                    oxs_model_state_name(state), reason[0] != '\0' ? ": " : "", reason);
    else
        reply_error(exchange, 503, "model \"%s\" version %" PRId64 " is %s, not READY%s%s",
                    oxs_model_name(model), oxs_model_version(model), oxs_model_state_name(state),
                    reason[0] != '\0' ? ": " : "", reason);
    return false;
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

    if (!require_ready(exchange, model)) {
        oxs_model_count_rejected(model, OXS_ERR_UNAVAILABLE);
        return;
    }
    if (encoding == OXS__ENCODE_PREDICT && exchange->json_len >= 0) {
        reply_error(exchange, 400,
                    "Inference-Header-Content-Length: the binary data extension is served on "
                    "/v2/models/{name}/infer, not on /predict");
        oxs_model_count_rejected(model, OXS_ERR_INVALID_ARGUMENT);
        return;
    }

    status = oxs_request_create(exchange->ctx->server, model, &request);
    if (status != OXS_OK) {
        reply_status(exchange, status, NULL);
        goto cleanup;
    }
    oxs_request_set_log_id(request, exchange->request_id);
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
        oxs_request_destroy(request); /* the library counted this failure */
        return;
    }
    request = NULL; /* owned by the library until the completion */
    exchange->status = 0;

cleanup:
    if (status != OXS_OK)
        oxs_model_count_rejected(model, status);
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

    message = encode_error[0] != '\0' ? encode_error : oxs_response_error(response);
    return oxs__http_encode_status(status, message, out, error, retry_after);
}

int oxs__http_encode_status(oxs_status_t status, const char *message, oxs_buf_t *out,
                            oxs_buf_t *error, bool *retry_after)
{
    int code = oxs__http_status_code(status, retry_after);
    if (status == OXS_OK) {
        oxs_buf_puts(out, "{}");
        return code;
    }
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
    oxs_buf_puts(exchange->out, ",\"extensions\":[\"binary_tensor_data\",\"model_configuration\","
                           "\"model_repository\",\"statistics\",\"logging\"]}");
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

static void handle_live(oxs__http_exchange_t *exchange)
{
    char why[300] = "";
    bool live = exchange->ctx->server == NULL ||
                oxs_server_live(exchange->ctx->server, why, sizeof(why));

    handle_health(exchange, "live", live);
    if (!live) {
        oxs_buf_reset(exchange->error);
        oxs_buf_puts(exchange->error, why);
    }
}

static void handle_ready(oxs__http_exchange_t *exchange)
{
    char why[300] = "";
    bool ready = !exchange->ctx->stopping &&
                 oxs_server_ready(exchange->ctx->server, exchange->ctx->strict_readiness, why,
                                  sizeof(why));

    handle_health(exchange, "ready", ready);
    if (!ready && why[0] != '\0') {
        oxs_buf_reset(exchange->error);
        oxs_buf_puts(exchange->error, why); /* the request's log line names the model */
    }
}

static void handle_model_metadata(oxs__http_exchange_t *exchange, oxs_model_t *model)
{
    int64_t versions[64];
    size_t count = oxs_server_ready_versions(exchange->ctx->server, oxs_model_name(model),
                                             versions, sizeof(versions) / sizeof(versions[0]));

    exchange->status = 200;
    if (count > sizeof(versions) / sizeof(versions[0]))
        count = sizeof(versions) / sizeof(versions[0]);
    oxs_json_encode_model_metadata(exchange->out, model, versions, count);
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
    bool ok = oxs_server_ready(server, true, NULL, 0);
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

/* ------------------------------------------------------------------------------------------ */
/* Metrics */

static void append_text(void *user, const char *text, size_t len)
{
    oxs_buf_append(user, text, len);
}

/* Reads the Threads line of /proc/self/status, or returns -1. */
static long thread_count(void)
{
    char line[256];
    long threads = -1;
    FILE *status = fopen("/proc/self/status", "r");
    if (status == NULL)
        return -1;
    while (threads < 0 && fgets(line, sizeof(line), status) != NULL)
        if (strncmp(line, "Threads:", 8) == 0)
            threads = strtol(line + 8, NULL, 10);
    fclose(status);
    return threads;
}

/* Reads the resident set size from /proc/self/statm, in bytes, or returns -1. */
static long long resident_bytes(void)
{
    long long pages = -1, resident = -1;
    FILE *statm = fopen("/proc/self/statm", "r");
    if (statm == NULL)
        return -1;
    if (fscanf(statm, "%lld %lld", &pages, &resident) != 2)
        resident = -1;
    fclose(statm);
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

static void handle_metrics(oxs__http_exchange_t *exchange)
{
    oxs_buf_t *out = exchange->out;
    struct rusage usage;

    oxs_server_write_metrics(exchange->ctx->server, append_text, out);
    if (getrusage(RUSAGE_SELF, &usage) == 0) {
        double seconds = (double)usage.ru_utime.tv_sec + (double)usage.ru_stime.tv_sec +
                         ((double)usage.ru_utime.tv_usec + (double)usage.ru_stime.tv_usec) / 1e6;
        oxs_buf_printf(out, "# HELP process_cpu_seconds_total User and system CPU time of the "
                            "process, in seconds.\n# TYPE process_cpu_seconds_total counter\n"
                            "process_cpu_seconds_total %.6f\n",
                       seconds);
    }
    long long resident = resident_bytes();
    if (resident >= 0)
        oxs_buf_printf(out, "# HELP process_resident_memory_bytes Resident memory of the "
                            "process, in bytes.\n# TYPE process_resident_memory_bytes gauge\n"
                            "process_resident_memory_bytes %lld\n",
                       resident);
    long threads = thread_count();
    if (threads >= 0)
        oxs_buf_printf(out, "# HELP onnxserve_threads Threads of the process, ONNX Runtime's "
                            "included.\n# TYPE onnxserve_threads gauge\nonnxserve_threads %ld\n",
                       threads);
    if (exchange->ctx->frontend != NULL)
        oxs_buf_printf(out, "# HELP onnxserve_open_connections Open HTTP connections, on every "
                            "port.\n# TYPE onnxserve_open_connections gauge\n"
                            "onnxserve_open_connections %d\n",
                       oxs_http_open_connections(exchange->ctx->frontend));
    exchange->status = 200;
    exchange->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

/* Writes {"count": N, "ns": N} for a statistic kept in microseconds. */
static void write_duration_stat(oxs_buf_t *out, const char *key, const oxs_duration_stat_t *stat)
{
    oxs_buf_printf(out, "\"%s\":{\"count\":%" PRIu64 ",\"ns\":%" PRIu64 "}", key, stat->count,
                   stat->total_us * 1000);
}

/* GET /v2/models/stats, /v2/models/{name}/stats and .../versions/{v}/stats: Triton's statistics
 * extension, one entry per READY model version. */
static void handle_stats(oxs__http_exchange_t *exchange)
{
    oxs_server_t *server = exchange->ctx->server;
    const char *name = exchange->route->model;
    int64_t version = exchange->route->version;
    oxs_buf_t *out = exchange->out;
    bool first = true;

    if (name != NULL) {
        oxs_model_t *model = find_model(exchange, name, version);
        if (model == NULL)
            return;
        oxs_model_release(model);
    }
    oxs_buf_puts(out, "{\"model_stats\":[");
    size_t count = oxs_server_model_count(server);
    for (size_t i = 0; i < count; i++) {
        oxs_model_t *model = NULL;
        if (oxs_server_model_at(server, i, &model) != OXS_OK)
            break;
        bool chosen = oxs_model_state(model) == OXS_MODEL_READY &&
                      (name == NULL || strcmp(oxs_model_name(model), name) == 0) &&
                      (version == 0 || oxs_model_version(model) == version);
        if (chosen) {
            oxs_model_stats_t stats;
            const char *model_name = oxs_model_name(model);
            oxs_model_stats(model, &stats);
            oxs_buf_puts(out, first ? "{\"name\":" : ",{\"name\":");
            first = false;
            oxs_json_write_string(out, model_name, strlen(model_name));
            oxs_buf_printf(out,
                           ",\"version\":\"%" PRId64 "\",\"last_inference\":%" PRIu64
                           ",\"inference_count\":%" PRIu64 ",\"execution_count\":%" PRIu64
                           ",\"inference_stats\":{",
                           oxs_model_version(model), stats.last_inference_ms,
                           stats.inference_count, stats.execution_count);
            const oxs_duration_stat_t none = {0, 0};
            write_duration_stat(out, "success", &stats.success);
            oxs_buf_putc(out, ',');
            write_duration_stat(out, "fail", &stats.fail);
            oxs_buf_putc(out, ',');
            write_duration_stat(out, "queue", &stats.queue);
            oxs_buf_putc(out, ',');
            write_duration_stat(out, "compute_input", &stats.compute_input);
            oxs_buf_putc(out, ',');
            write_duration_stat(out, "compute_infer", &stats.compute_infer);
            oxs_buf_putc(out, ',');
            write_duration_stat(out, "compute_output", &stats.compute_output);
            oxs_buf_putc(out, ',');
            write_duration_stat(out, "cache_hit", &none);
            oxs_buf_putc(out, ',');
            write_duration_stat(out, "cache_miss", &none);
            oxs_buf_puts(out, "},\"batch_stats\":[]}");
        }
        oxs_model_release(model);
    }
    oxs_buf_puts(out, "]}");
    exchange->status = 200;
}

/* ------------------------------------------------------------------------------------------ */
/* Logging extension */

static json_t *parse_repository_body(oxs__http_exchange_t *exchange, const char *const *allowed,
                                     size_t allowed_count, const char *const *allowed_parameters,
                                     size_t parameter_count);

/* Replies 404 when the context has no logger, which only programs that embed the HTTP
 * frontend without one (the unit tests, the fuzz driver) do. Returns false then. */
static bool require_logger(oxs__http_exchange_t *exchange)
{
    if (exchange->ctx->logger != NULL)
        return true;
    reply_error(exchange, 404, "log settings are not available: this server has no logger");
    return false;
}

static void write_logging(oxs__http_exchange_t *exchange)
{
    const oxs_logger_t *logger = exchange->ctx->logger;
    if (!require_logger(exchange))
        return;
    int level = atomic_load(&((oxs_logger_t *)logger)->level);
    int format = atomic_load(&((oxs_logger_t *)logger)->format);

    oxs_buf_printf(exchange->out,
                   "{\"log_file\":\"\",\"log_info\":%s,\"log_warning\":%s,\"log_error\":true,"
                   "\"log_verbose_level\":%d,\"log_format\":\"%s\"}",
                   level >= OXS_LOG_INFO ? "true" : "false",
                   level >= OXS_LOG_WARN ? "true" : "false", level >= OXS_LOG_DEBUG ? 1 : 0,
                   format == OXS_LOG_FORMAT_TEXT ? "text" : "json");
    exchange->status = 200;
}

/* Reads an optional boolean member of settings into *value. Replies 400 on another type. */
static bool read_flag(oxs__http_exchange_t *exchange, json_t *settings, const char *key,
                      bool *value)
{
    json_t *member = json_object_get(settings, key);
    if (member == NULL)
        return true;
    if (!json_is_boolean(member)) {
        reply_error(exchange, 400, "%s: expected true or false", key);
        return false;
    }
    *value = json_is_true(member);
    return true;
}

/* POST /v2/logging: Triton's logging extension over the server's one level threshold. The
 * levels include each other (error, then warnings, then info, then verbose), so a setting that
 * keeps a lower level while turning off a higher one is refused. */
static void handle_logging_update(oxs__http_exchange_t *exchange)
{
    static const char *const allowed[] = {"log_file", "log_info", "log_warning", "log_error",
                                          "log_verbose_level", "log_format"};
    const oxs_logger_t *logger = exchange->ctx->logger;
    if (!require_logger(exchange))
        return;
    json_t *settings = parse_repository_body(exchange, allowed, 6, NULL, 0);
    if (settings == NULL)
        return;
    int level = atomic_load(&((oxs_logger_t *)logger)->level);
    int format = atomic_load(&((oxs_logger_t *)logger)->format);
    bool info = level >= OXS_LOG_INFO, warning = level >= OXS_LOG_WARN, error = true;
    json_t *verbose = json_object_get(settings, "log_verbose_level");
    json_t *format_value = json_object_get(settings, "log_format");
    json_int_t verbose_level = level >= OXS_LOG_DEBUG ? 1 : 0;

    if (json_object_get(settings, "log_file") != NULL) {
        reply_error(exchange, 400,
                    "log_file cannot be changed over the network; the server logs to stderr");
        goto done;
    }
    if (!read_flag(exchange, settings, "log_info", &info) ||
        !read_flag(exchange, settings, "log_warning", &warning) ||
        !read_flag(exchange, settings, "log_error", &error))
        goto done;
    if (verbose != NULL) {
        if (!json_is_integer(verbose) || json_integer_value(verbose) < 0) {
            reply_error(exchange, 400, "log_verbose_level: expected an integer of 0 or more");
            goto done;
        }
        verbose_level = json_integer_value(verbose);
    }
    if (format_value != NULL) {
        const char *text = json_is_string(format_value) ? json_string_value(format_value) : "";
        /* Triton's "default" is its readable text format. */
        if (strcmp(text, "json") == 0) {
            format = OXS_LOG_FORMAT_JSON;
        } else if (strcmp(text, "text") == 0 || strcmp(text, "default") == 0) {
            format = OXS_LOG_FORMAT_TEXT;
        } else {
            reply_error(exchange, 400,
                        "log_format: invalid value; expected \"json\", \"text\" or \"default\" "
                        "(the same as \"text\")");
            goto done;
        }
    }
    if (!error) {
        reply_error(exchange, 400, "log_error: errors are always logged; expected true");
        goto done;
    }
    if (info && !warning) {
        reply_error(exchange, 400,
                    "log_warning: false needs log_info false too, since the levels include each "
                    "other (error, warning, info, verbose)");
        goto done;
    }
    if (verbose_level > 0 && !info) {
        reply_error(exchange, 400,
                    "log_verbose_level: above 0 needs log_info true, since the levels include "
                    "each other (error, warning, info, verbose)");
        goto done;
    }
    level = verbose_level > 0 ? OXS_LOG_DEBUG
            : info           ? OXS_LOG_INFO
            : warning        ? OXS_LOG_WARN
                             : OXS_LOG_ERROR;
    oxs_logger_set(logger, (oxs_log_level_t)level, (oxs_log_format_t)format);
    oxs_server_set_log_level(exchange->ctx->server, (oxs_log_level_t)level);
    write_logging(exchange);
done:
    json_decref(settings);
}

/* ------------------------------------------------------------------------------------------ */
/* Model repository extension */

/* Parses a repository request body: empty, or a JSON object whose keys are in allowed (and
 * "parameters", an object whose keys are in allowed_parameters). Replies 400 and returns NULL
 * on anything else; otherwise returns the object (an empty one for an empty body). */
static json_t *parse_repository_body(oxs__http_exchange_t *exchange, const char *const *allowed,
                                     size_t allowed_count, const char *const *allowed_parameters,
                                     size_t parameter_count)
{
    size_t start = 0;
    while (start < exchange->body_len && strchr(" \t\r\n", exchange->body[start]) != NULL)
        start++;
    if (start == exchange->body_len)
        return json_object();

    json_error_t parse_error;
    json_t *root = json_loadb(exchange->body, exchange->body_len, JSON_REJECT_DUPLICATES,
                              &parse_error);
    if (root == NULL || !json_is_object(root)) {
        reply_error(exchange, 400, "request body: %s%s; expected a JSON object",
                    root == NULL ? "invalid JSON: " : "not an object",
                    root == NULL ? parse_error.text : "");
        json_decref(root);
        return NULL;
    }
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value) {
        bool known = strcmp(key, "parameters") == 0;
        for (size_t i = 0; i < allowed_count && !known; i++)
            known = strcmp(key, allowed[i]) == 0;
        if (!known) {
            reply_error(exchange, 400, "request body: unknown key \"%.64s\"", key);
            json_decref(root);
            return NULL;
        }
    }
    json_t *parameters = json_object_get(root, "parameters");
    if (parameters != NULL && !json_is_object(parameters)) {
        reply_error(exchange, 400, "request body: \"parameters\" must be an object");
        json_decref(root);
        return NULL;
    }
    if (parameters != NULL) {
        json_object_foreach(parameters, key, value) {
            bool known = false;
            for (size_t i = 0; i < parameter_count && !known; i++)
                known = strcmp(key, allowed_parameters[i]) == 0;
            if (!known) {
                reply_error(exchange, 400,
                            "request body: parameter \"%.64s\" is not supported%s", key,
                            parameter_count > 0 ? "; expected unload_dependents" : "");
                json_decref(root);
                return NULL;
            }
        }
    }
    return root;
}

static void handle_repository_index(oxs__http_exchange_t *exchange)
{
    static const char *const allowed[] = {"ready"};
    oxs_server_t *server = exchange->ctx->server;
    json_t *body = parse_repository_body(exchange, allowed, 1, NULL, 0);
    if (body == NULL)
        return;
    json_t *ready = json_object_get(body, "ready");
    if (ready != NULL && !json_is_boolean(ready)) {
        reply_error(exchange, 400, "request body: \"ready\" must be true or false");
        json_decref(body);
        return;
    }
    bool only_ready = ready != NULL && json_is_true(ready);
    json_decref(body);

    oxs_buf_t *out = exchange->out;
    size_t count = oxs_server_model_count(server);
    bool first = true;
    oxs_buf_putc(out, '[');
    for (size_t i = 0; i < count; i++) {
        oxs_model_t *model = NULL;
        if (oxs_server_model_at(server, i, &model) != OXS_OK)
            break; /* the list shrank since the count was read */
        oxs_model_state_t state = oxs_model_state(model);
        if (!only_ready || state == OXS_MODEL_READY) {
            const char *name = oxs_model_name(model);
            const char *state_name = oxs_model_state_name(state);
            const char *reason = oxs_model_state_reason(model);
            oxs_buf_puts(out, first ? "{\"name\":" : ",{\"name\":");
            first = false;
            oxs_json_write_string(out, name, strlen(name));
            if (oxs_model_version(model) > 0)
                oxs_buf_printf(out, ",\"version\":\"%" PRId64 "\"", oxs_model_version(model));
            oxs_buf_puts(out, ",\"state\":");
            oxs_json_write_string(out, state_name, strlen(state_name));
            oxs_buf_puts(out, ",\"reason\":");
            oxs_json_write_string(out, reason, strlen(reason));
            oxs_buf_putc(out, '}');
        }
        oxs_model_release(model);
    }
    oxs_buf_putc(out, ']');
    exchange->status = 200;
}

/* Queues a load or unload; the session replies when the repository thread has run it. */
static void handle_repository_control(oxs__http_exchange_t *exchange,
                                      oxs_repository_action_t action)
{
    static const char *const unload_parameters[] = {"unload_dependents"};
    const char *name = exchange->route->model;
    char error[ERROR_BYTES] = "";

    set_log_model(exchange, name);
    /* The mode, then the name, before the body: where model control is off, every load or
     * unload gets 403. */
    oxs_status_t status = oxs_repository_check(exchange->ctx->server, action, name, error,
                                               sizeof(error));
    if (status != OXS_OK) {
        reply_status(exchange, status, error);
        return;
    }
    json_t *body = action == OXS_REPOSITORY_UNLOAD
                       ? parse_repository_body(exchange, NULL, 0, unload_parameters, 1)
                       : parse_repository_body(exchange, NULL, 0, NULL, 0);
    if (body == NULL)
        return;
    json_t *dependents = json_object_get(json_object_get(body, "parameters"),
                                         "unload_dependents");
    bool bad_dependents = dependents != NULL && !json_is_boolean(dependents);
    json_decref(body);
    if (bad_dependents) {
        reply_error(exchange, 400,
                    "request body: parameters.unload_dependents must be true or false");
        return;
    }
    status = oxs__http_session_control(exchange->session, action, name, error, sizeof(error));
    if (status != OXS_OK) {
        reply_status(exchange, status, error);
        return;
    }
    exchange->status = 0;
}

void oxs__http_handle(oxs__http_exchange_t *exchange)
{
    const oxs__http_route_t *route = exchange->route;
    oxs_model_t *model = NULL;

    exchange->status = 500;
    exchange->retry_after = false;
    if (exchange->metrics_port && route->endpoint != OXS__EP_METRICS) {
        reply_error(exchange, 404, "the metrics port serves GET /metrics only");
        return;
    }
    if (!exchange->metrics_port && route->endpoint == OXS__EP_METRICS &&
        !exchange->ctx->metrics_on_http_port) {
        reply_error(exchange, 404,
                    "GET /metrics is served on the metrics port (--metrics-port); start with "
                    "--metrics-on-http-port to serve it here too");
        return;
    }

    switch (route->endpoint) {
    case OXS__EP_SERVER_METADATA:
        handle_server_metadata(exchange);
        return;
    case OXS__EP_HEALTH_LIVE:
        handle_live(exchange);
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
        handle_ready(exchange);
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
        else if (exchange->status == 404)
            oxs_server_count_unknown_model(exchange->ctx->server);
        break;
    case OXS__EP_PREDICT_MODEL:
        model = find_model(exchange, route->model, 0);
        if (model != NULL)
            submit_inference(exchange, model, OXS__ENCODE_PREDICT);
        else if (exchange->status == 404)
            oxs_server_count_unknown_model(exchange->ctx->server);
        break;
    case OXS__EP_PREDICT_DEFAULT:
        model = find_predict_model(exchange);
        if (model != NULL)
            submit_inference(exchange, model, OXS__ENCODE_PREDICT);
        break;
    case OXS__EP_METRICS:
        handle_metrics(exchange);
        break;
    case OXS__EP_STATS:
        handle_stats(exchange);
        break;
    case OXS__EP_LOGGING:
        write_logging(exchange);
        break;
    case OXS__EP_LOGGING_UPDATE:
        handle_logging_update(exchange);
        break;
    case OXS__EP_REPOSITORY_INDEX:
        handle_repository_index(exchange);
        break;
    case OXS__EP_REPOSITORY_LOAD:
        handle_repository_control(exchange, OXS_REPOSITORY_LOAD);
        break;
    case OXS__EP_REPOSITORY_UNLOAD:
        handle_repository_control(exchange, OXS_REPOSITORY_UNLOAD);
        break;
    case OXS__EP_SERVER_METADATA:
    case OXS__EP_HEALTH_LIVE:
        break;
    }

    if (model != NULL)
        oxs_model_release(model);
}
