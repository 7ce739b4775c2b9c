/*
 * Benchmark: JSON decode and encode throughput of the codec on a 1x3x640x640 float32 tensor
 * (1,228,800 values), side by side with plain strtof and "%.9g" loops over the same numbers.
 *
 * Usage: bench_json_codec MODELS_DIR [ROUNDS]. MODELS_DIR contains scale.onnx from
 * tests/tools/make_models.py (y = 2x + 1 on x [-1,4]); the tensor is sent as [307200,4], which has
 * the same element count. Prints one line per measurement with the median of ROUNDS runs.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/json.h"
#include "onnxserve.h"

#define VALUES (3 * 640 * 640)
#define ROWS (VALUES / 4)

static double now_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *samples, int count)
{
    qsort(samples, (size_t)count, sizeof(*samples), compare_doubles);
    return samples[count / 2];
}

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

/* Writes the infer request body and returns its length; values are uniform in [-1, 1). */
static size_t make_body(oxs_buf_t *body)
{
    oxs_buf_puts(body, "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[");
    oxs_buf_printf(body, "%d,4],\"data\":[", ROWS);
    srand(7);
    for (int i = 0; i < VALUES; i++) {
        float value = (float)rand() / (float)RAND_MAX * 2.0f - 1.0f;
        oxs_buf_printf(body, "%s%.9g", i ? "," : "", (double)value);
    }
    oxs_buf_puts(body, "]}]}");
    return body->len;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODELS_DIR [ROUNDS]\n", argv[0]);
        return 2;
    }
    int rounds = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 7;
    if (rounds < 1)
        rounds = 1;
    char path[4096], error[512];
    snprintf(path, sizeof(path), "%s/scale.onnx", argv[1]);

    oxs_server_t *server = NULL;
    oxs_model_t *model = NULL;
    if (oxs_server_create(NULL, &server, error, sizeof(error)) != OXS_OK ||
        oxs_server_load_model(server, "scale", 1, path, error, sizeof(error)) != OXS_OK ||
        oxs_server_get_model(server, "scale", 0, &model) != OXS_OK) {
        fprintf(stderr, "bench_json_codec: %s\n", error);
        return 1;
    }

    oxs_buf_t body;
    oxs_buf_init(&body, 0);
    size_t body_len = make_body(&body);
    double *samples = calloc((size_t)rounds, sizeof(double));
    float *floats = malloc(VALUES * sizeof(float));
    if (samples == NULL || floats == NULL || body.failed)
        return 1;

    /* Decode: the codec into a pooled tensor buffer, against strtof over the same texts. */
    oxs_json_reply_t *reply = NULL;
    for (int r = 0; r < rounds; r++) {
        oxs_request_t *request = NULL;
        oxs_request_create(server, model, &request);
        double started = now_seconds();
        oxs_status_t status = oxs_json_decode_infer(request, body.data, body_len, body_len,
                                                    &reply, error, sizeof(error));
        samples[r] = now_seconds() - started;
        oxs_request_destroy(request);
        if (status != OXS_OK) {
            fprintf(stderr, "bench_json_codec: decode failed: %s\n", error);
            return 1;
        }
    }
    double decode = median(samples, rounds);

    const char *data = strstr(body.data, "\"data\":[") + 8;
    for (int r = 0; r < rounds; r++) {
        const char *cursor = data;
        double started = now_seconds();
        for (int i = 0; i < VALUES; i++) {
            char *end = NULL;
            floats[i] = strtof(cursor, &end);
            cursor = end + 1;
        }
        samples[r] = now_seconds() - started;
    }
    double baseline_decode = median(samples, rounds);

    /* Encode: one response of 1,228,800 floats, against "%.9g" into a buffer. */
    waiter_t waiter = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL};
    oxs_request_t *request = NULL;
    oxs_request_create(server, model, &request);
    oxs_json_decode_infer(request, body.data, body_len, body_len, &reply, error, sizeof(error));
    if (oxs_request_submit(request, on_complete, &waiter, error, sizeof(error)) != OXS_OK) {
        fprintf(stderr, "bench_json_codec: submit failed: %s\n", error);
        return 1;
    }
    pthread_mutex_lock(&waiter.lock);
    while (waiter.response == NULL)
        pthread_cond_wait(&waiter.done, &waiter.lock);
    pthread_mutex_unlock(&waiter.lock);

    oxs_buf_t out;
    oxs_buf_init(&out, 0);
    for (int r = 0; r < rounds; r++) {
        oxs_buf_reset(&out);
        double started = now_seconds();
        size_t json_len = 0;
        oxs_json_encode_infer(&out, waiter.response, NULL, &json_len, error, sizeof(error));
        samples[r] = now_seconds() - started;
    }
    double encode = median(samples, rounds);
    size_t encoded_len = out.len;

    oxs_tensor_view_t view;
    oxs_response_output(waiter.response, 0, &view);
    const float *outputs = view.data;
    for (int r = 0; r < rounds; r++) {
        oxs_buf_reset(&out);
        double started = now_seconds();
        for (size_t i = 0; i < view.element_count; i++) {
            char text[32];
            int n = snprintf(text, sizeof(text), "%.9g,", (double)outputs[i]);
            oxs_buf_append(&out, text, (size_t)n);
        }
        samples[r] = now_seconds() - started;
    }
    double baseline_encode = median(samples, rounds);

    double body_mb = (double)body_len / 1e6, out_mb = (double)encoded_len / 1e6;
    printf("values %d, request body %.1f MB, response body %.1f MB, median of %d rounds\n",
           VALUES, body_mb, out_mb, rounds);
    printf("decode  codec %7.1f ms %6.1f MB/s | strtof loop %7.1f ms | ratio %.2f\n",
           decode * 1e3, body_mb / decode, baseline_decode * 1e3, decode / baseline_decode);
    printf("encode  codec %7.1f ms %6.1f MB/s | %%.9g loop   %7.1f ms | ratio %.2f\n",
           encode * 1e3, out_mb / encode, baseline_encode * 1e3, encode / baseline_encode);

    oxs_response_destroy(waiter.response);
    oxs_buf_free(&out);
    oxs_buf_free(&body);
    free(samples);
    free(floats);
    oxs_model_release(model);
    oxs_server_destroy(server);
    return 0;
}
