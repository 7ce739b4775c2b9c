/*
 * Unit tests of the HTTP request path without sockets: byte strings go into a session, and the
 * bytes it writes are parsed back with http-parser in response mode and checked. The last group
 * loads the generated test models ($ONNXSERVE_TEST_DATA) into a real server and runs inference
 * through a session, running completions on the test thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <http_parser.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <yajl/yajl_tree.h>

#include "common/buf.h"
#include "exit_now.h"
#include "http/session.h"
#include "onnxserve.h"

#define MAX_BODY 1024
#define MAX_RESPONSES 16

/* ------------------------------------------------------------------------------------------ */
/* Harness: a session with a fake transport. */

typedef struct harness {
    oxs__http_context_t ctx;
    atomic_int in_flight;
    oxs__http_session_t *session;
    oxs_buf_t output;      /* every byte the session wrote */
    bool write_pending;    /* a response waits for write_done */
    bool auto_write_done;  /* call write_done from inside write */
    bool reading;
    bool closed;
    bool lingered;
    int writes;
    int interim_writes;
} harness_t;

static void fake_write(void *user, const char *head, size_t head_len, const char *body,
                       size_t body_len)
{
    harness_t *h = user;

    assert_false(h->write_pending);
    oxs_buf_append(&h->output, head, head_len);
    oxs_buf_append(&h->output, body, body_len);
    h->writes++;
    if (h->auto_write_done)
        oxs__http_session_write_done(h->session, 0);
    else
        h->write_pending = true;
}

static void fake_write_interim(void *user, const char *data, size_t len)
{
    harness_t *h = user;

    oxs_buf_append(&h->output, data, len);
    h->interim_writes++;
}

static void fake_set_reading(void *user, bool reading)
{
    harness_t *h = user;
    h->reading = reading;
}

static void fake_close(void *user, bool linger)
{
    harness_t *h = user;

    assert_false(h->closed);
    h->closed = true;
    h->lingered = linger;
}

static const oxs__http_session_io_t fake_io = {
    .write = fake_write,
    .write_interim = fake_write_interim,
    .set_reading = fake_set_reading,
    .close = fake_close,
};

static harness_t *harness_new_logged(oxs_server_t *server, size_t max_body,
                                     const char *default_model, const oxs_logger_t *logger)
{
    harness_t *h = calloc(1, sizeof(*h));

    assert_non_null(h);
    atomic_init(&h->in_flight, 0);
    assert_int_equal(oxs__http_context_init(&h->ctx, server, max_body, default_model, logger,
                                            &h->in_flight),
                     OXS_OK);
    oxs_buf_init(&h->output, 0);
    h->reading = true;
    h->session = oxs__http_session_create(&h->ctx, &fake_io, h);
    assert_non_null(h->session);
    return h;
}

static harness_t *harness_new(oxs_server_t *server, size_t max_body, const char *default_model)
{
    return harness_new_logged(server, max_body, default_model, NULL);
}

static void harness_free(harness_t *h)
{
    oxs__http_session_release(h->session);
    oxs__http_context_run_completions(&h->ctx);
    oxs__http_context_destroy(&h->ctx);
    oxs_buf_free(&h->output);
    free(h);
}

/* Completes pending writes until the session stops writing. */
static void pump(harness_t *h)
{
    while (h->write_pending) {
        h->write_pending = false;
        oxs__http_session_write_done(h->session, 0);
    }
}

static void feed_bytes(harness_t *h, const char *data, size_t len)
{
    oxs__http_session_feed(h->session, data, len);
    pump(h);
}

static void feed(harness_t *h, const char *text)
{
    feed_bytes(h, text, strlen(text));
}

/* Runs completions until a response arrives (or 20 s pass). */
static void wait_for_response(harness_t *h)
{
    int writes = h->writes;
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 1000000};

    for (int i = 0; i < 20000 && h->writes == writes; i++) {
        if (oxs__http_context_run_completions(&h->ctx) == 0)
            nanosleep(&pause, NULL);
    }
    assert_int_not_equal(h->writes, writes);
    pump(h);
}

/* ------------------------------------------------------------------------------------------ */
/* Response parsing with http-parser. */

typedef struct response {
    int status;
    char request_id[160];
    char connection[32];
    char content_type[64];
    char retry_after[16];
    char allow[32];
    char traceparent[80];
    long content_length;
    oxs_buf_t body;
} response_t;

typedef struct responses {
    response_t items[MAX_RESPONSES];
    int count;
    char field[64];
    bool skip_body; /* responses to HEAD carry no body */
} responses_t;

static response_t *current(http_parser *parser)
{
    responses_t *all = parser->data;
    return &all->items[all->count];
}

static int on_response_begin(http_parser *parser)
{
    responses_t *all = parser->data;

    assert_true(all->count < MAX_RESPONSES);
    memset(current(parser), 0, sizeof(response_t));
    current(parser)->content_length = -1;
    oxs_buf_init(&current(parser)->body, 0);
    return 0;
}

static int on_response_field(http_parser *parser, const char *at, size_t len)
{
    responses_t *all = parser->data;
    snprintf(all->field, sizeof(all->field), "%.*s", (int)len, at);
    return 0;
}

static int on_response_value(http_parser *parser, const char *at, size_t len)
{
    responses_t *all = parser->data;
    response_t *r = current(parser);

    if (strcasecmp(all->field, "x-request-id") == 0)
        snprintf(r->request_id, sizeof(r->request_id), "%.*s", (int)len, at);
    else if (strcasecmp(all->field, "connection") == 0)
        snprintf(r->connection, sizeof(r->connection), "%.*s", (int)len, at);
    else if (strcasecmp(all->field, "content-type") == 0)
        snprintf(r->content_type, sizeof(r->content_type), "%.*s", (int)len, at);
    else if (strcasecmp(all->field, "retry-after") == 0)
        snprintf(r->retry_after, sizeof(r->retry_after), "%.*s", (int)len, at);
    else if (strcasecmp(all->field, "allow") == 0)
        snprintf(r->allow, sizeof(r->allow), "%.*s", (int)len, at);
    else if (strcasecmp(all->field, "traceparent") == 0)
        snprintf(r->traceparent, sizeof(r->traceparent), "%.*s", (int)len, at);
    return 0;
}

static int on_response_headers(http_parser *parser)
{
    responses_t *all = parser->data;
    response_t *r = current(parser);

    r->status = (int)parser->status_code;
    if (parser->flags & F_CONTENTLENGTH)
        r->content_length = (long)parser->content_length;
    return all->skip_body ? 1 : 0;
}

static int on_response_body(http_parser *parser, const char *at, size_t len)
{
    oxs_buf_append(&current(parser)->body, at, len);
    return 0;
}

static int on_response_complete(http_parser *parser)
{
    responses_t *all = parser->data;

    oxs_buf_cstr(&current(parser)->body);
    all->count++;
    return 0;
}

static const http_parser_settings response_settings = {
    .on_message_begin = on_response_begin,
    .on_header_field = on_response_field,
    .on_header_value = on_response_value,
    .on_headers_complete = on_response_headers,
    .on_body = on_response_body,
    .on_message_complete = on_response_complete,
};

/* Parses everything the session wrote; 1xx interim responses are left out. */
static void parse_responses(harness_t *h, responses_t *all, bool skip_body)
{
    http_parser parser;
    size_t parsed;

    memset(all, 0, sizeof(*all));
    all->skip_body = skip_body;
    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = all;
    parsed = http_parser_execute(&parser, &response_settings, h->output.data, h->output.len);
    assert_int_equal(HTTP_PARSER_ERRNO(&parser), HPE_OK);
    assert_int_equal(parsed, h->output.len);

    int final_count = 0;
    for (int i = 0; i < all->count; i++) {
        if (all->items[i].status >= 200)
            all->items[final_count++] = all->items[i];
        else
            oxs_buf_free(&all->items[i].body);
    }
    all->count = final_count;
}

static void free_responses(responses_t *all)
{
    for (int i = 0; i < all->count; i++)
        oxs_buf_free(&all->items[i].body);
}

/* Returns the JSON tree of a response body; the caller frees it with yajl_tree_free. */
static yajl_val parse_json(const response_t *r)
{
    char error[256] = "";
    yajl_val tree = yajl_tree_parse(r->body.data, error, sizeof(error));

    if (tree == NULL)
        fail_msg("invalid JSON body (%s): %s", error, r->body.data);
    return tree;
}

static yajl_val json_get(yajl_val tree, const char *key, yajl_type type)
{
    const char *path[] = {key, NULL};
    return yajl_tree_get(tree, path, type);
}

/* Checks that a response is {"error": "..."} containing expected. */
static void assert_error_body(const response_t *r, const char *expected)
{
    yajl_val tree = parse_json(r);
    yajl_val error = json_get(tree, "error", yajl_t_string);

    const char *text = error != NULL ? YAJL_GET_STRING(error) : NULL;

    if (text == NULL)
        fail_msg("body has no \"error\" string: %s", r->body.data);
    else if (strstr(text, expected) == NULL)
        fail_msg("error \"%s\" does not contain \"%s\"", text, expected);
    yajl_tree_free(tree);
}

/* Feeds one request into a fresh session and returns its only response. */
static void roundtrip(const char *request, responses_t *all)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);

    feed(h, request);
    parse_responses(h, all, false);
    assert_int_equal(all->count, 1);
    harness_free(h);
}

/* ------------------------------------------------------------------------------------------ */
/* Protocol tests without a server */

static void test_live_keeps_connection(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);
    responses_t all;

    (void)state;
    feed(h, "GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\n\r\n");
    parse_responses(h, &all, false);

    assert_int_equal(all.count, 1);
    assert_int_equal(all.items[0].status, 200);
    assert_string_equal(all.items[0].body.data, "{\"live\":true}");
    assert_string_equal(all.items[0].content_type, "application/json");
    assert_int_equal(all.items[0].content_length, (long)all.items[0].body.len);
    assert_int_equal(strlen(all.items[0].request_id), 16);
    assert_int_equal(strspn(all.items[0].request_id, "0123456789abcdef"), 16);
    assert_string_equal(all.items[0].connection, "");
    assert_false(h->closed);
    assert_true(h->reading);
    assert_int_equal(atomic_load(&h->in_flight), 0);
    assert_int_equal(oxs__http_session_phase(h->session), OXS__SESSION_IDLE);
    free_responses(&all);
    harness_free(h);
}

static void test_server_metadata(void **state)
{
    responses_t all;
    yajl_val tree;

    (void)state;
    roundtrip("GET /v2 HTTP/1.1\r\n\r\n", &all);
    assert_int_equal(all.items[0].status, 200);
    tree = parse_json(&all.items[0]);
    assert_string_equal(YAJL_GET_STRING(json_get(tree, "name", yajl_t_string)), "onnxserve");
    assert_string_equal(YAJL_GET_STRING(json_get(tree, "version", yajl_t_string)), OXS_VERSION);
    assert_non_null(json_get(tree, "extensions", yajl_t_array));
    yajl_tree_free(tree);
    free_responses(&all);
}

static const char pipelined[] = "GET /v2/health/live HTTP/1.1\r\nX-Request-ID: first\r\n\r\n"
                                "GET /v2 HTTP/1.1\r\nX-Request-ID: second\r\n\r\n"
                                "GET /nowhere HTTP/1.1\r\nX-Request-ID: third\r\n\r\n";

static void check_pipelined(harness_t *h)
{
    responses_t all;

    parse_responses(h, &all, false);
    assert_int_equal(all.count, 3);
    assert_int_equal(all.items[0].status, 200);
    assert_string_equal(all.items[0].request_id, "first");
    assert_int_equal(all.items[1].status, 200);
    assert_string_equal(all.items[1].request_id, "second");
    assert_int_equal(all.items[2].status, 404);
    assert_string_equal(all.items[2].request_id, "third");
    assert_error_body(&all.items[2], "path \"/nowhere\" not found");
    assert_false(h->closed);
    free_responses(&all);
}

static void test_pipelined_in_order(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);

    (void)state;
    oxs__http_session_feed(h->session, pipelined, strlen(pipelined));
    /* One response at a time: the first waits for its write. Reading goes on, so that a client
     * that leaves is noticed, while the pipelined requests wait unparsed. */
    assert_int_equal(h->writes, 1);
    assert_true(h->reading);
    assert_int_equal(atomic_load(&h->in_flight), 1);
    assert_int_equal(oxs__http_session_phase(h->session), OXS__SESSION_SENDING);
    pump(h);
    assert_int_equal(h->writes, 3);
    assert_true(h->reading);
    assert_int_equal(atomic_load(&h->in_flight), 0);
    check_pipelined(h);
    harness_free(h);
}

static void test_pipelined_bytes_capped_while_busy(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);
    char *big = calloc(1, 70 * 1024 + 1);

    (void)state;
    assert_non_null(big);
    memset(big, 'a', 70 * 1024);
    oxs__http_session_feed(h->session, "GET /v2 HTTP/1.1\r\n\r\n", 20);
    assert_int_equal(h->writes, 1); /* waiting for its write */
    assert_true(h->reading);
    oxs__http_session_feed(h->session, big, 70 * 1024);
    /* Past 64 KiB of waiting bytes, reading stops until the response is written. */
    assert_false(h->reading);
    free(big);
    harness_free(h);
}

static void test_pipelined_reentrant_writes(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);

    (void)state;
    h->auto_write_done = true;
    feed(h, pipelined);
    assert_int_equal(h->writes, 3);
    assert_true(h->reading);
    check_pipelined(h);
    harness_free(h);
}

static void test_pipelined_byte_by_byte(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);

    (void)state;
    for (size_t i = 0; i < strlen(pipelined); i++)
        feed_bytes(h, pipelined + i, 1);
    check_pipelined(h);
    harness_free(h);
}

static void test_chunked_body_accepted(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);
    responses_t all;

    (void)state;
    /* No server: the request reaches the handler, which returns 503, and the connection
     * stays usable after the chunked body. */
    feed(h, "POST /predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            "5\r\n{\"dat\r\n");
    feed(h, "4\r\na\": \r\n3\r\n[1]\r\n1\r\n}\r\n0\r\n\r\n");
    feed(h, "GET /v2/health/live HTTP/1.1\r\n\r\n");
    parse_responses(h, &all, false);
    assert_int_equal(all.count, 2);
    assert_int_equal(all.items[0].status, 503);
    assert_int_equal(all.items[1].status, 200);
    assert_false(h->closed);
    free_responses(&all);
    harness_free(h);
}

static void test_connection_close_closes(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);
    responses_t all;

    (void)state;
    feed(h, "GET /v2/health/live HTTP/1.1\r\nConnection: close\r\n\r\n"
            "GET /v2 HTTP/1.1\r\n\r\n");
    parse_responses(h, &all, false);
    assert_int_equal(all.count, 1);
    assert_string_equal(all.items[0].connection, "close");
    assert_true(h->closed);
    assert_true(h->lingered);
    assert_int_equal(atomic_load(&h->in_flight), 0);
    free_responses(&all);
    harness_free(h);
}

static void test_http10_closes_by_default(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);
    responses_t all;

    (void)state;
    feed(h, "GET /v2/health/live HTTP/1.0\r\n\r\n");
    parse_responses(h, &all, false);
    assert_int_equal(all.count, 1);
    assert_int_equal(all.items[0].status, 200);
    assert_string_equal(all.items[0].connection, "close");
    assert_true(h->closed);
    free_responses(&all);
    harness_free(h);
}

static void test_http10_keep_alive(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);
    responses_t all;

    (void)state;
    feed(h, "GET /v2/health/live HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
            "GET /v2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    parse_responses(h, &all, false);
    assert_int_equal(all.count, 2);
    assert_string_equal(all.items[0].connection, "keep-alive");
    assert_string_equal(all.items[1].connection, "keep-alive");
    assert_false(h->closed);
    free_responses(&all);
    harness_free(h);
}

static void test_malformed_request_line(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);
    responses_t all;

    (void)state;
    feed(h, "GET /v2 HTTP/1.1 extra\r\n\r\n");
    parse_responses(h, &all, false);
    assert_int_equal(all.count, 1);
    assert_int_equal(all.items[0].status, 400);
    assert_error_body(&all.items[0], "malformed HTTP request");
    assert_string_equal(all.items[0].connection, "close");
    assert_int_equal(strlen(all.items[0].request_id), 16);
    assert_true(h->closed);
    free_responses(&all);
    harness_free(h);
}

static void test_malformed_header(void **state)
{
    responses_t all;

    (void)state;
    roundtrip("GET /v2 HTTP/1.1\r\nNo colon here\r\n\r\n", &all);
    assert_int_equal(all.items[0].status, 400);
    assert_error_body(&all.items[0], "malformed HTTP request");
    free_responses(&all);
}

static void test_malformed_content_length(void **state)
{
    responses_t all;

    (void)state;
    roundtrip("POST /predict HTTP/1.1\r\nContent-Length: 12x\r\n\r\n", &all);
    assert_int_equal(all.items[0].status, 400);
    assert_error_body(&all.items[0], "malformed HTTP request");
    free_responses(&all);
}

static void test_bad_chunk_size(void **state)
{
    responses_t all;

    (void)state;
    roundtrip("POST /predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", &all);
    assert_int_equal(all.items[0].status, 400);
    free_responses(&all);
}

static void test_header_too_large(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);
    size_t filler_len = 100 * 1024;
    char *filler = malloc(filler_len + 1);
    responses_t all;

    (void)state;
    assert_non_null(filler);
    memset(filler, 'a', filler_len);
    filler[filler_len] = '\0';
    feed(h, "GET /v2 HTTP/1.1\r\nX-Filler: ");
    feed(h, filler);
    feed(h, "\r\n\r\n");
    parse_responses(h, &all, false);
    assert_int_equal(all.count, 1);
    assert_int_equal(all.items[0].status, 431);
    assert_error_body(&all.items[0], "headers exceed");
    assert_true(h->closed);
    free(filler);
    free_responses(&all);
    harness_free(h);
}

static void test_content_length_over_max(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);
    responses_t all;

    (void)state;
    /* The response is sent from the headers alone, before any body byte. */
    feed(h, "POST /predict HTTP/1.1\r\nContent-Length: 5000\r\n\r\n");
    parse_responses(h, &all, false);
    assert_int_equal(all.count, 1);
    assert_int_equal(all.items[0].status, 413);
    assert_error_body(&all.items[0], "request body of 5000 bytes exceeds the limit of 1024 bytes");
    assert_string_equal(all.items[0].connection, "close");
    assert_true(h->closed);
    assert_true(h->lingered);
    free_responses(&all);
    harness_free(h);
}

static void test_chunked_over_max(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);
    char chunk[700];
    responses_t all;

    (void)state;
    memset(chunk, 'x', sizeof(chunk));
    feed(h, "POST /predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    feed(h, "2bc\r\n"); /* 700 bytes */
    feed_bytes(h, chunk, sizeof(chunk));
    assert_int_equal(h->writes, 0);
    /* The second chunk's size alone takes the body past the limit: 413 before its data. */
    feed(h, "\r\n2bc\r\n");
    parse_responses(h, &all, false);
    assert_int_equal(all.count, 1);
    assert_int_equal(all.items[0].status, 413);
    assert_error_body(&all.items[0], "chunk of 700 bytes takes the body past the limit of 1024 "
                                     "bytes set by --max-request-bytes");
    assert_true(h->closed);
    free_responses(&all);
    harness_free(h);
}

static void test_body_at_max_accepted(void **state)
{
    harness_t *h = harness_new(NULL, 10, NULL);
    responses_t all;

    (void)state;
    feed(h, "POST /predict HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789");
    parse_responses(h, &all, false);
    assert_int_equal(all.count, 1);
    assert_int_equal(all.items[0].status, 503); /* reached the handler; no server */
    assert_false(h->closed);
    free_responses(&all);
    harness_free(h);
}

static void test_request_id_echoed(void **state)
{
    char request[400];
    char id[129];
    responses_t all;

    (void)state;
    memset(id, 'k', 128);
    id[128] = '\0';
    id[0] = ' ' + 1;
    id[1] = '~';
    snprintf(request, sizeof(request), "GET /v2 HTTP/1.1\r\nX-Request-ID: %s\r\n\r\n", id);
    roundtrip(request, &all);
    assert_int_equal(all.items[0].status, 200);
    assert_string_equal(all.items[0].request_id, id);
    free_responses(&all);
}

static void test_traceparent_echoed_when_valid(void **state)
{
    static const char valid[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    static const char *const invalid[] = {
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",    /* too short */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", /* zero parent id */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", /* upper case */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", /* unknown version */
    };
    char request[300];
    responses_t all;

    (void)state;
    snprintf(request, sizeof(request), "GET /v2 HTTP/1.1\r\ntraceparent: %s\r\n\r\n", valid);
    roundtrip(request, &all);
    assert_int_equal(all.items[0].status, 200);
    assert_string_equal(all.items[0].traceparent, valid);
    free_responses(&all);
    /* W3C Trace Context requires an invalid value to be ignored: no error and no echo. */
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        snprintf(request, sizeof(request), "GET /v2 HTTP/1.1\r\nTraceparent: %s\r\n\r\n",
                 invalid[i]);
        roundtrip(request, &all);
        assert_int_equal(all.items[0].status, 200);
        assert_string_equal(all.items[0].traceparent, "");
        free_responses(&all);
    }
}

static void test_request_id_too_long(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);
    char request[400];
    char id[130];
    responses_t all;

    (void)state;
    memset(id, 'k', 129);
    id[129] = '\0';
    snprintf(request, sizeof(request),
             "POST /predict HTTP/1.1\r\nX-Request-ID: %s\r\nContent-Length: 2\r\n\r\n{}", id);
    feed(h, request);
    feed(h, "GET /v2 HTTP/1.1\r\n\r\n");
    parse_responses(h, &all, false);
    assert_int_equal(all.count, 2);
    assert_int_equal(all.items[0].status, 400);
    assert_error_body(&all.items[0], "X-Request-ID is longer than 128 bytes");
    assert_int_equal(strlen(all.items[0].request_id), 16); /* a generated one */
    /* The body was read and dropped, so the connection stays in sync. */
    assert_int_equal(all.items[1].status, 200);
    assert_false(h->closed);
    free_responses(&all);
    harness_free(h);
}

static void test_request_id_bad_byte(void **state)
{
    responses_t all;

    (void)state;
    /* http-parser itself rejects most control bytes; these two reach the session. */
    roundtrip("GET /v2 HTTP/1.1\r\nX-Request-ID: ab\xc3\xa9\r\n\r\n", &all);
    assert_int_equal(all.items[0].status, 400);
    assert_error_body(&all.items[0], "X-Request-ID has byte 0xc3 at offset 2");
    free_responses(&all);

    roundtrip("GET /v2 HTTP/1.1\r\nX-Request-ID: a\tb\r\n\r\n", &all);
    assert_int_equal(all.items[0].status, 400);
    assert_error_body(&all.items[0], "X-Request-ID has byte 0x09 at offset 1");
    free_responses(&all);
}

static void test_request_id_empty(void **state)
{
    responses_t all;

    (void)state;
    roundtrip("GET /v2 HTTP/1.1\r\nX-Request-ID:\r\n\r\n", &all);
    assert_int_equal(all.items[0].status, 400);
    assert_error_body(&all.items[0], "X-Request-ID is empty");
    free_responses(&all);
}

static void test_binary_header_checked(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);
    responses_t all;

    (void)state;
    feed(h, "POST /v2/models/scale/infer HTTP/1.1\r\nInference-Header-Content-Length: 2x\r\n"
            "Content-Length: 6\r\n\r\n{}\x01\x02\x03\x04");
    feed(h, "POST /v2/models/scale/infer HTTP/1.1\r\nInference-Header-Content-Length: 7\r\n"
            "Content-Length: 6\r\n\r\n{}\x01\x02\x03\x04");
    feed(h, "GET /v2 HTTP/1.1\r\n\r\n");
    parse_responses(h, &all, false);
    assert_int_equal(all.count, 3);
    assert_int_equal(all.items[0].status, 400);
    assert_error_body(&all.items[0], "Inference-Header-Content-Length: value \"2x\" is not valid");
    assert_int_equal(all.items[1].status, 400);
    assert_error_body(&all.items[1],
                      "Inference-Header-Content-Length is 7, but the body has only 6 bytes");
    /* The bodies were read, so the next request still gets its response. */
    assert_int_equal(all.items[2].status, 200);
    free_responses(&all);
    harness_free(h);
}

static void test_generated_ids_differ(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);
    responses_t all;

    (void)state;
    feed(h, "GET /v2 HTTP/1.1\r\n\r\nGET /v2 HTTP/1.1\r\n\r\n");
    parse_responses(h, &all, false);
    assert_int_equal(all.count, 2);
    assert_string_not_equal(all.items[0].request_id, all.items[1].request_id);
    free_responses(&all);
    harness_free(h);
}

static void test_unknown_route(void **state)
{
    responses_t all;

    (void)state;
    roundtrip("GET /v3/models HTTP/1.1\r\n\r\n", &all);
    assert_int_equal(all.items[0].status, 404);
    assert_error_body(&all.items[0], "path \"/v3/models\" not found");
    free_responses(&all);
}

static void test_wrong_method(void **state)
{
    responses_t all;

    (void)state;
    roundtrip("POST /v2/health/live HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &all);
    assert_int_equal(all.items[0].status, 405);
    assert_string_equal(all.items[0].allow, "GET, HEAD");
    assert_error_body(&all.items[0], "method POST is not allowed");
    free_responses(&all);

    roundtrip("GET /v2/models/m/infer HTTP/1.1\r\n\r\n", &all);
    assert_int_equal(all.items[0].status, 405);
    assert_string_equal(all.items[0].allow, "POST");
    free_responses(&all);
}

static void test_head_has_no_body(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);
    responses_t all;

    (void)state;
    feed(h, "HEAD /v2/health/live HTTP/1.1\r\n\r\n");
    parse_responses(h, &all, true);
    assert_int_equal(all.count, 1);
    assert_int_equal(all.items[0].status, 200);
    assert_int_equal(all.items[0].content_length, (long)strlen("{\"live\":true}"));
    assert_null(strstr(oxs_buf_cstr(&h->output), "live"));
    free_responses(&all);
    harness_free(h);
}

static void test_invalid_version(void **state)
{
    const char *requests[] = {
        "GET /v2/models/m/versions/abc HTTP/1.1\r\n\r\n",
        "GET /v2/models/m/versions/0 HTTP/1.1\r\n\r\n",
        "GET /v2/models/m/versions/-1/ready HTTP/1.1\r\n\r\n",
        "POST /v2/models/m/versions/99999999999999999999/infer HTTP/1.1\r\n\r\n",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
        responses_t all;

        roundtrip(requests[i], &all);
        assert_int_equal(all.items[0].status, 400);
        assert_error_body(&all.items[0], "expected a positive integer");
        free_responses(&all);
    }
}

static void test_expect_continue(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);
    responses_t all;

    (void)state;
    feed(h, "POST /predict HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
    assert_int_equal(h->interim_writes, 1);
    assert_int_equal(h->writes, 0);
    feed(h, "{}");
    assert_int_equal(h->writes, 1);
    assert_memory_equal(h->output.data, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    parse_responses(h, &all, false);
    assert_int_equal(all.count, 1);
    assert_int_equal(all.items[0].status, 503);
    free_responses(&all);
    harness_free(h);
}

static void test_expect_continue_over_max(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);

    (void)state;
    feed(h, "POST /predict HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 99999\r\n\r\n");
    assert_int_equal(h->interim_writes, 0);
    assert_int_equal(h->writes, 1);
    assert_true(h->closed);
    harness_free(h);
}

static void test_http2_version_rejected(void **state)
{
    responses_t all;

    (void)state;
    roundtrip("GET /v2 HTTP/2.0\r\n\r\n", &all);
    assert_int_equal(all.items[0].status, 505);
    free_responses(&all);
}

static void test_absolute_target(void **state)
{
    responses_t all;

    (void)state;
    roundtrip("GET http://localhost:8000/v2/health/live?verbose=1 HTTP/1.1\r\n\r\n", &all);
    assert_int_equal(all.items[0].status, 200);
    free_responses(&all);
}

static void test_stop_closes_idle(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);

    (void)state;
    h->ctx.stopping = true;
    assert_true(oxs__http_session_stop(h->session));
    assert_true(h->closed);
    harness_free(h);
}

static void test_stop_answers_then_closes(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);
    responses_t all;

    (void)state;
    oxs__http_session_feed(h->session, pipelined, strlen(pipelined));
    assert_true(h->write_pending);
    h->ctx.stopping = true;
    assert_false(oxs__http_session_stop(h->session));
    assert_false(h->closed);
    pump(h);
    assert_true(h->closed);
    parse_responses(h, &all, false);
    assert_int_equal(all.count, 1); /* the pipelined requests were not received in full */
    assert_int_equal(all.items[0].status, 200);
    assert_int_equal(atomic_load(&h->in_flight), 0);
    free_responses(&all);
    harness_free(h);
}

static void test_release_while_sending(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);

    (void)state;
    oxs__http_session_feed(h->session, pipelined, strlen(pipelined));
    assert_int_equal(atomic_load(&h->in_flight), 1);
    /* The transport goes away (peer reset): the count drops and nothing leaks. */
    oxs__http_session_release(h->session);
    assert_int_equal(atomic_load(&h->in_flight), 0);
    oxs__http_context_destroy(&h->ctx);
    oxs_buf_free(&h->output);
    free(h);
}

static void test_in_headers_until_complete(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);

    (void)state;
    assert_false(oxs__http_session_in_headers(h->session));
    feed(h, "POST /predict HTTP/1.1\r\nContent-");
    assert_true(oxs__http_session_in_headers(h->session));
    feed(h, "Length: 4\r\n\r\n{}");
    assert_false(oxs__http_session_in_headers(h->session));
    assert_int_equal(oxs__http_session_phase(h->session), OXS__SESSION_RECEIVING);
    feed(h, "{}");
    assert_int_equal(h->writes, 1);
    assert_false(oxs__http_session_in_headers(h->session));
    harness_free(h);
}

static void test_eof_mid_request_closes(void **state)
{
    harness_t *h = harness_new(NULL, MAX_BODY, NULL);

    (void)state;
    feed(h, "GET /v2 HTTP/1.1\r\nHost: x");
    assert_int_equal(oxs__http_session_phase(h->session), OXS__SESSION_RECEIVING);
    oxs__http_session_eof(h->session);
    assert_true(h->closed);
    assert_false(h->lingered);
    assert_int_equal(h->writes, 0);
    harness_free(h);
}

static void assert_contains(const char *text, const char *expected)
{
    if (strstr(text, expected) == NULL)
        fail_msg("\"%s\" not found in:\n%s", expected, text);
}

static void test_request_log_fields(void **state)
{
    static const char request[] = "GET /nowhere?q=1 HTTP/1.1\r\nX-Request-ID: log-1\r\n\r\n";
    FILE *file = tmpfile();
    oxs_logger_t logger;
    char bytes_in[32];
    harness_t *h;
    char text[4096];
    size_t len;

    (void)state;
    assert_non_null(file);
    oxs_logger_init(&logger, OXS_LOG_DEBUG, OXS_LOG_FORMAT_JSON);
    logger.fd = fileno(file);
    h = harness_new_logged(NULL, MAX_BODY, NULL, &logger);
    feed(h, request);
    harness_free(h);

    rewind(file);
    len = fread(text, 1, sizeof(text) - 1, file);
    text[len] = '\0';
    fclose(file);
    assert_contains(text, "\"msg\":\"request\"");
    assert_contains(text, "\"request_id\":\"log-1\"");
    assert_contains(text, "\"method\":\"GET\"");
    assert_contains(text, "\"path\":\"/nowhere?q=1\"");
    assert_contains(text, "\"status\":404");
    assert_contains(text, "\"latency_us\":");
    assert_contains(text, "\"queue_us\":0");
    assert_contains(text, "\"compute_us\":0");
    snprintf(bytes_in, sizeof(bytes_in), "\"bytes_in\":%zu,", strlen(request));
    assert_contains(text, bytes_in);
    assert_contains(text, "\"bytes_out\":");
    assert_contains(text, "\"msg\":\"request rejected\"");
    assert_contains(text, "\"error\":\"path \\\"/nowhere\\\" not found\"");
}

/* ------------------------------------------------------------------------------------------ */
/* With a real server and the generated test models */

typedef struct model_fixture {
    oxs_server_t *server;
} model_fixture_t;

static int setup_models(void **state)
{
    const char *data = getenv("ONNXSERVE_TEST_DATA");
    model_fixture_t *fixture = calloc(1, sizeof(*fixture));
    oxs_options_t options;
    char path[1024];
    char error[512];

    if (fixture == NULL)
        return -1;
    *state = fixture;
    if (data == NULL)
        return 0; /* the tests skip */
    oxs_options_init(&options);
    options.workers = 1;
    options.queue_size = 4;
    if (oxs_server_create(&options, &fixture->server, error, sizeof(error)) != OXS_OK) {
        fprintf(stderr, "server: %s\n", error);
        return -1;
    }
    snprintf(path, sizeof(path), "%s/scale.onnx", data);
    if (oxs_server_load_model(fixture->server, "scale", 1, path, error, sizeof(error)) != OXS_OK) {
        fprintf(stderr, "scale.onnx: %s\n", error);
        return -1;
    }
    snprintf(path, sizeof(path), "%s/identity.onnx", data);
    if (oxs_server_load_model(fixture->server, "identity", 1, path, error, sizeof(error)) !=
        OXS_OK) {
        fprintf(stderr, "identity.onnx: %s\n", error);
        return -1;
    }
    return 0;
}

static int teardown_models(void **state)
{
    model_fixture_t *fixture = *state;

    if (fixture->server != NULL)
        oxs_server_destroy(fixture->server);
    free(fixture);
    return 0;
}

static oxs_server_t *fixture_server(void **state)
{
    model_fixture_t *fixture = *state;

    if (fixture->server == NULL)
        skip();
    return fixture->server;
}

/* Sends one request on a fresh session with a server and waits for its response. */
static void model_roundtrip(oxs_server_t *server, const char *default_model, const char *request,
                            responses_t *all)
{
    harness_t *h = harness_new(server, 1 << 20, default_model);

    feed(h, request);
    if (h->writes == 0)
        wait_for_response(h);
    parse_responses(h, all, false);
    assert_int_equal(all->count, 1);
    assert_int_equal(atomic_load(&h->in_flight), 0);
    harness_free(h);
}

/* Formats a POST request with a Content-Length body. */
static const char *post(char *out, size_t size, const char *path, const char *headers,
                        const char *body)
{
    snprintf(out, size, "POST %s HTTP/1.1\r\n%sContent-Length: %zu\r\n\r\n%s", path, headers,
             strlen(body), body);
    return out;
}

static void assert_float_array(yajl_val array, const double *expected, size_t count)
{
    assert_non_null(array);
    assert_int_equal(YAJL_GET_ARRAY(array)->len, count);
    for (size_t i = 0; i < count; i++) {
        yajl_val item = YAJL_GET_ARRAY(array)->values[i];
        assert_true(YAJL_IS_NUMBER(item));
        if (YAJL_GET_DOUBLE(item) != expected[i])
            fail_msg("element %zu is %g, expected %g", i, YAJL_GET_DOUBLE(item), expected[i]);
    }
}

static const char scale_body[] = "{\"id\":\"req-7\",\"inputs\":[{\"name\":\"x\",\"shape\":[2,4],"
                                 "\"datatype\":\"FP32\",\"data\":[1,2,3,4,5,6,7,8]}]}";

static void check_scale_infer(const response_t *r, bool with_id)
{
    static const double expected[] = {3, 5, 7, 9, 11, 13, 15, 17};
    const char *output_path[] = {"outputs", NULL};
    yajl_val tree = parse_json(r);
    yajl_val outputs = yajl_tree_get(tree, output_path, yajl_t_array);
    yajl_val output;

    assert_int_equal(r->status, 200);
    assert_string_equal(YAJL_GET_STRING(json_get(tree, "model_name", yajl_t_string)), "scale");
    if (with_id)
        assert_string_equal(YAJL_GET_STRING(json_get(tree, "id", yajl_t_string)), "req-7");
    else
        assert_null(json_get(tree, "id", yajl_t_any));
    assert_non_null(outputs);
    assert_int_equal(YAJL_GET_ARRAY(outputs)->len, 1);
    output = YAJL_GET_ARRAY(outputs)->values[0];
    assert_string_equal(YAJL_GET_STRING(json_get(output, "name", yajl_t_string)), "y");
    assert_string_equal(YAJL_GET_STRING(json_get(output, "datatype", yajl_t_string)), "FP32");
    assert_float_array(json_get(output, "data", yajl_t_array), expected, 8);
    yajl_tree_free(tree);
}

static void test_infer_scale(void **state)
{
    oxs_server_t *server = fixture_server(state);
    char request[1024];
    responses_t all;

    snprintf(request, sizeof(request),
             "POST /v2/models/scale/infer HTTP/1.1\r\nX-Request-ID: client-1\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             strlen(scale_body), scale_body);
    model_roundtrip(server, NULL, request, &all);
    check_scale_infer(&all.items[0], true);
    assert_string_equal(all.items[0].request_id, "client-1");
    free_responses(&all);
}

static void test_infer_versioned_chunked(void **state)
{
    oxs_server_t *server = fixture_server(state);
    harness_t *h = harness_new(server, 1 << 20, NULL);
    const char *body = "{\"inputs\":[{\"name\":\"x\",\"shape\":[2,4],\"datatype\":\"FP32\","
                       "\"data\":[[1,2,3,4],[5,6,7,8]]}]}";
    size_t half = strlen(body) / 2;
    char chunk[256];
    responses_t all;

    feed(h, "POST /v2/models/scale/versions/1/infer HTTP/1.1\r\n"
            "Transfer-Encoding: chunked\r\n\r\n");
    snprintf(chunk, sizeof(chunk), "%zx\r\n%.*s\r\n", half, (int)half, body);
    feed(h, chunk);
    snprintf(chunk, sizeof(chunk), "%zx\r\n%s\r\n0\r\n\r\n", strlen(body) - half, body + half);
    feed(h, chunk);
    wait_for_response(h);
    parse_responses(h, &all, false);
    assert_int_equal(all.count, 1);
    check_scale_infer(&all.items[0], false);
    assert_int_equal(strlen(all.items[0].request_id), 16);
    assert_false(h->closed);
    free_responses(&all);
    harness_free(h);
}

static void test_infer_pipelined_keeps_order(void **state)
{
    oxs_server_t *server = fixture_server(state);
    harness_t *h = harness_new(server, 1 << 20, NULL);
    char request[1024];
    responses_t all;

    snprintf(request, sizeof(request),
             "POST /v2/models/scale/infer HTTP/1.1\r\nContent-Length: %zu\r\n\r\n%s"
             "GET /v2/health/ready HTTP/1.1\r\n\r\n",
             strlen(scale_body), scale_body);
    feed(h, request);
    assert_int_equal(h->writes, 0);
    assert_true(h->reading); /* to notice a client that leaves */
    assert_int_equal(atomic_load(&h->in_flight), 1);
    wait_for_response(h);
    assert_int_equal(h->writes, 2);
    parse_responses(h, &all, false);
    assert_int_equal(all.count, 2);
    check_scale_infer(&all.items[0], true);
    assert_int_equal(all.items[1].status, 200);
    assert_string_equal(all.items[1].body.data, "{\"ready\":true}");
    free_responses(&all);
    harness_free(h);
}

static void test_infer_unknown_model(void **state)
{
    oxs_server_t *server = fixture_server(state);
    responses_t all;

    model_roundtrip(server, NULL,
                    "POST /v2/models/nope/infer HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", &all);
    assert_int_equal(all.items[0].status, 404);
    assert_error_body(&all.items[0], "model \"nope\" not found");
    free_responses(&all);

    model_roundtrip(server, NULL, "GET /v2/models/scale/versions/7 HTTP/1.1\r\n\r\n", &all);
    assert_int_equal(all.items[0].status, 404);
    assert_error_body(&all.items[0], "model \"scale\" version 7 not found");
    free_responses(&all);
}

static void test_infer_invalid_json(void **state)
{
    oxs_server_t *server = fixture_server(state);
    responses_t all;

    model_roundtrip(server, NULL,
                    "POST /v2/models/scale/infer HTTP/1.1\r\nContent-Length: 9\r\n\r\n{\"inputs\"",
                    &all);
    assert_int_equal(all.items[0].status, 400);
    assert_error_body(&all.items[0], "");
    free_responses(&all);
}

static void test_predict_needs_default(void **state)
{
    oxs_server_t *server = fixture_server(state);
    responses_t all;

    char request[256];

    model_roundtrip(server, NULL,
                    post(request, sizeof(request), "/predict", "", "{\"data\":[1,2,3,4]}"), &all);
    assert_int_equal(all.items[0].status, 400);
    assert_error_body(&all.items[0], "--default-model");
    free_responses(&all);
}

static void check_predict(const response_t *r, const char *request_id)
{
    static const double expected[] = {3, 5, 7, 9};
    yajl_val tree = parse_json(r);

    assert_int_equal(r->status, 200);
    assert_float_array(json_get(tree, "output", yajl_t_array), expected, 4);
    assert_string_equal(YAJL_GET_STRING(json_get(tree, "model", yajl_t_string)), "scale");
    assert_string_equal(YAJL_GET_STRING(json_get(tree, "request_id", yajl_t_string)),
                        request_id);
    yajl_tree_free(tree);
}

static void test_predict_default_model(void **state)
{
    oxs_server_t *server = fixture_server(state);
    responses_t all;

    char request[256];

    model_roundtrip(server, "scale",
                    post(request, sizeof(request), "/predict", "X-Request-ID: p-1\r\n",
                         "{\"data\":[1,2,3,4]}"),
                    &all);
    check_predict(&all.items[0], "p-1");
    assert_string_equal(all.items[0].request_id, "p-1");
    free_responses(&all);
}

static void test_predict_named_model(void **state)
{
    oxs_server_t *server = fixture_server(state);
    responses_t all;

    char request[256];

    model_roundtrip(server, NULL,
                    post(request, sizeof(request), "/models/scale/predict", "",
                         "{\"data\":[[1,2,3,4]]}"),
                    &all);
    check_predict(&all.items[0], all.items[0].request_id);
    free_responses(&all);
}

static void test_model_metadata_and_ready(void **state)
{
    oxs_server_t *server = fixture_server(state);
    responses_t all;
    yajl_val tree;

    model_roundtrip(server, NULL, "GET /v2/models/scale HTTP/1.1\r\n\r\n", &all);
    assert_int_equal(all.items[0].status, 200);
    tree = parse_json(&all.items[0]);
    assert_string_equal(YAJL_GET_STRING(json_get(tree, "name", yajl_t_string)), "scale");
    assert_non_null(json_get(tree, "inputs", yajl_t_array));
    yajl_tree_free(tree);
    free_responses(&all);

    model_roundtrip(server, NULL, "GET /v2/models/scale/versions/1/ready HTTP/1.1\r\n\r\n", &all);
    assert_int_equal(all.items[0].status, 200);
    assert_string_equal(all.items[0].body.data, "{\"name\":\"scale\",\"ready\":true}");
    free_responses(&all);

    model_roundtrip(server, NULL, "GET /v2/health/ready HTTP/1.1\r\n\r\n", &all);
    assert_int_equal(all.items[0].status, 200);
    assert_string_equal(all.items[0].body.data, "{\"ready\":true}");
    free_responses(&all);
}

static void test_healthz_lists_models(void **state)
{
    oxs_server_t *server = fixture_server(state);
    const char *models_path[] = {"models", NULL};
    responses_t all;
    yajl_val tree;
    yajl_val models;

    model_roundtrip(server, NULL, "GET /healthz HTTP/1.1\r\n\r\n", &all);
    assert_int_equal(all.items[0].status, 200);
    tree = parse_json(&all.items[0]);
    assert_string_equal(YAJL_GET_STRING(json_get(tree, "status", yajl_t_string)), "ok");
    assert_string_equal(YAJL_GET_STRING(json_get(tree, "version", yajl_t_string)), OXS_VERSION);
    assert_non_null(json_get(tree, "uptime_seconds", yajl_t_number));
    assert_non_null(json_get(tree, "onnxruntime_version", yajl_t_string));
    assert_true(YAJL_IS_NULL(json_get(tree, "gpu_memory", yajl_t_any)));
    models = yajl_tree_get(tree, models_path, yajl_t_array);
    assert_non_null(models);
    assert_int_equal(YAJL_GET_ARRAY(models)->len, 2);
    assert_string_equal(
        YAJL_GET_STRING(json_get(YAJL_GET_ARRAY(models)->values[0], "state", yajl_t_string)),
        "READY");
    yajl_tree_free(tree);
    free_responses(&all);
}

static void test_release_while_inference_runs(void **state)
{
    oxs_server_t *server = fixture_server(state);
    harness_t *h = harness_new(server, 1 << 20, NULL);
    char request[1024];

    snprintf(request, sizeof(request),
             "POST /v2/models/scale/infer HTTP/1.1\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(scale_body), scale_body);
    feed(h, request);
    assert_int_equal(atomic_load(&h->in_flight), 1);
    /* The client leaves before the response: the session stays allocated until the completion,
     * which frees it and drops the response (ASan reports a leak or a use after free). */
    oxs__http_session_release(h->session);
    assert_int_equal(atomic_load(&h->in_flight), 0);
    assert_int_equal(oxs_server_drain(server, 20000), 0);
    assert_int_equal(oxs__http_context_run_completions(&h->ctx), 1);
    assert_int_equal(h->writes, 0);
    oxs__http_context_destroy(&h->ctx);
    oxs_buf_free(&h->output);
    free(h);
}

int main(void)
{
    const struct CMUnitTest protocol_tests[] = {
        cmocka_unit_test(test_live_keeps_connection),
        cmocka_unit_test(test_server_metadata),
        cmocka_unit_test(test_pipelined_in_order),
        cmocka_unit_test(test_pipelined_bytes_capped_while_busy),
        cmocka_unit_test(test_pipelined_reentrant_writes),
        cmocka_unit_test(test_pipelined_byte_by_byte),
        cmocka_unit_test(test_chunked_body_accepted),
        cmocka_unit_test(test_connection_close_closes),
        cmocka_unit_test(test_http10_closes_by_default),
        cmocka_unit_test(test_http10_keep_alive),
        cmocka_unit_test(test_malformed_request_line),
        cmocka_unit_test(test_malformed_header),
        cmocka_unit_test(test_malformed_content_length),
        cmocka_unit_test(test_bad_chunk_size),
        cmocka_unit_test(test_header_too_large),
        cmocka_unit_test(test_content_length_over_max),
        cmocka_unit_test(test_chunked_over_max),
        cmocka_unit_test(test_body_at_max_accepted),
        cmocka_unit_test(test_request_id_echoed),
        cmocka_unit_test(test_request_id_too_long),
        cmocka_unit_test(test_traceparent_echoed_when_valid),
        cmocka_unit_test(test_request_id_bad_byte),
        cmocka_unit_test(test_request_id_empty),
        cmocka_unit_test(test_binary_header_checked),
        cmocka_unit_test(test_generated_ids_differ),
        cmocka_unit_test(test_unknown_route),
        cmocka_unit_test(test_wrong_method),
        cmocka_unit_test(test_head_has_no_body),
        cmocka_unit_test(test_invalid_version),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_expect_continue_over_max),
        cmocka_unit_test(test_http2_version_rejected),
        cmocka_unit_test(test_absolute_target),
        cmocka_unit_test(test_stop_closes_idle),
        cmocka_unit_test(test_stop_answers_then_closes),
        cmocka_unit_test(test_release_while_sending),
        cmocka_unit_test(test_in_headers_until_complete),
        cmocka_unit_test(test_eof_mid_request_closes),
        cmocka_unit_test(test_request_log_fields),
    };
    const struct CMUnitTest model_tests[] = {
        cmocka_unit_test(test_infer_scale),
        cmocka_unit_test(test_infer_versioned_chunked),
        cmocka_unit_test(test_infer_pipelined_keeps_order),
        cmocka_unit_test(test_infer_unknown_model),
        cmocka_unit_test(test_infer_invalid_json),
        cmocka_unit_test(test_predict_needs_default),
        cmocka_unit_test(test_predict_default_model),
        cmocka_unit_test(test_predict_named_model),
        cmocka_unit_test(test_model_metadata_and_ready),
        cmocka_unit_test(test_healthz_lists_models),
        cmocka_unit_test(test_release_while_inference_runs),
    };
    int failed = cmocka_run_group_tests_name("http_session", protocol_tests, NULL, NULL);

    failed += cmocka_run_group_tests_name("http_session_models", model_tests, setup_models,
                                          teardown_models);
    oxs_test_exit(failed);
}
