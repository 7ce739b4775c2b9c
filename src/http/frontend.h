/*
 * The HTTP/1.1 frontend: libuv event loops (one per I/O thread) with http-parser, serving the
 * KServe v2 REST API, /predict and /healthz over an oxs_server_t.
 *
 * Threads: oxs_http_start creates config->threads I/O threads, each running its own loop with
 * its own listening socket bound with SO_REUSEPORT to one port. Inference results come back from
 * worker threads through each loop's uv_async_t. The functions below are called from the thread
 * that called oxs_http_start (the main thread) unless marked otherwise.
 */
#ifndef OXS_HTTP_FRONTEND_H
#define OXS_HTTP_FRONTEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "onnxserve.h"
#include "server/log.h"

typedef struct oxs_http_config {
    const char *host;            /* listen address, default "127.0.0.1" */
    int port;                    /* 0: pick a free port */
    int threads;                 /* I/O threads, >= 1 */
    size_t max_request_bytes;    /* cap on one request body; larger ones get 413 from headers */
    /* The limits below take onnxserve's default when 0. The header size limit is
     * process-wide, because http-parser keeps it in a global: the last start sets it. */
    size_t max_uri_bytes;        /* request target; longer ones get 414 */
    int max_headers;             /* header fields of one request; more get 431 */
    size_t max_header_bytes;     /* request line and headers; more get 431 */
    int header_timeout_secs;     /* from a request's first byte to the end of its headers */
    int body_timeout_secs;       /* a request body without a byte received */
    int idle_timeout_secs;       /* keep-alive wait, and a response the client does not read */
    const char *default_model;   /* model for POST /predict, or NULL for the only model */
    bool strict_readiness;       /* /v2/health/ready needs every model that should load READY */
    int metrics_port;            /* GET /metrics only; 0 picks a free port, -1: none */
    bool metrics_on_http_port;   /* also serve GET /metrics on port */
    const char *trace_file;      /* one JSON line of timestamps per request, or NULL */
    int max_connections;         /* open connections on every port; past it new ones close */
} oxs_http_config_t;

typedef struct oxs_http_frontend oxs_http_frontend_t;

/* Binds, starts the I/O threads and returns at once. server and logger must outlive the
 * frontend. On error writes a message (such as the address already in use) into error. */
oxs_status_t oxs_http_start(oxs_server_t *server, const oxs_http_config_t *config,
                            const oxs_logger_t *logger, oxs_http_frontend_t **out, char *error,
                            size_t error_size);

/* Checks that config's host resolves and its port can be bound now, without keeping a socket,
 * so a caller can report a port in use before slow work such as loading models. Port 0 always
 * passes. On error writes the same message oxs_http_start would. */
oxs_status_t oxs_http_check_listen(const oxs_http_config_t *config, char *error,
                                   size_t error_size);

/* Returns the bound TCP port, and the metrics port (-1 without one). */
int oxs_http_port(const oxs_http_frontend_t *frontend);
int oxs_http_metrics_port(const oxs_http_frontend_t *frontend);

/* Returns the number of open connections on every port. Any thread. */
int oxs_http_open_connections(const oxs_http_frontend_t *frontend);

/* Stops accepting connections and new requests: listeners close, idle connections close,
 * a connection whose request body was fully received gets its response, then closes.
 * Returns once every I/O loop has closed its listeners, or after at most one second when a loop
 * is busy for that long. Any thread. */
void oxs_http_stop_accepting(oxs_http_frontend_t *frontend);

/* Returns the number of requests received in full whose response is not written yet. Any
 * thread. */
int oxs_http_in_flight(const oxs_http_frontend_t *frontend);

/* Stops every loop, closes every connection, joins the I/O threads and frees the frontend.
 * Call it only when no submitted request is still queued or running (oxs_server_drain returned
 * 0), because a later completion callback would reach freed memory. */
void oxs_http_destroy(oxs_http_frontend_t *frontend);

#endif /* OXS_HTTP_FRONTEND_H */
