/*
 * Per-model scheduler: a bounded queue with priority levels, the model's instance threads, and
 * the dynamic batcher that joins queued requests of matching shapes along dim 0.
 *
 * Threads: oxs__scheduler_start starts one thread per instance of the model, named
 * oxs-worker, when the model loads; none is created on the request path. One instance at a
 * time forms a batch, waiting at most the batch delay for requests to join. The others wait
 * for it, so that arrivals join that batch instead of running alone.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/adaptive.h"
#include "core/internal.h"

/* A waiting lower priority level gets one turn after this many turns of higher levels. */
#define AGING_TURNS 16

typedef struct instance {
    oxs__scheduler_t *scheduler;
    pthread_t thread;
    bool started;
    int device; /* GPU id from its group's gpus, or -1 on the CPU */
    void *run_options; /* OrtRunOptions, terminated to cancel the request it runs alone */
    /* The thread's batch, allocated before the thread starts so that running out of memory
     * fails the load instead of leaving a READY model without this instance. The thread frees
     * it when it exits. */
    struct batch *batch;
    /* The run in progress, for the watchdog; guarded by the scheduler lock. */
    int64_t run_started_us; /* 0 while idle */
    char request_id[129];   /* of the run's first request */
    int64_t reported_us;    /* run_started_us of the run the watchdog reported, else 0 */
} instance_t;

typedef struct level {
    oxs_request_t *head;
    oxs_request_t *tail;
    int passed; /* turns given to higher levels while this one waited */
} level_t;

struct oxs__scheduler {
    oxs_model_t *model;
    const oxs_model_config_t *config;
    pthread_mutex_t lock;
    pthread_cond_t ready;   /* work arrived, a batch was formed, or stop */
    level_t *levels;        /* config->priority_levels, or 1 */
    int level_count;
    size_t queued;
    bool forming;           /* an instance is waiting for a batch to fill */
    bool stopping;
    instance_t *instances;
    int instance_count;
    oxs__adaptive_t adaptive; /* used when target_p99_ms is set */
};

/* ---- queue ---------------------------------------------------------------------------------- */

static void level_push(level_t *level, oxs_request_t *request)
{
    request->queue_next = NULL;
    if (level->tail != NULL)
        level->tail->queue_next = request;
    else
        level->head = request;
    level->tail = request;
}

/* Unlinks request, whose predecessor in level is previous (NULL for the head). */
static void level_unlink(level_t *level, oxs_request_t *previous, oxs_request_t *request)
{
    if (previous != NULL)
        previous->queue_next = request->queue_next;
    else
        level->head = request->queue_next;
    if (level->tail == request)
        level->tail = previous;
    request->queue_next = NULL;
}

/* Picks the level to serve: the highest one that has requests, unless a lower one has waited
 * AGING_TURNS turns. */
static int pick_level(oxs__scheduler_t *s)
{
    int chosen = -1;
    for (int i = 0; i < s->level_count; i++) {
        if (s->levels[i].head == NULL)
            continue;
        if (chosen < 0)
            chosen = i;
        else if (s->levels[i].passed >= AGING_TURNS) {
            chosen = i;
            break;
        }
    }
    if (chosen < 0)
        return -1;
    s->levels[chosen].passed = 0;
    for (int i = chosen + 1; i < s->level_count; i++)
        if (s->levels[i].head != NULL)
            s->levels[i].passed++;
    return chosen;
}

/* True when the request must not run: canceled, or its queue deadline has passed. */
static bool is_dead(const oxs_request_t *request, int64_t now)
{
    return atomic_load(&request->canceled) ||
           (request->deadline_us != 0 && now > request->deadline_us);
}

/* Two requests can share a batch when every input has the same dims apart from dim 0 and they
 * ask for the same outputs. */
static bool compatible(const oxs_request_t *a, const oxs_request_t *b)
{
    if (b->rows < 0 || a->input_count != b->input_count)
        return false;
    for (size_t i = 0; i < a->input_count; i++) {
        const oxs__input_t *x = &a->inputs[i];
        const oxs__input_t *y = oxs__request_input(b, x->index);
        if (y == NULL || y->rank != x->rank)
            return false;
        for (int d = 1; d < x->rank; d++)
            if (x->shape[d] != y->shape[d])
                return false;
    }
    size_t outputs = a->model->output_count;
    if ((a->output_selected == NULL) != (b->output_selected == NULL))
        return false;
    return a->output_selected == NULL ||
           memcmp(a->output_selected, b->output_selected, outputs * sizeof(bool)) == 0;
}

/* ---- batches --------------------------------------------------------------------------------- */

typedef struct batch {
    oxs_request_t *run[OXS__MAX_BATCH_REQUESTS];
    size_t run_count;
    int64_t rows;
    oxs_request_t *dead; /* canceled or expired, completed without running */
} batch_t;

static void take_dead(oxs__scheduler_t *s, batch_t *batch, level_t *level,
                      oxs_request_t *previous, oxs_request_t *request)
{
    level_unlink(level, previous, request);
    s->queued--;
    request->queue_next = batch->dead;
    batch->dead = request;
}

/* Moves queued requests that fit the batch into it, highest level first. */
static void gather(oxs__scheduler_t *s, batch_t *batch, int64_t now)
{
    int max_rows = s->config->max_batch_size;
    for (int i = 0; i < s->level_count; i++) {
        level_t *level = &s->levels[i];
        oxs_request_t *previous = NULL;
        oxs_request_t *request = level->head;
        while (request != NULL && batch->run_count < OXS__MAX_BATCH_REQUESTS &&
               batch->rows < max_rows) {
            oxs_request_t *next = request->queue_next;
            if (is_dead(request, now)) {
                take_dead(s, batch, level, previous, request);
            } else if (batch->rows + request->rows <= max_rows &&
                       compatible(batch->run[0], request)) {
                level_unlink(level, previous, request);
                s->queued--;
                batch->run[batch->run_count++] = request;
                batch->rows += request->rows;
            } else {
                previous = request;
            }
            request = next;
        }
    }
}

static bool is_preferred(const oxs_model_config_t *config, int64_t rows)
{
    for (int i = 0; i < config->preferred_batch_size_count; i++)
        if (config->preferred_batch_sizes[i] == rows)
            return true;
    return false;
}

static void deadline_timespec(int64_t until_us, struct timespec *out)
{
    /* The condition variable uses CLOCK_MONOTONIC, like oxs__now_us. */
    out->tv_sec = (time_t)(until_us / 1000000);
    out->tv_nsec = (long)(until_us % 1000000) * 1000;
}

/* Takes the next request and, when the model batches, the queued requests that join it,
 * waiting at most the batch delay for more. Returns false when stopping with nothing queued. */
static bool next_batch(oxs__scheduler_t *s, batch_t *batch)
{
    memset(batch, 0, sizeof(*batch));
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while ((s->queued == 0 || s->forming) && !s->stopping)
            pthread_cond_wait(&s->ready, &s->lock);
        if (s->queued == 0) {
            pthread_mutex_unlock(&s->lock);
            return false;
        }

        int chosen = pick_level(s);
        level_t *level = &s->levels[chosen];
        oxs_request_t *first = level->head;
        level_unlink(level, NULL, first);
        s->queued--;
        int64_t now = oxs__now_us();
        if (is_dead(first, now)) {
            first->queue_next = batch->dead;
            batch->dead = first;
            if (s->queued == 0)
                break;
            continue;
        }
        batch->run[0] = first;
        batch->run_count = 1;
        batch->rows = first->rows;
        break;
    }

    const oxs_model_config_t *config = s->config;
    bool batching = config->dynamic_batching && batch->run_count == 1 && batch->run[0]->rows >= 0;
    if (batching) {
        int64_t delay = config->target_p99_ms > 0 ? oxs__adaptive_delay_us(&s->adaptive)
                                                  : config->max_queue_delay_us;
        int64_t until = batch->run[0]->enqueued_us + delay;
        s->forming = true;
        for (;;) {
            int64_t now = oxs__now_us();
            gather(s, batch, now);
            if (batch->rows >= config->max_batch_size || s->stopping ||
                batch->run_count == OXS__MAX_BATCH_REQUESTS || now >= until ||
                (is_preferred(config, batch->rows) && s->queued == 0))
                break;
            struct timespec wake;
            deadline_timespec(until, &wake);
            pthread_cond_timedwait(&s->ready, &s->lock, &wake);
        }
        s->forming = false;
        pthread_cond_broadcast(&s->ready); /* the next instance may form a batch */
    }
    for (size_t i = 0; i < batch->run_count; i++)
        batch->run[i]->running = true;
    pthread_mutex_unlock(&s->lock);
    return true;
}

/* Counts a finished request in its model's metrics, hands it to its callback and counts it
 * done. started_us and ended_us bound its run (0 when it did not run). */
static void finish(oxs_request_t *request, int64_t started_us, int64_t ended_us)
{
    oxs_server_t *server = request->server;
    if (request->model->metrics != NULL)
        oxs__metrics_finished(request->model->metrics, &request->response,
                              oxs__now_us() - request->enqueued_us, started_us, ended_us);
    request->callback(request->callback_user, &request->response);
    oxs__server_request_done(server);
}

static void answer_dead(oxs_request_t *request, int64_t now)
{
    oxs_response_t *response = &request->response;
    response->queue_us = now - request->enqueued_us;
    response->output_count = 0;
    if (atomic_load(&request->canceled)) {
        response->status = OXS_ERR_CANCELED;
        snprintf(response->error, sizeof(response->error),
                 "model \"%s\": request canceled before it ran", request->model->name);
    } else {
        response->status = OXS_ERR_TIMEOUT;
        snprintf(response->error, sizeof(response->error),
                 "model \"%s\": the request's deadline of %lld us passed after %lld us in the "
                 "queue, before it ran",
                 request->model->name, (long long)(request->deadline_us - request->enqueued_us),
                 (long long)response->queue_us);
    }
    finish(request, 0, 0);
}

static void run_batch(instance_t *instance, batch_t *batch)
{
    oxs__scheduler_t *s = instance->scheduler;
    int64_t started = oxs__now_us();
    for (size_t i = 0; i < batch->run_count; i++)
        batch->run[i]->response.queue_us = started - batch->run[i]->enqueued_us;
    pthread_mutex_lock(&s->lock);
    instance->run_started_us = started;
    const oxs_request_t *first = batch->run[0];
    snprintf(instance->request_id, sizeof(instance->request_id), "%s",
             first->log_id[0] != '\0' ? first->log_id : first->id);
    pthread_mutex_unlock(&s->lock);

    if (batch->run_count == 1) {
        oxs_request_t *request = batch->run[0];
        pthread_mutex_lock(&s->lock);
        request->instance = instance; /* lets oxs__scheduler_cancel terminate the run */
        pthread_mutex_unlock(&s->lock);
        if (atomic_load(&request->canceled))
            oxs__run_options_terminate(instance->run_options, true);
        oxs__session_run(request, instance->run_options);
        pthread_mutex_lock(&s->lock);
        request->instance = NULL;
        oxs__run_options_terminate(instance->run_options, false);
        pthread_mutex_unlock(&s->lock);
    } else {
        oxs__session_run_batch(batch->run, batch->run_count, instance->run_options);
    }

    int64_t ended = oxs__now_us();
    pthread_mutex_lock(&s->lock);
    instance->run_started_us = 0;
    pthread_mutex_unlock(&s->lock);
    /* A request that cannot batch (rows -1) counts as one inference. */
    if (s->model->metrics != NULL)
        oxs__metrics_execution(s->model->metrics,
                               batch->rows > 0 ? batch->rows : (int64_t)batch->run_count);
    for (size_t i = 0; i < batch->run_count; i++) {
        oxs_request_t *request = batch->run[i];
        request->response.compute_us = ended - started;
        request->response.batch_size = (int)batch->rows;
    }
    if (s->config->target_p99_ms > 0) {
        pthread_mutex_lock(&s->lock);
        for (size_t i = 0; i < batch->run_count; i++)
            oxs__adaptive_record(&s->adaptive, ended, ended - batch->run[i]->enqueued_us,
                                 ended - started, batch->rows);
        pthread_mutex_unlock(&s->lock);
    }
    for (size_t i = 0; i < batch->run_count; i++) {
        batch->run[i]->running = false;
        finish(batch->run[i], started, ended);
    }
}

static void *instance_main(void *arg)
{
    instance_t *instance = arg;
    batch_t *batch = instance->batch;

    while (next_batch(instance->scheduler, batch)) {
        int64_t now = oxs__now_us();
        while (batch->dead != NULL) {
            oxs_request_t *request = batch->dead;
            batch->dead = request->queue_next;
            answer_dead(request, now);
        }
        if (batch->run_count > 0)
            run_batch(instance, batch);
    }
    oxs__free(&instance->scheduler->model->server->allocator, batch);
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

oxs_status_t oxs__scheduler_start(oxs_model_t *model, char *error, size_t error_size)
{
    const oxs_allocator_t *allocator = &model->server->allocator;
    const oxs_model_config_t *config = &model->config.config;
    oxs__scheduler_t *s = oxs__calloc(allocator, 1, sizeof(*s));
    if (s == NULL)
        return oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
    model->scheduler = s;
    s->model = model;
    s->config = config;
    s->level_count = config->priority_levels > 0 ? config->priority_levels : 1;
    s->levels = oxs__calloc(allocator, (size_t)s->level_count, sizeof(*s->levels));
    s->instances = oxs__calloc(allocator, (size_t)config->instance_count, sizeof(*s->instances));
    if (s->levels == NULL || s->instances == NULL)
        return oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");

    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->ready, &attributes);
    pthread_condattr_destroy(&attributes);
    if (config->target_p99_ms > 0)
        oxs__adaptive_init(&s->adaptive, (int64_t)(config->target_p99_ms * 1000));

    /* Placement: each group's instances take its GPU ids in turn. NOTE: GPU instances run on
     * the CPU until sessions are bound to CUDA devices; the device is recorded and logged. */
    char placement[256] = "";
    size_t used = 0;
    for (int g = 0, i = 0; g < config->instance_group_count; g++) {
        const oxs_instance_group_t *group = &config->instance_groups[g];
        for (int k = 0; k < group->count && i < config->instance_count; k++, i++) {
            bool gpu = group->kind == OXS_INSTANCE_GPU;
            s->instances[i].device = gpu ? (group->gpu_count > 0 ? group->gpus[k % group->gpu_count] : 0)
                                         : -1;
            int n = gpu ? snprintf(placement + used, sizeof(placement) - used, "%sgpu%d",
                                   i ? "," : "", s->instances[i].device)
                        : snprintf(placement + used, sizeof(placement) - used, "%scpu",
                                   i ? "," : "");
            used += n > 0 && (size_t)n < sizeof(placement) - used ? (size_t)n : 0;
        }
    }

    for (int i = 0; i < config->instance_count; i++) {
        instance_t *instance = &s->instances[i];
        instance->scheduler = s;
        instance->run_options = oxs__run_options_create();
        if (instance->run_options == NULL)
            return oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size,
                             "creating run options failed");
        instance->batch = oxs__malloc(allocator, sizeof(*instance->batch));
        if (instance->batch == NULL)
            return oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size,
                             "out of memory starting instance %d of model \"%s\"", i,
                             model->name);
        int rc = pthread_create(&instance->thread, NULL, instance_main, instance);
        if (rc != 0) {
            oxs__free(allocator, instance->batch);
            instance->batch = NULL;
            return oxs__fail(OXS_ERR_INTERNAL, error, error_size,
                             "starting instance %d of model \"%s\" failed: %s", i, model->name,
                             strerror(rc));
        }
        instance->started = true;
        s->instance_count = i + 1;
        /* Named before create returns, so the thread test counts it at any time. */
        pthread_setname_np(instance->thread, "oxs-worker");
    }
    oxs_log_field_t fields[] = {
        {.key = "instances", .num = config->instance_count},
        {.key = "intra_op_threads", .num = config->intra_op_threads},
        {.key = "max_batch_size", .num = config->max_batch_size},
        {.key = "dynamic_batching", .num = config->dynamic_batching},
        {.key = "max_queue_size", .num = config->max_queue_size},
        {.key = "priority_levels", .num = config->priority_levels},
        {.key = "placement", .str = placement},
    };
    oxs__log(model->server, OXS_LOG_INFO, model->name, "model scheduler started", fields,
             sizeof(fields) / sizeof(fields[0]));
    return OXS_OK;
}

void oxs__scheduler_stop(oxs_model_t *model)
{
    oxs__scheduler_t *s = model->scheduler;
    if (s == NULL)
        return;
    if (s->levels != NULL && s->instances != NULL) {
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_broadcast(&s->ready);
        pthread_mutex_unlock(&s->lock);
    }
    for (int i = 0; i < s->instance_count; i++)
        if (s->instances[i].started)
            pthread_join(s->instances[i].thread, NULL);
    const oxs_allocator_t *allocator = &model->server->allocator;
    if (s->instances != NULL) {
        for (int i = 0; i < model->config.config.instance_count; i++)
            oxs__run_options_destroy(s->instances[i].run_options);
        pthread_cond_destroy(&s->ready);
        pthread_mutex_destroy(&s->lock);
    }
    oxs__free(allocator, s->instances);
    oxs__free(allocator, s->levels);
    oxs__free(allocator, s);
    model->scheduler = NULL;
}

/* ---- requests -------------------------------------------------------------------------------- */

oxs_status_t oxs__scheduler_enqueue(oxs_request_t *request)
{
    oxs__scheduler_t *s = request->model->scheduler;
    const oxs_model_config_t *config = s->config;
    oxs_status_t result = OXS_OK;

    pthread_mutex_lock(&s->lock);
    if (s->stopping) {
        result = OXS_ERR_SHUTTING_DOWN;
    } else if (s->queued >= (size_t)config->max_queue_size) {
        result = OXS_ERR_QUEUE_FULL;
    } else {
        int64_t now = oxs__now_us();
        int64_t timeout = request->timeout_us > 0 ? request->timeout_us
                                                  : config->default_timeout_us;
        request->enqueued_us = now;
        request->deadline_us = timeout > 0 ? now + timeout : 0;
        level_push(&s->levels[request->priority > 0 ? request->priority - 1 : 0], request);
        s->queued++;
        pthread_cond_broadcast(&s->ready);
    }
    pthread_mutex_unlock(&s->lock);
    return result;
}

void oxs__scheduler_cancel(oxs_request_t *request)
{
    oxs__scheduler_t *s = request->model->scheduler;
    pthread_mutex_lock(&s->lock);
    atomic_store(&request->canceled, true);
    if (request->instance != NULL)
        oxs__run_options_terminate(((instance_t *)request->instance)->run_options, true);
    pthread_mutex_unlock(&s->lock);
}

int oxs__scheduler_find_stuck(oxs_model_t *model, int64_t now_us, int64_t threshold_us,
                               int64_t fatal_us, oxs__stuck_t *out, bool *fatal)
{
    oxs__scheduler_t *s = model->scheduler;
    int found = 0;
    if (s == NULL)
        return 0;
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->instance_count; i++) {
        instance_t *instance = &s->instances[i];
        int64_t started = instance->run_started_us;
        if (started == 0 || now_us - started < threshold_us)
            continue;
        if (fatal_us > 0 && now_us - started >= fatal_us)
            *fatal = true;
        if (instance->reported_us == started || found > 0)
            continue; /* one report per run, and one per call */
        instance->reported_us = started;
        out->instance = i;
        out->thread = instance->thread;
        out->running_us = now_us - started;
        snprintf(out->request_id, sizeof(out->request_id), "%s", instance->request_id);
        found = 1;
    }
    pthread_mutex_unlock(&s->lock);
    return found;
}

int oxs__scheduler_queued(const oxs_model_t *model)
{
    oxs__scheduler_t *s = model->scheduler;
    if (s == NULL)
        return 0;
    pthread_mutex_lock(&s->lock);
    int queued = (int)s->queued;
    pthread_mutex_unlock(&s->lock);
    return queued;
}
