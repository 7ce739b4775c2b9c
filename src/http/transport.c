/*
 * The libuv transport: I/O threads, listening sockets and connections. It moves bytes between
 * sockets and HTTP sessions and owns every libuv handle; the protocol lives in session.c.
 *
 * Each I/O thread runs its own loop with its own listening socket. libuv 1.44 cannot set
 * SO_REUSEPORT, so the sockets are created here with socket(), bind() and listen() and handed
 * to libuv with uv_tcp_open. The kernel then spreads new connections over the threads.
 * A libuv handle is touched only on its loop's thread: other threads set command bits and wake
 * the loop with uv_async_send.
 */
#include "http/frontend.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "http/parser.h"
#include "http/session.h"
#include "http/trace.h"

#define READ_BUFFER_BYTES (64 * 1024)
#define LISTEN_BACKLOG 1024
/* Maximum wait in oxs_http_stop_accepting for the loops to close their listeners. A loop busy
 * for longer keeps accepting until it reads the command. */
#define STOP_ACCEPTING_WAIT_MS 1000
/* How long a connection closed after a response keeps discarding what the client still sends,
 * so the client reads the response instead of a reset. */
#define LINGER_MS 2000
/* uv_buf_t lengths are unsigned int, so a response body goes out in parts of at most 1 GiB. */
#define WRITE_PART_BYTES ((size_t)1 << 30)
#define MAX_WRITE_PARTS 16

enum {
    COMMAND_STOP_ACCEPTING = 1,
    COMMAND_EXIT = 2,
};

typedef struct io_loop io_loop_t;

/* Which time limit a connection's timer runs. */
typedef enum timer_kind {
    TIMER_IDLE,    /* waiting for a request, for an inference, or for the client to read */
    TIMER_HEADERS, /* a request's line and headers are arriving */
    TIMER_BODY,    /* a request's body is arriving */
} timer_kind_t;

typedef struct connection {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t write_req;
    uv_write_t interim_req;
    uv_shutdown_t shutdown_req;
    io_loop_t *loop;
    oxs__http_session_t *session;
    struct connection *prev;
    struct connection *next;
    size_t unsent_bytes; /* write queue size at the last write or timeout, to see progress */
    timer_kind_t timer_kind;
    int open_handles;
    bool closing;
    bool lingering;
    bool interim_pending;
} connection_t;

/* The API port's listener, then the metrics port's when there is one. */
#define API_LISTENER 0
#define METRICS_LISTENER 1

typedef struct listener {
    uv_tcp_t tcp;
    io_loop_t *loop;
    int fd; /* listening socket until libuv owns it, else -1 */
    bool ready;
    bool closed;
    bool reject_waiting; /* a connection to reject waits until the loop's reject handle closes */
} listener_t;

struct io_loop {
    oxs_http_frontend_t *frontend;
    uv_loop_t loop;
    listener_t listeners[2];
    int listener_count;
    uv_async_t wakeup;
    uv_thread_t thread;
    oxs__http_context_t ctx;
    bool loop_ready;
    bool ctx_ready;
    bool wakeup_ready;
    bool thread_started;
    bool stopping;
    atomic_bool listeners_closed; /* set by this loop's thread once stopping closed them */
    atomic_int commands;
    atomic_int open_connections; /* written by this loop's thread only */
    connection_t *connections;
    /* Accepts and closes a connection that gets no connection_t for want of memory, because
     * libuv stops watching a listener until its pending connection is accepted. */
    uv_tcp_t reject;
    bool reject_busy; /* reject is open or closing */
    char read_buffer[READ_BUFFER_BYTES];
};

struct oxs_http_frontend {
    oxs_server_t *server;
    const oxs_logger_t *logger;
    oxs_http_config_t config;
    char *host;
    char *default_model;
    int port;
    int metrics_port; /* -1: no metrics listener */
    oxs__http_trace_t *trace; /* --trace-file, or NULL */
    atomic_int in_flight;
    int loop_count;
    io_loop_t **loops;
};

/* ------------------------------------------------------------------------------------------ */
/* Connections */

static void connection_on_handle_closed(uv_handle_t *handle)
{
    connection_t *conn = handle->data;

    if (--conn->open_handles > 0)
        return;
    io_loop_t *loop = conn->loop;
    atomic_store_explicit(&loop->open_connections,
                          atomic_load_explicit(&loop->open_connections, memory_order_relaxed) - 1,
                          memory_order_relaxed);
    if (conn->session != NULL)
        oxs__http_session_release(conn->session);
    free(conn);
}

static void connection_close(connection_t *conn)
{
    io_loop_t *loop = conn->loop;

    if (conn->closing)
        return;
    conn->closing = true;
    if (conn->prev != NULL)
        conn->prev->next = conn->next;
    else
        loop->connections = conn->next;
    if (conn->next != NULL)
        conn->next->prev = conn->prev;
    conn->prev = conn->next = NULL;

    uv_read_stop((uv_stream_t *)&conn->tcp);
    uv_timer_stop(&conn->timer);
    conn->open_handles = 2;
    uv_close((uv_handle_t *)&conn->tcp, connection_on_handle_closed);
    uv_close((uv_handle_t *)&conn->timer, connection_on_handle_closed);
}

static void connection_on_linger_timeout(uv_timer_t *timer)
{
    connection_close(timer->data);
}

/* Returns the flag and the seconds of a time limit. */
static int timer_secs(const oxs_http_config_t *config, timer_kind_t kind, const char **flag)
{
    switch (kind) {
    case TIMER_HEADERS:
        *flag = "--http-header-timeout-secs";
        return config->header_timeout_secs > 0 ? config->header_timeout_secs
                                               : config->idle_timeout_secs;
    case TIMER_BODY:
        *flag = "--http-body-timeout-secs";
        return config->body_timeout_secs > 0 ? config->body_timeout_secs
                                             : config->idle_timeout_secs;
    case TIMER_IDLE:
        break;
    }
    *flag = "--http-idle-timeout-secs";
    return config->idle_timeout_secs;
}

static void connection_on_timeout(uv_timer_t *timer)
{
    connection_t *conn = timer->data;
    const char *flag = NULL;
    int secs = timer_secs(&conn->loop->frontend->config, conn->timer_kind, &flag);

    oxs__http_session_phase_t phase = oxs__http_session_phase(conn->session);

    if (phase == OXS__SESSION_PROCESSING) {
        /* The inference is still running, and its duration is not the client's fault. */
        uv_timer_again(timer);
        return;
    }
    if (phase == OXS__SESSION_SENDING && conn->tcp.write_queue_size < conn->unsent_bytes) {
        /* A large response is still moving to a client that reads it. */
        conn->unsent_bytes = conn->tcp.write_queue_size;
        uv_timer_again(timer);
        return;
    }
    oxs__http_session_log_timeout(conn->session, flag, secs);
    connection_close(conn);
}

/* Starts the time limit of the connection's current phase. Bytes that extend a request's
 * headers do not restart the header limit, so the headers must arrive within it from their
 * first byte, however slowly they trickle. Each body byte restarts the body limit. */
static void connection_restart_timer(connection_t *conn)
{
    timer_kind_t kind = TIMER_IDLE;
    if (oxs__http_session_in_headers(conn->session))
        kind = TIMER_HEADERS;
    else if (oxs__http_session_phase(conn->session) == OXS__SESSION_RECEIVING)
        kind = TIMER_BODY;

    if (conn->closing || conn->lingering)
        return;
    if (kind == TIMER_HEADERS && conn->timer_kind == TIMER_HEADERS &&
        uv_is_active((uv_handle_t *)&conn->timer))
        return;

    const char *flag = NULL;
    int secs = timer_secs(&conn->loop->frontend->config, kind, &flag);
    if (secs <= 0)
        return;
    uint64_t ms = (uint64_t)secs * 1000;
    conn->timer_kind = kind;
    uv_timer_start(&conn->timer, connection_on_timeout, ms, ms);
}

static void connection_on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    connection_t *conn = handle->data;

    (void)suggested;
    /* One buffer per loop: a session copies the bytes it does not consume at once. */
    *buf = uv_buf_init(conn->loop->read_buffer, sizeof(conn->loop->read_buffer));
}

static void connection_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    connection_t *conn = stream->data;

    if (conn->closing)
        return;
    if (nread > 0) {
        if (conn->lingering)
            return; /* discarded */
        oxs__http_session_feed(conn->session, buf->base, (size_t)nread);
        connection_restart_timer(conn);
        return;
    }
    if (nread == 0)
        return; /* EAGAIN */
    if (nread == UV_EOF && !conn->lingering) {
        oxs__http_session_eof(conn->session);
        if (!conn->closing)
            uv_read_stop(stream);
        return;
    }
    connection_close(conn);
}

static void connection_on_write(uv_write_t *req, int status)
{
    connection_t *conn = req->data;

    connection_restart_timer(conn);
    oxs__http_session_write_done(conn->session, status);
}

static void connection_on_interim_write(uv_write_t *req, int status)
{
    connection_t *conn = req->data;

    (void)status; /* a failed write also fails the final response, which closes */
    conn->interim_pending = false;
}

static void connection_on_shutdown(uv_shutdown_t *req, int status)
{
    connection_t *conn = req->data;

    if (status < 0)
        connection_close(conn);
}

/* Session callbacks */

static void io_write(void *user, const char *head, size_t head_len, const char *body,
                     size_t body_len)
{
    connection_t *conn = user;
    uv_buf_t bufs[1 + MAX_WRITE_PARTS];
    unsigned count = 1;
    int rc;

    bufs[0] = uv_buf_init((char *)head, (unsigned)head_len);
    while (body_len > 0 && count < sizeof(bufs) / sizeof(bufs[0])) {
        size_t part = body_len < WRITE_PART_BYTES ? body_len : WRITE_PART_BYTES;
        bufs[count++] = uv_buf_init((char *)body, (unsigned)part);
        body += part;
        body_len -= part;
    }
    if (body_len > 0) {
        oxs__http_session_write_done(conn->session, UV_E2BIG); /* over 16 GiB */
        return;
    }
    conn->write_req.data = conn;
    connection_restart_timer(conn);
    rc = uv_write(&conn->write_req, (uv_stream_t *)&conn->tcp, bufs, count, connection_on_write);
    if (rc < 0) {
        oxs__http_session_write_done(conn->session, rc);
        return;
    }
    conn->unsent_bytes = conn->tcp.write_queue_size;
}

static void io_write_interim(void *user, const char *data, size_t len)
{
    connection_t *conn = user;
    uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);

    if (conn->interim_pending)
        return;
    conn->interim_req.data = conn;
    if (uv_write(&conn->interim_req, (uv_stream_t *)&conn->tcp, &buf, 1,
                 connection_on_interim_write) == 0)
        conn->interim_pending = true;
}

static void io_set_reading(void *user, bool reading)
{
    connection_t *conn = user;

    if (conn->closing || conn->lingering)
        return;
    if (reading) {
        connection_restart_timer(conn);
        if (uv_read_start((uv_stream_t *)&conn->tcp, connection_on_alloc, connection_on_read) < 0)
            connection_close(conn);
    } else {
        uv_read_stop((uv_stream_t *)&conn->tcp);
    }
}

static void io_close(void *user, bool linger)
{
    connection_t *conn = user;

    if (conn->closing || conn->lingering)
        return;
    if (!linger) {
        connection_close(conn);
        return;
    }
    conn->lingering = true;
    conn->shutdown_req.data = conn;
    if (uv_shutdown(&conn->shutdown_req, (uv_stream_t *)&conn->tcp, connection_on_shutdown) < 0 ||
        uv_read_start((uv_stream_t *)&conn->tcp, connection_on_alloc, connection_on_read) < 0) {
        connection_close(conn);
        return;
    }
    uv_timer_start(&conn->timer, connection_on_linger_timeout, LINGER_MS, 0);
}

static const oxs__http_session_io_t session_io = {
    .write = io_write,
    .write_interim = io_write_interim,
    .set_reading = io_set_reading,
    .close = io_close,
};

static void loop_reject_connection(io_loop_t *loop, listener_t *listener);

static void loop_on_reject_closed(uv_handle_t *handle)
{
    io_loop_t *loop = handle->data;

    loop->reject_busy = false;
    for (int i = 0; i < loop->listener_count; i++) {
        listener_t *listener = &loop->listeners[i];
        if (listener->reject_waiting) {
            listener->reject_waiting = false;
            loop_reject_connection(loop, listener);
            return;
        }
    }
}

/* Accepts the listener's pending connection into the loop's reject handle and closes it, so
 * that the client sees the connection close and the listener accepts again. */
static void loop_reject_connection(io_loop_t *loop, listener_t *listener)
{
    if (listener->closed)
        return; /* closing the listener closes its pending connection */
    if (loop->reject_busy) {
        listener->reject_waiting = true;
        return;
    }
    loop->reject_busy = true;
    uv_tcp_init(&loop->loop, &loop->reject);
    loop->reject.data = loop;
    (void)uv_accept((uv_stream_t *)&listener->tcp, (uv_stream_t *)&loop->reject);
    uv_close((uv_handle_t *)&loop->reject, loop_on_reject_closed);
}

static void listener_on_connection(uv_stream_t *stream, int status)
{
    listener_t *listener = stream->data;
    io_loop_t *loop = listener->loop;
    const oxs_logger_t *logger = loop->frontend->logger;
    connection_t *conn;

    if (status < 0) {
        if (oxs_log_enabled(logger, OXS_LOG_WARN)) {
            oxs_log_field_t fields[] = {OXS_LOG_STR("error", uv_strerror(status))};
            oxs_log_write(logger, OXS_LOG_WARN, NULL, NULL, "failed to accept a connection",
                          fields, 1);
        }
        return;
    }

    conn = calloc(1, sizeof(*conn));
    if (conn == NULL) {
        if (oxs_log_enabled(logger, OXS_LOG_ERROR))
            oxs_log_write(logger, OXS_LOG_ERROR, NULL, NULL,
                          "out of memory while accepting a connection", NULL, 0);
        loop_reject_connection(loop, listener);
        return;
    }
    conn->loop = loop;
    conn->tcp.data = conn;
    conn->timer.data = conn;
    uv_tcp_init(&loop->loop, &conn->tcp);
    uv_timer_init(&loop->loop, &conn->timer);
    conn->next = loop->connections;
    if (loop->connections != NULL)
        loop->connections->prev = conn;
    loop->connections = conn;
    atomic_store_explicit(&loop->open_connections,
                          atomic_load_explicit(&loop->open_connections, memory_order_relaxed) + 1,
                          memory_order_relaxed);

    if (uv_accept(stream, (uv_stream_t *)&conn->tcp) < 0 || loop->stopping) {
        connection_close(conn);
        return;
    }
    /* The count includes this connection. Other loops' counts are read without a lock, so
     * connections accepted at the same moment on several loops may pass the limit by a few. */
    int max = loop->frontend->config.max_connections;
    if (max > 0 && oxs_http_open_connections(loop->frontend) > max) {
        if (oxs_log_enabled(logger, OXS_LOG_WARN)) {
            oxs_log_field_t fields[] = {OXS_LOG_NUM("max_connections", max)};
            oxs_log_write(logger, OXS_LOG_WARN, NULL, NULL,
                          "connection closed: --max-connections reached", fields, 1);
        }
        connection_close(conn);
        return;
    }
    conn->session = oxs__http_session_create(&loop->ctx, &session_io, conn);
    if (conn->session == NULL) {
        connection_close(conn);
        return;
    }
    if (listener == &loop->listeners[METRICS_LISTENER])
        oxs__http_session_serve_metrics_only(conn->session);
    uv_tcp_nodelay(&conn->tcp, 1);
    connection_restart_timer(conn);
    if (uv_read_start((uv_stream_t *)&conn->tcp, connection_on_alloc, connection_on_read) < 0)
        connection_close(conn);
}

/* ------------------------------------------------------------------------------------------ */
/* Loops */

static void loop_close_listener(io_loop_t *loop)
{
    for (int i = 0; i < loop->listener_count; i++) {
        listener_t *listener = &loop->listeners[i];
        if (listener->ready && !listener->closed) {
            listener->closed = true;
            uv_close((uv_handle_t *)&listener->tcp, NULL);
        }
    }
}

static void loop_stop_accepting(io_loop_t *loop)
{
    connection_t *conn = loop->connections;

    if (loop->stopping)
        return;
    loop->stopping = true;
    loop->ctx.stopping = true;
    loop_close_listener(loop);
    atomic_store(&loop->listeners_closed, true);
    while (conn != NULL) {
        connection_t *next = conn->next; /* stopping may unlink conn */
        if (!conn->lingering)
            oxs__http_session_stop(conn->session);
        conn = next;
    }
}

static void loop_exit(io_loop_t *loop)
{
    loop_stop_accepting(loop);
    while (loop->connections != NULL)
        connection_close(loop->connections);
    if (loop->wakeup_ready) {
        loop->wakeup_ready = false;
        uv_close((uv_handle_t *)&loop->wakeup, NULL);
    }
}

static void loop_on_wakeup(uv_async_t *async)
{
    io_loop_t *loop = async->data;
    int commands = atomic_exchange(&loop->commands, 0);

    oxs__http_context_run_completions(&loop->ctx);
    if (commands & COMMAND_STOP_ACCEPTING)
        loop_stop_accepting(loop);
    if (commands & COMMAND_EXIT)
        loop_exit(loop);
}

static void loop_notify(void *user)
{
    io_loop_t *loop = user;
    uv_async_send(&loop->wakeup);
}

static void loop_thread_main(void *arg)
{
    io_loop_t *loop = arg;
    uv_run(&loop->loop, UV_RUN_DEFAULT);
}

static void loop_send_command(io_loop_t *loop, int command)
{
    atomic_fetch_or(&loop->commands, command);
    uv_async_send(&loop->wakeup);
}

/* Closes every handle of a loop whose thread never started (or has ended) and frees it. */
static void loop_free(io_loop_t *loop)
{
    if (loop->loop_ready) {
        loop_exit(loop);
        loop_close_listener(loop);
        uv_run(&loop->loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop->loop);
    }
    if (loop->ctx_ready) {
        /* Frees sessions whose completion arrived after the loop stopped. */
        oxs__http_context_run_completions(&loop->ctx);
        oxs__http_context_destroy(&loop->ctx);
    }
    for (int i = 0; i < loop->listener_count; i++)
        if (loop->listeners[i].fd >= 0)
            close(loop->listeners[i].fd);
    free(loop);
}

/* ------------------------------------------------------------------------------------------ */
/* Sockets */

/* Descriptors kept for listeners, model files and logs beside the connections. */
#define SPARE_DESCRIPTORS 64

/* Raises the open-file limit to its hard limit, and warns when that is still too low for
 * max_connections connections. */
static void raise_open_file_limit(const oxs_logger_t *logger, int max_connections)
{
    struct rlimit limit;

    if (getrlimit(RLIMIT_NOFILE, &limit) != 0)
        return;
    if (limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &limit) != 0 && oxs_log_enabled(logger, OXS_LOG_WARN)) {
            oxs_log_field_t fields[] = {OXS_LOG_STR("error", strerror(errno))};
            oxs_log_write(logger, OXS_LOG_WARN, NULL, NULL,
                          "failed to raise the open file limit to its hard limit", fields, 1);
        }
        getrlimit(RLIMIT_NOFILE, &limit);
    }
    if (max_connections > 0 &&
        limit.rlim_cur < (rlim_t)max_connections + SPARE_DESCRIPTORS &&
        oxs_log_enabled(logger, OXS_LOG_WARN)) {
        oxs_log_field_t fields[] = {
            OXS_LOG_NUM("open_file_limit", (int64_t)limit.rlim_cur),
            OXS_LOG_NUM("max_connections", max_connections),
        };
        oxs_log_write(logger, OXS_LOG_WARN, NULL, NULL,
                      "the open file limit is below --max-connections plus 64; raise it (ulimit "
                      "-n) or connections past it fail",
                      fields, 2);
    }
}

/* Creates a socket bound to address with SO_REUSEPORT (when reuse_port) and listening. */
static int open_listener(const struct addrinfo *address, bool reuse_port, bool listen_now,
                         int *error_number)
{
    int enable = 1;
    int fd = socket(address->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    if (fd < 0) {
        *error_number = errno;
        return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &enable, sizeof(enable)) != 0 ||
        (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &enable, sizeof(enable)) != 0) ||
        bind(fd, address->ai_addr, address->ai_addrlen) != 0 ||
        (listen_now && listen(fd, LISTEN_BACKLOG) != 0)) {
        *error_number = errno;
        close(fd);
        return -1;
    }
    return fd;
}

static int socket_port(int fd)
{
    struct sockaddr_storage address;
    socklen_t len = sizeof(address);

    if (getsockname(fd, (struct sockaddr *)&address, &len) != 0)
        return -1;
    if (address.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&address)->sin6_port);
    return ntohs(((struct sockaddr_in *)&address)->sin_port);
}

static void set_port(struct addrinfo *address, int port)
{
    if (address->ai_family == AF_INET6)
        ((struct sockaddr_in6 *)address->ai_addr)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)address->ai_addr)->sin_port = htons((uint16_t)port);
}

static void format_bind_error(char *error, size_t error_size, const char *host, int port,
                              int error_number)
{
    snprintf(error, error_size, "failed to listen on %s port %d: %s%s", host, port,
             strerror(error_number),
             error_number == EADDRINUSE ? " (choose another port or stop the other server)" : "");
}

/* Resolves host and checks that port can be bound by binding a probe socket without
 * SO_REUSEPORT. With SO_REUSEPORT, a second server of the same user would share the port
 * silently, and Linux may even hand out a port that another SO_REUSEPORT listener holds when
 * binding port 0. The probe fails when the port is taken, and for port 0 it picks a port that no
 * other socket holds. On success *out (freed with freeaddrinfo) carries the port to bind. */
static oxs_status_t probe_address(const char *host, int port, struct addrinfo **out, char *error,
                                  size_t error_size)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *address = NULL;
    int error_number = 0;
    int rc = getaddrinfo(host, NULL, &hints, &address);

    *out = NULL;
    if (rc != 0) {
        snprintf(error, error_size, "invalid listen address \"%s\": %s", host, gai_strerror(rc));
        return OXS_ERR_INVALID_ARGUMENT;
    }
    set_port(address, port);

    int probe = open_listener(address, false, false, &error_number);
    if (probe < 0) {
        format_bind_error(error, error_size, host, port, error_number);
        freeaddrinfo(address);
        return OXS_ERR_UNAVAILABLE;
    }
    if (port == 0)
        set_port(address, socket_port(probe));
    close(probe);
    *out = address;
    return OXS_OK;
}

oxs_status_t oxs_http_check_listen(const oxs_http_config_t *config, char *error,
                                   size_t error_size)
{
    const char *host = config->host ? config->host : "127.0.0.1";
    struct addrinfo *address = NULL;
    oxs_status_t status = probe_address(host, config->port, &address, error, error_size);
    if (address != NULL)
        freeaddrinfo(address);
    address = NULL;
    if (status == OXS_OK && config->metrics_port >= 0)
        status = probe_address(host, config->metrics_port, &address, error, error_size);
    if (address != NULL)
        freeaddrinfo(address);
    return status;
}

/* Opens one listening socket per loop on port, as listener which of each loop, and returns the
 * port bound (port 0 picks one). */
static oxs_status_t open_port(oxs_http_frontend_t *frontend, int port, int which, int *bound,
                              char *error, size_t error_size)
{
    const char *host = frontend->host;
    struct addrinfo *address = NULL;
    int error_number = 0;
    oxs_status_t status = probe_address(host, port, &address, error, error_size);

    if (status != OXS_OK)
        return status;
    status = OXS_ERR_UNAVAILABLE;
    for (int i = 0; i < frontend->loop_count; i++) {
        listener_t *listener = &frontend->loops[i]->listeners[which];

        listener->fd = open_listener(address, true, true, &error_number);
        if (listener->fd < 0)
            goto bind_failed;
        if (i == 0)
            *bound = socket_port(listener->fd);
    }
    status = OXS_OK;
    goto cleanup;

bind_failed:
    format_bind_error(error, error_size, host, port, error_number);
cleanup:
    if (address != NULL)
        freeaddrinfo(address);
    return status;
}

static oxs_status_t open_listeners(oxs_http_frontend_t *frontend, char *error, size_t error_size)
{
    oxs_status_t status = open_port(frontend, frontend->config.port, API_LISTENER,
                                    &frontend->port, error, error_size);
    if (status == OXS_OK && frontend->config.metrics_port >= 0)
        status = open_port(frontend, frontend->config.metrics_port, METRICS_LISTENER,
                           &frontend->metrics_port, error, error_size);
    return status;
}

/* Initializes a loop's libuv handles and hands it the listening socket. */
static oxs_status_t loop_init(oxs_http_frontend_t *frontend, io_loop_t *loop, char *error,
                              size_t error_size)
{
    int rc;

    if (uv_loop_init(&loop->loop) != 0)
        goto failed;
    loop->loop_ready = true;
    if (oxs__http_context_init(&loop->ctx, frontend->server, frontend->config.max_request_bytes,
                               frontend->default_model, frontend->logger,
                               &frontend->in_flight) != OXS_OK)
        goto failed;
    loop->ctx_ready = true;
    loop->ctx.strict_readiness = frontend->config.strict_readiness;
    loop->ctx.frontend = frontend;
    loop->ctx.trace = frontend->trace;
    loop->ctx.metrics_on_http_port = frontend->config.metrics_on_http_port;
    if (frontend->config.max_uri_bytes != 0)
        loop->ctx.max_uri_bytes = frontend->config.max_uri_bytes;
    if (frontend->config.max_headers != 0)
        loop->ctx.max_headers = frontend->config.max_headers;
    if (frontend->config.max_header_bytes != 0)
        loop->ctx.max_header_bytes = frontend->config.max_header_bytes;
    loop->ctx.notify = loop_notify;
    loop->ctx.notify_user = loop;

    loop->wakeup.data = loop;
    if (uv_async_init(&loop->loop, &loop->wakeup, loop_on_wakeup) != 0)
        goto failed;
    loop->wakeup_ready = true;

    for (int i = 0; i < loop->listener_count; i++) {
        listener_t *listener = &loop->listeners[i];
        listener->tcp.data = listener;
        if (uv_tcp_init(&loop->loop, &listener->tcp) != 0)
            goto failed;
        listener->ready = true;
        rc = uv_tcp_open(&listener->tcp, listener->fd);
        if (rc != 0) {
            snprintf(error, error_size, "failed to use the listening socket: %s",
                     uv_strerror(rc));
            return OXS_ERR_INTERNAL;
        }
        listener->fd = -1; /* libuv closes it with the handle */
        rc = uv_listen((uv_stream_t *)&listener->tcp, LISTEN_BACKLOG, listener_on_connection);
        if (rc != 0) {
            snprintf(error, error_size, "failed to listen: %s", uv_strerror(rc));
            return OXS_ERR_INTERNAL;
        }
    }
    return OXS_OK;

failed:
    snprintf(error, error_size, "failed to create an I/O loop");
    return OXS_ERR_INTERNAL;
}

/* ------------------------------------------------------------------------------------------ */
/* Public API */

static char *copy_string(const char *text)
{
    size_t len;
    char *copy;

    if (text == NULL)
        return NULL;
    len = strlen(text);
    copy = malloc(len + 1);
    if (copy != NULL)
        memcpy(copy, text, len + 1);
    return copy;
}

static void frontend_free(oxs_http_frontend_t *frontend)
{
    for (int i = 0; i < frontend->loop_count; i++) {
        if (frontend->loops[i] != NULL)
            loop_free(frontend->loops[i]);
    }
    free(frontend->loops);
    free(frontend->host);
    free(frontend->default_model);
    oxs__http_trace_close(frontend->trace);
    free(frontend);
}

static oxs_status_t check_config(const oxs_http_config_t *config, char *error, size_t error_size)
{
    if (config->threads < 1) {
        snprintf(error, error_size, "HTTP threads is %d; expected at least 1", config->threads);
        return OXS_ERR_INVALID_ARGUMENT;
    }
    if (config->port < 0 || config->port > 65535) {
        snprintf(error, error_size, "HTTP port is %d; expected 0 to 65535", config->port);
        return OXS_ERR_INVALID_ARGUMENT;
    }
    if (config->max_request_bytes == 0) {
        snprintf(error, error_size, "maximum request size is 0; expected at least 1 byte");
        return OXS_ERR_INVALID_ARGUMENT;
    }
    return OXS_OK;
}

oxs_status_t oxs_http_start(oxs_server_t *server, const oxs_http_config_t *config,
                            const oxs_logger_t *logger, oxs_http_frontend_t **out, char *error,
                            size_t error_size)
{
    oxs_http_frontend_t *frontend = NULL;
    oxs_status_t status;

    *out = NULL;
    status = check_config(config, error, error_size);
    if (status != OXS_OK)
        return status;
    if (config->max_header_bytes != 0)
        oxs__http_parser_set_max_header_bytes(config->max_header_bytes);

    status = OXS_ERR_OUT_OF_MEMORY;
    frontend = calloc(1, sizeof(*frontend));
    if (frontend == NULL)
        goto failed_no_message;
    frontend->server = server;
    frontend->logger = logger;
    frontend->config = *config;
    frontend->metrics_port = -1;
    atomic_init(&frontend->in_flight, 0);
    frontend->host = copy_string(config->host != NULL ? config->host : "127.0.0.1");
    frontend->default_model = copy_string(config->default_model);
    frontend->config.host = frontend->host;
    frontend->config.default_model = frontend->default_model;
    frontend->loops = calloc((size_t)config->threads, sizeof(*frontend->loops));
    if (frontend->host == NULL || (config->default_model != NULL && !frontend->default_model) ||
        frontend->loops == NULL)
        goto failed_no_message;
    frontend->loop_count = config->threads;
    for (int i = 0; i < frontend->loop_count; i++) {
        io_loop_t *loop = calloc(1, sizeof(*loop));
        if (loop == NULL)
            goto failed_no_message;
        loop->frontend = frontend;
        loop->listener_count = config->metrics_port >= 0 ? 2 : 1;
        for (int k = 0; k < 2; k++) {
            loop->listeners[k].loop = loop;
            loop->listeners[k].fd = -1;
        }
        atomic_init(&loop->commands, 0);
        atomic_init(&loop->listeners_closed, false);
        frontend->loops[i] = loop;
    }

    raise_open_file_limit(logger, config->max_connections);
    if (config->trace_file != NULL &&
        (status = oxs__http_trace_open(config->trace_file, &frontend->trace, error,
                                       error_size)) != OXS_OK)
        goto failed;
    status = open_listeners(frontend, error, error_size);
    if (status != OXS_OK)
        goto failed;
    for (int i = 0; i < frontend->loop_count; i++) {
        status = loop_init(frontend, frontend->loops[i], error, error_size);
        if (status != OXS_OK)
            goto failed;
    }
    for (int i = 0; i < frontend->loop_count; i++) {
        io_loop_t *loop = frontend->loops[i];
        if (uv_thread_create(&loop->thread, loop_thread_main, loop) != 0) {
            snprintf(error, error_size, "failed to start an HTTP I/O thread");
            status = OXS_ERR_INTERNAL;
            goto failed;
        }
        loop->thread_started = true;
        /* Named here, not in the thread, so the name is set before oxs_http_start returns. It
         * lets top -H and /proc/PID/task tell the I/O threads apart. */
        char name[16];
        snprintf(name, sizeof(name), "oxs-http-%u", (unsigned)i % 1000u);
        pthread_setname_np(loop->thread, name);
    }
    *out = frontend;
    return OXS_OK;

failed_no_message:
    snprintf(error, error_size, "out of memory while starting the HTTP frontend");
failed:
    if (frontend != NULL) {
        for (int i = 0; i < frontend->loop_count; i++) {
            io_loop_t *loop = frontend->loops[i];
            if (loop != NULL && loop->thread_started) {
                loop_send_command(loop, COMMAND_EXIT);
                uv_thread_join(&loop->thread);
            }
        }
        frontend_free(frontend);
    }
    return status;
}

int oxs_http_port(const oxs_http_frontend_t *frontend)
{
    return frontend->port;
}

int oxs_http_metrics_port(const oxs_http_frontend_t *frontend)
{
    return frontend->metrics_port;
}

int oxs_http_open_connections(const oxs_http_frontend_t *frontend)
{
    int total = 0;
    for (int i = 0; i < frontend->loop_count; i++)
        total += atomic_load_explicit(&frontend->loops[i]->open_connections,
                                      memory_order_relaxed);
    return total;
}

void oxs_http_stop_accepting(oxs_http_frontend_t *frontend)
{
    for (int i = 0; i < frontend->loop_count; i++)
        loop_send_command(frontend->loops[i], COMMAND_STOP_ACCEPTING);

    /* Waits for the loops to close their listeners, so that no connection is accepted once
     * this returns and the caller may log that new connections are refused. */
    const struct timespec pause = {.tv_sec = 0, .tv_nsec = 1000000L};
    for (int waited_ms = 0; waited_ms < STOP_ACCEPTING_WAIT_MS; waited_ms++) {
        bool all_closed = true;
        for (int i = 0; i < frontend->loop_count; i++) {
            io_loop_t *loop = frontend->loops[i];
            if (loop->thread_started && !atomic_load(&loop->listeners_closed))
                all_closed = false;
        }
        if (all_closed)
            return;
        nanosleep(&pause, NULL);
    }
}

int oxs_http_in_flight(const oxs_http_frontend_t *frontend)
{
    return atomic_load(&((oxs_http_frontend_t *)frontend)->in_flight);
}

void oxs_http_destroy(oxs_http_frontend_t *frontend)
{
    if (frontend == NULL)
        return;
    for (int i = 0; i < frontend->loop_count; i++)
        loop_send_command(frontend->loops[i], COMMAND_EXIT);
    for (int i = 0; i < frontend->loop_count; i++)
        uv_thread_join(&frontend->loops[i]->thread);
    frontend_free(frontend);
}
