/*
 * Per-model metrics: request outcomes, inference and execution counts, and histograms of
 * durations and batch sizes, written in the Prometheus text format.
 *
 * Threads: every thread that records gets a shard index of its own, kept until it exits, and
 * writes only that shard of each model, with relaxed atomic loads and stores, so the request
 * path does no shared read-modify-write. A scrape sums the shards with relaxed loads. Threads
 * beyond MAX_SHARDS share one extra shard, which they update with atomic additions.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"

#define MAX_SHARDS 64
#define SHARED_SHARD MAX_SHARDS

/* Upper bounds of the duration buckets in microseconds: 100 us to 10 s. */
static const uint64_t duration_bounds_us[] = {
    100,    250,    500,     1000,    2500,    5000,    10000,   25000,
    50000,  100000, 250000,  500000,  1000000, 2500000, 5000000, 10000000,
};
#define DURATION_BUCKETS (sizeof(duration_bounds_us) / sizeof(duration_bounds_us[0]))

static const uint64_t batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
#define BATCH_BUCKETS (sizeof(batch_bounds) / sizeof(batch_bounds[0]))

typedef enum duration_kind {
    DURATION_REQUEST,
    DURATION_QUEUE,
    DURATION_COMPUTE_INPUT,
    DURATION_COMPUTE_INFER,
    DURATION_COMPUTE_OUTPUT,
    DURATION_KINDS,
} duration_kind_t;

typedef struct histogram {
    _Atomic uint64_t buckets[DURATION_BUCKETS + 1]; /* the last one is +Inf; not cumulative */
    _Atomic uint64_t sum_us;
} histogram_t;

typedef struct shard {
    _Atomic uint64_t outcomes[OXS__OUTCOME_COUNT];
    _Atomic uint64_t inferences;    /* rows run */
    _Atomic uint64_t executions;    /* runs of the model */
    _Atomic uint64_t success_us;    /* total request time of successful requests */
    _Atomic uint64_t failure_us;    /* total request time of failed ones that were queued */
    _Atomic uint64_t last_ms;       /* wall clock of the last completion, in milliseconds */
    histogram_t durations[DURATION_KINDS];
    _Atomic uint64_t batches[BATCH_BUCKETS + 1];
    _Atomic uint64_t batch_rows;
} shard_t;

struct oxs__metrics {
    shard_t shards[MAX_SHARDS + 1];
};

/* ---- shard indexes ---------------------------------------------------------------------------- */

static pthread_mutex_t shard_lock = PTHREAD_MUTEX_INITIALIZER;
static bool shard_taken[MAX_SHARDS];
static pthread_key_t shard_key;
static pthread_once_t shard_once = PTHREAD_ONCE_INIT;
static _Thread_local int thread_shard = -1;

/* Gives a finished thread's index back. The next owner starts after this thread has exited. */
static void shard_release(void *value)
{
    int index = (int)(intptr_t)value - 1;
    pthread_mutex_lock(&shard_lock);
    if (index >= 0 && index < MAX_SHARDS)
        shard_taken[index] = false;
    pthread_mutex_unlock(&shard_lock);
}

static void shard_key_create(void)
{
    pthread_key_create(&shard_key, shard_release);
}

static int current_shard(void)
{
    if (thread_shard >= 0)
        return thread_shard;
    pthread_once(&shard_once, shard_key_create);
    int index = SHARED_SHARD;
    pthread_mutex_lock(&shard_lock);
    for (int i = 0; i < MAX_SHARDS && index == SHARED_SHARD; i++) {
        if (!shard_taken[i]) {
            shard_taken[i] = true;
            index = i;
        }
    }
    pthread_mutex_unlock(&shard_lock);
    if (index != SHARED_SHARD)
        pthread_setspecific(shard_key, (void *)(intptr_t)(index + 1));
    thread_shard = index;
    return index;
}

/* Adds n to a counter of shard index: a plain store on a thread's own shard, an atomic
 * addition on the shared one. */
static void add(int index, _Atomic uint64_t *counter, uint64_t n)
{
    if (index == SHARED_SHARD)
        atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
    else
        atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + n,
                              memory_order_relaxed);
}

static void observe(int index, histogram_t *histogram, int64_t us)
{
    uint64_t value = us > 0 ? (uint64_t)us : 0;
    size_t bucket = 0;
    while (bucket < DURATION_BUCKETS && value > duration_bounds_us[bucket])
        bucket++;
    add(index, &histogram->buckets[bucket], 1);
    add(index, &histogram->sum_us, value);
}

/* ---- recording ------------------------------------------------------------------------------- */

oxs__metrics_t *oxs__metrics_create(const oxs_allocator_t *allocator)
{
    /* All-zero bits are zero counters, which calloc gives. */
    return oxs__calloc(allocator, 1, sizeof(oxs__metrics_t));
}

void oxs__metrics_destroy(const oxs_allocator_t *allocator, oxs__metrics_t *metrics)
{
    oxs__free(allocator, metrics);
}

oxs__outcome_t oxs__outcome_of(oxs_status_t status)
{
    switch (status) {
    case OXS_OK:
        return OXS__OUTCOME_SUCCESS;
    case OXS_ERR_QUEUE_FULL:
    case OXS_ERR_SHUTTING_DOWN:
    case OXS_ERR_UNAVAILABLE:
        return OXS__OUTCOME_REJECTED;
    case OXS_ERR_TIMEOUT:
        return OXS__OUTCOME_TIMEOUT;
    case OXS_ERR_CANCELED:
        return OXS__OUTCOME_CANCELED;
    case OXS_ERR_INVALID_ARGUMENT:
    case OXS_ERR_NOT_FOUND:
    case OXS_ERR_TOO_LARGE:
    case OXS_ERR_UNSUPPORTED:
    case OXS_ERR_FORBIDDEN:
        return OXS__OUTCOME_INVALID;
    default:
        return OXS__OUTCOME_BACKEND;
    }
}

void oxs__metrics_rejected(oxs__metrics_t *metrics, oxs__outcome_t outcome)
{
    int index = current_shard();
    add(index, &metrics->shards[index].outcomes[outcome], 1);
}

static uint64_t wall_clock_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}

void oxs__metrics_finished(oxs__metrics_t *metrics, const oxs_response_t *response,
                           int64_t total_us, int64_t started_us, int64_t ended_us)
{
    int index = current_shard();
    shard_t *shard = &metrics->shards[index];
    oxs__outcome_t outcome = oxs__outcome_of(response->status);

    add(index, &shard->outcomes[outcome], 1);
    add(index, outcome == OXS__OUTCOME_SUCCESS ? &shard->success_us : &shard->failure_us,
        total_us > 0 ? (uint64_t)total_us : 0);
    observe(index, &shard->durations[DURATION_REQUEST], total_us);
    observe(index, &shard->durations[DURATION_QUEUE], response->queue_us);
    const int64_t *span = response->infer_span_us;
    if (span[0] != 0 && span[1] >= span[0] && started_us <= span[0] && span[1] <= ended_us) {
        observe(index, &shard->durations[DURATION_COMPUTE_INPUT], span[0] - started_us);
        observe(index, &shard->durations[DURATION_COMPUTE_INFER], span[1] - span[0]);
        observe(index, &shard->durations[DURATION_COMPUTE_OUTPUT], ended_us - span[1]);
    }
    atomic_store_explicit(&shard->last_ms, wall_clock_ms(), memory_order_relaxed);
}

void oxs__metrics_execution(oxs__metrics_t *metrics, int64_t rows)
{
    int index = current_shard();
    shard_t *shard = &metrics->shards[index];
    uint64_t value = rows > 0 ? (uint64_t)rows : 0;
    size_t bucket = 0;
    while (bucket < BATCH_BUCKETS && value > batch_bounds[bucket])
        bucket++;
    add(index, &shard->executions, 1);
    add(index, &shard->inferences, value);
    add(index, &shard->batches[bucket], 1);
    add(index, &shard->batch_rows, value);
}

int64_t oxs__metrics_infer_p99_us(oxs__metrics_t *metrics)
{
    uint64_t buckets[DURATION_BUCKETS + 1] = {0};
    uint64_t total = 0;
    if (metrics == NULL)
        return 0;
    for (int s = 0; s <= MAX_SHARDS; s++) {
        for (size_t b = 0; b <= DURATION_BUCKETS; b++) {
            uint64_t n = atomic_load_explicit(
                &metrics->shards[s].durations[DURATION_COMPUTE_INFER].buckets[b],
                memory_order_relaxed);
            buckets[b] += n;
            total += n;
        }
    }
    if (total == 0)
        return 0;
    uint64_t seen = 0;
    for (size_t b = 0; b < DURATION_BUCKETS; b++) {
        seen += buckets[b];
        if (seen * 100 >= total * 99)
            return (int64_t)duration_bounds_us[b];
    }
    return (int64_t)duration_bounds_us[DURATION_BUCKETS - 1] * 2; /* beyond the last bucket */
}

void oxs_model_count_rejected(oxs_model_t *model, oxs_status_t status)
{
    if (model != NULL && model->metrics != NULL && status != OXS_OK)
        oxs__metrics_rejected(model->metrics, oxs__outcome_of(status));
}

void oxs_server_count_unknown_model(oxs_server_t *server)
{
    oxs__metrics_rejected(server->metrics, OXS__OUTCOME_INVALID);
}

/* ---- reading --------------------------------------------------------------------------------- */

/* The sum of every shard, read with relaxed loads: each value is one that some thread wrote. */
typedef struct snapshot {
    uint64_t outcomes[OXS__OUTCOME_COUNT];
    uint64_t inferences;
    uint64_t executions;
    uint64_t success_us;
    uint64_t failure_us;
    uint64_t last_ms;
    uint64_t durations[DURATION_KINDS][DURATION_BUCKETS + 1];
    uint64_t duration_sums[DURATION_KINDS];
    uint64_t batches[BATCH_BUCKETS + 1];
    uint64_t batch_rows;
} snapshot_t;

static uint64_t load(_Atomic uint64_t *value)
{
    return atomic_load_explicit(value, memory_order_relaxed);
}

static void take_snapshot(oxs__metrics_t *metrics, snapshot_t *out)
{
    memset(out, 0, sizeof(*out));
    for (int s = 0; s <= MAX_SHARDS; s++) {
        shard_t *shard = &metrics->shards[s];
        for (int i = 0; i < OXS__OUTCOME_COUNT; i++)
            out->outcomes[i] += load(&shard->outcomes[i]);
        out->inferences += load(&shard->inferences);
        out->executions += load(&shard->executions);
        out->success_us += load(&shard->success_us);
        out->failure_us += load(&shard->failure_us);
        uint64_t last = load(&shard->last_ms);
        out->last_ms = last > out->last_ms ? last : out->last_ms;
        for (int k = 0; k < DURATION_KINDS; k++) {
            for (size_t b = 0; b <= DURATION_BUCKETS; b++)
                out->durations[k][b] += load(&shard->durations[k].buckets[b]);
            out->duration_sums[k] += load(&shard->durations[k].sum_us);
        }
        for (size_t b = 0; b <= BATCH_BUCKETS; b++)
            out->batches[b] += load(&shard->batches[b]);
        out->batch_rows += load(&shard->batch_rows);
    }
}

static uint64_t histogram_count(const uint64_t *buckets, size_t count)
{
    uint64_t total = 0;
    for (size_t b = 0; b <= count; b++)
        total += buckets[b];
    return total;
}

void oxs_model_stats(const oxs_model_t *model, oxs_model_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    if (model->metrics == NULL)
        return;
    snapshot_t snap;
    take_snapshot(model->metrics, &snap);
    out->success.count = snap.outcomes[OXS__OUTCOME_SUCCESS];
    out->success.total_us = snap.success_us;
    for (int i = 0; i < OXS__OUTCOME_COUNT; i++)
        if (i != OXS__OUTCOME_SUCCESS)
            out->fail.count += snap.outcomes[i];
    out->fail.total_us = snap.failure_us;
    oxs_duration_stat_t *spans[] = {&out->queue, &out->compute_input, &out->compute_infer,
                                    &out->compute_output};
    for (int k = DURATION_QUEUE; k < DURATION_KINDS; k++) {
        spans[k - DURATION_QUEUE]->count = histogram_count(snap.durations[k], DURATION_BUCKETS);
        spans[k - DURATION_QUEUE]->total_us = snap.duration_sums[k];
    }
    out->inference_count = snap.inferences;
    out->execution_count = snap.executions;
    out->last_inference_ms = snap.last_ms;
}

/* ---- Prometheus text format ---------------------------------------------------------------- */

typedef struct writer {
    oxs_text_fn write;
    void *user;
} writer_t;

__attribute__((format(printf, 2, 3))) static void emit(const writer_t *w, const char *format,
                                                       ...)
{
    char line[512];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(line, sizeof(line), format, args);
    va_end(args);
    if (n > 0)
        w->write(w->user, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static void emit_line(void *user, const char *line)
{
    const writer_t *w = user;
    w->write(w->user, line, strlen(line));
}

/* A model version whose metrics a scrape writes. */
typedef struct scraped {
    const char *name;
    int64_t version;
    int queued;
    snapshot_t snap;
} scraped_t;

static void write_seconds(char *out, size_t size, uint64_t us)
{
    snprintf(out, size, "%llu.%06llu", (unsigned long long)(us / 1000000),
             (unsigned long long)(us % 1000000));
}

static void write_histogram(const writer_t *w, const char *name, const char *labels,
                            const uint64_t *buckets, const uint64_t *bounds, size_t count,
                            uint64_t sum, bool seconds)
{
    uint64_t cumulative = 0;
    char bound[32], total[32];
    for (size_t b = 0; b < count; b++) {
        cumulative += buckets[b];
        if (seconds) {
            /* Bounds are whole numbers of microseconds, so %g of the seconds is exact. */
            snprintf(bound, sizeof(bound), "%g", (double)bounds[b] / 1e6);
        } else {
            snprintf(bound, sizeof(bound), "%llu", (unsigned long long)bounds[b]);
        }
        emit(w, "%s_bucket{%s,le=\"%s\"} %llu\n", name, labels, bound,
             (unsigned long long)cumulative);
    }
    cumulative += buckets[count];
    emit(w, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, (unsigned long long)cumulative);
    if (seconds)
        write_seconds(total, sizeof(total), sum);
    else
        snprintf(total, sizeof(total), "%llu", (unsigned long long)sum);
    emit(w, "%s_sum{%s} %s\n", name, labels, total);
    emit(w, "%s_count{%s} %llu\n", name, labels, (unsigned long long)cumulative);
}

static const char *const outcome_names[OXS__OUTCOME_COUNT] = {
    "success", "rejected", "timeout", "canceled", "invalid", "backend",
};

static const struct {
    const char *name;
    const char *help;
} duration_families[DURATION_KINDS] = {
    {"onnxserve_request_duration_seconds",
     "Time from submission to completion of a request, in seconds."},
    {"onnxserve_queue_duration_seconds", "Time a request waited in its model's queue."},
    {"onnxserve_compute_input_duration_seconds",
     "Time spent preparing a run's inputs (batching included) before ONNX Runtime's Run."},
    {"onnxserve_compute_infer_duration_seconds", "Time spent in ONNX Runtime's Run."},
    {"onnxserve_compute_output_duration_seconds",
     "Time spent on a run's outputs (splitting a batch included) after Run."},
};

void oxs_server_write_metrics(oxs_server_t *server, oxs_text_fn write, void *user)
{
    writer_t w = {write, user};
    size_t total = oxs_server_model_count(server);
    scraped_t *models = oxs__calloc(&server->allocator, total + 1, sizeof(*models));
    oxs_model_t **held = oxs__calloc(&server->allocator, total + 1, sizeof(*held));
    size_t count = 0;
    char labels[200];

    for (size_t i = 0; models != NULL && held != NULL && i < total; i++) {
        oxs_model_t *model = NULL;
        if (oxs_server_model_at(server, i, &model) != OXS_OK)
            break;
        if (model->metrics == NULL || oxs_model_state(model) != OXS_MODEL_READY) {
            oxs_model_release(model);
            continue;
        }
        held[count] = model;
        models[count].name = model->name;
        models[count].version = model->version;
        models[count].queued = oxs__scheduler_queued(model);
        take_snapshot(model->metrics, &models[count].snap);
        count++;
    }

    emit(&w, "# HELP onnxserve_requests_total Requests by model, version and outcome: success, "
             "rejected (queue full, not READY or shutting down), timeout, canceled, invalid or "
             "backend.\n");
    emit(&w, "# TYPE onnxserve_requests_total counter\n");
    for (size_t m = 0; m < count; m++)
        for (int o = 0; o < OXS__OUTCOME_COUNT; o++)
            emit(&w, "onnxserve_requests_total{model=\"%s\",version=\"%lld\",outcome=\"%s\"} %llu\n",
                 models[m].name, (long long)models[m].version, outcome_names[o],
                 (unsigned long long)models[m].snap.outcomes[o]);

    snapshot_t unmatched;
    take_snapshot(server->metrics, &unmatched);
    emit(&w, "onnxserve_requests_total{outcome=\"invalid\"} %llu\n",
         (unsigned long long)unmatched.outcomes[OXS__OUTCOME_INVALID]);

    emit(&w, "# HELP onnxserve_inferences_total Rows run (a batch of 8 counts 8).\n");
    emit(&w, "# TYPE onnxserve_inferences_total counter\n");
    for (size_t m = 0; m < count; m++)
        emit(&w, "onnxserve_inferences_total{model=\"%s\",version=\"%lld\"} %llu\n",
             models[m].name, (long long)models[m].version,
             (unsigned long long)models[m].snap.inferences);
    emit(&w, "# HELP onnxserve_executions_total Runs of the model (a batch counts once).\n");
    emit(&w, "# TYPE onnxserve_executions_total counter\n");
    for (size_t m = 0; m < count; m++)
        emit(&w, "onnxserve_executions_total{model=\"%s\",version=\"%lld\"} %llu\n",
             models[m].name, (long long)models[m].version,
             (unsigned long long)models[m].snap.executions);

    emit(&w, "# HELP onnxserve_queued_requests Requests waiting in the model's queue.\n");
    emit(&w, "# TYPE onnxserve_queued_requests gauge\n");
    for (size_t m = 0; m < count; m++)
        emit(&w, "onnxserve_queued_requests{model=\"%s\",version=\"%lld\"} %d\n", models[m].name,
             (long long)models[m].version, models[m].queued);

    for (int k = 0; k < DURATION_KINDS; k++) {
        emit(&w, "# HELP %s %s\n", duration_families[k].name, duration_families[k].help);
        emit(&w, "# TYPE %s histogram\n", duration_families[k].name);
        for (size_t m = 0; m < count; m++) {
            snprintf(labels, sizeof(labels), "model=\"%s\",version=\"%lld\"", models[m].name,
                     (long long)models[m].version);
            write_histogram(&w, duration_families[k].name, labels, models[m].snap.durations[k],
                            duration_bounds_us, DURATION_BUCKETS,
                            models[m].snap.duration_sums[k], true);
        }
    }
    emit(&w, "# HELP onnxserve_batch_size Rows per run of the model.\n");
    emit(&w, "# TYPE onnxserve_batch_size histogram\n");
    for (size_t m = 0; m < count; m++) {
        snprintf(labels, sizeof(labels), "model=\"%s\",version=\"%lld\"", models[m].name,
                 (long long)models[m].version);
        write_histogram(&w, "onnxserve_batch_size", labels, models[m].snap.batches, batch_bounds,
                        BATCH_BUCKETS, models[m].snap.batch_rows, false);
    }

    emit(&w, "# HELP onnxserve_stuck_inferences_total Runs that the watchdog found running longer "
             "than the stuck-inference limit.\n");
    emit(&w, "# TYPE onnxserve_stuck_inferences_total counter\n");
    emit(&w, "onnxserve_stuck_inferences_total %llu\n",
         (unsigned long long)oxs__watchdog_stuck_total(server));

    emit(&w, "# HELP onnxserve_pending_requests Requests queued or running, over every model.\n");
    emit(&w, "# TYPE onnxserve_pending_requests gauge\n");
    emit(&w, "onnxserve_pending_requests %d\n", oxs_server_pending(server));
    oxs__gpu_write_metrics(server, emit_line, &w);

    for (size_t m = 0; m < count; m++)
        oxs_model_release(held[m]);
    oxs__free(&server->allocator, held);
    oxs__free(&server->allocator, models);
}
