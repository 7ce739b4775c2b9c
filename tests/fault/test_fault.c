/*
 * Allocation failure injection along whole request paths and the model load path. For each
 * request kind and N = 1, 2, ..., the Nth allocation call of the project's own code fails
 * (fault_alloc.c, wired in by fault.cmake). The run must end with the normal response, a 5xx
 * response with a JSON error body, or a closed connection. The server must then respond to the
 * same request normally, and the number of live blocks must be back where it was. The loop
 * for a kind ends at the first N that the path never reaches.
 *
 * Most requests go through HTTP sessions with a fake transport, as in
 * tests/unit/test_http_session.c, against a server that loads a model repository built from the
 * generated test models ($ONNXSERVE_TEST_DATA). test_over_tcp sends some of them through the
 * libuv transport on 127.0.0.1, test_cold_server sends the first request to a new server, and
 * test_model_load fails the allocations of creating a server and loading the repository.
 * Under AddressSanitizer a crash, a use after free or a double free stops the test, and the
 * death callback names the request kind and N.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>
#include <zlib.h>

#include "common/buf.h"
#include "exit_now.h"
#include "fault_alloc.h"
#include "http/frontend.h"
#include "http/session.h"
#include "onnxserve.h"
#include "server/log.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FAULT_ASAN 1
#include <sanitizer/common_interface_defs.h>
#include <sanitizer/lsan_interface.h>
#endif
#endif

/* A bound on N per path, far above the 6 to 70 allocation calls that each path made when this
 * test was written, so a path that never stops allocating fails the test instead of hanging. */
#define MAX_FAILURE_INDEX 20000
#define MAX_SESSIONS 2
#define MAX_BODY ((size_t)16 << 20)

/* ------------------------------------------------------------------------------------------ */
/* The run in progress, for the crash report. */

static char current_run[256] = "setup";

static void set_current_run(const char *kind, size_t nth)
{
    snprintf(current_run, sizeof(current_run), "request kind \"%s\", failing allocation %zu",
             kind, nth);
}

static void report_current_run(void)
{
    static const char prefix[] = "\ntest_fault: the sanitizer or a signal stopped the test during ";
    (void)!write(STDERR_FILENO, prefix, sizeof(prefix) - 1);
    (void)!write(STDERR_FILENO, current_run, strlen(current_run));
    (void)!write(STDERR_FILENO, "\n", 1);
}

#ifndef FAULT_ASAN
static void on_fatal_signal(int signal_number)
{
    report_current_run();
    signal(signal_number, SIG_DFL);
    raise(signal_number);
}
#endif

static void install_crash_report(void)
{
#ifdef FAULT_ASAN
    __sanitizer_set_death_callback(report_current_run);
#else
    signal(SIGSEGV, on_fatal_signal);
    signal(SIGBUS, on_fatal_signal);
    signal(SIGABRT, on_fatal_signal);
    signal(SIGFPE, on_fatal_signal);
#endif
}

/* Every event at debug level, written to /dev/null: formatting the log lines of error paths
 * runs under the sanitizers too. */
static oxs_logger_t test_logger;

static void open_test_logger(void)
{
    oxs_logger_init(&test_logger, OXS_LOG_DEBUG, OXS_LOG_FORMAT_JSON);
    test_logger.fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    assert_true(test_logger.fd >= 0);
}

/* ------------------------------------------------------------------------------------------ */
/* A session with a fake transport. */

typedef struct harness {
    oxs__http_context_t ctx;
    bool ctx_ready;
    atomic_int in_flight;
    oxs__http_session_t *session; /* NULL when creating it failed */
    oxs_buf_t output;             /* every byte the session wrote */
    bool write_pending;
    bool closed;
    int writes;
} harness_t;

static void fake_write(void *user, const char *head, size_t head_len, const char *body,
                       size_t body_len)
{
    harness_t *h = user;

    /* The test's copy of the response is not the project's allocation. */
    fault_pause();
    oxs_buf_append(&h->output, head, head_len);
    oxs_buf_append(&h->output, body, body_len);
    fault_resume();
    h->writes++;
    h->write_pending = true;
}

static void fake_write_interim(void *user, const char *data, size_t len)
{
    harness_t *h = user;

    fault_pause();
    oxs_buf_append(&h->output, data, len);
    fault_resume();
}

static void fake_set_reading(void *user, bool reading)
{
    (void)user;
    (void)reading;
}

static void fake_close(void *user, bool linger)
{
    harness_t *h = user;

    (void)linger;
    h->closed = true;
}

static const oxs__http_session_io_t fake_io = {
    .write = fake_write,
    .write_interim = fake_write_interim,
    .set_reading = fake_set_reading,
    .close = fake_close,
};

/* Sets up a context and a session. Either may fail under injection: the session is then NULL,
 * which a transport handles by closing the connection. The harness itself belongs to the test,
 * so it is allocated with counting paused. */
static harness_t *harness_open(oxs_server_t *server, const char *default_model)
{
    fault_pause();
    harness_t *h = calloc(1, sizeof(*h));
    fault_resume();

    assert_non_null(h);
    atomic_init(&h->in_flight, 0);
    oxs_buf_init(&h->output, 0);
    if (oxs__http_context_init(&h->ctx, server, MAX_BODY, default_model, &test_logger,
                               &h->in_flight) != OXS_OK)
        return h;
    h->ctx_ready = true;
    h->ctx.metrics_on_http_port = true;
    h->session = oxs__http_session_create(&h->ctx, &fake_io, h);
    return h;
}

static void harness_close(harness_t *h)
{
    if (h->session != NULL)
        oxs__http_session_release(h->session);
    if (h->ctx_ready) {
        oxs__http_context_run_completions(&h->ctx);
        oxs__http_context_destroy(&h->ctx);
    }
    oxs_buf_free(&h->output);
    free(h);
}

/* Completes pending writes until the session stops writing. */
static void pump(harness_t *h)
{
    while (h->write_pending && !h->closed) {
        h->write_pending = false;
        oxs__http_session_write_done(h->session, 0);
    }
}

/* Runs completions until the session has written a response or closed, for at most 20 s. */
static bool wait_for_outcome(harness_t *h)
{
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 200000};

    for (int i = 0; i < 100000; i++) {
        pump(h);
        if (h->writes > 0 || h->closed)
            return true;
        if (oxs__http_context_run_completions(&h->ctx) == 0)
            nanosleep(&pause, NULL);
    }
    return false;
}

/* ------------------------------------------------------------------------------------------ */
/* Response parsing with http-parser. */

typedef struct response {
    int status;
    char content_type[64];
    char field[64];
    oxs_buf_t body;
    int count;
} response_t;

static int on_response_field(http_parser *parser, const char *at, size_t len)
{
    response_t *r = parser->data;
    snprintf(r->field, sizeof(r->field), "%.*s", (int)len, at);
    return 0;
}

static int on_response_value(http_parser *parser, const char *at, size_t len)
{
    response_t *r = parser->data;
    if (strcasecmp(r->field, "content-type") == 0)
        snprintf(r->content_type, sizeof(r->content_type), "%.*s", (int)len, at);
    return 0;
}

static int on_response_headers(http_parser *parser)
{
    response_t *r = parser->data;
    r->status = (int)parser->status_code;
    return 0;
}

static int on_response_body(http_parser *parser, const char *at, size_t len)
{
    response_t *r = parser->data;
    oxs_buf_append(&r->body, at, len);
    return 0;
}

static int on_response_complete(http_parser *parser)
{
    response_t *r = parser->data;
    r->count++;
    return 0;
}

static const http_parser_settings response_settings = {
    .on_header_field = on_response_field,
    .on_header_value = on_response_value,
    .on_headers_complete = on_response_headers,
    .on_body = on_response_body,
    .on_message_complete = on_response_complete,
};

/* Parses a session's output, which must contain at most one response. Returns false when the
 * bytes are not a well-formed HTTP response. */
static bool parse_response(const oxs_buf_t *output, response_t *r)
{
    http_parser parser;

    memset(r, 0, sizeof(*r));
    oxs_buf_init(&r->body, 0);
    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = r;
    size_t parsed = http_parser_execute(&parser, &response_settings, output->data, output->len);
    oxs_buf_cstr(&r->body);
    return HTTP_PARSER_ERRNO(&parser) == HPE_OK && parsed == output->len && r->count <= 1;
}

/* Returns true when the body is a JSON object with an "error" string. */
static bool is_json_error(response_t *r)
{
    const char *error_path[] = {"error", NULL};
    char message[128];

    if (strncmp(r->content_type, "application/json", 16) != 0)
        return false;
    yajl_val tree = yajl_tree_parse(r->body.data, message, sizeof(message));
    bool ok = tree != NULL && yajl_tree_get(tree, error_path, yajl_t_string) != NULL;
    yajl_tree_free(tree);
    return ok;
}

/* ------------------------------------------------------------------------------------------ */
/* Request kinds */

typedef struct request_kind {
    const char *name;
    const char *default_model; /* for /predict */
    int sessions;              /* sessions that send the request at the same time */
    bool client_leaves;        /* the session is released before the response arrives */
    int status;                /* of the normal response */
    const char *expected;      /* text in the normal response's body */
    oxs_buf_t request;         /* the request's bytes */
} request_kind_t;

static const char scale_body[] = "{\"id\":\"r1\",\"inputs\":[{\"name\":\"x\",\"shape\":[2,4],"
                                 "\"datatype\":\"FP32\",\"data\":[1,2,3,4,5,6,7,8]}]}";

static void format_request(request_kind_t *kind, const char *method, const char *path,
                           const char *headers, const char *body, size_t body_len)
{
    oxs_buf_init(&kind->request, 0);
    oxs_buf_printf(&kind->request,
                   "%s %s HTTP/1.1\r\nHost: localhost\r\n%sContent-Length: %zu\r\n\r\n", method,
                   path, headers, body_len);
    oxs_buf_append(&kind->request, body, body_len);
    assert_false(kind->request.failed);
}

/* A binary extension request: a JSON header, then the input's 4 floats in little-endian order,
 * and the output requested as binary data. */
static void format_binary_request(request_kind_t *kind)
{
    static const char header[] =
        "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\","
        "\"parameters\":{\"binary_data_size\":16}}],"
        "\"outputs\":[{\"name\":\"y\",\"parameters\":{\"binary_data\":true}}]}";
    static const float values[4] = {1, 2, 3, 4};
    char body[sizeof(header) - 1 + sizeof(values)];
    char headers[128];

    memcpy(body, header, sizeof(header) - 1);
    memcpy(body + sizeof(header) - 1, values, sizeof(values)); /* x86-64 is little-endian */
    snprintf(headers, sizeof(headers),
             "Inference-Header-Content-Length: %zu\r\nContent-Type: application/octet-stream\r\n",
             sizeof(header) - 1);
    format_request(kind, "POST", "/v2/models/scale/infer", headers, body, sizeof(body));
}

/* Rows of the large request: 4 floats each, so its input tensor takes more than the 1 MiB
 * arena chunk that a pooled request keeps, and every run allocates its chunks again. */
#define LARGE_ROWS 80000

static void format_large_request(request_kind_t *kind)
{
    oxs_buf_t body;

    oxs_buf_init(&body, 0);
    oxs_buf_printf(&body, "{\"inputs\":[{\"name\":\"x\",\"shape\":[%d,4],\"datatype\":\"FP32\","
                          "\"data\":[", LARGE_ROWS);
    for (int i = 0; i < LARGE_ROWS * 4; i++)
        oxs_buf_puts(&body, i == 0 ? "1" : ",1");
    /* An id with an escape comes after the data, so that yajl allocates its string buffer when
     * the arena's chunks are already in use. */
    oxs_buf_puts(&body, "]}],\"id\":\"large-\\u00e9\"}");
    assert_false(body.failed);
    format_request(kind, "POST", "/v2/models/scale/infer", "", body.data, body.len);
    oxs_buf_free(&body);
}

/* Characters in the long string. With one escape among them, yajl decodes the whole string into
 * its own buffer, which grows from the request's arena. The buffer outgrows the 1 MiB chunk that
 * a pooled request keeps, so the arena allocates for yajl. */
#define LONG_STRING_BYTES 1500000

static void format_long_string_request(request_kind_t *kind)
{
    oxs_buf_t body;

    oxs_buf_init(&body, 0);
    oxs_buf_puts(&body, "{\"inputs\":[{\"name\":\"text\",\"shape\":[1],\"datatype\":\"BYTES\","
                        "\"data\":[\"\\u00e9");
    assert_true(oxs_buf_reserve(&body, LONG_STRING_BYTES));
    memset(body.data + body.len, 'a', LONG_STRING_BYTES);
    body.len += LONG_STRING_BYTES;
    oxs_buf_puts(&body, "\"]}]}");
    assert_false(body.failed);
    format_request(kind, "POST", "/v2/models/strings/infer", "", body.data, body.len);
    oxs_buf_free(&body);
}

/* The scale request's body compressed with gzip framing. */
static void format_gzip_request(request_kind_t *kind)
{
    unsigned char compressed[512];
    z_stream stream;

    memset(&stream, 0, sizeof(stream));
    assert_int_equal(deflateInit2(&stream, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8,
                                  Z_DEFAULT_STRATEGY),
                     Z_OK);
    stream.next_in = (unsigned char *)scale_body;
    stream.avail_in = (uInt)strlen(scale_body);
    stream.next_out = compressed;
    stream.avail_out = sizeof(compressed);
    assert_int_equal(deflate(&stream, Z_FINISH), Z_STREAM_END);
    size_t len = sizeof(compressed) - stream.avail_out;
    deflateEnd(&stream);
    format_request(kind, "POST", "/v2/models/scale/infer", "Content-Encoding: gzip\r\n",
                   (const char *)compressed, len);
}

/* The scale request with its body in two chunks. */
static void format_chunked_request(request_kind_t *kind)
{
    size_t half = strlen(scale_body) / 2;

    oxs_buf_init(&kind->request, 0);
    oxs_buf_printf(&kind->request,
                   "POST /v2/models/scale/infer HTTP/1.1\r\nHost: localhost\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n%zx\r\n%.*s\r\n%zx\r\n%s\r\n0\r\n\r\n",
                   half, (int)half, scale_body, strlen(scale_body) - half, scale_body + half);
    assert_false(kind->request.failed);
}

enum { KIND_COUNT = 20 };

static request_kind_t kinds[KIND_COUNT];

static void define_kinds(void)
{
    static const char predict_body[] = "{\"data\":[1,2,3,4]}";
    static const char bad_shape_body[] = "{\"inputs\":[{\"name\":\"x\",\"shape\":[2,3],"
                                         "\"datatype\":\"FP32\",\"data\":[1,2,3,4,5,6]}]}";
    static const char batched_body[] = "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],"
                                       "\"datatype\":\"FP32\",\"data\":[1,2,3,4]}]}";
    static const char bytes_body[] = "{\"inputs\":[{\"name\":\"text\",\"shape\":[3],"
                                     "\"datatype\":\"BYTES\","
                                     "\"data\":[\"a\",\"bc\",\"d\\u00e9f\"]}]}";
    request_kind_t *k = kinds;

    *k = (request_kind_t){.name = "JSON infer", .status = 200, .expected = "\"outputs\""};
    format_request(k++, "POST", "/v2/models/scale/infer", "", scale_body, strlen(scale_body));

    *k = (request_kind_t){.name = "binary infer", .status = 200, .expected = "binary_data_size"};
    format_binary_request(k++);

    *k = (request_kind_t){.name = "large JSON infer", .status = 200, .expected = "\"outputs\""};
    format_large_request(k++);

    *k = (request_kind_t){.name = "gzip infer", .status = 200, .expected = "\"outputs\""};
    format_gzip_request(k++);

    *k = (request_kind_t){.name = "chunked infer", .status = 200, .expected = "\"outputs\""};
    format_chunked_request(k++);

    *k = (request_kind_t){.name = "BYTES infer", .status = 200, .expected = "\"text_out\""};
    format_request(k++, "POST", "/v2/models/strings/infer", "", bytes_body, strlen(bytes_body));

    *k = (request_kind_t){.name = "long escaped string", .status = 200,
                          .expected = "\"text_out\""};
    format_long_string_request(k++);

    *k = (request_kind_t){.name = "infer, client leaves", .client_leaves = true};
    format_request(k++, "POST", "/v2/models/scale/infer", "", scale_body, strlen(scale_body));

    *k = (request_kind_t){.name = "predict", .default_model = "scale", .status = 200,
                          .expected = "\"output\""};
    format_request(k++, "POST", "/predict", "", predict_body, strlen(predict_body));

    *k = (request_kind_t){.name = "model metadata", .status = 200, .expected = "\"inputs\""};
    format_request(k++, "GET", "/v2/models/scale", "", "", 0);

    *k = (request_kind_t){.name = "model stats", .status = 200, .expected = "\"model_stats\""};
    format_request(k++, "GET", "/v2/models/scale/stats", "", "", 0);

    *k = (request_kind_t){.name = "metrics", .status = 200, .expected = "# TYPE"};
    format_request(k++, "GET", "/metrics", "", "", 0);

    *k = (request_kind_t){.name = "repository index", .status = 200, .expected = "\"batched\""};
    format_request(k++, "POST", "/v2/repository/index", "", "{}", 2);

    *k = (request_kind_t){.name = "batched infer", .sessions = 2, .status = 200,
                          .expected = "\"outputs\""};
    format_request(k++, "POST", "/v2/models/batched/infer", "", batched_body,
                   strlen(batched_body));

    *k = (request_kind_t){.name = "bad shape", .status = 400, .expected = "\"error\""};
    format_request(k++, "POST", "/v2/models/scale/infer", "", bad_shape_body,
                   strlen(bad_shape_body));

    *k = (request_kind_t){.name = "model config", .status = 200, .expected = "max_batch_size"};
    format_request(k++, "GET", "/v2/models/batched/versions/1/config", "", "", 0);

    *k = (request_kind_t){.name = "healthz", .status = 200, .expected = "\"models\""};
    format_request(k++, "GET", "/healthz", "", "", 0);

    *k = (request_kind_t){.name = "unknown route", .status = 404, .expected = "not found"};
    format_request(k++, "GET", "/v2/nowhere", "", "", 0);

    /* Only for servers in explicit model control mode (test_cold_server). */
    *k = (request_kind_t){.name = "repository load", .status = 200, .expected = ""};
    format_request(k++, "POST", "/v2/repository/models/batched/load", "", "", 0);

    *k = (request_kind_t){.name = "repository unload", .status = 200, .expected = ""};
    format_request(k++, "POST", "/v2/repository/models/batched/unload", "", "", 0);

    assert_int_equal(k - kinds, KIND_COUNT);
    for (int i = 0; i < KIND_COUNT; i++) {
        if (kinds[i].sessions == 0)
            kinds[i].sessions = 1;
    }
}

static void free_kinds(void)
{
    for (int i = 0; i < KIND_COUNT; i++)
        oxs_buf_free(&kinds[i].request);
}

/* ------------------------------------------------------------------------------------------ */
/* The server and its model repository */

typedef struct fixture {
    oxs_server_t *server;
    char repo[64];
    char warmup_repo[64]; /* the same models, and "batched" runs a warmup request */
} fixture_t;

static void write_text(const char *path, const char *text)
{
    FILE *file = fopen(path, "w");

    assert_non_null(file);
    assert_true(fputs(text, file) >= 0);
    assert_int_equal(fclose(file), 0);
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    FILE *out = fopen(to, "wb");
    char block[4096];
    size_t len;

    assert_non_null(in);
    assert_non_null(out);
    while ((len = fread(block, 1, sizeof(block), in)) > 0)
        assert_int_equal(fwrite(block, 1, len, out), len);
    assert_false(ferror(in));
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/* Repository models and the generated model file that each one copies. The repository rejects
 * links that lead outside it, hence copies. */
static const char *const repository_models[][2] = {
    {"scale", "scale.onnx"},
    {"batched", "scale.onnx"},
    {"strings", "strings.onnx"},
};
#define REPOSITORY_MODEL_COUNT (sizeof(repository_models) / sizeof(repository_models[0]))

/* Builds REPO/NAME/1/model.onnx for each repository model, and a config.json that makes
 * "batched" batch two requests and, with warmup, run a warmup request when it loads. A warmup
 * leaves a pooled request behind, so the repository that the request tests use has none. */
static void make_repository(const char *data, const char *repo, bool warmup)
{
    static const char batching[] =
        "\"max_batch_size\": 8, \"dynamic_batching\": "
        "{\"max_queue_delay_us\": 20000, \"preferred_batch_sizes\": [2]}";
    char config[256];
    char path[PATH_MAX];
    char source[PATH_MAX];

    for (size_t i = 0; i < REPOSITORY_MODEL_COUNT; i++) {
        const char *name = repository_models[i][0];
        snprintf(path, sizeof(path), "%s/%s", repo, name);
        assert_int_equal(mkdir(path, 0700), 0);
        snprintf(path, sizeof(path), "%s/%s/1", repo, name);
        assert_int_equal(mkdir(path, 0700), 0);
        snprintf(path, sizeof(path), "%s/%s/1/model.onnx", repo, name);
        snprintf(source, sizeof(source), "%s/%s", data, repository_models[i][1]);
        copy_file(source, path);
    }
    snprintf(path, sizeof(path), "%s/batched/config.json", repo);
    snprintf(config, sizeof(config), "{%s%s}", batching,
             warmup ? ", \"warmup\": \"random\"" : "");
    write_text(path, config);
}

static void remove_repository(const char *repo)
{
    char path[PATH_MAX];

    for (size_t i = 0; i < REPOSITORY_MODEL_COUNT; i++) {
        const char *name = repository_models[i][0];
        snprintf(path, sizeof(path), "%s/%s/1/model.onnx", repo, name);
        remove(path);
        snprintf(path, sizeof(path), "%s/%s/1", repo, name);
        remove(path);
        snprintf(path, sizeof(path), "%s/%s/config.json", repo, name);
        remove(path);
        snprintf(path, sizeof(path), "%s/%s", repo, name);
        remove(path);
    }
    remove(repo);
}

static void server_options(oxs_options_t *options)
{
    oxs_options_init(options);
    options->workers = 1;
    options->queue_size = 8;
    options->log_fn = oxs_log_library_event;
    options->log_user = &test_logger;
    options->log_level = OXS_LOG_DEBUG;
}

/* Returns true when every repository model's version 1 is READY. */
static bool models_ready(oxs_server_t *server);

/* Returns true when model name version 1 is READY. */
static bool model_ready(oxs_server_t *server, const char *name)
{
    oxs_model_t *model = NULL;

    if (oxs_server_get_model(server, name, 1, &model) != OXS_OK)
        return false;
    bool ready = oxs_model_state(model) == OXS_MODEL_READY;
    oxs_model_release(model);
    return ready;
}

static bool models_ready(oxs_server_t *server)
{
    for (size_t i = 0; i < REPOSITORY_MODEL_COUNT; i++) {
        if (!model_ready(server, repository_models[i][0]))
            return false;
    }
    return true;
}

static void print_model_states(oxs_server_t *server)
{
    size_t count = oxs_server_model_count(server);

    for (size_t i = 0; i < count; i++) {
        oxs_model_t *model = NULL;
        if (oxs_server_model_at(server, i, &model) != OXS_OK)
            break;
        fprintf(stderr, "model %s version %lld: %s %s\n", oxs_model_name(model),
                (long long)oxs_model_version(model),
                oxs_model_state_name(oxs_model_state(model)), oxs_model_state_reason(model));
        oxs_model_release(model);
    }
}

static int setup_server(void **state)
{
    const char *data = getenv("ONNXSERVE_TEST_DATA");
    fixture_t *fixture = calloc(1, sizeof(*fixture));
    oxs_options_t options;
    char error[512];

    if (fixture == NULL)
        return -1;
    *state = fixture;
    install_crash_report();
    open_test_logger();
    define_kinds();
    if (data == NULL)
        return 0; /* the tests skip */

    snprintf(fixture->repo, sizeof(fixture->repo), "/tmp/oxs-fault-XXXXXX");
    if (mkdtemp(fixture->repo) == NULL)
        return -1;
    make_repository(data, fixture->repo, false);
    snprintf(fixture->warmup_repo, sizeof(fixture->warmup_repo), "/tmp/oxs-fault-XXXXXX");
    if (mkdtemp(fixture->warmup_repo) == NULL)
        return -1;
    make_repository(data, fixture->warmup_repo, true);

    server_options(&options);
    if (oxs_server_create(&options, &fixture->server, error, sizeof(error)) != OXS_OK) {
        fprintf(stderr, "server: %s\n", error);
        return -1;
    }
    if (oxs_server_load_repository(fixture->server, fixture->repo, error, sizeof(error)) !=
        OXS_OK) {
        fprintf(stderr, "repository: %s\n", error);
        return -1;
    }
    if (!models_ready(fixture->server)) {
        print_model_states(fixture->server);
        return -1;
    }
    return 0;
}

static int teardown_server(void **state)
{
    fixture_t *fixture = *state;

    if (fixture->server != NULL)
        oxs_server_destroy(fixture->server);
    if (fixture->repo[0] != '\0')
        remove_repository(fixture->repo);
    if (fixture->warmup_repo[0] != '\0')
        remove_repository(fixture->warmup_repo);
    free_kinds();
    close(test_logger.fd);
    free(fixture);
    return 0;
}

static fixture_t *fixture_of(void **state)
{
    fixture_t *fixture = *state;

    if (fixture->server == NULL)
        skip();
    return fixture;
}

/* Waits until the server has finished every request, so that its workers free nothing after
 * the live blocks are counted. */
static void drain(oxs_server_t *server)
{
    assert_int_equal(oxs_server_drain(server, 20000), 0);
}

/* ------------------------------------------------------------------------------------------ */
/* One run of a request kind */

static void fail_run(const request_kind_t *kind, size_t nth, const char *what,
                     const oxs_buf_t *output)
{
    fprintf(stderr, "request kind \"%s\", failing allocation %zu: %s\n", kind->name, nth, what);
    if (output != NULL && output->len > 0)
        fprintf(stderr, "output:\n%.*s\n", (int)(output->len < 4096 ? output->len : 4096),
                output->data);
    fault_print_site();
    fail_msg("request kind \"%s\", failing allocation %zu: %s", kind->name, nth, what);
}

/* Checks the bytes a connection received, which must be the normal response. When a failure
 * was injected, a 5xx response with a JSON error body or a close with no response also pass. */
static void check_output(const request_kind_t *kind, size_t nth, bool injected,
                         const oxs_buf_t *output, bool closed)
{
    response_t r;

    if (!parse_response(output, &r))
        fail_run(kind, nth, "the output is not one well-formed HTTP response", output);

    bool normal = r.count == 1 && r.status == kind->status &&
                  memmem(r.body.data, r.body.len, kind->expected, strlen(kind->expected)) != NULL;
    bool server_error = r.count == 1 && r.status >= 500 && r.status <= 599 && is_json_error(&r);
    bool closed_silently = r.count == 0 && closed;
    oxs_buf_free(&r.body);

    if (normal)
        return;
    if (!injected)
        fail_run(kind, nth, "no failure was injected but the response is not the normal one",
                 output);
    if (!server_error && !closed_silently)
        fail_run(kind, nth, "neither the normal response, a 5xx JSON error nor a close", output);
}

/* Checks one session's outcome like check_output. A session that could not be created also
 * passes when a failure was injected. */
static void check_outcome(const request_kind_t *kind, size_t nth, bool injected, harness_t *h)
{
    if (h->session == NULL) {
        if (!injected)
            fail_run(kind, nth, "the session was not created", NULL);
        return;
    }
    check_output(kind, nth, injected, &h->output, h->closed);
}

/* Releases the sessions right after their requests were fed, as a transport does when the
 * client closes its connection, and lets the dropped requests finish. There is no response to
 * check: the run must only neither crash nor leak. */
static bool run_client_leaves(oxs_server_t *server, harness_t **sessions, int count)
{
    for (int i = 0; i < count; i++) {
        if (sessions[i]->session != NULL)
            oxs__http_session_release(sessions[i]->session);
        sessions[i]->session = NULL;
    }
    drain(server);
    bool injected = fault_disarm();
    for (int i = 0; i < count; i++)
        harness_close(sessions[i]);
    return injected;
}

/* Sends the request kind with allocation nth armed (0: none) and checks the outcome. Returns
 * true when the failure was injected. */
static bool run_kind(oxs_server_t *server, const request_kind_t *kind, size_t nth)
{
    harness_t *sessions[MAX_SESSIONS];
    bool answered[MAX_SESSIONS];

    set_current_run(kind->name, nth);
    fault_arm(nth);
    for (int i = 0; i < kind->sessions; i++)
        sessions[i] = harness_open(server, kind->default_model);
    for (int i = 0; i < kind->sessions; i++) {
        if (sessions[i]->session != NULL)
            oxs__http_session_feed(sessions[i]->session, kind->request.data, kind->request.len);
    }
    if (kind->client_leaves)
        return run_client_leaves(server, sessions, kind->sessions);
    for (int i = 0; i < kind->sessions; i++)
        answered[i] = sessions[i]->session == NULL || wait_for_outcome(sessions[i]);
    bool injected = fault_disarm();

    for (int i = 0; i < kind->sessions; i++) {
        if (!answered[i])
            fail_run(kind, nth, "no response within 20 s and the connection is open",
                     &sessions[i]->output);
        check_outcome(kind, nth, injected, sessions[i]);
    }
    for (int i = 0; i < kind->sessions; i++)
        harness_close(sessions[i]);
    drain(server);
    return injected;
}

static void check_no_leak(const char *name, size_t nth, size_t before)
{
    size_t after = fault_live_count();

    if (after == before)
        return;
    fprintf(stderr, "%s, failing allocation %zu: %zu live blocks before, %zu after\n", name, nth,
            before, after);
    fault_print_site();
#ifdef FAULT_ASAN
    /* Prints the allocation stacks of leaked blocks that nothing points to any more. A block
     * that a stale stack slot still points to is not reported, so this may print nothing. */
    __lsan_do_recoverable_leak_check();
#endif
    fail_msg("%s, failing allocation %zu: %zd blocks leaked", name, nth,
             (ssize_t)after - (ssize_t)before);
}

/* Fails allocation 1, 2, ... of the request kind until a run completes without reaching the
 * armed allocation. Each failing run is followed by a normal one, and the live block count
 * must then be back to its value before the failing run. */
static void sweep_kind(oxs_server_t *server, const request_kind_t *kind)
{
    size_t nth;

    /* Two normal runs first: lazily created state (pooled requests, arena chunks, statistics)
     * then exists before blocks are counted. */
    run_kind(server, kind, 0);
    run_kind(server, kind, 0);

    for (nth = 1; nth <= MAX_FAILURE_INDEX; nth++) {
        size_t before = fault_live_count();
        bool injected = run_kind(server, kind, nth);

        run_kind(server, kind, 0);
        check_no_leak(kind->name, nth, before);
        if (!injected)
            break;
    }
    if (nth > MAX_FAILURE_INDEX)
        fail_msg("request kind \"%s\": still allocating after %d calls", kind->name,
                 MAX_FAILURE_INDEX);
    printf("fault: request kind \"%s\": %zu allocation calls, each failed once\n", kind->name,
           nth - 1);
}

static const request_kind_t *kind_named(const char *name)
{
    for (int i = 0; i < KIND_COUNT; i++) {
        if (strcmp(kinds[i].name, name) == 0)
            return &kinds[i];
    }
    fail_msg("no request kind \"%s\"", name);
    return NULL;
}

static void sweep_named(void **state, const char *name)
{
    fixture_t *fixture = fixture_of(state);

    sweep_kind(fixture->server, kind_named(name));
}

#define KIND_TEST(function, name) \
    static void function(void **state) \
    { \
        sweep_named(state, name); \
    }

KIND_TEST(test_json_infer, "JSON infer")
KIND_TEST(test_binary_infer, "binary infer")
KIND_TEST(test_large_json_infer, "large JSON infer")
KIND_TEST(test_gzip_infer, "gzip infer")
KIND_TEST(test_chunked_infer, "chunked infer")
KIND_TEST(test_bytes_infer, "BYTES infer")
KIND_TEST(test_long_escaped_string, "long escaped string")
KIND_TEST(test_client_leaves, "infer, client leaves")
KIND_TEST(test_predict, "predict")
KIND_TEST(test_model_metadata, "model metadata")
KIND_TEST(test_model_stats, "model stats")
KIND_TEST(test_metrics, "metrics")
KIND_TEST(test_repository_index, "repository index")
KIND_TEST(test_batched_infer, "batched infer")
KIND_TEST(test_bad_shape, "bad shape")
KIND_TEST(test_model_config, "model config")
KIND_TEST(test_healthz, "healthz")
KIND_TEST(test_unknown_route, "unknown route")

/* ------------------------------------------------------------------------------------------ */
/* Requests over loopback TCP, through the libuv transport */

/* Connects to 127.0.0.1:port. Sending and receiving time out after 20 s, so that a server that
 * stops reading or never responds fails the test instead of hanging it. */
static int connect_loopback(int port)
{
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval timeout = {.tv_sec = 20};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout)), 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&address, sizeof(address)), 0);
    return fd;
}

static bool response_complete(const oxs_buf_t *output)
{
    response_t r;
    bool complete = parse_response(output, &r) && r.count == 1;

    oxs_buf_free(&r.body);
    return complete;
}

/* Sends the request on a new connection and reads until one response is complete or the
 * server closes the connection. Returns false when 20 s pass first. The test's own allocations
 * here are not counted. */
static bool exchange_over_tcp(int port, const request_kind_t *kind, oxs_buf_t *output,
                              bool *closed)
{
    char block[65536];
    size_t sent = 0;
    bool timed_out = false;

    fault_pause();
    *closed = false;
    int fd = connect_loopback(port);
    while (sent < kind->request.len) {
        ssize_t n = send(fd, kind->request.data + sent, kind->request.len - sent, MSG_NOSIGNAL);
        if (n <= 0)
            break; /* the server stopped reading: read what it sent */
        sent += (size_t)n;
    }
    for (;;) {
        ssize_t n = recv(fd, block, sizeof(block), 0);
        if (n > 0) {
            oxs_buf_append(output, block, (size_t)n);
            if (response_complete(output))
                break;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            timed_out = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
            *closed = !timed_out; /* an orderly close or a reset */
            break;
        }
    }
    close(fd);
    fault_resume();
    return !timed_out;
}

/* Waits up to 5 s for the live block count to return to before, because the transport frees a
 * connection on its loop thread after the client has closed it. */
static void wait_live_count(size_t before)
{
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 1000000};

    for (int i = 0; i < 5000 && fault_live_count() != before; i++)
        nanosleep(&pause, NULL);
}

/* Waits up to 5 s until the frontend has closed every connection. */
static bool wait_connections_closed(const oxs_http_frontend_t *frontend)
{
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 1000000};

    for (int i = 0; i < 5000; i++) {
        if (oxs_http_open_connections(frontend) == 0)
            return true;
        nanosleep(&pause, NULL);
    }
    return false;
}

/* Sends the request kind over TCP with allocation nth armed (0: none) until the server has
 * closed the connection, and checks what the client received. Returns true when the failure
 * was injected. */
static bool run_tcp(oxs_http_frontend_t *frontend, oxs_server_t *server,
                    const request_kind_t *kind, size_t nth)
{
    oxs_buf_t output;
    bool closed = false;

    snprintf(current_run, sizeof(current_run),
             "request kind \"%s\" over TCP, failing allocation %zu", kind->name, nth);
    oxs_buf_init(&output, 0);
    fault_arm(nth);
    bool answered = exchange_over_tcp(oxs_http_port(frontend), kind, &output, &closed);
    bool connections_closed = wait_connections_closed(frontend);
    bool injected = fault_disarm();

    if (!answered)
        fail_run(kind, nth, "no response over TCP within 20 s and the connection is open",
                 &output);
    if (!connections_closed)
        fail_run(kind, nth, "the server kept the connection open after the client closed it",
                 &output);
    check_output(kind, nth, injected, &output, closed);
    oxs_buf_free(&output);
    drain(server);
    return injected;
}

/* Request kinds whose path through the transport differs: a body read in many pieces, a
 * binary response, a large response written in parts, and a response without a model. */
static const char *const tcp_kinds[] = {"JSON infer", "binary infer", "large JSON infer",
                                        "gzip infer", "metrics", "unknown route"};

static void test_over_tcp(void **state)
{
    fixture_t *fixture = fixture_of(state);
    oxs_http_config_t config = {
        .host = "127.0.0.1",
        .port = 0,
        .threads = 1,
        .max_request_bytes = MAX_BODY,
        .strict_readiness = true,
        .metrics_port = -1,
        .metrics_on_http_port = true,
        .max_connections = 64,
    };
    oxs_http_frontend_t *frontend = NULL;
    char error[512] = "";

    if (oxs_http_start(fixture->server, &config, &test_logger, &frontend, error,
                       sizeof(error)) != OXS_OK)
        fail_msg("starting the HTTP frontend: %s", error);

    for (size_t i = 0; i < sizeof(tcp_kinds) / sizeof(tcp_kinds[0]); i++) {
        const request_kind_t *kind = kind_named(tcp_kinds[i]);
        char name[96];
        size_t nth;

        snprintf(name, sizeof(name), "%s over TCP", kind->name);
        run_tcp(frontend, fixture->server, kind, 0);
        run_tcp(frontend, fixture->server, kind, 0);
        for (nth = 1; nth <= MAX_FAILURE_INDEX; nth++) {
            size_t before = fault_live_count();
            bool injected = run_tcp(frontend, fixture->server, kind, nth);

            run_tcp(frontend, fixture->server, kind, 0);
            wait_live_count(before);
            check_no_leak(name, nth, before);
            if (!injected)
                break;
        }
        if (nth > MAX_FAILURE_INDEX)
            fail_msg("%s: still allocating after %d calls", name, MAX_FAILURE_INDEX);
        printf("fault: %s: %zu allocation calls, each failed once\n", name, nth - 1);
    }
    drain(fixture->server);
    oxs_http_destroy(frontend);
}

/* ------------------------------------------------------------------------------------------ */
/* First requests on a fresh server */

typedef struct cold_case {
    const char *kind;
    oxs_control_mode_t mode;
    const char *loaded_first; /* model that explicit mode loads before the run, or NULL */
} cold_case_t;

/* Request paths that allocate more on a server's first request than later: the pooled request
 * and its arena, per-model statistics, and in explicit mode the models themselves. */
static const cold_case_t cold_cases[] = {
    {"JSON infer", OXS_CONTROL_NONE, NULL},
    {"binary infer", OXS_CONTROL_NONE, NULL},
    {"BYTES infer", OXS_CONTROL_NONE, NULL},
    {"batched infer", OXS_CONTROL_NONE, NULL},
    {"predict", OXS_CONTROL_NONE, NULL},
    {"repository load", OXS_CONTROL_EXPLICIT, NULL},
    {"repository unload", OXS_CONTROL_EXPLICIT, "batched"},
};

static oxs_server_t *start_server(const char *repo, oxs_control_mode_t mode)
{
    oxs_options_t options;
    oxs_server_t *server = NULL;
    char error[512] = "";

    server_options(&options);
    options.control_mode = mode;
    if (oxs_server_create(&options, &server, error, sizeof(error)) != OXS_OK)
        fail_msg("server: %s", error);
    if (oxs_server_load_repository(server, repo, error, sizeof(error)) != OXS_OK)
        fail_msg("repository %s: %s", repo, error);
    return server;
}

/* Runs the case's request on a new server with allocation nth armed, then the repository index
 * with nothing armed, and destroys the server. Returns true when the failure was injected. */
static bool run_cold(const char *repo, const cold_case_t *cold, size_t nth)
{
    oxs_server_t *server = start_server(repo, cold->mode);
    char error[512] = "";

    if (cold->loaded_first != NULL &&
        oxs_repository_control(server, OXS_REPOSITORY_LOAD, cold->loaded_first, error,
                               sizeof(error)) != OXS_OK)
        fail_msg("loading %s: %s", cold->loaded_first, error);
    bool injected = run_kind(server, kind_named(cold->kind), nth);
    run_kind(server, kind_named("repository index"), 0);
    oxs_server_destroy(server);
    return injected;
}

static void test_cold_server(void **state)
{
    fixture_t *fixture = fixture_of(state);

    for (size_t i = 0; i < sizeof(cold_cases) / sizeof(cold_cases[0]); i++) {
        const cold_case_t *cold = &cold_cases[i];
        char name[96];
        size_t nth;

        snprintf(name, sizeof(name), "first %s on a new server", cold->kind);
        /* One normal run first creates what is created once per process. */
        run_cold(fixture->repo, cold, 0);
        for (nth = 1; nth <= MAX_FAILURE_INDEX; nth++) {
            size_t before = fault_live_count();
            bool injected = run_cold(fixture->repo, cold, nth);

            check_no_leak(name, nth, before);
            if (!injected)
                break;
        }
        if (nth > MAX_FAILURE_INDEX)
            fail_msg("%s: still allocating after %d calls", name, MAX_FAILURE_INDEX);
        printf("fault: %s: %zu allocation calls, each failed once\n", name, nth - 1);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* The model load path */

/* Creates a server, loads the repository and destroys the server, with allocation nth armed
 * (0: none). Returns true when the failure was injected. */
static bool run_load(const char *repo, size_t nth)
{
    oxs_options_t options;
    oxs_server_t *server = NULL;
    char error[512] = "";
    oxs_status_t load_status = OXS_ERR_INTERNAL;
    bool ready = false;

    snprintf(current_run, sizeof(current_run), "model load, failing allocation %zu", nth);
    server_options(&options);
    fault_arm(nth);
    oxs_status_t create_status = oxs_server_create(&options, &server, error, sizeof(error));
    if (create_status == OXS_OK) {
        load_status = oxs_server_load_repository(server, repo, error, sizeof(error));
        ready = models_ready(server);
    }
    bool injected = fault_disarm();

    if (create_status != OXS_OK && server != NULL)
        fail_msg("model load, failing allocation %zu: oxs_server_create failed (%s) but set "
                 "its output", nth, error);
    if (!injected && !ready) {
        fault_print_site();
        fail_msg("model load with no failure injected: not every model is READY (%s)", error);
    }
    if (!injected && load_status != OXS_OK)
        fail_msg("model load with no failure injected: %s", error);
    oxs_server_destroy(server);
    return injected;
}

static void test_model_load(void **state)
{
    fixture_t *fixture = fixture_of(state);
    size_t nth;

    /* The fixture's server keeps ONNX Runtime's environment alive, so each run creates only
     * its own server. One normal run first creates what is created once per process. */
    run_load(fixture->warmup_repo, 0);

    for (nth = 1; nth <= MAX_FAILURE_INDEX; nth++) {
        size_t before = fault_live_count();
        bool injected = run_load(fixture->warmup_repo, nth);

        check_no_leak("model load", nth, before);
        if (!injected)
            break;
    }
    if (nth > MAX_FAILURE_INDEX)
        fail_msg("model load: still allocating after %d calls", MAX_FAILURE_INDEX);
    printf("fault: model load: %zu allocation calls, each failed once\n", nth - 1);

    /* The fixture's server still serves. */
    run_kind(fixture->server, &kinds[0], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_infer),
        cmocka_unit_test(test_binary_infer),
        cmocka_unit_test(test_large_json_infer),
        cmocka_unit_test(test_gzip_infer),
        cmocka_unit_test(test_chunked_infer),
        cmocka_unit_test(test_bytes_infer),
        cmocka_unit_test(test_long_escaped_string),
        cmocka_unit_test(test_client_leaves),
        cmocka_unit_test(test_predict),
        cmocka_unit_test(test_model_metadata),
        cmocka_unit_test(test_model_stats),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_repository_index),
        cmocka_unit_test(test_batched_infer),
        cmocka_unit_test(test_bad_shape),
        cmocka_unit_test(test_model_config),
        cmocka_unit_test(test_healthz),
        cmocka_unit_test(test_unknown_route),
        cmocka_unit_test(test_over_tcp),
        cmocka_unit_test(test_cold_server),
        cmocka_unit_test(test_model_load),
    };

    int failed = cmocka_run_group_tests_name("fault", tests, setup_server, teardown_server);
    snprintf(current_run, sizeof(current_run), "the leak check at exit");
    oxs_test_exit(failed);
}
