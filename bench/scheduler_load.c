/*
 * Benchmark: closed-loop load on a ResNet-50 served by onnxserve, next to the same model run in
 * process by libonnxserve. bench/scheduler.sh runs it; the model comes from
 * scripts/make-resnet50.py (input "input" FP32 [batch,3,224,224], output "logits" FP32
 * [batch,1000]).
 *
 *   bench_scheduler_load header
 *       Prints the header of the result table.
 *   bench_scheduler_load inprocess --model FILE --batch N [COMMON] [--reference-out FILE]
 *       Loads the model into libonnxserve with its default options (the server's default session
 *       settings) and runs batches of N images one after another. It first runs each of the
 *       --inputs images alone and, with --reference-out, writes their logits there.
 *   bench_scheduler_load load --port PORT --concurrency N --reference FILE [COMMON]
 *                             [--model-name NAME] [--server-log FILE]
 *       Opens N keep-alive connections to 127.0.0.1:PORT, each a thread that sends one image
 *       with the binary tensor extension, waits for the response, checks its logits against
 *       FILE and sends the next at once. With --server-log it reads each measured request's
 *       queue time, compute time and batch size from the server's request log lines.
 *   COMMON: --label NAME  --seconds S (measured window, default 20)  --warmup-seconds S
 *           (default 3)  --inputs K (distinct images, default 16)  --results FILE
 *
 * Each mode prints one table row and, with --results, appends a line of key=value pairs for
 * the script's summary. Every response is checked, warm-up and drain included; the exit status
 * is 1 when one failed. The caller pins the process to its CPUs (taskset).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "onnxserve.h"

#define PROGRAM "bench_scheduler_load"
#define INPUT_NAME "input"
#define OUTPUT_NAME "logits"
#define IMAGE_VALUES (3 * 224 * 224)
#define CLASSES 1000
#define MAX_BATCH 64
#define MAX_CONCURRENCY 1024
#define ERROR_BYTES 512
/* A response slower than this is reported as failed, so a stuck server ends the run. */
#define RECEIVE_TIMEOUT_SECS 120
/* Logits may differ slightly between batch sizes, which can use other kernels in ONNX
 * Runtime, so a response passes within this absolute plus relative difference. */
#define ABS_TOLERANCE 1e-3
#define REL_TOLERANCE 1e-3

typedef struct settings {
    const char *mode;
    const char *label;
    const char *model_path;
    const char *model_name;
    const char *reference_in;
    const char *reference_out;
    const char *server_log;
    const char *results;
    int port;
    int batch;
    int concurrency;
    int inputs;
    double seconds;
    double warmup_seconds;
} settings_t;

/* The check of one response's logits against the reference of its image. */
typedef struct check_result {
    long checked;
    long failed;
    long identical;
    double max_abs_diff;
    char first_failure[ERROR_BYTES];
} check_result_t;

static void fatal(const char *message)
{
    fprintf(stderr, PROGRAM ": %s\n", message);
    exit(1);
}

static void *checked_calloc(size_t count, size_t size)
{
    void *memory = calloc(count, size);
    if (memory == NULL)
        fatal("out of memory");
    return memory;
}

static double now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec * 1e3 + (double)now.tv_nsec / 1e6;
}

static void sleep_ms(double ms)
{
    struct timespec duration = {(time_t)(ms / 1e3), (long)(fmod(ms, 1e3) * 1e6)};
    while (nanosleep(&duration, &duration) != 0 && errno == EINTR) {
    }
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Returns the nearest-rank percentile (0 < fraction <= 1) of count values, sorted in place. */
static double percentile(double *values, size_t count, double fraction)
{
    if (count == 0)
        return NAN;
    qsort(values, count, sizeof(*values), compare_doubles);
    size_t rank = (size_t)ceil(fraction * (double)count);
    return values[rank == 0 ? 0 : rank - 1];
}

/* Fills one image with floats uniform in [-1, 1) from splitmix64, seeded by the image's index
 * so every mode generates the same images. */
static void make_image(float *values, int image)
{
    uint64_t state = UINT64_C(0x5eed0000) + (uint64_t)image;
    for (size_t i = 0; i < IMAGE_VALUES; i++) {
        uint64_t z = (state += UINT64_C(0x9e3779b97f4a7c15));
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        z ^= z >> 31;
        values[i] = (float)(z >> 40) * (2.0f / 16777216.0f) - 1.0f;
    }
}

static float *make_images(int count)
{
    float *images = checked_calloc((size_t)count * IMAGE_VALUES, sizeof(float));
    for (int i = 0; i < count; i++)
        make_image(images + (size_t)i * IMAGE_VALUES, i);
    return images;
}

/* Compares one image's logits with its reference and records the outcome in result. */
static void check_logits(check_result_t *result, const float *reference, const float *actual,
                         const char *what)
{
    double max_diff = 0;
    bool within = true;
    for (size_t i = 0; i < CLASSES; i++) {
        double diff = fabs((double)actual[i] - (double)reference[i]);
        if (!(diff <= ABS_TOLERANCE + REL_TOLERANCE * fabs((double)reference[i])))
            within = false;
        if (diff > max_diff || diff != diff)
            max_diff = diff;
    }
    result->checked++;
    result->identical += memcmp(reference, actual, CLASSES * sizeof(float)) == 0;
    if (max_diff > result->max_abs_diff || max_diff != max_diff)
        result->max_abs_diff = max_diff;
    if (!within) {
        if (result->failed++ == 0)
            snprintf(result->first_failure, sizeof(result->first_failure),
                     "%s: logits differ from the reference by up to %g", what, max_diff);
    }
}

static void record_failure(check_result_t *result, const char *message)
{
    result->checked++;
    if (result->failed++ == 0)
        snprintf(result->first_failure, sizeof(result->first_failure), "%s", message);
}

/* One row of the result table. A NAN value prints as "-". */
typedef struct table_row {
    const char *label;
    int concurrency; /* 0 for in-process rows */
    double throughput;
    double p50_ms;
    double p99_ms;
    double mean_batch;
    double queue_p50_ms;
    double compute_p50_ms;
    double busy; /* the share of the window the model spent in ONNX Runtime's Run */
    const check_result_t *check;
} table_row_t;

static void print_header(void)
{
    printf("%-12s %5s %8s %8s %8s %6s %8s %10s %6s  %s\n", "config", "conc", "img/s", "p50 ms",
           "p99 ms", "batch", "queue ms", "compute ms", "busy %", "responses checked");
}

static void print_cell(double value, int width, int decimals)
{
    if (isnan(value))
        printf(" %*s", width, "-");
    else
        printf(" %*.*f", width, decimals, value);
}

static void print_row(const table_row_t *row)
{
    printf("%-12s", row->label);
    if (row->concurrency > 0)
        printf(" %5d", row->concurrency);
    else
        printf(" %5s", "-");
    print_cell(row->throughput, 8, 2);
    print_cell(row->p50_ms, 8, 1);
    print_cell(row->p99_ms, 8, 1);
    print_cell(row->mean_batch, 6, 2);
    print_cell(row->queue_p50_ms, 8, 1);
    print_cell(row->compute_p50_ms, 10, 1);
    print_cell(100 * row->busy, 6, 1);
    printf("  %ld, %ld failed, %ld bit-identical, max diff %.2g\n", row->check->checked,
           row->check->failed, row->check->identical, row->check->max_abs_diff);
    if (row->check->failed > 0)
        printf("  first failure: %s\n", row->check->first_failure);
    fflush(stdout);
}

static void append_results(const settings_t *settings, const table_row_t *row)
{
    if (settings->results == NULL)
        return;
    FILE *file = fopen(settings->results, "a");
    if (file == NULL)
        fatal("opening the --results file failed");
    fprintf(file,
            "mode=%s label=%s concurrency=%d batch=%d throughput=%.4f p50_ms=%.3f p99_ms=%.3f "
            "mean_batch=%.3f busy=%.4f failed=%ld\n",
            settings->mode, row->label, row->concurrency, settings->batch, row->throughput,
            row->p50_ms, row->p99_ms, row->mean_batch, row->busy, row->check->failed);
    fclose(file);
}

/* ---------------------------------------------------------------------------------------- */
/* In-process ONNX Runtime through libonnxserve */

typedef struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t done;
    oxs_response_t *response;
} waiter_t;

static void on_complete(void *user, oxs_response_t *response)
{
    waiter_t *waiter = user;
    pthread_mutex_lock(&waiter->lock);
    waiter->response = response;
    pthread_cond_signal(&waiter->done);
    pthread_mutex_unlock(&waiter->lock);
}

/* Runs images first..first+batch-1 (modulo image_count) as one request and waits for it.
 * Returns the response, whose status the caller checks. */
static oxs_response_t *run_batch(oxs_server_t *server, oxs_model_t *model, const float *images,
                                 int image_count, int first, int batch)
{
    char error[ERROR_BYTES];
    oxs_request_t *request = NULL;
    if (oxs_request_create(server, model, &request) != OXS_OK)
        fatal("creating an in-process request failed");
    int64_t shape[4] = {batch, 3, 224, 224};
    void *data = NULL;
    size_t byte_size = 0;
    if (oxs_request_add_input(request, INPUT_NAME, strlen(INPUT_NAME), OXS_DT_FP32, shape, 4,
                              &data, &byte_size, error, sizeof(error)) != OXS_OK)
        fatal(error);
    for (int row = 0; row < batch; row++)
        memcpy((float *)data + (size_t)row * IMAGE_VALUES,
               images + (size_t)((first + row) % image_count) * IMAGE_VALUES,
               IMAGE_VALUES * sizeof(float));

    waiter_t waiter = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL};
    if (oxs_request_submit(request, on_complete, &waiter, error, sizeof(error)) != OXS_OK)
        fatal(error);
    pthread_mutex_lock(&waiter.lock);
    while (waiter.response == NULL)
        pthread_cond_wait(&waiter.done, &waiter.lock);
    pthread_mutex_unlock(&waiter.lock);
    return waiter.response;
}

/* Checks every row of a response's logits against the references of its images. */
static void check_response(check_result_t *check, const oxs_response_t *response,
                           const float *references, int image_count, int first, int batch)
{
    oxs_tensor_view_t view;
    if (oxs_response_status(response) != OXS_OK) {
        char message[ERROR_BYTES];
        snprintf(message, sizeof(message), "in-process inference failed: %s",
                 oxs_response_error(response));
        record_failure(check, message);
        return;
    }
    if (oxs_response_output(response, 0, &view) != OXS_OK || view.datatype != OXS_DT_FP32 ||
        view.element_count != (size_t)batch * CLASSES) {
        record_failure(check, "in-process output is not FP32 [batch, 1000]");
        return;
    }
    for (int row = 0; row < batch; row++)
        check_logits(check, references + (size_t)((first + row) % image_count) * CLASSES,
                     (const float *)view.data + (size_t)row * CLASSES, "in-process");
}

static int run_inprocess(const settings_t *settings)
{
    char error[ERROR_BYTES];
    oxs_options_t options;
    oxs_options_init(&options); /* 1 instance, 1 intra-op thread: the server's defaults */
    oxs_server_t *server = NULL;
    oxs_model_t *model = NULL;
    if (oxs_server_create(&options, &server, error, sizeof(error)) != OXS_OK ||
        oxs_server_load_model(server, "resnet50", 1, settings->model_path, error,
                              sizeof(error)) != OXS_OK)
        fatal(error);
    if (oxs_server_get_model(server, "resnet50", 0, &model) != OXS_OK)
        fatal("the loaded model is not registered");

    int image_count = settings->inputs;
    float *images = make_images(image_count);
    float *references = checked_calloc((size_t)image_count * CLASSES, sizeof(float));
    check_result_t check = {0};

    /* The references: each image alone. This also warms the session up. */
    for (int i = 0; i < image_count; i++) {
        oxs_response_t *response = run_batch(server, model, images, image_count, i, 1);
        oxs_tensor_view_t view;
        if (oxs_response_status(response) != OXS_OK ||
            oxs_response_output(response, 0, &view) != OXS_OK ||
            view.byte_size != CLASSES * sizeof(float))
            fatal("the reference inference failed or returned no [1, 1000] output");
        memcpy(references + (size_t)i * CLASSES, view.data, view.byte_size);
        oxs_response_destroy(response);
    }
    if (settings->reference_out != NULL) {
        FILE *file = fopen(settings->reference_out, "wb");
        if (file == NULL ||
            fwrite(references, sizeof(float), (size_t)image_count * CLASSES, file) !=
                (size_t)image_count * CLASSES ||
            fclose(file) != 0)
            fatal("writing the --reference-out file failed");
    }

    int batch = settings->batch;
    size_t capacity = 1024, count = 0;
    double *call_ms = checked_calloc(capacity, sizeof(double));
    double *compute_ms = checked_calloc(capacity, sizeof(double));
    double warmup_end = now_ms() + settings->warmup_seconds * 1e3;
    int next_image = 0;
    while (now_ms() < warmup_end) {
        oxs_response_t *response = run_batch(server, model, images, image_count, next_image,
                                             batch);
        check_response(&check, response, references, image_count, next_image, batch);
        oxs_response_destroy(response);
        next_image = (next_image + batch) % image_count;
    }

    /* Measured: at least 3 batches, and until the window has passed. */
    double started = now_ms();
    double window_end = started + settings->seconds * 1e3;
    while (count < 3 || now_ms() < window_end) {
        double call_start = now_ms();
        oxs_response_t *response = run_batch(server, model, images, image_count, next_image,
                                             batch);
        double call_end = now_ms();
        check_response(&check, response, references, image_count, next_image, batch);
        if (count == capacity) {
            capacity *= 2;
            call_ms = realloc(call_ms, capacity * sizeof(double));
            compute_ms = realloc(compute_ms, capacity * sizeof(double));
            if (call_ms == NULL || compute_ms == NULL)
                fatal("out of memory");
        }
        call_ms[count] = call_end - call_start;
        compute_ms[count] = (double)oxs_response_compute_us(response) / 1e3;
        count++;
        oxs_response_destroy(response);
        next_image = (next_image + batch) % image_count;
    }
    double elapsed_ms = now_ms() - started;
    double compute_sum_ms = 0;
    for (size_t i = 0; i < count; i++)
        compute_sum_ms += compute_ms[i];

    char label[64];
    snprintf(label, sizeof(label), "%s", settings->label != NULL ? settings->label : "in-process");
    table_row_t row = {
        .label = label,
        .throughput = (double)count * batch / (elapsed_ms / 1e3),
        .mean_batch = batch,
        .queue_p50_ms = NAN,
        .busy = compute_sum_ms / elapsed_ms,
        .check = &check,
    };
    row.p99_ms = percentile(call_ms, count, 0.99);
    row.p50_ms = percentile(call_ms, count, 0.50);
    row.compute_p50_ms = percentile(compute_ms, count, 0.50);
    print_row(&row);
    append_results(settings, &row);

    free(call_ms);
    free(compute_ms);
    free(images);
    free(references);
    oxs_model_release(model);
    oxs_server_destroy(server);
    return check.failed > 0 ? 1 : 0;
}

/* ---------------------------------------------------------------------------------------- */
/* HTTP load */

/* One request of one connection. */
typedef struct sample {
    double start_ms; /* first request byte sent */
    double end_ms;   /* last response byte received */
    bool ok;
    bool logged; /* the server's request log line was found */
    double queue_ms;
    double compute_ms;
    int batch_size;
} sample_t;

typedef struct connection {
    int index;
    pthread_t thread;
    int fd;
    sample_t *samples; /* indexed by the request's sequence number */
    size_t count;
    size_t capacity;
    long reconnects;
    check_result_t check;
    char *response; /* receive buffer */
    size_t response_capacity;
} connection_t;

typedef struct load {
    const settings_t *settings;
    char id_prefix[96]; /* request ids are PREFIX-CONNECTION-SEQUENCE */
    char **bodies;      /* one request body per image: the JSON part, then the image */
    size_t *body_lens;
    size_t json_len; /* the same for every body */
    float *references;
    atomic_bool stop;
    connection_t *connections;
} load_t;

static int connect_loopback(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int enable = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &enable, sizeof(enable));
    struct timeval timeout = {RECEIVE_TIMEOUT_SECS, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    if (connect(fd, (struct sockaddr *)&address, sizeof(address)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends head and body, resuming after partial sends. Returns 0 or the errno. */
static int send_all(int fd, const char *head, size_t head_len, const char *body, size_t body_len)
{
    struct iovec parts[2] = {{(void *)head, head_len}, {(void *)body, body_len}};
    struct iovec *part = parts;
    int part_count = 2;
    while (part_count > 0) {
        struct msghdr message = {.msg_iov = part, .msg_iovlen = (size_t)part_count};
        ssize_t sent = sendmsg(fd, &message, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        size_t left = (size_t)sent;
        while (part_count > 0 && left >= part->iov_len) {
            left -= part->iov_len;
            part++;
            part_count--;
        }
        if (part_count > 0) {
            part->iov_base = (char *)part->iov_base + left;
            part->iov_len -= left;
        }
    }
    return 0;
}

/* Returns the value of the header name (lowercase, without the colon) in head[0..end), or
 * NULL. The value runs to the next CR. */
static const char *find_header(const char *head, size_t end, const char *name)
{
    size_t name_len = strlen(name);
    const char *line = memchr(head, '\n', end);
    while (line != NULL && (size_t)(line + 1 - head) < end) {
        line++;
        if ((size_t)(line - head) + name_len + 1 < end && strncasecmp(line, name, name_len) == 0 &&
            line[name_len] == ':') {
            const char *value = line + name_len + 1;
            while (*value == ' ')
                value++;
            return value;
        }
        line = memchr(line, '\n', end - (size_t)(line - head));
    }
    return NULL;
}

/* The head of a response. Its body starts at body_offset of the connection's buffer. */
typedef struct response_head {
    int status;
    size_t body_offset;
    size_t content_length;
    long inference_header_len; /* -1 when absent */
    bool close_after;
} response_head_t;

/* Reads one whole response into the connection's buffer. Returns false when the connection
 * ended or timed out first. */
static bool read_response(connection_t *connection, response_head_t *head)
{
    size_t len = 0;
    bool head_done = false;
    for (;;) {
        if (len == connection->response_capacity) {
            size_t capacity = connection->response_capacity * 2;
            char *grown = realloc(connection->response, capacity);
            if (grown == NULL)
                return false;
            connection->response = grown;
            connection->response_capacity = capacity;
        }
        ssize_t got = recv(connection->fd, connection->response + len,
                           connection->response_capacity - len, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return false;
        len += (size_t)got;
        const char *data = connection->response;
        if (!head_done) {
            const char *blank = memmem(data, len, "\r\n\r\n", 4);
            if (blank == NULL)
                continue;
            head_done = true;
            head->body_offset = (size_t)(blank - data) + 4;
            head->status = 0;
            sscanf(data, "HTTP/1.%*d %d", &head->status);
            const char *value = find_header(data, head->body_offset, "content-length");
            head->content_length = value != NULL ? (size_t)strtoull(value, NULL, 10) : 0;
            value = find_header(data, head->body_offset, "inference-header-content-length");
            head->inference_header_len = value != NULL ? strtol(value, NULL, 10) : -1;
            value = find_header(data, head->body_offset, "connection");
            head->close_after = value != NULL && strncasecmp(value, "close", 5) == 0;
        }
        if (len >= head->body_offset + head->content_length)
            return true;
    }
}

/* Checks a binary extension response: HTTP 200, a JSON part that names the logits with shape
 * [1,1000] and 4000 bytes of binary data, then those bytes against the image's reference. */
static void check_http_response(connection_t *connection, const response_head_t *head,
                                const float *reference)
{
    char message[ERROR_BYTES];
    const char *body = connection->response + head->body_offset;
    size_t json_len = head->inference_header_len > 0 ? (size_t)head->inference_header_len : 0;
    if (head->status != 200) {
        int shown = (int)(head->content_length < 300 ? head->content_length : 300);
        snprintf(message, sizeof(message), "HTTP %d: %.*s", head->status, shown, body);
        record_failure(&connection->check, message);
        return;
    }
    if (json_len == 0 || json_len + CLASSES * sizeof(float) != head->content_length ||
        memmem(body, json_len, "\"name\":\"" OUTPUT_NAME "\"", strlen(OUTPUT_NAME) + 9) == NULL ||
        memmem(body, json_len, "\"shape\":[1,1000]", 16) == NULL ||
        memmem(body, json_len, "\"binary_data_size\":4000", 23) == NULL) {
        snprintf(message, sizeof(message),
                 "response is not one binary FP32 [1,1000] output (Content-Length %zu, "
                 "Inference-Header-Content-Length %ld)",
                 head->content_length, head->inference_header_len);
        record_failure(&connection->check, message);
        return;
    }
    float logits[CLASSES];
    memcpy(logits, body + json_len, sizeof(logits));
    check_logits(&connection->check, reference, logits, "HTTP response");
}

static sample_t *next_sample(connection_t *connection)
{
    if (connection->count == connection->capacity) {
        size_t capacity = connection->capacity ? connection->capacity * 2 : 256;
        sample_t *grown = realloc(connection->samples, capacity * sizeof(sample_t));
        if (grown == NULL)
            fatal("out of memory");
        connection->samples = grown;
        connection->capacity = capacity;
    }
    sample_t *sample = &connection->samples[connection->count++];
    memset(sample, 0, sizeof(*sample));
    return sample;
}

typedef struct thread_arguments {
    load_t *load;
    connection_t *connection;
} thread_arguments_t;

/* The closed loop of one connection: send, receive, check, repeat until stop is set. */
static void *connection_main(void *argument)
{
    thread_arguments_t *arguments = argument;
    load_t *load = arguments->load;
    connection_t *connection = arguments->connection;
    const settings_t *settings = load->settings;
    char head[512];
    char message[ERROR_BYTES];

    while (!atomic_load(&load->stop)) {
        size_t sequence = connection->count;
        int image = (int)((connection->index + sequence) % (size_t)settings->inputs);
        int head_len = snprintf(head, sizeof(head),
                                "POST /v2/models/%s/infer HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                                "Content-Type: application/octet-stream\r\n"
                                "Content-Length: %zu\r\nInference-Header-Content-Length: %zu\r\n"
                                "X-Request-ID: %s-%d-%zu\r\n\r\n",
                                settings->model_name, settings->port, load->body_lens[image],
                                load->json_len, load->id_prefix, connection->index, sequence);
        if (connection->fd < 0) {
            connection->fd = connect_loopback(settings->port);
            if (connection->fd < 0) {
                snprintf(message, sizeof(message), "connecting to 127.0.0.1:%d failed: %s",
                         settings->port, strerror(errno));
                record_failure(&connection->check, message);
                break;
            }
            connection->reconnects++;
        }

        sample_t *sample = next_sample(connection);
        response_head_t response = {0};
        sample->start_ms = now_ms();
        int send_error = send_all(connection->fd, head, (size_t)head_len, load->bodies[image],
                                  load->body_lens[image]);
        bool complete = read_response(connection, &response);
        sample->end_ms = now_ms();

        if (!complete) {
            snprintf(message, sizeof(message), "no complete response (send: %s, receive: %s)",
                     send_error ? strerror(send_error) : "ok", strerror(errno));
            record_failure(&connection->check, message);
            close(connection->fd);
            connection->fd = -1;
            break;
        }
        long failed_before = connection->check.failed;
        check_http_response(connection, &response,
                            load->references + (size_t)image * CLASSES);
        sample->ok = connection->check.failed == failed_before;
        if (response.close_after) {
            close(connection->fd);
            connection->fd = -1;
        }
    }
    return NULL;
}

/* Builds the binary extension request of each image. Its JSON part requests binary outputs. */
static void make_bodies(load_t *load, const float *images)
{
    int count = load->settings->inputs;
    char json[512];
    int json_len = snprintf(json, sizeof(json),
                            "{\"inputs\":[{\"name\":\"" INPUT_NAME "\",\"datatype\":\"FP32\","
                            "\"shape\":[1,3,224,224],\"parameters\":{\"binary_data_size\":%zu}}],"
                            "\"parameters\":{\"binary_data_output\":true}}",
                            IMAGE_VALUES * sizeof(float));
    load->json_len = (size_t)json_len;
    load->bodies = checked_calloc((size_t)count, sizeof(char *));
    load->body_lens = checked_calloc((size_t)count, sizeof(size_t));
    for (int i = 0; i < count; i++) {
        size_t len = (size_t)json_len + IMAGE_VALUES * sizeof(float);
        load->bodies[i] = checked_calloc(len, 1);
        memcpy(load->bodies[i], json, (size_t)json_len);
        memcpy(load->bodies[i] + json_len, images + (size_t)i * IMAGE_VALUES,
               IMAGE_VALUES * sizeof(float));
        load->body_lens[i] = len;
    }
}

static bool log_number(const char *line, const char *key, double *out)
{
    char pattern[64];
    snprintf(pattern, sizeof(pattern), "\"%s\":", key);
    const char *at = strstr(line, pattern);
    if (at == NULL)
        return false;
    *out = strtod(at + strlen(pattern), NULL);
    return true;
}

/* Copies queue_us, compute_us and batch_size from the server's request log line of each of
 * this run's requests into its sample. */
static void read_server_log(load_t *load)
{
    FILE *file = fopen(load->settings->server_log, "r");
    if (file == NULL) {
        fprintf(stderr, PROGRAM ": opening the server log %s failed: %s\n",
                load->settings->server_log, strerror(errno));
        return;
    }
    char pattern[128];
    int pattern_len = snprintf(pattern, sizeof(pattern), "\"request_id\":\"%s-", load->id_prefix);
    char *line = NULL;
    size_t line_capacity = 0;
    while (getline(&line, &line_capacity, file) >= 0) {
        const char *id = strstr(line, pattern);
        if (id == NULL || strstr(line, "\"msg\":\"request\"") == NULL)
            continue;
        int index = -1;
        size_t sequence = 0;
        if (sscanf(id + pattern_len, "%d-%zu", &index, &sequence) != 2 || index < 0 ||
            index >= load->settings->concurrency)
            continue;
        connection_t *connection = &load->connections[index];
        if (sequence >= connection->count)
            continue;
        sample_t *sample = &connection->samples[sequence];
        double queue_us = 0, compute_us = 0, batch_size = 0;
        sample->logged = log_number(line, "queue_us", &queue_us) &&
                         log_number(line, "compute_us", &compute_us) &&
                         log_number(line, "batch_size", &batch_size);
        sample->queue_ms = queue_us / 1e3;
        sample->compute_ms = compute_us / 1e3;
        sample->batch_size = (int)batch_size;
    }
    free(line);
    fclose(file);
}

static float *read_references(const settings_t *settings)
{
    size_t count = (size_t)settings->inputs * CLASSES;
    float *references = checked_calloc(count, sizeof(float));
    FILE *file = fopen(settings->reference_in, "rb");
    if (file == NULL || fread(references, sizeof(float), count, file) != count)
        fatal("reading the --reference file failed (written by inprocess --reference-out "
              "with the same --inputs)");
    fclose(file);
    return references;
}

/* Summarizes the samples completed in the measured window. The window is snapped to
 * completions: it runs from the last completion before it opened to the last completion before
 * it closed. So it contains whole bursts of a batch's responses, unless an edge falls inside the
 * few milliseconds one burst lasts, and no window edge counts a fraction of a batch. */
static void summarize_load(load_t *load, double open_ms, double close_ms, table_row_t *row)
{
    const settings_t *settings = load->settings;
    double first = open_ms, last = open_ms;
    for (int c = 0; c < settings->concurrency; c++) {
        const connection_t *connection = &load->connections[c];
        for (size_t i = 0; i < connection->count; i++) {
            double end = connection->samples[i].end_ms;
            if (end <= open_ms && (first == open_ms || end > first))
                first = end;
            if (end <= close_ms && end > last)
                last = end;
        }
    }

    size_t total = 0;
    for (int c = 0; c < settings->concurrency; c++)
        total += load->connections[c].count;
    double *latency = checked_calloc(total + 1, sizeof(double));
    double *queue = checked_calloc(total + 1, sizeof(double));
    double *compute = checked_calloc(total + 1, sizeof(double));
    size_t measured = 0, logged = 0;
    double batch_sum = 0;
    double compute_share_ms = 0; /* each request's share of its batch's Run, summed */
    for (int c = 0; c < settings->concurrency; c++) {
        const connection_t *connection = &load->connections[c];
        for (size_t i = 0; i < connection->count; i++) {
            const sample_t *sample = &connection->samples[i];
            if (!sample->ok || sample->end_ms <= first || sample->end_ms > last)
                continue;
            latency[measured++] = sample->end_ms - sample->start_ms;
            if (sample->logged) {
                queue[logged] = sample->queue_ms;
                compute[logged] = sample->compute_ms;
                batch_sum += sample->batch_size;
                if (sample->batch_size > 0)
                    compute_share_ms += sample->compute_ms / sample->batch_size;
                logged++;
            }
        }
    }
    row->throughput = last > first ? (double)measured / ((last - first) / 1e3) : NAN;
    row->p99_ms = percentile(latency, measured, 0.99);
    row->p50_ms = percentile(latency, measured, 0.50);
    row->mean_batch = logged > 0 ? batch_sum / (double)logged : NAN;
    /* Requests without a log line count as idle time, so the share is a lower bound then. */
    row->busy = last > first && logged > 0 ? compute_share_ms / (last - first) : NAN;
    row->queue_p50_ms = percentile(queue, logged, 0.50);
    row->compute_p50_ms = percentile(compute, logged, 0.50);
    if (settings->server_log != NULL && logged < measured)
        fprintf(stderr, PROGRAM ": %s c=%d: %zu of %zu measured requests have a log line\n",
                settings->label, settings->concurrency, logged, measured);
    free(latency);
    free(queue);
    free(compute);
}

static int run_load(const settings_t *settings)
{
    load_t load = {.settings = settings};
    atomic_init(&load.stop, false);
    snprintf(load.id_prefix, sizeof(load.id_prefix), "%s-c%d", settings->label,
             settings->concurrency);
    float *images = make_images(settings->inputs);
    make_bodies(&load, images);
    free(images);
    load.references = read_references(settings);

    int concurrency = settings->concurrency;
    load.connections = checked_calloc((size_t)concurrency, sizeof(connection_t));
    thread_arguments_t *arguments = checked_calloc((size_t)concurrency, sizeof(*arguments));
    for (int c = 0; c < concurrency; c++) {
        connection_t *connection = &load.connections[c];
        connection->index = c;
        connection->fd = connect_loopback(settings->port);
        if (connection->fd < 0) {
            fprintf(stderr, PROGRAM ": connecting to 127.0.0.1:%d failed: %s\n", settings->port,
                    strerror(errno));
            exit(1);
        }
        connection->response_capacity = 64 * 1024;
        connection->response = checked_calloc(connection->response_capacity, 1);
        arguments[c] = (thread_arguments_t){&load, connection};
    }
    for (int c = 0; c < concurrency; c++) {
        if (pthread_create(&load.connections[c].thread, NULL, connection_main, &arguments[c]) != 0)
            fatal("starting a connection thread failed");
    }

    sleep_ms(settings->warmup_seconds * 1e3);
    double open_ms = now_ms();
    sleep_ms(settings->seconds * 1e3);
    double close_ms = now_ms();
    /* Each connection finishes and checks the request it has in flight, then stops. */
    atomic_store(&load.stop, true);
    for (int c = 0; c < concurrency; c++)
        pthread_join(load.connections[c].thread, NULL);

    if (settings->server_log != NULL) {
        /* The server may write a request's log line just after its response. */
        sleep_ms(300);
        read_server_log(&load);
    }

    check_result_t check = {0};
    long reconnects = 0;
    for (int c = 0; c < concurrency; c++) {
        const check_result_t *part = &load.connections[c].check;
        if (check.failed == 0 && part->failed > 0)
            snprintf(check.first_failure, sizeof(check.first_failure), "%s", part->first_failure);
        check.checked += part->checked;
        check.failed += part->failed;
        check.identical += part->identical;
        if (part->max_abs_diff > check.max_abs_diff)
            check.max_abs_diff = part->max_abs_diff;
        reconnects += load.connections[c].reconnects;
    }
    table_row_t row = {.label = settings->label, .concurrency = concurrency, .check = &check};
    summarize_load(&load, open_ms, close_ms, &row);
    print_row(&row);
    if (reconnects > 0)
        printf("  %ld reconnects after the server closed a connection\n", reconnects);
    append_results(settings, &row);

    for (int c = 0; c < concurrency; c++) {
        connection_t *connection = &load.connections[c];
        if (connection->fd >= 0)
            close(connection->fd);
        free(connection->samples);
        free(connection->response);
    }
    for (int i = 0; i < settings->inputs; i++)
        free(load.bodies[i]);
    free(load.bodies);
    free(load.body_lens);
    free(load.references);
    free(load.connections);
    free(arguments);
    return check.failed > 0 ? 1 : 0;
}

/* ---------------------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: " PROGRAM " header\n"
            "       " PROGRAM " inprocess --model FILE --batch N [--reference-out FILE] [COMMON]\n"
            "       " PROGRAM " load --port PORT --concurrency N --reference FILE "
            "[--model-name NAME] [--server-log FILE] [COMMON]\n"
            "COMMON: --label NAME --seconds S --warmup-seconds S --inputs K --results FILE\n");
    exit(2);
}

static double parse_number(const char *flag, const char *text, double min, double max)
{
    char *end = NULL;
    double value = strtod(text, &end);
    if (*text == '\0' || *end != '\0' || !(value >= min && value <= max)) {
        fprintf(stderr, PROGRAM ": invalid value \"%s\" for %s: expected %g to %g\n", text, flag,
                min, max);
        exit(2);
    }
    return value;
}

static void parse_args(int argc, char **argv, settings_t *settings)
{
    *settings = (settings_t){.model_name = "resnet50", .batch = 1, .concurrency = 1,
                             .inputs = 16, .seconds = 20, .warmup_seconds = 3};
    if (argc < 2)
        usage();
    settings->mode = argv[1];
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        const char *flag = argv[i];
        const char *value = argv[++i];
        if (strcmp(flag, "--label") == 0)
            settings->label = value;
        else if (strcmp(flag, "--model") == 0)
            settings->model_path = value;
        else if (strcmp(flag, "--model-name") == 0)
            settings->model_name = value;
        else if (strcmp(flag, "--reference") == 0)
            settings->reference_in = value;
        else if (strcmp(flag, "--reference-out") == 0)
            settings->reference_out = value;
        else if (strcmp(flag, "--server-log") == 0)
            settings->server_log = value;
        else if (strcmp(flag, "--results") == 0)
            settings->results = value;
        else if (strcmp(flag, "--port") == 0)
            settings->port = (int)parse_number(flag, value, 1, 65535);
        else if (strcmp(flag, "--batch") == 0)
            settings->batch = (int)parse_number(flag, value, 1, MAX_BATCH);
        else if (strcmp(flag, "--concurrency") == 0)
            settings->concurrency = (int)parse_number(flag, value, 1, MAX_CONCURRENCY);
        else if (strcmp(flag, "--inputs") == 0)
            settings->inputs = (int)parse_number(flag, value, 1, 1024);
        else if (strcmp(flag, "--seconds") == 0)
            settings->seconds = parse_number(flag, value, 0.1, 3600);
        else if (strcmp(flag, "--warmup-seconds") == 0)
            settings->warmup_seconds = parse_number(flag, value, 0, 3600);
        else
            usage();
    }
    if (settings->label == NULL)
        settings->label = strcmp(settings->mode, "load") == 0 ? "server" : "in-process";
}

int main(int argc, char **argv)
{
    settings_t settings;
    parse_args(argc, argv, &settings);
    if (strcmp(settings.mode, "header") == 0) {
        print_header();
        return 0;
    }
    if (strcmp(settings.mode, "inprocess") == 0) {
        if (settings.model_path == NULL)
            usage();
        return run_inprocess(&settings);
    }
    if (strcmp(settings.mode, "load") == 0) {
        if (settings.port == 0 || settings.reference_in == NULL)
            usage();
        return run_load(&settings);
    }
    usage();
    return 2;
}
