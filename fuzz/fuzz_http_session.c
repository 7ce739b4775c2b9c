/*
 * Fuzzes the whole HTTP request path in process: raw bytes go into one HTTP session over a real
 * server with the identity, scale and strings test models, and inference runs on the server's
 * worker threads. A fake transport takes the response bytes, as the unit tests' harness does.
 *
 * Input layout: byte 0 controls the transport, the rest is what the client sends.
 *   bits 0-4  feed size in bytes; 0 feeds everything at once, so that small values split
 *             request lines, headers and chunks across reads
 *   bit 5     run without a logger, as the unit tests do; otherwise every request is logged
 *             at level info, as JSON lines, to /dev/null
 *   bit 6     report end of stream after the last feed
 *   bit 7     release the session without waiting for the last response (the client leaves)
 * The driver feeds bytes only while the session reads, as the libuv transport does.
 * With OXS_FUZZ_PRINT=1 in the environment it prints each response to stderr, to show what
 * one input does when run alone.
 */
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fuzz_common.h"
#include "http/parser.h"
#include "http/session.h"
#include "server/log.h"

/* Limits below the server's defaults, so that inputs of libFuzzer's default size of at most
 * 4096 bytes can exceed them. */
#define MAX_REQUEST_BYTES 2048
#define MAX_URI_BYTES 256
#define MAX_HEADERS 16
#define MAX_HEADER_BYTES 1024
/* A response that takes longer than this is reported as a hang. */
#define RESPONSE_WAIT_US (20 * 1000000LL)

typedef struct transport {
    oxs__http_session_t *session;
    bool reading;
    bool closed;
    /* The response given to write, kept until write_done so that the driver can read it then:
     * a session that freed these buffers too early shows up as a use-after-free. */
    const char *head;
    size_t head_len;
    const char *body;
    size_t body_len;
    bool write_pending;
} transport_t;

static oxs_server_t *server;
static oxs_logger_t logger;
static bool print_responses;

static void check_head(const char *head, size_t len)
{
    static const char status_line[] = "HTTP/1.1 ";
    if (len < sizeof(status_line) - 1 || memcmp(head, status_line, sizeof(status_line) - 1) != 0 ||
        len < 4 || memcmp(head + len - 4, "\r\n\r\n", 4) != 0) {
        fprintf(stderr, "fuzz: malformed response head: \"%.*s\"\n", (int)len, head);
        abort();
    }
}

static void on_write(void *user, const char *head, size_t head_len, const char *body,
                     size_t body_len)
{
    transport_t *t = user;

    if (t->write_pending || t->closed) {
        fprintf(stderr, "fuzz: write while a write is pending or after close\n");
        abort();
    }
    check_head(head, head_len);
    if (print_responses)
        fprintf(stderr, "%.*s%.*s\n", (int)head_len, head, (int)body_len, body);
    t->head = head;
    t->head_len = head_len;
    t->body = body;
    t->body_len = body_len;
    t->write_pending = true;
}

static void on_write_interim(void *user, const char *data, size_t len)
{
    (void)user;
    check_head(data, len);
}

static void on_set_reading(void *user, bool reading)
{
    transport_t *t = user;
    t->reading = reading;
}

static void on_close(void *user, bool linger)
{
    transport_t *t = user;

    (void)linger;
    if (t->closed) {
        fprintf(stderr, "fuzz: connection closed twice\n");
        abort();
    }
    t->closed = true;
}

static const oxs__http_session_io_t transport_io = {
    .write = on_write,
    .write_interim = on_write_interim,
    .set_reading = on_set_reading,
    .close = on_close,
};

/* Completes pending writes, reading every byte of each response first. */
static void pump(transport_t *t)
{
    while (t->write_pending) {
        unsigned checksum = 0;
        for (size_t i = 0; i < t->head_len; i++)
            checksum += (unsigned char)t->head[i];
        for (size_t i = 0; i < t->body_len; i++)
            checksum += (unsigned char)t->body[i];
        (void)checksum;
        t->write_pending = false;
        oxs__http_session_write_done(t->session, 0);
    }
}

/* Runs completions until the session no longer waits for an inference. */
static void wait_while_processing(oxs__http_context_t *ctx, transport_t *t)
{
    int64_t deadline = oxs__http_now_us() + RESPONSE_WAIT_US;
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 100000};

    while (!t->closed && oxs__http_session_phase(t->session) == OXS__SESSION_PROCESSING) {
        if (oxs__http_now_us() > deadline) {
            fprintf(stderr, "fuzz: no response after %lld s\n", RESPONSE_WAIT_US / 1000000);
            abort();
        }
        if (oxs__http_context_run_completions(ctx) == 0)
            nanosleep(&pause, NULL);
        pump(t);
    }
    pump(t);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char *const models[] = {"identity", "scale", "strings"};

    (void)argc;
    (void)argv;
    server = fuzz_server_create(models, sizeof(models) / sizeof(models[0]));
    const char *print = getenv("OXS_FUZZ_PRINT");
    print_responses = print != NULL && strcmp(print, "1") == 0;
    oxs__http_parser_set_max_header_bytes(MAX_HEADER_BYTES);
    oxs_logger_init(&logger, OXS_LOG_INFO, OXS_LOG_FORMAT_JSON);
    logger.fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (logger.fd < 0) {
        perror("fuzz: opening /dev/null failed");
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t feed_size = data[0] & 0x1f;
    bool with_logger = (data[0] & 0x20) == 0;
    bool send_eof = (data[0] & 0x40) != 0;
    bool leave_early = (data[0] & 0x80) != 0;
    const char *bytes = (const char *)data + 1;
    size_t len = size - 1;

    oxs__http_context_t ctx;
    atomic_int in_flight;
    atomic_init(&in_flight, 0);
    /* POST /v2/logging changes the logger, so each input starts from the same settings. */
    oxs_logger_set(&logger, OXS_LOG_INFO, OXS_LOG_FORMAT_JSON);
    if (oxs__http_context_init(&ctx, server, MAX_REQUEST_BYTES, NULL,
                               with_logger ? &logger : NULL, &in_flight) != OXS_OK)
        abort();
    ctx.max_uri_bytes = MAX_URI_BYTES;
    ctx.max_headers = MAX_HEADERS;
    ctx.max_header_bytes = MAX_HEADER_BYTES;
    ctx.metrics_on_http_port = true;
    transport_t t = {.reading = true};
    t.session = oxs__http_session_create(&ctx, &transport_io, &t);
    if (t.session == NULL)
        abort();

    size_t offset = 0;
    while (offset < len && !t.closed) {
        wait_while_processing(&ctx, &t);
        if (t.closed || !t.reading)
            break;
        size_t n = feed_size == 0 || feed_size > len - offset ? len - offset : feed_size;
        oxs__http_session_feed(t.session, bytes + offset, n);
        pump(&t);
        offset += n;
    }
    if (send_eof && !t.closed) {
        wait_while_processing(&ctx, &t);
        if (!t.closed && t.reading) {
            oxs__http_session_eof(t.session);
            pump(&t);
        }
    }
    if (!leave_early)
        wait_while_processing(&ctx, &t);

    oxs__http_session_release(t.session);
    /* A released session with an inference still queued or running is freed by its completion. */
    if (oxs_server_drain(server, RESPONSE_WAIT_US / 1000) != 0) {
        fprintf(stderr, "fuzz: requests still running after release\n");
        abort();
    }
    oxs__http_context_run_completions(&ctx);
    oxs__http_context_destroy(&ctx);
    if (atomic_load(&in_flight) != 0) {
        fprintf(stderr, "fuzz: %d requests still counted in flight\n", atomic_load(&in_flight));
        abort();
    }
    return 0;
}
