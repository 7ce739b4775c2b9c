/*
 * Unit tests of the library's metrics: counts and durations after known requests, the
 * Prometheus text written by oxs_server_write_metrics, and scrapes while several threads run
 * requests (ThreadSanitizer checks that reads and writes of the per-thread shards are
 * race-free). Uses the scale model of tests/tools/make_models.py ($ONNXSERVE_TEST_DATA).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "exit_now.h"
#include "onnxserve.h"
#include "wait_response.h"

static oxs_server_t *server;
static oxs_model_t *scale;

static int setup(void **state)
{
    (void)state;
    char path[4096], error[512] = "";
    const char *dir = getenv("ONNXSERVE_TEST_DATA");
    snprintf(path, sizeof(path), "%s/scale.onnx", dir ? dir : "tests/data");
    oxs_options_t options;
    oxs_options_init(&options);
    options.workers = 2;
    if (oxs_server_create(&options, &server, error, sizeof(error)) != OXS_OK ||
        oxs_server_load_model(server, "scale", 1, path, error, sizeof(error)) != OXS_OK ||
        oxs_server_get_model(server, "scale", 1, &scale) != OXS_OK) {
        fprintf(stderr, "setup failed: %s\n", error);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    oxs_model_release(scale);
    oxs_server_destroy(server);
    return 0;
}

/* Runs one request on scale; rows sets dim 0, and a wrong second dim makes it invalid. Returns
 * the status of the submit or of the response. */
static oxs_status_t run_request(int64_t rows, int64_t columns)
{
    oxs_request_t *request = NULL;
    char error[512] = "";
    int64_t shape[2] = {rows, columns};
    void *data = NULL;
    size_t bytes = 0;
    if (oxs_request_create(server, scale, &request) != OXS_OK)
        return OXS_ERR_INTERNAL;
    oxs_status_t status = oxs_request_add_input(request, "x", 1, OXS_DT_FP32, shape, 2, &data,
                                                &bytes, error, sizeof(error));
    if (status != OXS_OK) {
        /* The caller counts what it failed before submitting. */
        oxs_model_count_rejected(scale, status);
        oxs_request_destroy(request);
        return status;
    }
    memset(data, 0, bytes);
    waiter_t waiter = WAITER_INIT;
    status = oxs_request_submit(request, on_complete, &waiter, error, sizeof(error));
    if (status != OXS_OK) {
        oxs_request_destroy(request);
        return status;
    }
    wait_response(&waiter);
    status = oxs_response_status(waiter.response);
    oxs_response_destroy(waiter.response);
    return status;
}

typedef struct text {
    char *data;
    size_t len;
} text_t;

static void append(void *user, const char *chunk, size_t len)
{
    text_t *text = user;
    text->data = realloc(text->data, text->len + len + 1);
    assert_non_null(text->data);
    memcpy(text->data + text->len, chunk, len);
    text->len += len;
    text->data[text->len] = '\0';
}

/* Returns the value of the sample whose line starts with prefix (name and labels), or -1. */
static double sample(const char *text, const char *prefix)
{
    size_t len = strlen(prefix);
    for (const char *line = text; line != NULL && *line != '\0';) {
        if (strncmp(line, prefix, len) == 0 && line[len] == ' ')
            return strtod(line + len + 1, NULL);
        line = strchr(line, '\n');
        line = line != NULL ? line + 1 : NULL;
    }
    return -1;
}

static void test_counts_after_requests(void **state)
{
    (void)state;
    oxs_model_stats_t before, after;
    oxs_model_stats(scale, &before);
    for (int i = 0; i < 5; i++)
        assert_int_equal(run_request(2, 4), OXS_OK);
    assert_int_equal(run_request(1, 3), OXS_ERR_INVALID_ARGUMENT);
    oxs_model_stats(scale, &after);

    assert_int_equal(after.success.count - before.success.count, 5);
    assert_int_equal(after.fail.count - before.fail.count, 1);
    assert_int_equal(after.inference_count - before.inference_count, 10);
    assert_int_equal(after.execution_count - before.execution_count, 5);
    assert_int_equal(after.queue.count - before.queue.count, 5);
    assert_int_equal(after.compute_infer.count - before.compute_infer.count, 5);
    assert_true(after.compute_infer.total_us >= before.compute_infer.total_us);
    assert_true(after.last_inference_ms > 0);
}

static void test_prometheus_text(void **state)
{
    (void)state;
    assert_int_equal(run_request(1, 4), OXS_OK);
    oxs_server_count_unknown_model(server);
    oxs_model_stats_t stats;
    oxs_model_stats(scale, &stats);

    text_t text = {NULL, 0};
    oxs_server_write_metrics(server, append, &text);
    assert_non_null(text.data);
    assert_non_null(strstr(text.data, "# TYPE onnxserve_requests_total counter\n"));
    assert_non_null(strstr(text.data, "# TYPE onnxserve_request_duration_seconds histogram\n"));
    assert_true(sample(text.data, "onnxserve_requests_total{model=\"scale\",version=\"1\","
                                  "outcome=\"success\"}") == (double)stats.success.count);
    assert_true(sample(text.data, "onnxserve_requests_total{outcome=\"invalid\"}") >= 1);
    assert_true(sample(text.data, "onnxserve_inferences_total{model=\"scale\",version=\"1\"}") ==
                (double)stats.inference_count);
    /* Buckets are cumulative and the +Inf one equals the count. */
    double count = sample(text.data, "onnxserve_request_duration_seconds_count{model=\"scale\","
                                     "version=\"1\"}");
    double infinite = sample(text.data, "onnxserve_request_duration_seconds_bucket{model=\"scale\","
                                        "version=\"1\",le=\"+Inf\"}");
    double smallest = sample(text.data, "onnxserve_request_duration_seconds_bucket{model=\"scale\","
                                        "version=\"1\",le=\"0.0001\"}");
    /* Every request that reached the queue is in the histogram; those failed before are not. */
    assert_true(count == (double)stats.queue.count);
    assert_true(infinite == count);
    assert_true(smallest >= 0 && smallest <= infinite);
    free(text.data);
}

static void *run_many(void *arg)
{
    (void)arg;
    for (int i = 0; i < 50; i++)
        if (run_request(1, 4) != OXS_OK)
            return (void *)1;
    return NULL;
}

static void discard(void *user, const char *chunk, size_t len)
{
    (void)chunk;
    *(size_t *)user += len;
}

static void test_scrape_while_requests_run(void **state)
{
    (void)state;
    oxs_model_stats_t before, after;
    oxs_model_stats(scale, &before);
    pthread_t threads[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, run_many, NULL), 0);
    size_t written = 0;
    for (int i = 0; i < 20; i++)
        oxs_server_write_metrics(server, discard, &written);
    for (int i = 0; i < 4; i++) {
        void *result = NULL;
        pthread_join(threads[i], &result);
        assert_null(result);
    }
    oxs_model_stats(scale, &after);
    assert_int_equal(after.success.count - before.success.count, 200);
    assert_true(written > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_after_requests),
        cmocka_unit_test(test_prometheus_text),
        cmocka_unit_test(test_scrape_while_requests_run),
    };
    oxs_test_exit(cmocka_run_group_tests(tests, setup, teardown));
}
