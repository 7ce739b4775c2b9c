/*
 * HTTP sessions: the protocol state of one connection, with no sockets. The transport feeds the
 * bytes it receives into a session. The session parses requests, dispatches each complete request
 * to the handlers and hands response bytes back through the transport's callbacks. Unit tests
 * drive sessions the same way with byte strings.
 *
 * A session processes one request at a time. After a complete request the parser pauses and the
 * session stops the transport's reading. Bytes that arrived after the request wait in the session
 * until the response is written, so pipelined requests get their responses in order.
 *
 * Threads: everything here runs on the thread of the session's context (an I/O loop), except
 * inference completion callbacks, which run on a worker thread, encode the response there and
 * queue the session on its context's completion list. oxs__http_context_run_completions, called
 * on the loop thread, then sends those responses.
 */
#ifndef OXS_HTTP_SESSION_H
#define OXS_HTTP_SESSION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "onnxserve.h"
#include "server/log.h"

typedef struct oxs__http_session oxs__http_session_t;

/* The state that sessions of one I/O loop share. */
typedef struct oxs__http_context {
    oxs_server_t *server;
    size_t max_request_bytes;
    size_t max_uri_bytes;       /* request target; longer ones get 414 */
    int max_headers;            /* header fields per request; more get 431 */
    size_t max_header_bytes;    /* request line and headers, for the 431 message; the parser's
                                 * own limit is process-wide (oxs__http_parser_set_max_header_bytes) */
    const char *default_model; /* NULL: the only model */
    const oxs_logger_t *logger; /* may be NULL */
    atomic_int *in_flight;      /* requests received in full, response not yet sent */
    int64_t start_us;           /* monotonic clock at start, for the uptime */
    bool stopping;              /* no new requests: every response closes its connection */
    bool strict_readiness;      /* see oxs_server_ready; true after init */
    bool metrics_on_http_port;  /* GET /metrics is served on the API port too */
    const struct oxs_http_frontend *frontend; /* for its connection count; NULL in tests */
    struct oxs__http_trace *trace;  /* --trace-file, or NULL */
    uint64_t id_seed;           /* request id generator: random seed and counter */
    uint64_t id_counter;

    /* Sessions whose inference completed, filled by worker threads. */
    pthread_mutex_t done_lock;
    oxs__http_session_t *done_head;
    oxs__http_session_t *done_tail;
    /* Called by a worker thread after it queued a completion, to wake the loop; NULL when the
     * caller runs the completions itself (tests). */
    void (*notify)(void *user);
    void *notify_user;
} oxs__http_context_t;

/* Initializes a context; server may be NULL for tests that never reach a model. The URI and
 * header limits start at onnxserve's defaults: 16 KiB, 100 fields and 80 KiB, http-parser's own. */
oxs_status_t oxs__http_context_init(oxs__http_context_t *ctx, oxs_server_t *server,
                                    size_t max_request_bytes, const char *default_model,
                                    const oxs_logger_t *logger, atomic_int *in_flight);
void oxs__http_context_destroy(oxs__http_context_t *ctx);

/* Sends the responses of completed inferences and frees sessions released while their request
 * was running. Returns the number of completions handled. Loop thread. */
size_t oxs__http_context_run_completions(oxs__http_context_t *ctx);

/* Returns the current monotonic time in microseconds. */
int64_t oxs__http_now_us(void);

/* Transport callbacks. user is the value given to oxs__http_session_create. */
typedef struct oxs__http_session_io {
    /* Sends a final response (head, then body; body_len may be 0). The buffers stay valid until
     * the transport calls oxs__http_session_write_done, which it may do from inside this call. */
    void (*write)(void *user, const char *head, size_t head_len, const char *body,
                  size_t body_len);
    /* Sends an interim response ("100 Continue") from static memory; no write_done follows. */
    void (*write_interim)(void *user, const char *data, size_t len);
    /* Starts or stops reading from the socket. */
    void (*set_reading)(void *user, bool reading);
    /* Closes the connection. linger: a response was just written, so shut down the sending side
     * and discard what the client still sends for a short while before closing, so that the
     * client reads the response instead of a reset. The session makes no call after this one. */
    void (*close)(void *user, bool linger);
} oxs__http_session_io_t;

typedef enum oxs__http_session_phase {
    OXS__SESSION_IDLE,       /* waiting for the first byte of a request */
    OXS__SESSION_RECEIVING,  /* part of a request received */
    OXS__SESSION_PROCESSING, /* request complete, response not ready (inference running) */
    OXS__SESSION_SENDING,    /* response handed to the transport */
    OXS__SESSION_CLOSED,
} oxs__http_session_phase_t;

/* Creates a session in the reading state; returns NULL when out of memory. */
oxs__http_session_t *oxs__http_session_create(oxs__http_context_t *ctx,
                                              const oxs__http_session_io_t *io, void *user);

/* Processes received bytes. The bytes are copied where needed; data may be reused afterwards. */
void oxs__http_session_feed(oxs__http_session_t *session, const char *data, size_t len);

/* Limits the session to GET /metrics: it came through the metrics port. */
void oxs__http_session_serve_metrics_only(oxs__http_session_t *session);

/* Reports that the peer closed its sending side. */
void oxs__http_session_eof(oxs__http_session_t *session);

/* Reports that the response given to io->write was sent (status 0) or failed (negative). */
void oxs__http_session_write_done(oxs__http_session_t *session, int status);

oxs__http_session_phase_t oxs__http_session_phase(const oxs__http_session_t *session);

/* Returns true while a request's line and headers are arriving and are not complete. */
bool oxs__http_session_in_headers(const oxs__http_session_t *session);

/* Applies the context's stopping state. Returns true when the connection was closed now because
 * no complete request is pending. Otherwise the connection closes after its current response. */
bool oxs__http_session_stop(oxs__http_session_t *session);

/* Logs that the connection timed out in its current phase, under the time limit that flag
 * names. */
void oxs__http_session_log_timeout(const oxs__http_session_t *session, const char *flag,
                                   int secs);

/* Ends the transport's use of the session. The session is freed now, or when the completion of
 * its running inference arrives. */
void oxs__http_session_release(oxs__http_session_t *session);

/* Kinds of inference response, chosen by the handler that submits. */
typedef enum oxs__http_encoding {
    OXS__ENCODE_INFER,   /* KServe v2 infer response */
    OXS__ENCODE_PREDICT, /* /predict response */
} oxs__http_encoding_t;

struct oxs_json_reply;

/* Submits request for inference. Its response is encoded with encoding on the worker thread
 * and sent from oxs__http_context_run_completions. reply, for infer responses, lives in the
 * request's scratch memory. On error the caller keeps the request (as with
 * oxs_request_submit). Called by handlers. */
oxs_status_t oxs__http_session_submit(oxs__http_session_t *session, oxs_request_t *request,
                                      oxs__http_encoding_t encoding,
                                      const struct oxs_json_reply *reply, char *error,
                                      size_t error_size);

/* Queues a repository action (load or unload of name) whose outcome the session sends as the
 * response once the library's repository thread has run it. Called by handlers. */
oxs_status_t oxs__http_session_control(oxs__http_session_t *session,
                                       oxs_repository_action_t action, const char *name,
                                       char *error, size_t error_size);

#endif /* OXS_HTTP_SESSION_H */
