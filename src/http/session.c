/*
 * HTTP sessions: request parsing, dispatch, response framing, completions and request logs.
 */
#include "http/session.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include <zlib.h>

#include "codec/json.h"
#include "common/buf.h"
#include "http/handlers.h"
#include "http/parser.h"
#include "http/routes.h"
#include "http/trace.h"

#define DEFAULT_MAX_URI_BYTES (16 * 1024)
#define DEFAULT_MAX_HEADERS 100
#define MAX_HEADER_NAME_BYTES 32      /* longer header names are never ones the session reads */
#define MAX_REQUEST_ID_BYTES 128
#define MAX_EXPECT_BYTES 32
#define MAX_MODEL_NAME_BYTES (16 * 1024)
#define KEEP_BUFFER_BYTES (1024 * 1024) /* buffers above this are freed between requests */
#define ERROR_BYTES 512
#define MAX_BINARY_HEADER_BYTES 32 /* Inference-Header-Content-Length's value */
#define MAX_PENDING_WHILE_BUSY (64 * 1024) /* pipelined bytes read while a request runs */
#define MAX_LOGGED_ERROR_BYTES 4096
#define TRACEPARENT_LEN 55 /* "00-" + 32 + "-" + 16 + "-" + 2 */
#define MAX_ENCODING_BYTES 32 /* Content-Encoding's value */
#define INFLATE_CHUNK (64 * 1024)

static const char continue_response[] = "HTTP/1.1 100 Continue\r\n\r\n";

typedef enum session_state {
    STATE_RECEIVING, /* reading a request (or waiting for one) */
    STATE_PROCESSING,
    STATE_SENDING,
    STATE_CLOSED,
} session_state_t;

typedef enum header_kind {
    HEADER_OTHER,
    HEADER_REQUEST_ID,
    HEADER_EXPECT,
    HEADER_BINARY_TENSORS, /* Inference-Header-Content-Length: the KServe binary extension */
    HEADER_TIMEOUT,        /* X-Request-Timeout-Ms: the request's queue deadline */
    HEADER_TRACEPARENT,    /* W3C Trace Context's traceparent */
    HEADER_CONTENT_ENCODING, /* gzip or deflate request bodies */
} header_kind_t;

struct oxs__http_session {
    oxs__http_context_t *ctx;
    const oxs__http_session_io_t *io;
    void *io_user;
    oxs__http_parser_t parser;

    session_state_t state;
    bool reading;           /* last value given to io->set_reading */
    bool driving;           /* session_drive is on the stack */
    bool released;          /* the transport is gone */
    bool close_after;       /* close once the current response is written */
    bool metrics_only;      /* accepted on the metrics port */
    const char *content_type; /* of the response being sent; NULL: JSON */
    bool in_message;        /* a request has begun and is not complete */
    bool headers_done;      /* the current request's headers are complete */
    bool request_ready;     /* a complete request waits for dispatch */
    bool counted;           /* counted in ctx->in_flight */
    bool inference_pending; /* submitted; its completion has not been run */

    /* Bytes received but not parsed yet, from pending_offset on. */
    oxs_buf_t pending;
    size_t pending_offset;

    /* The current request. */
    oxs_buf_t target;
    oxs_buf_t body;
    oxs_buf_t header_name;
    header_kind_t header;
    bool header_in_value;
    bool in_header_field; /* the last header callback was a field name */
    int header_count;
    oxs_buf_t request_id_header;
    bool request_id_seen;
    oxs_buf_t expect;
    oxs_buf_t binary_header; /* Inference-Header-Content-Length's value */
    bool binary_header_seen;
    oxs_buf_t timeout_header; /* X-Request-Timeout-Ms's value */
    bool timeout_header_seen;
    oxs_buf_t traceparent_header;
    oxs_buf_t encoding_header; /* Content-Encoding's value */
    oxs_buf_t inflated;        /* the decompressed body of a gzip or deflate request */
    char traceparent[TRACEPARENT_LEN + 1]; /* a valid traceparent, or "" */
    oxs_response_times_t times; /* of the inference, for the trace file */
    const char *method_name;
    oxs__http_method_t method;
    bool http10;
    int early_status; /* error found before the request completed, sent when it completes */
    bool early_close; /* send early_status now and close, without reading the rest */
    char early_error[ERROR_BYTES];
    char request_id[MAX_REQUEST_ID_BYTES + 1];
    int64_t begin_us;
    uint64_t bytes_in;
    uint64_t body_received; /* body bytes, including ones dropped after an early error */

    /* The current response. */
    oxs_buf_t head;
    oxs_buf_t out;
    oxs_buf_t model;
    oxs_buf_t error; /* message of an error response, for the log */
    oxs_buf_t route_scratch;
    const char *allow;
    int status;
    bool retry_after;
    size_t json_len; /* Inference-Header-Content-Length of a binary reply, else 0 */

    /* Written by the worker thread that completes the inference, read after done_lock. */
    oxs__http_encoding_t encoding;
    const oxs_json_reply_t *reply;
    oxs_request_t *request; /* submitted, until its completion; guarded by ctx->done_lock */
    size_t done_json_len;
    int done_status;
    bool done_retry_after;
    int64_t queue_us;
    int64_t compute_us;
    int batch_size;
    oxs__http_session_t *done_next;
};

static void session_drive(oxs__http_session_t *session);

/* Returns the bytes received and not parsed yet. */
static size_t pending_bytes(const oxs__http_session_t *session)
{
    return session->pending.len - session->pending_offset;
}

int64_t oxs__http_now_us(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

/* ------------------------------------------------------------------------------------------ */
/* Context */

oxs_status_t oxs__http_context_init(oxs__http_context_t *ctx, oxs_server_t *server,
                                    size_t max_request_bytes, const char *default_model,
                                    const oxs_logger_t *logger, atomic_int *in_flight)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->server = server;
    ctx->max_request_bytes = max_request_bytes;
    ctx->max_uri_bytes = DEFAULT_MAX_URI_BYTES;
    ctx->max_headers = DEFAULT_MAX_HEADERS;
    ctx->max_header_bytes = HTTP_MAX_HEADER_SIZE;
    ctx->default_model = default_model;
    ctx->logger = logger;
    ctx->in_flight = in_flight;
    ctx->strict_readiness = true;
    ctx->start_us = oxs__http_now_us();
    if (getrandom(&ctx->id_seed, sizeof(ctx->id_seed), GRND_NONBLOCK) != sizeof(ctx->id_seed))
        ctx->id_seed = (uint64_t)ctx->start_us ^ ((uint64_t)(uintptr_t)ctx << 16);
    if (pthread_mutex_init(&ctx->done_lock, NULL) != 0)
        return OXS_ERR_INTERNAL;
    return OXS_OK;
}

void oxs__http_context_destroy(oxs__http_context_t *ctx)
{
    pthread_mutex_destroy(&ctx->done_lock);
}

/* Formats the next generated request id: 16 hex digits, unique per context because splitmix64
 * is a bijection of the counter, and unlikely to repeat across contexts with random seeds. */
static void generate_request_id(oxs__http_context_t *ctx, char *out, size_t size)
{
    uint64_t z = ctx->id_seed + (++ctx->id_counter) * UINT64_C(0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    z ^= z >> 31;
    snprintf(out, size, "%016" PRIx64, z);
}

/* ------------------------------------------------------------------------------------------ */
/* Request logging */

static void log_request(oxs__http_session_t *session, int64_t bytes_out)
{
    const oxs_logger_t *logger = session->ctx->logger;
    const char *model = session->model.len > 0 ? oxs_buf_cstr(&session->model) : NULL;

    /* The trace and parent ids of a valid traceparent header. */
    char trace_id[33] = "", parent_id[17] = "";
    if (session->traceparent[0] != '\0') {
        memcpy(trace_id, session->traceparent + 3, 32);
        memcpy(parent_id, session->traceparent + 36, 16);
    }
    if (oxs_log_enabled(logger, OXS_LOG_INFO)) {
        oxs_log_field_t fields[13];
        size_t count = 0;
        fields[count++] = OXS_LOG_STR("method", session->method_name ? session->method_name : "");
        fields[count++] = OXS_LOG_STR("path", oxs_buf_cstr(&session->target));
        fields[count++] = OXS_LOG_NUM("status", session->status);
        fields[count++] = OXS_LOG_NUM("latency_us", oxs__http_now_us() - session->begin_us);
        fields[count++] = OXS_LOG_NUM("queue_us", session->queue_us);
        fields[count++] = OXS_LOG_NUM("compute_us", session->compute_us);
        fields[count++] = OXS_LOG_NUM("batch_size", session->batch_size);
        fields[count++] = OXS_LOG_NUM("bytes_in", session->bytes_in);
        fields[count++] = OXS_LOG_NUM("bytes_out", bytes_out);
        if (trace_id[0] != '\0') {
            fields[count++] = OXS_LOG_STR("trace_id", trace_id);
            fields[count++] = OXS_LOG_STR("parent_id", parent_id);
        }
        /* Failed requests carry their error text, so the info log shows why they failed. */
        if (session->status >= 400)
            fields[count++] = OXS_LOG_STR("error", oxs_buf_cstr(&session->error));
        oxs_log_write(logger, OXS_LOG_INFO, session->request_id, model, "request", fields,
                      count);
    }
    if (session->ctx->trace != NULL) {
        oxs__http_trace_record_t record = {
            .request_id = session->request_id,
            .trace_id = trace_id,
            .model = model != NULL ? model : "",
            .method = session->method_name ? session->method_name : "",
            .path = oxs_buf_cstr(&session->target),
            .status = session->status,
            .received_us = session->begin_us,
            .times = session->times,
            .sent_us = oxs__http_now_us(),
        };
        oxs__http_trace_write(session->ctx->trace, &record);
    }
    if (session->status < 400)
        return;

    /* Server errors at error level, a full queue or an unavailable model at warn, client
     * errors at debug. */
    oxs_log_level_t level = OXS_LOG_DEBUG;
    const char *msg = "request rejected";
    if (session->status == 503) {
        level = OXS_LOG_WARN;
        msg = "request failed";
    } else if (session->status >= 500) {
        level = OXS_LOG_ERROR;
        msg = "request failed";
    }
    if (!oxs_log_enabled(logger, level))
        return;

    oxs_log_field_t fields[] = {
        OXS_LOG_NUM("status", session->status),
        OXS_LOG_STR("path", oxs_buf_cstr(&session->target)),
        OXS_LOG_STR("error", oxs_buf_cstr(&session->error)),
        OXS_LOG_STR("trace_id", trace_id),
    };
    oxs_log_write(logger, level, session->request_id, model, msg, fields,
                  sizeof(fields) / sizeof(fields[0]) - (trace_id[0] == '\0' ? 1 : 0));
}

/* ------------------------------------------------------------------------------------------ */
/* Parser callbacks */

static void reset_request(oxs__http_session_t *session)
{
    oxs_buf_reset(&session->target);
    oxs_buf_reset(&session->body);
    oxs_buf_reset(&session->header_name);
    oxs_buf_reset(&session->request_id_header);
    oxs_buf_reset(&session->expect);
    oxs_buf_reset(&session->binary_header);
    session->binary_header_seen = false;
    oxs_buf_reset(&session->timeout_header);
    session->timeout_header_seen = false;
    oxs_buf_reset(&session->traceparent_header);
    session->traceparent[0] = '\0';
    oxs_buf_reset(&session->encoding_header);
    oxs_buf_reset(&session->model);
    oxs_buf_reset(&session->error);
    session->header = HEADER_OTHER;
    session->header_in_value = false;
    session->in_header_field = false;
    session->header_count = 0;
    session->request_id_seen = false;
    session->method_name = NULL;
    session->method = OXS__HTTP_OTHER;
    session->http10 = false;
    session->early_status = 0;
    session->early_close = false;
    session->early_error[0] = '\0';
    session->request_id[0] = '\0';
    session->allow = NULL;
    session->status = 0;
    session->retry_after = false;
    session->json_len = 0;
    session->queue_us = 0;
    session->compute_us = 0;
    session->batch_size = 0;
    session->body_received = 0;
}

/* Records an error response. close_now: send it at once and close, because the rest of the
 * request cannot or should not be read. */
__attribute__((format(printf, 4, 5))) static void set_early_error(oxs__http_session_t *session,
                                                                  int status, bool close_now,
                                                                  const char *format, ...)
{
    va_list args;

    if (session->early_status != 0 && !close_now)
        return; /* keep the first error */
    session->early_status = status;
    session->early_close = close_now;
    va_start(args, format);
    vsnprintf(session->early_error, sizeof(session->early_error), format, args);
    va_end(args);
    if (close_now)
        oxs__http_parser_pause(&session->parser);
}

static int on_message_begin(void *user)
{
    oxs__http_session_t *session = user;

    reset_request(session);
    session->in_message = true;
    session->headers_done = false;
    session->begin_us = oxs__http_now_us();
    return 0;
}

static int on_url(void *user, const char *at, size_t len)
{
    oxs__http_session_t *session = user;

    /* The method comes before the target, so the log line of a request rejected within its
     * headers (414, 431) still names it. */
    if (session->method_name == NULL)
        session->method_name = oxs__http_parser_method_name(&session->parser);
    oxs_buf_append(&session->target, at, len);
    if (session->target.out_of_memory)
        set_early_error(session, 500, true, "out of memory while reading the request target");
    else if (session->target.failed)
        set_early_error(session, 414, true,
                        "request target exceeds the limit of %zu bytes set by --max-uri-bytes",
                        session->ctx->max_uri_bytes);
    return 0;
}

/* Returns true when a header value could not be stored for want of memory, which must not be
 * reported as an invalid value. */
static bool header_values_out_of_memory(const oxs__http_session_t *session)
{
    return session->request_id_header.out_of_memory || session->expect.out_of_memory ||
           session->binary_header.out_of_memory || session->timeout_header.out_of_memory ||
           session->traceparent_header.out_of_memory || session->encoding_header.out_of_memory;
}

static int on_header_field(void *user, const char *at, size_t len)
{
    oxs__http_session_t *session = user;

    if (!session->in_header_field) {
        session->in_header_field = true;
        if (++session->header_count > session->ctx->max_headers) {
            set_early_error(session, 431, true,
                            "request has more than %d header fields, the limit set by "
                            "--max-headers",
                            session->ctx->max_headers);
            return 0;
        }
    }
    if (session->header_in_value) {
        oxs_buf_reset(&session->header_name);
        session->header_in_value = false;
    }
    oxs_buf_append(&session->header_name, at, len);
    return 0;
}

static header_kind_t classify_header(oxs_buf_t *name)
{
    if (name->failed)
        return HEADER_OTHER;
    if (name->len == 12 && strncasecmp(name->data, "x-request-id", 12) == 0)
        return HEADER_REQUEST_ID;
    if (name->len == 6 && strncasecmp(name->data, "expect", 6) == 0)
        return HEADER_EXPECT;
    if (name->len == 31 && strncasecmp(name->data, "inference-header-content-length", 31) == 0)
        return HEADER_BINARY_TENSORS;
    if (name->len == 20 && strncasecmp(name->data, "x-request-timeout-ms", 20) == 0)
        return HEADER_TIMEOUT;
    if (name->len == 11 && strncasecmp(name->data, "traceparent", 11) == 0)
        return HEADER_TRACEPARENT;
    if (name->len == 16 && strncasecmp(name->data, "content-encoding", 16) == 0)
        return HEADER_CONTENT_ENCODING;
    return HEADER_OTHER;
}

static int on_header_value(void *user, const char *at, size_t len)
{
    oxs__http_session_t *session = user;

    session->in_header_field = false;
    if (!session->header_in_value) {
        session->header_in_value = true;
        session->header = classify_header(&session->header_name);
        if (session->header == HEADER_REQUEST_ID) {
            /* A repeated header replaces the earlier value. */
            oxs_buf_reset(&session->request_id_header);
            session->request_id_seen = true;
        } else if (session->header == HEADER_EXPECT) {
            oxs_buf_reset(&session->expect);
        } else if (session->header == HEADER_BINARY_TENSORS) {
            oxs_buf_reset(&session->binary_header);
            session->binary_header_seen = true;
        } else if (session->header == HEADER_TIMEOUT) {
            oxs_buf_reset(&session->timeout_header);
            session->timeout_header_seen = true;
        } else if (session->header == HEADER_TRACEPARENT) {
            oxs_buf_reset(&session->traceparent_header);
        } else if (session->header == HEADER_CONTENT_ENCODING) {
            oxs_buf_reset(&session->encoding_header);
        }
    }
    if (session->header == HEADER_REQUEST_ID)
        oxs_buf_append(&session->request_id_header, at, len);
    else if (session->header == HEADER_EXPECT)
        oxs_buf_append(&session->expect, at, len);
    else if (session->header == HEADER_BINARY_TENSORS)
        oxs_buf_append(&session->binary_header, at, len);
    else if (session->header == HEADER_TIMEOUT)
        oxs_buf_append(&session->timeout_header, at, len);
    else if (session->header == HEADER_TRACEPARENT)
        oxs_buf_append(&session->traceparent_header, at, len);
    else if (session->header == HEADER_CONTENT_ENCODING)
        oxs_buf_append(&session->encoding_header, at, len);
    if (header_values_out_of_memory(session))
        set_early_error(session, 500, true, "out of memory while reading the request headers");
    return 0;
}

static bool lower_hex(const char *text, size_t len, bool *all_zero)
{
    *all_zero = true;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
        *all_zero = *all_zero && c == '0';
    }
    return true;
}

/* Keeps the traceparent header when it is a valid version 00 value: "00-", 32 hex digits, "-",
 * 16 hex digits, "-" and 2 hex digits, with ids that are not all zero. W3C Trace Context
 * requires a receiver to ignore an invalid one. */
static void choose_traceparent(oxs__http_session_t *session)
{
    const oxs_buf_t *header = &session->traceparent_header;
    const char *text = header->data;
    bool zero_trace, zero_parent, zero_flags;

    session->traceparent[0] = '\0';
    if (header->failed || header->len != TRACEPARENT_LEN || text == NULL)
        return;
    if (memcmp(text, "00-", 3) != 0 || text[35] != '-' || text[52] != '-' ||
        !lower_hex(text + 3, 32, &zero_trace) || !lower_hex(text + 36, 16, &zero_parent) ||
        !lower_hex(text + 53, 2, &zero_flags) || zero_trace || zero_parent)
        return;
    memcpy(session->traceparent, text, TRACEPARENT_LEN);
    session->traceparent[TRACEPARENT_LEN] = '\0';
}

/* Takes the request id from X-Request-ID when it is valid; otherwise generates one and, for an
 * invalid header, records a 400. */
static void choose_request_id(oxs__http_session_t *session)
{
    oxs_buf_t *header = &session->request_id_header;
    bool valid = false;

    if (session->request_id_seen) {
        if (header->failed) {
            set_early_error(session, 400, false,
                            "X-Request-ID is longer than %d bytes; expected 1 to %d printable "
                            "ASCII characters",
                            MAX_REQUEST_ID_BYTES, MAX_REQUEST_ID_BYTES);
        } else if (header->len == 0) {
            set_early_error(session, 400, false,
                            "X-Request-ID is empty; expected 1 to %d printable ASCII characters",
                            MAX_REQUEST_ID_BYTES);
        } else {
            valid = true;
            for (size_t i = 0; i < header->len && valid; i++) {
                unsigned char c = (unsigned char)header->data[i];
                if (c < 0x20 || c > 0x7e) {
                    set_early_error(session, 400, false,
                                    "X-Request-ID has byte 0x%02x at offset %zu; expected "
                                    "printable ASCII (0x20 to 0x7e)",
                                    c, i);
                    valid = false;
                }
            }
        }
    }

    if (valid) {
        memcpy(session->request_id, header->data, header->len);
        session->request_id[header->len] = '\0';
    } else {
        generate_request_id(session->ctx, session->request_id, sizeof(session->request_id));
    }
}

static int on_headers_complete(void *user)
{
    oxs__http_session_t *session = user;
    oxs__http_parser_t *parser = &session->parser;
    uint64_t content_length = 0;
    bool has_length = oxs__http_parser_content_length(parser, &content_length);
    bool has_body = oxs__http_parser_chunked(parser) || (has_length && content_length > 0);
    int major, minor;

    session->headers_done = true;
    oxs_buf_cstr(&session->target);
    session->method = oxs__http_parser_method(parser);
    session->method_name = oxs__http_parser_method_name(parser);
    oxs__http_parser_version(parser, &major, &minor);
    session->http10 = major == 1 && minor == 0;
    choose_request_id(session);
    choose_traceparent(session);

    if (major != 1) {
        set_early_error(session, 505, true,
                        "HTTP version %d.%d is not supported; expected HTTP/1.0 or HTTP/1.1",
                        major, minor);
        return 0;
    }
    if (has_length && content_length > session->ctx->max_request_bytes) {
        set_early_error(session, 413, true,
                        "request body of %" PRIu64 " bytes exceeds the limit of %zu bytes set "
                        "by --max-request-bytes",
                        content_length, session->ctx->max_request_bytes);
        return 0;
    }
    /* One allocation for a declared body instead of doubling and copying as it arrives. glibc
     * maps a large allocation lazily, so its pages are committed only as the body fills them. */
    if (has_length && content_length > 0 && !oxs_buf_reserve(&session->body, content_length)) {
        set_early_error(session, 500, true, "out of memory for a request body of %" PRIu64
                        " bytes", content_length);
        return 0;
    }
    if (has_body && minor >= 1 && session->expect.len == 12 &&
        strncasecmp(session->expect.data, "100-continue", 12) == 0 && session->io_user != NULL)
        session->io->write_interim(session->io_user, continue_response,
                                   sizeof(continue_response) - 1);
    return 0;
}

/* Rejects a chunk that would take the body past the limit before any of its bytes arrive. */
static int on_chunk_header(void *user, uint64_t size)
{
    oxs__http_session_t *session = user;
    size_t max = session->ctx->max_request_bytes;

    if (session->body_received <= max && size <= max - session->body_received)
        return 0;
    set_early_error(session, 413, true,
                    "request body chunk of %" PRIu64 " bytes takes the body past the limit of "
                    "%zu bytes set by --max-request-bytes",
                    size, max);
    return 0;
}

static int on_body(void *user, const char *at, size_t len)
{
    oxs__http_session_t *session = user;

    session->body_received += len;
    if (session->body_received > session->ctx->max_request_bytes) {
        set_early_error(session, 413, true,
                        "request body exceeds the limit of %zu bytes set by --max-request-bytes",
                        session->ctx->max_request_bytes);
        return 0;
    }
    if (session->early_status != 0)
        return 0; /* the request gets an error response, so its body is read and dropped */
    oxs_buf_append(&session->body, at, len);
    if (session->body.failed)
        set_early_error(session, 500, true, "out of memory while reading the request body");
    return 0;
}

static int on_message_complete(void *user)
{
    oxs__http_session_t *session = user;

    session->in_message = false;
    session->request_ready = true;
    oxs__http_parser_pause(&session->parser);
    return 0;
}

static const oxs__http_parser_callbacks_t parser_callbacks = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_chunk_header = on_chunk_header,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ------------------------------------------------------------------------------------------ */
/* Responses */

static void count_in_flight(oxs__http_session_t *session, bool on)
{
    if (session->counted == on)
        return;
    session->counted = on;
    if (session->ctx->in_flight != NULL)
        atomic_fetch_add(session->ctx->in_flight, on ? 1 : -1);
}

static void set_reading(oxs__http_session_t *session, bool reading)
{
    if (session->reading == reading || session->released || session->state == STATE_CLOSED)
        return;
    session->reading = reading;
    session->io->set_reading(session->io_user, reading);
}

static void close_session(oxs__http_session_t *session, bool linger)
{
    if (session->state == STATE_CLOSED)
        return;
    session->state = STATE_CLOSED;
    count_in_flight(session, false);
    oxs_buf_free(&session->pending);
    session->pending_offset = 0;
    if (!session->released)
        session->io->close(session->io_user, linger);
}

/* Writes the head and hands the response in session->out to the transport. */
static void send_response(oxs__http_session_t *session)
{
    oxs_buf_t *head = &session->head;
    bool with_body = session->method != OXS__HTTP_HEAD;
    int64_t bytes_out;

    if (session->ctx->stopping)
        session->close_after = true;
    if (session->out.failed) {
        oxs_buf_reset(&session->out);
        session->status = 500;
        session->retry_after = false;
        /* The error replaces a body that may have been text or binary tensors. */
        session->content_type = NULL;
        session->json_len = 0;
        oxs_json_encode_error(&session->out, "out of memory while writing the response");
    }
    if (session->request_id[0] == '\0')
        generate_request_id(session->ctx, session->request_id, sizeof(session->request_id));

    oxs_buf_reset(head);
    const char *type = session->content_type != NULL ? session->content_type
                       : session->json_len > 0       ? "application/octet-stream"
                                                     : "application/json";
    oxs_buf_printf(head, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                         "Content-Length: %zu\r\nX-Request-ID: %s\r\n",
                   session->status, oxs__http_reason(session->status), type, session->out.len,
                   session->request_id);
    if (session->json_len > 0)
        oxs_buf_printf(head, "Inference-Header-Content-Length: %zu\r\n", session->json_len);
    if (session->retry_after)
        oxs_buf_puts(head, "Retry-After: 1\r\n");
    if (session->traceparent[0] != '\0')
        oxs_buf_printf(head, "traceparent: %s\r\n", session->traceparent);
    if (session->allow != NULL)
        oxs_buf_printf(head, "Allow: %s\r\n", session->allow);
    if (session->close_after)
        oxs_buf_puts(head, "Connection: close\r\n");
    else if (session->http10)
        oxs_buf_puts(head, "Connection: keep-alive\r\n");
    oxs_buf_puts(head, "\r\n");
    if (head->failed) {
        close_session(session, false);
        return;
    }

    bytes_out = (int64_t)head->len + (with_body ? (int64_t)session->out.len : 0);
    log_request(session, bytes_out);

    session->state = STATE_SENDING;
    if (session->released)
        return;
    session->io->write(session->io_user, head->data, head->len, session->out.data,
                       with_body ? session->out.len : 0);
}

static void send_error(oxs__http_session_t *session, int status, const char *message)
{
    session->json_len = 0;
    oxs_buf_reset(&session->error);
    oxs_buf_puts(&session->error, message);
    oxs_buf_reset(&session->out);
    oxs_json_encode_error(&session->out, message);
    session->status = status;
    send_response(session);
}

/* Sends the error found while receiving the request; a close_now error also closes. */
static void send_early_error(oxs__http_session_t *session)
{
    if (session->early_close) {
        session->close_after = true;
        oxs_buf_free(&session->pending);
        session->pending_offset = 0;
    }
    send_error(session, session->early_status, session->early_error);
}

/* ------------------------------------------------------------------------------------------ */
/* Dispatch */

/* Decompresses a gzip or deflate body into session->inflated, stopping as soon as the output
 * passes the body limit, so a small compressed bomb is never inflated in full. Returns 0 with
 * *body and *body_len set (the body as received without Content-Encoding or with "identity"),
 * or the HTTP status of an error written into error. */
static int decode_body(oxs__http_session_t *session, const char **body, size_t *body_len,
                       char *error, size_t error_size)
{
    const oxs_buf_t *header = &session->encoding_header;
    size_t limit = session->ctx->max_request_bytes;
    int window_bits;

    *body = session->body.data ? session->body.data : "";
    *body_len = session->body.len;
    if (header->len == 0 && !header->failed)
        return 0;
    /* Trim spaces; one coding only. */
    const char *value = header->data ? header->data : "";
    size_t len = header->len;
    while (len > 0 && (value[0] == ' ' || value[0] == '\t'))
        value++, len--;
    while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
        len--;
    if (len == 8 && strncasecmp(value, "identity", 8) == 0)
        return 0;
    if ((len == 4 && strncasecmp(value, "gzip", 4) == 0) ||
        (len == 6 && strncasecmp(value, "x-gzip", 6) == 0)) {
        window_bits = 15 + 16;
    } else if (len == 7 && strncasecmp(value, "deflate", 7) == 0) {
        window_bits = 15; /* the zlib format, as HTTP's deflate is */
    } else {
        snprintf(error, error_size,
                 "Content-Encoding \"%.*s\" is not supported; expected gzip, deflate or identity",
                 header->failed ? 32 : (int)len, value);
        return 415;
    }

    z_stream stream;
    memset(&stream, 0, sizeof(stream));
    if (inflateInit2(&stream, window_bits) != Z_OK) {
        snprintf(error, error_size, "out of memory while decompressing the request body");
        return 500;
    }
    oxs_buf_t *out = &session->inflated;
    oxs_buf_reset(out);
    stream.next_in = (Bytef *)*body;
    stream.avail_in = (uInt)*body_len;
    int rc = Z_OK, status = 0;
    while (rc != Z_STREAM_END) {
        /* One byte past the limit shows that the body is too large. */
        size_t room = limit + 1 - out->len;
        size_t chunk = room < INFLATE_CHUNK ? room : INFLATE_CHUNK;
        if (chunk != 0 && !oxs_buf_reserve(out, chunk) && out->out_of_memory) {
            snprintf(error, error_size, "out of memory while decompressing the request body");
            status = 500;
            break;
        }
        if (chunk == 0 || out->failed) {
            snprintf(error, error_size,
                     "the decompressed request body is larger than %zu bytes "
                     "(--max-request-bytes)",
                     limit);
            status = 413;
            break;
        }
        stream.next_out = (Bytef *)out->data + out->len;
        stream.avail_out = (uInt)chunk;
        rc = inflate(&stream, Z_NO_FLUSH);
        out->len += chunk - stream.avail_out;
        if (out->len > limit) {
            snprintf(error, error_size,
                     "the decompressed request body is larger than %zu bytes "
                     "(--max-request-bytes)",
                     limit);
            status = 413;
            break;
        }
        if (rc == Z_STREAM_END)
            break;
        if (rc != Z_OK || (stream.avail_in == 0 && stream.avail_out != 0)) {
            snprintf(error, error_size,
                     "the request body is not valid %.*s data (%s)", (int)len, value,
                     stream.msg != NULL ? stream.msg
                     : rc == Z_OK       ? "it ends before the compressed stream does"
                                        : "invalid data");
            status = 400;
            break;
        }
    }
    inflateEnd(&stream);
    if (status != 0)
        return status;
    oxs_buf_cstr(out);
    *body = out->data;
    *body_len = out->len;
    return 0;
}

/* Reads a header value of digits only into *out. */
static bool parse_digits(const oxs_buf_t *value, uint64_t *out)
{
    uint64_t n = 0;
    bool valid = !value->failed && value->len > 0;
    for (size_t i = 0; valid && i < value->len; i++) {
        char c = value->data[i];
        valid = c >= '0' && c <= '9' && n <= (UINT64_MAX - 9) / 10;
        n = n * 10 + (uint64_t)(c - '0');
    }
    *out = n;
    return valid;
}

/* Reads X-Request-Timeout-Ms: milliseconds, up to an hour. */
static bool parse_timeout(oxs__http_session_t *session, int64_t *out, char *error,
                          size_t error_size)
{
    oxs_buf_t *value = &session->timeout_header;
    uint64_t ms = 0;
    if (!parse_digits(value, &ms) || ms > 3600000) {
        snprintf(error, error_size,
                 "X-Request-Timeout-Ms: value \"%.*s\" is not valid; expected milliseconds, "
                 "an integer from 0 to 3600000",
                 value->failed ? MAX_BINARY_HEADER_BYTES : (int)value->len,
                 value->data ? value->data : "");
        return false;
    }
    *out = (int64_t)ms;
    return true;
}

/* Reads Inference-Header-Content-Length: digits only, at most the body's length. */
static bool parse_json_len(oxs__http_session_t *session, int64_t *out, char *error,
                           size_t error_size)
{
    oxs_buf_t *value = &session->binary_header;
    uint64_t n = 0;
    if (!parse_digits(value, &n)) {
        snprintf(error, error_size,
                 "Inference-Header-Content-Length: value \"%.*s\" is not valid; expected the "
                 "byte length of the JSON header, a non-negative integer",
                 value->failed ? MAX_BINARY_HEADER_BYTES : (int)value->len,
                 value->data ? value->data : "");
        return false;
    }
    if (n > session->body.len) {
        snprintf(error, error_size,
                 "Inference-Header-Content-Length is %" PRIu64 ", but the body has only %zu "
                 "bytes",
                 n, session->body.len);
        return false;
    }
    *out = (int64_t)n;
    return true;
}

static void dispatch(oxs__http_session_t *session)
{
    oxs__http_route_t route;
    const char *path;
    size_t path_len;
    char error[ERROR_BYTES];
    int status;

    session->request_ready = false;
    session->content_type = NULL;
    memset(&session->times, 0, sizeof(session->times));
    session->state = STATE_PROCESSING;
    count_in_flight(session, true);
    /* Reading goes on while the request is processed, so that a client that closes its
     * connection is noticed and its inference canceled. Pipelined bytes wait in pending. */
    set_reading(session, pending_bytes(session) < MAX_PENDING_WHILE_BUSY);
    if (!oxs__http_parser_keep_alive(&session->parser) ||
        oxs__http_parser_upgrade(&session->parser))
        session->close_after = true;

    if (session->early_status != 0) {
        send_early_error(session);
        return;
    }
    if (!oxs__http_target_path(session->target.data, session->target.len, &path, &path_len)) {
        snprintf(error, sizeof(error),
                 "request target \"%.200s\" is invalid; expected a path such as /v2",
                 oxs_buf_cstr(&session->target));
        send_error(session, 400, error);
        return;
    }
    oxs_buf_reset(&session->route_scratch);
    status = oxs__http_route_match(session->method, session->method_name, path, path_len,
                                   &session->route_scratch, &route, &session->allow, error,
                                   sizeof(error));
    if (status != 0) {
        send_error(session, status, error);
        return;
    }

    int64_t json_len = -1;
    if (session->binary_header_seen &&
        !parse_json_len(session, &json_len, error, sizeof(error))) {
        send_error(session, 400, error);
        return;
    }

    int64_t timeout_ms = -1;
    if (session->timeout_header_seen &&
        !parse_timeout(session, &timeout_ms, error, sizeof(error))) {
        send_error(session, 400, error);
        return;
    }

    const char *body = NULL;
    size_t body_len = 0;
    status = decode_body(session, &body, &body_len, error, sizeof(error));
    if (status != 0) {
        send_error(session, status, error);
        return;
    }

    oxs__http_exchange_t exchange = {
        .json_len = json_len,
        .timeout_ms = timeout_ms,
        .ctx = session->ctx,
        .session = session,
        .route = &route,
        .body = body,
        .body_len = body_len,
        .request_id = session->request_id,
        .out = &session->out,
        .error = &session->error,
        .model = &session->model,
        .metrics_port = session->metrics_only,
    };
    oxs_buf_reset(&session->out);
    oxs__http_handle(&exchange);
    session->content_type = exchange.content_type;
    oxs_buf_cstr(&session->model);
    if (exchange.status == 0)
        return; /* submitted: the completion sends the response */
    session->status = exchange.status;
    session->retry_after = exchange.retry_after;
    send_response(session);
}

/* Frees buffers that grew large for one request, so idle connections stay small. */
static void trim_buffers(oxs__http_session_t *session)
{
    oxs_buf_t *buffers[] = {&session->body, &session->out, &session->inflated};

    for (size_t i = 0; i < sizeof(buffers) / sizeof(buffers[0]); i++) {
        if (buffers[i]->cap > KEEP_BUFFER_BYTES) {
            size_t max = buffers[i]->max;
            oxs_buf_free(buffers[i]);
            oxs_buf_init(buffers[i], max);
        }
    }
}

/* Parses bytes; returns how many were consumed. Parse errors become early errors. */
static size_t parse_bytes(oxs__http_session_t *session, const char *data, size_t len)
{
    oxs__http_parse_result_t result;
    size_t consumed = oxs__http_parser_execute(&session->parser, data, len, &result);

    session->bytes_in += consumed;
    switch (result) {
    case OXS__HTTP_PARSE_OK:
    case OXS__HTTP_PARSE_PAUSED:
        break;
    case OXS__HTTP_PARSE_HEADER_TOO_LARGE:
        set_early_error(session, 431, true,
                        "request line and headers exceed the limit of %zu bytes set by "
                        "--max-header-bytes",
                        session->ctx->max_header_bytes);
        consumed = len;
        break;
    case OXS__HTTP_PARSE_INVALID:
        set_early_error(session, 400, true, "malformed HTTP request: %s",
                        oxs__http_parser_error(&session->parser));
        consumed = len;
        break;
    }
    return consumed;
}

/* Advances the session as far as it can: parses buffered bytes, dispatches complete requests,
 * sends early errors and sets reading. A re-entrant call returns at once, and the outer call's
 * loop picks up its state changes. */
static void session_drive(oxs__http_session_t *session)
{
    if (session->driving)
        return;
    session->driving = true;

    while (session->state == STATE_RECEIVING && !session->released) {
        if (session->early_status != 0 && session->early_close) {
            session->request_ready = false;
            session->state = STATE_PROCESSING;
            send_early_error(session);
            continue;
        }
        if (session->request_ready) {
            dispatch(session);
            continue;
        }
        if (pending_bytes(session) == 0)
            break;

        size_t consumed = parse_bytes(session, session->pending.data + session->pending_offset,
                                      pending_bytes(session));
        session->pending_offset += consumed;
        if (pending_bytes(session) == 0) {
            oxs_buf_reset(&session->pending);
            session->pending_offset = 0;
        }
        if (consumed == 0 && !session->request_ready && session->early_status == 0)
            break; /* no progress; wait for more bytes */
    }

    if (session->state == STATE_RECEIVING)
        set_reading(session, pending_bytes(session) == 0 && !session->request_ready);
    session->driving = false;
}

/* ------------------------------------------------------------------------------------------ */
/* Transport-facing functions */

oxs__http_session_t *oxs__http_session_create(oxs__http_context_t *ctx,
                                              const oxs__http_session_io_t *io, void *user)
{
    oxs__http_session_t *session = calloc(1, sizeof(*session));

    if (session == NULL)
        return NULL;
    session->ctx = ctx;
    session->io = io;
    session->io_user = user;
    session->state = STATE_RECEIVING;
    session->reading = true;
    oxs__http_parser_init(&session->parser, &parser_callbacks, session);
    oxs_buf_init(&session->pending, 0);
    oxs_buf_init(&session->target, ctx->max_uri_bytes);
    oxs_buf_init(&session->body, ctx->max_request_bytes);
    oxs_buf_init(&session->header_name, MAX_HEADER_NAME_BYTES);
    oxs_buf_init(&session->request_id_header, MAX_REQUEST_ID_BYTES);
    oxs_buf_init(&session->expect, MAX_EXPECT_BYTES);
    oxs_buf_init(&session->binary_header, MAX_BINARY_HEADER_BYTES);
    oxs_buf_init(&session->timeout_header, MAX_BINARY_HEADER_BYTES);
    oxs_buf_init(&session->traceparent_header, TRACEPARENT_LEN + 8);
    oxs_buf_init(&session->encoding_header, MAX_ENCODING_BYTES);
    /* One byte over the limit, which decode_body needs to see that a body is too large. */
    oxs_buf_init(&session->inflated, ctx->max_request_bytes + 1);
    oxs_buf_init(&session->head, 0);
    oxs_buf_init(&session->out, 0);
    oxs_buf_init(&session->model, MAX_MODEL_NAME_BYTES);
    oxs_buf_init(&session->error, MAX_LOGGED_ERROR_BYTES);
    oxs_buf_init(&session->route_scratch, ctx->max_uri_bytes);
    reset_request(session);
    return session;
}

void oxs__http_session_feed(oxs__http_session_t *session, const char *data, size_t len)
{
    if (session->state == STATE_CLOSED || session->released || len == 0)
        return;

    if (session->state == STATE_RECEIVING && pending_bytes(session) == 0 && !session->driving &&
        !session->request_ready && session->early_status == 0) {
        /* Fast path: parse straight from the caller's buffer and keep only the rest. */
        size_t consumed = parse_bytes(session, data, len);
        if (consumed < len && !(session->early_status != 0 && session->early_close))
            oxs_buf_append(&session->pending, data + consumed, len - consumed);
    } else if (!(session->early_status != 0 && session->early_close)) {
        oxs_buf_append(&session->pending, data, len);
    }
    if (session->pending.failed) {
        close_session(session, false);
        return;
    }
    if (session->state != STATE_RECEIVING && pending_bytes(session) >= MAX_PENDING_WHILE_BUSY)
        set_reading(session, false);
    session_drive(session);
}

void oxs__http_session_eof(oxs__http_session_t *session)
{
    if (session->state == STATE_CLOSED || session->released)
        return;
    if (session->in_message && oxs_log_enabled(session->ctx->logger, OXS_LOG_DEBUG)) {
        oxs_log_field_t fields[] = {OXS_LOG_NUM("bytes_in", session->bytes_in)};
        oxs_log_write(session->ctx->logger, OXS_LOG_DEBUG,
                      session->request_id[0] ? session->request_id : NULL, NULL,
                      "client closed the connection before sending a complete request", fields, 1);
    }
    if (session->state == STATE_RECEIVING) {
        close_session(session, false);
        return;
    }
    /* The client closed its side while its request is processed. As nginx does, this counts
     * as the client leaving: the inference is canceled, and the connection closes after the
     * response, which a client that only half-closed still receives. */
    session->close_after = true;
    pthread_mutex_lock(&session->ctx->done_lock);
    if (session->request != NULL)
        oxs_request_cancel(session->request);
    pthread_mutex_unlock(&session->ctx->done_lock);
}

void oxs__http_session_write_done(oxs__http_session_t *session, int status)
{
    if (session->state != STATE_SENDING)
        return;
    count_in_flight(session, false);
    if (status < 0) {
        close_session(session, false);
        return;
    }
    /* NOTE: when the server is stopping, pipelined requests still buffered behind this one
     * are dropped with the connection, as requests not yet received in full. */
    if (session->close_after || session->ctx->stopping) {
        close_session(session, true);
        return;
    }

    session->state = STATE_RECEIVING;
    session->bytes_in = 0;
    trim_buffers(session);
    reset_request(session);
    oxs__http_parser_resume(&session->parser);
    session_drive(session);
}

oxs__http_session_phase_t oxs__http_session_phase(const oxs__http_session_t *session)
{
    switch (session->state) {
    case STATE_RECEIVING:
        if (session->request_ready)
            return OXS__SESSION_PROCESSING;
        return session->in_message || pending_bytes(session) > 0 ? OXS__SESSION_RECEIVING
                                                                   : OXS__SESSION_IDLE;
    case STATE_PROCESSING:
        return OXS__SESSION_PROCESSING;
    case STATE_SENDING:
        return OXS__SESSION_SENDING;
    case STATE_CLOSED:
        break;
    }
    return OXS__SESSION_CLOSED;
}

bool oxs__http_session_in_headers(const oxs__http_session_t *session)
{
    return session->state == STATE_RECEIVING && session->in_message && !session->headers_done;
}

bool oxs__http_session_stop(oxs__http_session_t *session)
{
    switch (session->state) {
    case STATE_RECEIVING:
        /* Nothing was received in full, so nothing is owed: close. */
        if (!session->request_ready) {
            close_session(session, false);
            return true;
        }
        session->close_after = true;
        return false;
    case STATE_PROCESSING:
    case STATE_SENDING:
        session->close_after = true;
        return false;
    case STATE_CLOSED:
        break;
    }
    return false;
}

void oxs__http_session_log_timeout(const oxs__http_session_t *session, const char *flag,
                                   int secs)
{
    const oxs_logger_t *logger = session->ctx->logger;
    oxs__http_session_phase_t phase = oxs__http_session_phase(session);
    oxs_log_level_t level = phase == OXS__SESSION_IDLE ? OXS_LOG_DEBUG : OXS_LOG_WARN;
    const char *msg = "closed an idle connection";

    if (oxs__http_session_in_headers(session))
        msg = "closed a connection whose request headers did not arrive in time";
    else if (phase == OXS__SESSION_RECEIVING)
        msg = "closed a connection whose request body stopped arriving";
    else if (phase == OXS__SESSION_SENDING)
        msg = "closed a connection whose client did not read the response in time";
    if (!oxs_log_enabled(logger, level))
        return;

    oxs_log_field_t fields[] = {
        OXS_LOG_STR("limit", flag),
        OXS_LOG_NUM("timeout_secs", secs),
        OXS_LOG_NUM("bytes_in", session->bytes_in),
    };
    oxs_log_write(logger, level, session->request_id[0] ? session->request_id : NULL, NULL, msg,
                  fields, sizeof(fields) / sizeof(fields[0]));
}

static void session_free(oxs__http_session_t *session)
{
    oxs_buf_free(&session->pending);
    oxs_buf_free(&session->target);
    oxs_buf_free(&session->body);
    oxs_buf_free(&session->header_name);
    oxs_buf_free(&session->request_id_header);
    oxs_buf_free(&session->expect);
    oxs_buf_free(&session->binary_header);
    oxs_buf_free(&session->timeout_header);
    oxs_buf_free(&session->traceparent_header);
    oxs_buf_free(&session->encoding_header);
    oxs_buf_free(&session->inflated);
    oxs_buf_free(&session->head);
    oxs_buf_free(&session->out);
    oxs_buf_free(&session->model);
    oxs_buf_free(&session->error);
    oxs_buf_free(&session->route_scratch);
    free(session);
}

void oxs__http_session_release(oxs__http_session_t *session)
{
    session->released = true;
    session->io_user = NULL;
    if (session->state != STATE_CLOSED) {
        session->state = STATE_CLOSED;
        count_in_flight(session, false);
    }
    if (!session->inference_pending) {
        session_free(session);
        return;
    }
    /* The client left: its queued request is dropped before it runs, and a running one stops
     * when it runs alone. The completion frees the session as usual. */
    pthread_mutex_lock(&session->ctx->done_lock);
    if (session->request != NULL)
        oxs_request_cancel(session->request);
    pthread_mutex_unlock(&session->ctx->done_lock);
}

void oxs__http_session_serve_metrics_only(oxs__http_session_t *session)
{
    session->metrics_only = true;
}

/* ------------------------------------------------------------------------------------------ */
/* Inference completions */

static void queue_completion(oxs__http_session_t *session);

/* Runs on a worker thread: encodes the response into the session's output buffer, which the
 * loop thread leaves alone while the inference is pending, and queues the session. */
static void on_inference_complete(void *user, oxs_response_t *response)
{
    oxs__http_session_t *session = user;
    oxs__http_context_t *ctx = session->ctx;
    bool retry_after = false;

    /* From here the response may be destroyed: a cancellation must no longer reach it. */
    pthread_mutex_lock(&ctx->done_lock);
    session->request = NULL;
    pthread_mutex_unlock(&ctx->done_lock);

    oxs_buf_reset(&session->out);
    session->done_json_len = 0;
    session->done_status = oxs__http_encode_result(session->encoding, session->reply, response,
                                                   &session->out, &session->error, &retry_after,
                                                   &session->done_json_len);
    session->done_retry_after = retry_after;
    session->queue_us = oxs_response_queue_us(response);
    session->compute_us = oxs_response_compute_us(response);
    session->batch_size = oxs_response_batch_size(response);
    oxs_response_times(response, &session->times);
    oxs_response_destroy(response);
    queue_completion(session);
}

/* Runs on the repository thread: writes the action's outcome as the response. */
static void on_control_complete(void *user, oxs_status_t status, const char *message)
{
    oxs__http_session_t *session = user;
    bool retry_after = false;

    oxs_buf_reset(&session->out);
    session->done_json_len = 0;
    session->done_status = oxs__http_encode_status(status, message, &session->out,
                                                   &session->error, &retry_after);
    session->done_retry_after = retry_after;
    session->queue_us = 0;
    session->compute_us = 0;
    session->batch_size = 0;
    queue_completion(session);
}

oxs_status_t oxs__http_session_control(oxs__http_session_t *session,
                                       oxs_repository_action_t action, const char *name,
                                       char *error, size_t error_size)
{
    session->inference_pending = true;
    oxs_status_t status = oxs_repository_submit(session->ctx->server, action, name,
                                                on_control_complete, session, error,
                                                error_size);
    if (status != OXS_OK)
        session->inference_pending = false;
    return status;
}

/* Puts a session whose response is ready on its context's completion list and wakes the
 * loop. Worker or repository thread. */
static void queue_completion(oxs__http_session_t *session)
{
    oxs__http_context_t *ctx = session->ctx;

    pthread_mutex_lock(&ctx->done_lock);
    session->done_next = NULL;
    if (ctx->done_tail != NULL)
        ctx->done_tail->done_next = session;
    else
        ctx->done_head = session;
    ctx->done_tail = session;
    /* Waking the loop under the lock means the loop cannot run this completion, and a caller
     * cannot free the context, before this thread is done with it. */
    if (ctx->notify != NULL)
        ctx->notify(ctx->notify_user);
    pthread_mutex_unlock(&ctx->done_lock);
}

oxs_status_t oxs__http_session_submit(oxs__http_session_t *session, oxs_request_t *request,
                                      oxs__http_encoding_t encoding, const oxs_json_reply_t *reply,
                                      char *error, size_t error_size)
{
    oxs_status_t status;

    session->encoding = encoding;
    session->reply = reply;
    session->inference_pending = true;
    /* Set before submit: the completion may run before submit returns. */
    pthread_mutex_lock(&session->ctx->done_lock);
    session->request = request;
    pthread_mutex_unlock(&session->ctx->done_lock);
    status = oxs_request_submit(request, on_inference_complete, session, error, error_size);
    if (status != OXS_OK) {
        session->inference_pending = false;
        pthread_mutex_lock(&session->ctx->done_lock);
        session->request = NULL;
        pthread_mutex_unlock(&session->ctx->done_lock);
    }
    return status;
}

size_t oxs__http_context_run_completions(oxs__http_context_t *ctx)
{
    oxs__http_session_t *session;
    size_t count = 0;

    pthread_mutex_lock(&ctx->done_lock);
    session = ctx->done_head;
    ctx->done_head = NULL;
    ctx->done_tail = NULL;
    pthread_mutex_unlock(&ctx->done_lock);

    while (session != NULL) {
        oxs__http_session_t *next = session->done_next;

        session->inference_pending = false;
        count++;
        if (session->released) {
            /* The client left: the response is dropped, and the log line records its status. */
            session->status = session->done_status;
            log_request(session, 0);
            session_free(session);
        } else if (session->state == STATE_PROCESSING) {
            session->status = session->done_status;
            session->retry_after = session->done_retry_after;
            session->json_len = session->done_json_len;
            send_response(session);
        }
        session = next;
    }
    return count;
}
