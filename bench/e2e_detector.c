/*
 * Benchmark: end-to-end latency of one inference through a running onnxserve, sent as a KServe
 * v2 JSON request and with the binary tensor extension. The baseline is the same inference run
 * in process by libonnxserve, whose default options give the server's default session settings.
 *
 * Usage: bench_e2e_detector --port PORT --server-log FILE [OPTIONS] MODEL.onnx
 * The server must already serve MODEL.onnx on 127.0.0.1:PORT and write its JSON log at level
 * info to FILE; bench/e2e_detector.sh starts it that way. Options:
 *   --model-name NAME  name the server gives the model (default: the file name without .onnx)
 *   --rounds N         measured rounds (default 15), after --warmup N rounds (default 3)
 *   --server-cpu N     CPU the caller pinned the server to, for the report (default 0)
 *   --client-cpu N     CPU of the HTTP client (default 0)
 *   --compute-cpu N    CPU of the in-process inference and codec timings (default 0)
 *
 * The input is "x", FP32 [1,3,640,640], pseudo-random values in [-1, 1) from a fixed seed. Each
 * round runs the in-process inference, one JSON request and one binary request, so a slow phase
 * of the shared machine hits all three alike. Request bytes are built before the clock starts,
 * and a request's latency runs from its first byte sent to its last response byte received.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "codec/json.h"
#include "onnxserve.h"

#define INPUT_NAME "x"
#define INPUT_RANK 4
static const int64_t INPUT_SHAPE[INPUT_RANK] = {1, 3, 640, 640};
#define INPUT_VALUES (3 * 640 * 640)
#define RESPONSE_BUFFER_BYTES (32u << 20)
#define REQUEST_ID_BYTES 32
#define ERROR_BYTES 512

typedef struct settings {
    const char *model_path;
    char model_name[256];
    const char *server_log;
    int port;
    int rounds;
    int warmup;
    int server_cpu; /* only reported: the caller pins the server */
    int client_cpu;
    int compute_cpu;
} settings_t;

/* A prepared request: everything but the head, which carries the per-request id. */
typedef struct payload {
    const char *kind; /* "json" or "binary", also part of each request id */
    const char *content_type;
    const char *body;
    size_t body_len;
    size_t inference_header_len; /* the JSON part of a binary request; 0 for JSON requests */
} payload_t;

typedef struct http_response {
    char *data;
    size_t len;
    size_t capacity;
    size_t header_end; /* offset of the body */
    size_t content_length;
    long inference_header_len; /* -1 when the header is absent */
    int status;
    bool close_after;
} http_response_t;

/* One HTTP request, timed by the client and, once the log is read, by the server. */
typedef struct http_sample {
    char request_id[REQUEST_ID_BYTES];
    double total_ms;   /* first request byte sent to last response byte received */
    double send_ms;    /* first request byte sent until the kernel took the last one */
    double wait_ms;    /* last request byte sent to first response byte */
    double receive_ms; /* first to last response byte */
    bool logged;       /* the server's request log line was found */
    double latency_ms; /* server: parsing began until the response was ready to write */
    double queue_ms;
    double compute_ms;
} http_sample_t;

/* One in-process inference on the compute CPU. */
typedef struct local_sample {
    double decode_ms[2]; /* oxs_json_decode_infer on the JSON, then the binary request body */
    double call_ms;      /* oxs_request_submit until the completion reached the caller */
    double run_ms;       /* the worker's ONNX Runtime Run, as the response reports it */
    double encode_ms[2]; /* oxs_json_encode_infer of the output as JSON, then as binary */
} local_sample_t;

typedef struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t done;
    oxs_response_t *response;
} waiter_t;

/* Per-protocol results of the HTTP rounds. */
typedef struct protocol_run {
    const payload_t *payload;
    http_sample_t *samples; /* rounds entries */
    int fd;                 /* keep-alive connection, or -1 */
    bool available;
    char unavailable_reason[ERROR_BYTES];
    size_t response_len; /* body bytes of the last 200 response */
    int outputs_checked;
    int outputs_identical;
    int outputs_unreadable; /* responses without the expected output layout */
    double max_abs_diff;
} protocol_run_t;

static double now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec * 1e3 + (double)now.tv_nsec / 1e6;
}

static void pin_to_cpu(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0) {
        fprintf(stderr, "bench_e2e_detector: pinning to CPU %d failed: %s\n", cpu,
                strerror(errno));
        exit(1);
    }
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Writes the median and the 90th percentile (nearest rank) of count values. */
static void summarize(const double *values, int count, double *median, double *p90)
{
    double *sorted = malloc((size_t)count * sizeof(*sorted));
    if (sorted == NULL) {
        fprintf(stderr, "bench_e2e_detector: out of memory\n");
        exit(1);
    }
    memcpy(sorted, values, (size_t)count * sizeof(*sorted));
    qsort(sorted, (size_t)count, sizeof(*sorted), compare_doubles);
    *median = count % 2 ? sorted[count / 2] : (sorted[count / 2 - 1] + sorted[count / 2]) / 2;
    *p90 = sorted[(9 * count + 9) / 10 - 1];
    free(sorted);
}

/* ---------------------------------------------------------------------------------------- */
/* Input and request bodies */

/* Fills values with floats uniform in [-1, 1), each exactly representable, from splitmix64. */
static void make_input(float *values, size_t count)
{
    uint64_t state = 20240607;
    for (size_t i = 0; i < count; i++) {
        uint64_t z = (state += UINT64_C(0x9e3779b97f4a7c15));
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        z ^= z >> 31;
        values[i] = (float)(z >> 40) * (2.0f / 16777216.0f) - 1.0f;
    }
}

static void append_shape(oxs_buf_t *out)
{
    oxs_buf_putc(out, '[');
    for (int i = 0; i < INPUT_RANK; i++)
        oxs_buf_printf(out, "%s%lld", i ? "," : "", (long long)INPUT_SHAPE[i]);
    oxs_buf_putc(out, ']');
}

/* Writes the JSON infer request. "%.9g" round-trips every float32 exactly. */
static void make_json_body(oxs_buf_t *out, const float *values, size_t count)
{
    oxs_buf_puts(out, "{\"inputs\":[{\"name\":\"" INPUT_NAME "\",\"datatype\":\"FP32\",\"shape\":");
    append_shape(out);
    oxs_buf_puts(out, ",\"data\":[");
    for (size_t i = 0; i < count; i++)
        oxs_buf_printf(out, "%s%.9g", i ? "," : "", (double)values[i]);
    oxs_buf_puts(out, "]}]}");
}

/* Writes the binary extension request: the JSON part, then the raw little-endian floats.
 * Returns the length of the JSON part. */
static size_t make_binary_body(oxs_buf_t *out, const float *values, size_t count)
{
    oxs_buf_puts(out, "{\"inputs\":[{\"name\":\"" INPUT_NAME "\",\"datatype\":\"FP32\",\"shape\":");
    append_shape(out);
    oxs_buf_printf(out, ",\"parameters\":{\"binary_data_size\":%zu}}],", count * sizeof(float));
    oxs_buf_puts(out, "\"parameters\":{\"binary_data_output\":true}}");
    size_t json_len = out->len;
    oxs_buf_append(out, values, count * sizeof(float));
    return json_len;
}

/* ---------------------------------------------------------------------------------------- */
/* HTTP client */

static int connect_loopback(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int enable = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &enable, sizeof(enable));
    if (connect(fd, (struct sockaddr *)&address, sizeof(address)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends head and body with as few system calls as the kernel allows. Returns 0, or the errno
 * of a failed send, because a server that rejects a request early may close before reading it. */
static int send_request(int fd, const char *head, size_t head_len, const char *body,
                        size_t body_len)
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

/* Returns the value of header name (lowercase) in the head data[0..end), or NULL. The value
 * ends at the next CR. */
static const char *find_header(const char *data, size_t end, const char *name)
{
    size_t name_len = strlen(name);
    const char *line = memchr(data, '\n', end);
    while (line != NULL && (size_t)(line + 1 - data) < end) {
        line++;
        if ((size_t)(line - data) + name_len + 1 < end && strncasecmp(line, name, name_len) == 0 &&
            line[name_len] == ':') {
            const char *value = line + name_len + 1;
            while (*value == ' ')
                value++;
            return value;
        }
        line = memchr(line, '\n', end - (size_t)(line - data));
    }
    return NULL;
}

/* Parses the status line and headers once the blank line has arrived. Returns false when the
 * head is not complete yet. */
static bool parse_head(http_response_t *response)
{
    const char *blank = memmem(response->data, response->len, "\r\n\r\n", 4);
    if (blank == NULL)
        return false;
    size_t end = (size_t)(blank - response->data) + 4;
    response->header_end = end;
    response->status = 0;
    sscanf(response->data, "HTTP/1.%*d %d", &response->status);

    const char *value = find_header(response->data, end, "content-length");
    response->content_length = value != NULL ? (size_t)strtoull(value, NULL, 10) : 0;
    value = find_header(response->data, end, "inference-header-content-length");
    response->inference_header_len = value != NULL ? strtol(value, NULL, 10) : -1;
    value = find_header(response->data, end, "connection");
    response->close_after = value != NULL && strncasecmp(value, "close", 5) == 0;
    return true;
}

/* Reads one response into response->data. Sets *first_byte_ms when the first bytes arrive.
 * Returns false when the connection ends before the response is complete. */
static bool read_response(int fd, http_response_t *response, double *first_byte_ms)
{
    bool head_done = false;
    response->len = 0;
    *first_byte_ms = 0;

    for (;;) {
        if (response->len == response->capacity) {
            size_t capacity = response->capacity * 2;
            char *grown = realloc(response->data, capacity);
            if (grown == NULL)
                return false;
            response->data = grown;
            response->capacity = capacity;
        }
        ssize_t got = recv(fd, response->data + response->len,
                           response->capacity - response->len, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return false;
        if (response->len == 0)
            *first_byte_ms = now_ms();
        response->len += (size_t)got;
        if (!head_done)
            head_done = parse_head(response);
        if (head_done && response->len >= response->header_end + response->content_length)
            return true;
    }
}

/* Sends one request of the protocol and reads its response, filling the client timings of
 * sample. Returns the HTTP status, or 0 when no response came back. */
static int exchange(protocol_run_t *run, const settings_t *settings, const char *request_id,
                    http_response_t *response, http_sample_t *sample)
{
    const payload_t *payload = run->payload;
    char head[1024];
    char binary_header[96] = "";

    if (payload->inference_header_len > 0)
        snprintf(binary_header, sizeof(binary_header), "Inference-Header-Content-Length: %zu\r\n",
                 payload->inference_header_len);
    int head_len = snprintf(head, sizeof(head),
                            "POST /v2/models/%s/infer HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                            "Content-Type: %s\r\nContent-Length: %zu\r\nX-Request-ID: %s\r\n%s\r\n",
                            settings->model_name, settings->port, payload->content_type,
                            payload->body_len, request_id, binary_header);
    if (run->fd < 0)
        run->fd = connect_loopback(settings->port);
    if (run->fd < 0) {
        fprintf(stderr, "bench_e2e_detector: connecting to 127.0.0.1:%d failed: %s\n",
                settings->port, strerror(errno));
        exit(1);
    }
    snprintf(sample->request_id, sizeof(sample->request_id), "%s", request_id);

    double started = now_ms();
    int send_error = send_request(run->fd, head, (size_t)head_len, payload->body, payload->body_len);
    double sent = now_ms();
    double first_byte = 0;
    bool complete = read_response(run->fd, response, &first_byte);
    double finished = now_ms();

    if (!complete || send_error != 0 || response->close_after) {
        close(run->fd);
        run->fd = -1;
    }
    if (!complete) {
        snprintf(run->unavailable_reason, sizeof(run->unavailable_reason),
                 "no complete response (send: %s)", send_error ? strerror(send_error) : "ok");
        return 0;
    }
    sample->total_ms = finished - started;
    sample->send_ms = sent - started;
    sample->wait_ms = first_byte - sent;
    sample->receive_ms = finished - first_byte;
    return response->status;
}

/* ---------------------------------------------------------------------------------------- */
/* Output checks, outside the timed part */

static void compare_outputs(protocol_run_t *run, const float *reference, const float *actual,
                            size_t count)
{
    bool identical = memcmp(reference, actual, count * sizeof(float)) == 0;
    for (size_t i = 0; i < count && !identical; i++) {
        double diff = (double)actual[i] - (double)reference[i];
        if (diff < 0)
            diff = -diff;
        if (diff > run->max_abs_diff || diff != diff)
            run->max_abs_diff = diff;
    }
    run->outputs_checked++;
    run->outputs_identical += identical;
}

/* Reads the "data" array of the JSON response's only output into scratch and compares it. */
static void check_json_output(protocol_run_t *run, const http_response_t *response,
                              const float *reference, size_t count, float *scratch)
{
    const char *body = response->data + response->header_end;
    const char *cursor = memmem(body, response->content_length, "\"data\":[", 8);
    if (cursor == NULL) {
        run->outputs_checked++;
        run->outputs_unreadable++;
        return;
    }
    cursor += 8;
    for (size_t i = 0; i < count; i++) {
        char *end = NULL;
        scratch[i] = strtof(cursor, &end);
        cursor = end + 1;
    }
    compare_outputs(run, reference, scratch, count);
}

/* Compares the binary output that follows the JSON part of a binary extension response. */
static void check_binary_output(protocol_run_t *run, const http_response_t *response,
                                const float *reference, size_t count, float *scratch)
{
    size_t json_len = response->inference_header_len > 0 ? (size_t)response->inference_header_len
                                                         : 0;
    if (json_len == 0 || json_len + count * sizeof(float) != response->content_length) {
        run->outputs_checked++;
        run->outputs_unreadable++;
        return;
    }
    memcpy(scratch, response->data + response->header_end + json_len, count * sizeof(float));
    compare_outputs(run, reference, scratch, count);
}

/* ---------------------------------------------------------------------------------------- */
/* In-process inference */

static void on_complete(void *user, oxs_response_t *response)
{
    waiter_t *waiter = user;
    pthread_mutex_lock(&waiter->lock);
    waiter->response = response;
    pthread_cond_signal(&waiter->done);
    pthread_mutex_unlock(&waiter->lock);
}

static oxs_request_t *create_local_request(oxs_server_t *server, oxs_model_t *model)
{
    oxs_request_t *request = NULL;
    if (oxs_request_create(server, model, &request) != OXS_OK) {
        fprintf(stderr, "bench_e2e_detector: creating an in-process request failed\n");
        exit(1);
    }
    return request;
}

/* Times oxs_json_decode_infer on one request body; json_len is the length of its JSON part. */
static double time_decode(oxs_request_t *request, const payload_t *payload, size_t json_len)
{
    char error[ERROR_BYTES];
    oxs_json_reply_t *reply = NULL;
    double started = now_ms();
    oxs_status_t status = oxs_json_decode_infer(request, payload->body, payload->body_len,
                                                json_len, &reply, error, sizeof(error));
    double elapsed = now_ms() - started;
    if (status != OXS_OK) {
        fprintf(stderr, "bench_e2e_detector: in-process decode of the %s body failed: %s\n",
                payload->kind, error);
        exit(1);
    }
    return elapsed;
}

/* Times oxs_json_encode_infer on response, with every output as JSON or as binary data. */
static double time_encode(oxs_response_t *response, bool binary, oxs_buf_t *encoded)
{
    char error[ERROR_BYTES];
    oxs_json_reply_t *reply = NULL;
    size_t json_len = 0;
    if (binary) {
        reply = oxs_json_reply_create(oxs_response_request(response), true);
        if (reply == NULL) {
            fprintf(stderr, "bench_e2e_detector: out of memory\n");
            exit(1);
        }
    }
    oxs_buf_reset(encoded);
    double started = now_ms();
    oxs_status_t status = oxs_json_encode_infer(encoded, response, reply, &json_len, error,
                                                sizeof(error));
    double elapsed = now_ms() - started;
    if (status != OXS_OK) {
        fprintf(stderr, "bench_e2e_detector: in-process encode failed: %s\n", error);
        exit(1);
    }
    return elapsed;
}

/* Runs the server's steps for one request in process, timing each: decodes both request
 * bodies, runs the decoded JSON request and encodes its output both ways. Returns the response,
 * which the caller destroys. */
static oxs_response_t *run_local(oxs_server_t *server, oxs_model_t *model,
                                 const payload_t *payloads, oxs_buf_t *encoded,
                                 local_sample_t *sample)
{
    char error[ERROR_BYTES];
    oxs_request_t *request = create_local_request(server, model);
    oxs_request_t *binary_request = create_local_request(server, model);
    sample->decode_ms[0] = time_decode(request, &payloads[0], payloads[0].body_len);
    sample->decode_ms[1] = time_decode(binary_request, &payloads[1],
                                       payloads[1].inference_header_len);
    oxs_request_destroy(binary_request);

    waiter_t waiter = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL};
    double started = now_ms();
    if (oxs_request_submit(request, on_complete, &waiter, error, sizeof(error)) != OXS_OK) {
        fprintf(stderr, "bench_e2e_detector: in-process submit failed: %s\n", error);
        exit(1);
    }
    pthread_mutex_lock(&waiter.lock);
    while (waiter.response == NULL)
        pthread_cond_wait(&waiter.done, &waiter.lock);
    pthread_mutex_unlock(&waiter.lock);
    sample->call_ms = now_ms() - started;
    if (oxs_response_status(waiter.response) != OXS_OK) {
        fprintf(stderr, "bench_e2e_detector: in-process inference failed: %s\n",
                oxs_response_error(waiter.response));
        exit(1);
    }
    sample->run_ms = (double)oxs_response_compute_us(waiter.response) / 1e3;

    sample->encode_ms[0] = time_encode(waiter.response, false, encoded);
    sample->encode_ms[1] = time_encode(waiter.response, true, encoded);
    return waiter.response;
}

/* ---------------------------------------------------------------------------------------- */
/* Server log */

/* Reads the number after "key": in line, or returns false. */
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

/* Fills the server timings of every sample whose request id has a "request" log line. */
static void read_server_log(const char *path, protocol_run_t *runs, int run_count, int rounds)
{
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        fprintf(stderr, "bench_e2e_detector: opening the server log %s failed: %s\n", path,
                strerror(errno));
        return;
    }
    char *line = NULL;
    size_t line_capacity = 0;
    while (getline(&line, &line_capacity, file) >= 0) {
        if (strstr(line, "\"msg\":\"request\"") == NULL)
            continue;
        const char *id = strstr(line, "\"request_id\":\"");
        if (id == NULL)
            continue;
        id += strlen("\"request_id\":\"");
        const char *id_end = strchr(id, '"');
        if (id_end == NULL)
            continue;
        size_t id_len = (size_t)(id_end - id);

        for (int r = 0; r < run_count; r++) {
            for (int i = 0; i < rounds; i++) {
                http_sample_t *sample = &runs[r].samples[i];
                if (strlen(sample->request_id) != id_len ||
                    memcmp(sample->request_id, id, id_len) != 0)
                    continue;
                double latency_us = 0, queue_us = 0, compute_us = 0;
                sample->logged = log_number(line, "latency_us", &latency_us) &&
                                 log_number(line, "queue_us", &queue_us) &&
                                 log_number(line, "compute_us", &compute_us);
                sample->latency_ms = latency_us / 1e3;
                sample->queue_ms = queue_us / 1e3;
                sample->compute_ms = compute_us / 1e3;
            }
        }
    }
    free(line);
    fclose(file);
}

/* ---------------------------------------------------------------------------------------- */
/* Report */

typedef enum part {
    PART_TOTAL,
    PART_SEND,
    PART_SERVER_CODEC,
    PART_QUEUE,
    PART_COMPUTE,
    PART_TRANSFER,
    PART_WAIT,
    PART_RECEIVE,
    PART_COUNT
} part_t;

static const char *const PART_LABELS[PART_COUNT] = {
    "end to end (client)",
    "client send: request upload",
    "server decode + encode (log)",
    "server queue (log)",
    "server compute (log)",
    "response write and transfer",
    "  client: last byte sent to first received",
    "  client: first to last byte received",
};

/* Returns one part of a sample in ms. The server parts come from its request log line, whose
 * latency_us runs from the first parsed request byte to the response ready to write. Latency
 * minus the upload, queue and compute leaves decoding, encoding and the hand-offs between
 * threads. */
static double sample_part(const http_sample_t *sample, part_t part)
{
    switch (part) {
    case PART_TOTAL:
        return sample->total_ms;
    case PART_SEND:
        return sample->send_ms;
    case PART_SERVER_CODEC:
        return sample->latency_ms - sample->send_ms - sample->queue_ms - sample->compute_ms;
    case PART_QUEUE:
        return sample->queue_ms;
    case PART_COMPUTE:
        return sample->compute_ms;
    case PART_TRANSFER:
        return sample->total_ms - sample->latency_ms;
    case PART_WAIT:
        return sample->wait_ms;
    case PART_RECEIVE:
        return sample->receive_ms;
    case PART_COUNT:
        break;
    }
    return 0;
}

/* Writes the median of one part over the samples, or false when it is unknown. */
static bool part_median(const protocol_run_t *run, int rounds, part_t part, double *median)
{
    if (!run->available)
        return false;
    double *values = calloc((size_t)rounds, sizeof(*values));
    int count = 0;
    bool needs_log = part == PART_SERVER_CODEC || part == PART_QUEUE || part == PART_COMPUTE ||
                     part == PART_TRANSFER;
    for (int i = 0; values != NULL && i < rounds; i++) {
        if (!needs_log || run->samples[i].logged)
            values[count++] = sample_part(&run->samples[i], part);
    }
    double p90 = 0;
    if (count > 0)
        summarize(values, count, median, &p90);
    free(values);
    return count > 0;
}

static void print_goal(const char *label, const protocol_run_t *run, int rounds, double compute,
                       double goal)
{
    if (!run->available) {
        printf("%-8s not available: %s\n", label, run->unavailable_reason);
        return;
    }
    double *values = calloc((size_t)rounds, sizeof(*values));
    if (values == NULL)
        exit(1);
    for (int i = 0; i < rounds; i++)
        values[i] = run->samples[i].total_ms;
    double median = 0, p90 = 0;
    summarize(values, rounds, &median, &p90);

    /* Each request over the compute time the server logged for it: the transport overhead
     * alone, without the drift of compute times between requests on a shared machine. */
    int paired = 0;
    for (int i = 0; i < rounds; i++) {
        if (run->samples[i].logged && run->samples[i].compute_ms > 0)
            values[paired++] = run->samples[i].total_ms / run->samples[i].compute_ms;
    }
    double paired_median = 0, paired_p90 = 0;
    if (paired > 0)
        summarize(values, paired, &paired_median, &paired_p90);
    free(values);

    double ratio = median / compute;
    printf("%-8s %8.1f ms (p90 %6.1f)  %5.2fx compute  goal <= %.2fx: %-6s  paired %.2fx\n",
           label, median, p90, ratio, goal, ratio <= goal ? "met" : "missed", paired_median);
}

static void print_output_check(const char *label, const protocol_run_t *run)
{
    if (!run->available)
        return;
    printf("%s outputs bit-identical to in-process: %d of %d", label, run->outputs_identical,
           run->outputs_checked);
    if (run->outputs_unreadable > 0)
        printf(", %d without the expected output layout", run->outputs_unreadable);
    if (run->outputs_identical + run->outputs_unreadable != run->outputs_checked)
        printf(", max abs difference %g", run->max_abs_diff);
    printf("\n");
}

static void print_report(const settings_t *settings, const local_sample_t *local,
                         protocol_run_t *runs, const float *reference, size_t output_count)
{
    size_t zero_outputs = 0;
    for (size_t i = 0; i < output_count; i++)
        zero_outputs += reference[i] == 0.0f;

    int rounds = settings->rounds;
    double *values = calloc((size_t)rounds, sizeof(*values));
    if (values == NULL)
        exit(1);
    double run_median, run_p90, call_median, call_p90, p90;
    double decode_median[2], encode_median[2];
    for (int i = 0; i < rounds; i++)
        values[i] = local[i].run_ms;
    summarize(values, rounds, &run_median, &run_p90);
    for (int i = 0; i < rounds; i++)
        values[i] = local[i].call_ms;
    summarize(values, rounds, &call_median, &call_p90);
    for (int r = 0; r < 2; r++) {
        for (int i = 0; i < rounds; i++)
            values[i] = local[i].decode_ms[r];
        summarize(values, rounds, &decode_median[r], &p90);
        for (int i = 0; i < rounds; i++)
            values[i] = local[i].encode_ms[r];
        summarize(values, rounds, &encode_median[r], &p90);
    }
    free(values);

    printf("model %s, input " INPUT_NAME " FP32 [1,3,640,640], ONNX Runtime %s\n",
           settings->model_name, oxs_runtime_version());
    printf("placement: onnxserve on CPU %d, in-process inference and codec on CPU %d, "
           "HTTP client on CPU %d\n",
           settings->server_cpu, settings->compute_cpu, settings->client_cpu);
    printf("bodies: JSON request %.2f MB, response %.2f MB; binary request %.2f MB, "
           "response %.2f MB\n",
           (double)runs[0].payload->body_len / 1e6, (double)runs[0].response_len / 1e6,
           (double)runs[1].payload->body_len / 1e6, (double)runs[1].response_len / 1e6);
    printf("output: %.1f%% of the %zu values are exactly 0, which JSON writes as one digit\n",
           100.0 * (double)zero_outputs / (double)output_count, output_count);
    printf("%d warm-up rounds, then medians and p90 of %d rounds\n", settings->warmup, rounds);
    printf("compute  %8.1f ms (p90 %6.1f)  in-process ONNX Runtime Run, the baseline\n",
           run_median, run_p90);
    printf("         %8.1f ms (p90 %6.1f)  in-process call, submit to completion\n", call_median,
           call_p90);
    print_goal("JSON", &runs[0], rounds, run_median, 1.3);
    print_goal("binary", &runs[1], rounds, run_median, 1.05);
    print_output_check("JSON", &runs[0]);
    print_output_check("binary", &runs[1]);

    printf("\nwhere the time goes, median ms of each part    JSON   binary\n");
    for (int part = 0; part < PART_COUNT; part++) {
        printf("%-44s", PART_LABELS[part]);
        for (int r = 0; r < 2; r++) {
            double median = 0;
            if (part_median(&runs[r], rounds, (part_t)part, &median))
                printf(" %8.1f", median);
            else
                printf(" %8s", "n/a");
        }
        printf("\n");
    }
    printf("in-process codec on the same bytes, ms: decode JSON %.1f, binary %.1f; "
           "encode JSON %.1f, binary %.1f\n",
           decode_median[0], decode_median[1], encode_median[0], encode_median[1]);
    printf("Each part's median is taken on its own, so the parts need not add up to the total.\n");
}

/* ---------------------------------------------------------------------------------------- */

static void usage(const char *program)
{
    fprintf(stderr,
            "usage: %s --port PORT --server-log FILE [--model-name NAME] [--rounds N] "
            "[--warmup N] [--server-cpu N] [--client-cpu N] [--compute-cpu N] MODEL.onnx\n",
            program);
    exit(2);
}

static int parse_int(const char *program, const char *flag, const char *text, int min)
{
    char *end = NULL;
    long value = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || value < min || value > 1000000) {
        fprintf(stderr, "%s: invalid value \"%s\" for %s: expected an integer >= %d\n", program,
                text, flag, min);
        exit(2);
    }
    return (int)value;
}

static void parse_args(int argc, char **argv, settings_t *settings)
{
    *settings = (settings_t){.rounds = 15, .warmup = 3};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-') {
            settings->model_path = arg;
            continue;
        }
        if (i + 1 >= argc)
            usage(argv[0]);
        const char *value = argv[++i];
        if (strcmp(arg, "--port") == 0)
            settings->port = parse_int(argv[0], arg, value, 1);
        else if (strcmp(arg, "--server-log") == 0)
            settings->server_log = value;
        else if (strcmp(arg, "--model-name") == 0)
            snprintf(settings->model_name, sizeof(settings->model_name), "%s", value);
        else if (strcmp(arg, "--rounds") == 0)
            settings->rounds = parse_int(argv[0], arg, value, 1);
        else if (strcmp(arg, "--warmup") == 0)
            settings->warmup = parse_int(argv[0], arg, value, 0);
        else if (strcmp(arg, "--server-cpu") == 0)
            settings->server_cpu = parse_int(argv[0], arg, value, 0);
        else if (strcmp(arg, "--client-cpu") == 0)
            settings->client_cpu = parse_int(argv[0], arg, value, 0);
        else if (strcmp(arg, "--compute-cpu") == 0)
            settings->compute_cpu = parse_int(argv[0], arg, value, 0);
        else
            usage(argv[0]);
    }
    if (settings->model_path == NULL || settings->port == 0 || settings->server_log == NULL)
        usage(argv[0]);
    if (settings->model_name[0] == '\0') {
        const char *base = strrchr(settings->model_path, '/');
        base = base != NULL ? base + 1 : settings->model_path;
        snprintf(settings->model_name, sizeof(settings->model_name), "%s", base);
        char *suffix = strstr(settings->model_name, ".onnx");
        if (suffix != NULL && suffix[5] == '\0')
            *suffix = '\0';
    }
}

/* Sends one request of run and checks its output. Marks the protocol unavailable when the
 * response status is not 200, so later rounds skip it. */
static void http_round(protocol_run_t *run, const settings_t *settings, int index, bool measured,
                       http_response_t *response, const float *reference, float *scratch,
                       size_t output_count)
{
    http_sample_t discard;
    http_sample_t *sample = measured ? &run->samples[index] : &discard;
    char request_id[REQUEST_ID_BYTES];
    snprintf(request_id, sizeof(request_id), "e2e-%s-%s-%03d", run->payload->kind,
             measured ? "run" : "warmup", index);

    int status = exchange(run, settings, request_id, response, sample);
    if (status != 200) {
        run->available = false;
        if (status != 0) {
            const char *body = response->data + response->header_end;
            int body_len = (int)(response->content_length < 300 ? response->content_length : 300);
            snprintf(run->unavailable_reason, sizeof(run->unavailable_reason), "HTTP %d %.*s",
                     status, body_len, body);
        }
        return;
    }
    run->response_len = response->content_length;
    if (strcmp(run->payload->kind, "json") == 0)
        check_json_output(run, response, reference, output_count, scratch);
    else
        check_binary_output(run, response, reference, output_count, scratch);
}

int main(int argc, char **argv)
{
    settings_t settings;
    parse_args(argc, argv, &settings);
    char error[ERROR_BYTES];

    /* Threads inherit the creating thread's CPU mask, so the library's workers stay on the
     * compute CPU while the HTTP client later moves to its own. */
    pin_to_cpu(settings.compute_cpu);
    oxs_server_t *server = NULL;
    oxs_model_t *model = NULL;
    oxs_options_t options;
    oxs_options_init(&options);
    if (oxs_server_create(&options, &server, error, sizeof(error)) != OXS_OK ||
        oxs_server_load_model(server, settings.model_name, 1, settings.model_path, error,
                              sizeof(error)) != OXS_OK ||
        oxs_server_get_model(server, settings.model_name, 0, &model) != OXS_OK) {
        fprintf(stderr, "bench_e2e_detector: %s\n", error);
        return 1;
    }

    float *input = malloc(INPUT_VALUES * sizeof(float));
    oxs_buf_t json_body, binary_body, encoded;
    oxs_buf_init(&json_body, 0);
    oxs_buf_init(&binary_body, 0);
    oxs_buf_init(&encoded, 0);
    if (input == NULL)
        return 1;
    make_input(input, INPUT_VALUES);
    make_json_body(&json_body, input, INPUT_VALUES);
    size_t binary_json_len = make_binary_body(&binary_body, input, INPUT_VALUES);
    if (json_body.failed || binary_body.failed)
        return 1;

    payload_t payloads[2] = {
        {"json", "application/json", json_body.data, json_body.len, 0},
        {"binary", "application/octet-stream", binary_body.data, binary_body.len,
         binary_json_len},
    };
    protocol_run_t runs[2];
    for (int r = 0; r < 2; r++) {
        runs[r] = (protocol_run_t){.payload = &payloads[r], .fd = -1, .available = true};
        runs[r].samples = calloc((size_t)settings.rounds, sizeof(http_sample_t));
        if (runs[r].samples == NULL)
            return 1;
    }
    local_sample_t *local = calloc((size_t)settings.rounds, sizeof(*local));

    /* The receive buffer is touched once here, so page faults stay out of the timings. */
    http_response_t response = {.capacity = RESPONSE_BUFFER_BYTES};
    response.data = malloc(response.capacity);
    if (local == NULL || response.data == NULL)
        return 1;
    memset(response.data, 0, response.capacity);

    /* The first in-process output is the reference that every HTTP output is compared with. */
    size_t output_count = 0;
    float *reference = NULL;
    float *scratch = NULL;
    for (int i = 0; i < settings.warmup + settings.rounds; i++) {
        bool measured = i >= settings.warmup;
        int index = measured ? i - settings.warmup : i;
        local_sample_t discard;

        pin_to_cpu(settings.compute_cpu);
        oxs_response_t *result = run_local(server, model, payloads, &encoded,
                                           measured ? &local[index] : &discard);
        if (reference == NULL) {
            oxs_tensor_view_t view;
            oxs_response_output(result, 0, &view);
            output_count = view.element_count;
            reference = malloc(view.byte_size);
            scratch = malloc(view.byte_size);
            if (reference == NULL || scratch == NULL)
                return 1;
            memcpy(reference, view.data, view.byte_size);
        }
        oxs_response_destroy(result);

        pin_to_cpu(settings.client_cpu);
        for (int r = 0; r < 2; r++) {
            if (runs[r].available)
                http_round(&runs[r], &settings, index, measured, &response, reference, scratch,
                           output_count);
        }
    }

    read_server_log(settings.server_log, runs, 2, settings.rounds);
    print_report(&settings, local, runs, reference, output_count);

    for (int r = 0; r < 2; r++) {
        if (runs[r].fd >= 0)
            close(runs[r].fd);
        free(runs[r].samples);
    }
    free(local);
    free(response.data);
    free(reference);
    free(scratch);
    free(input);
    oxs_buf_free(&json_body);
    oxs_buf_free(&binary_body);
    oxs_buf_free(&encoded);
    oxs_model_release(model);
    oxs_server_destroy(server);
    return 0;
}
