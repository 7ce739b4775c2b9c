/*
 * Endpoint handlers: turn one routed request into a response body and an HTTP status, or submit
 * an inference whose response the session sends later.
 */
#ifndef OXS_HTTP_HANDLERS_H
#define OXS_HTTP_HANDLERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "http/routes.h"
#include "http/session.h"
#include "onnxserve.h"

/* One request and its response, as the session hands them to a handler. */
typedef struct oxs__http_exchange {
    oxs__http_context_t *ctx;
    oxs__http_session_t *session;
    const oxs__http_route_t *route;
    const char *body;
    size_t body_len;
    const char *request_id; /* from X-Request-ID, or generated */
    int64_t json_len;       /* Inference-Header-Content-Length, or -1 when absent */
    int64_t timeout_ms;     /* X-Request-Timeout-Ms, or -1 when absent */

    int status;         /* HTTP status; 0 when an inference was submitted */
    bool retry_after;   /* add "Retry-After: 1" */
    oxs_buf_t *out;     /* response body, written by the handler */
    oxs_buf_t *error;   /* error message for the log when status >= 400 */
    oxs_buf_t *model;   /* model name for the request log, written by the handler */
    const char *content_type; /* NULL: application/json */
    bool metrics_port;  /* the request came through the metrics port */
} oxs__http_exchange_t;

/* Handles a routed request: sets exchange->status and writes exchange->out, or submits. */
void oxs__http_handle(oxs__http_exchange_t *exchange);

/* Maps a library status to its HTTP status code; the only place that does. *retry_after is set
 * when the client should retry after a second (a full queue). */
int oxs__http_status_code(oxs_status_t status, bool *retry_after);

/* Encodes a finished inference (success or error) into out, writes an error's message into
 * error, and returns the HTTP status. reply (infer responses only) marks which outputs go as
 * binary data; *json_len is then the JSON header's length, else 0. Worker thread. */
int oxs__http_encode_result(oxs__http_encoding_t encoding, const struct oxs_json_reply *reply,
                            const oxs_response_t *response, oxs_buf_t *out, oxs_buf_t *error,
                            bool *retry_after, size_t *json_len);

/* Writes status as a response body ({} for OXS_OK, else {"error": message}, message
 * defaulting to the status's own), copies the message into error for the log and returns the
 * HTTP status. */
int oxs__http_encode_status(oxs_status_t status, const char *message, oxs_buf_t *out,
                            oxs_buf_t *error, bool *retry_after);

/* Returns the reason phrase of an HTTP status code, such as "Not Found". */
const char *oxs__http_reason(int status);

#endif /* OXS_HTTP_HANDLERS_H */
