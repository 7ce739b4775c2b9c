/*
 * Server context: options, the count of pending requests and the request free list. Each
 * model's queue and instance threads live in its scheduler (scheduler.c).
 *
 * Threads: oxs_server_create starts none; each model starts its instances when it loads, and
 * ONNX Runtime's process-wide pool is created with the first server. The request path never
 * creates threads.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"

#define REQUEST_ARENA_CHUNK 8192

void oxs_options_init(oxs_options_t *options)
{
    memset(options, 0, sizeof(*options));
    options->workers = 1;
    options->queue_size = 128;
    options->intra_op_threads = 1;
    options->graph_optimization = OXS_GRAPH_OPT_ALL;
    options->enable_mem_arena = 1;
    options->enable_mem_pattern = 1;
    options->optimized_model_dir = NULL;
    oxs_limits_init(&options->limits);
    options->log_level = OXS_LOG_INFO;
    options->control_mode = OXS_CONTROL_NONE;
    options->poll_secs = 15;
}

void oxs_limits_init(oxs_limits_t *limits)
{
    limits->max_tensor_bytes = (size_t)256 << 20;
    limits->max_tensor_elements = (size_t)64 << 20;
    limits->max_tensor_rank = 8;
    limits->max_inputs = 256;
    limits->max_outputs = 256;
    limits->max_bytes_element = (size_t)16 << 20;
    limits->max_json_depth = 32;
}

void oxs__log(const oxs_server_t *server, oxs_log_level_t level, const char *model,
              const char *msg, const oxs_log_field_t *fields, size_t field_count)
{
    if (server->options.log_fn == NULL ||
        (int)level > atomic_load_explicit(&((oxs_server_t *)server)->log_level,
                                          memory_order_relaxed))
        return;
    server->options.log_fn(server->options.log_user, level, model, msg, fields, field_count);
}

static oxs_status_t validate_limits(const oxs_limits_t *limits, char *error, size_t error_size)
{
    const struct {
        const char *name;
        size_t value;
    } sizes[] = {
        {"max_tensor_bytes", limits->max_tensor_bytes},
        {"max_tensor_elements", limits->max_tensor_elements},
        {"max_bytes_element", limits->max_bytes_element},
    };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        if (sizes[i].value == 0)
            return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                             "%s: invalid value 0, expected a positive size", sizes[i].name);

    const struct {
        const char *name;
        int value, min, max;
    } counts[] = {
        {"max_tensor_rank", limits->max_tensor_rank, 0, OXS_MAX_DIMS},
        {"max_inputs", limits->max_inputs, 1, 1000000},
        {"max_outputs", limits->max_outputs, 1, 1000000},
        {"max_json_depth", limits->max_json_depth, 2, 1024},
    };
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
        if (counts[i].value < counts[i].min || counts[i].value > counts[i].max)
            return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                             "%s: invalid value %d, expected %d to %d", counts[i].name,
                             counts[i].value, counts[i].min, counts[i].max);
    return OXS_OK;
}

static oxs_status_t validate_options(const oxs_options_t *options, char *error,
                                     size_t error_size)
{
    if (options->workers < 1 || options->workers > 1024)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "workers: invalid value %d, expected 1 to 1024", options->workers);
    if (options->queue_size < 1 || options->queue_size > 1000000)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "queue_size: invalid value %d, expected 1 to 1000000",
                         options->queue_size);
    if (options->intra_op_threads < 1 || options->intra_op_threads > 1024)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "intra_op_threads: invalid value %d, expected 1 to 1024",
                         options->intra_op_threads);
    if (options->control_mode != OXS_CONTROL_NONE && options->control_mode != OXS_CONTROL_POLL &&
        options->control_mode != OXS_CONTROL_EXPLICIT)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "control_mode: invalid value %d, expected none, poll or explicit",
                         (int)options->control_mode);
    if (options->poll_secs < 1 || options->poll_secs > 86400)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "poll_secs: invalid value %d, expected 1 to 86400", options->poll_secs);
    if (options->stuck_inference_ms < 0 || options->stuck_inference_fatal_ms < 0)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "stuck_inference_ms and stuck_inference_fatal_ms: expected 0 or more");
    return validate_limits(&options->limits, error, error_size);
}

oxs_status_t oxs_server_create(const oxs_options_t *options, oxs_server_t **out, char *error,
                               size_t error_size)
{
    oxs_options_t defaults;
    oxs_status_t result;
    *out = NULL;

    if (options == NULL) {
        oxs_options_init(&defaults);
        options = &defaults;
    }
    if ((result = validate_options(options, error, error_size)) != OXS_OK)
        return result;

    oxs_allocator_t allocator = options->allocator;
    oxs_server_t *server = oxs__calloc(&allocator, 1, sizeof(*server));
    if (server == NULL)
        return oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
    server->options = *options;
    atomic_init(&server->log_level, (int)options->log_level);
    server->allocator = allocator;
    server->accepting = true;
    pthread_mutex_init(&server->lock, NULL);
    pthread_cond_init(&server->idle, NULL);

    if (options->optimized_model_dir != NULL) {
        server->optimized_model_dir = oxs__strdup(&server->allocator, options->optimized_model_dir);
        if (server->optimized_model_dir == NULL)
            goto out_of_memory;
    }
    server->options.optimized_model_dir = server->optimized_model_dir;

    /* Pooled buffers are capped at a few requests' worth of the largest tensor. */
    server->pool = oxs__pool_create(&server->allocator, (size_t)512 << 20);
    server->registry = oxs__registry_create(server);
    server->metrics = oxs__metrics_create(&server->allocator);
    if (server->pool == NULL || server->registry == NULL || server->metrics == NULL)
        goto out_of_memory;

    if ((result = oxs__ort_acquire(options->intra_op_threads, error, error_size)) != OXS_OK)
        goto failed;
    server->ort_acquired = true;
    if ((result = oxs__control_start(server, error, error_size)) != OXS_OK ||
        (result = oxs__watchdog_start(server, error, error_size)) != OXS_OK)
        goto failed;

    *out = server;
    return OXS_OK;

out_of_memory:
    result = oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
failed:
    oxs_server_destroy(server);
    return result;
}

void oxs_server_set_log_level(oxs_server_t *server, oxs_log_level_t level)
{
    atomic_store_explicit(&server->log_level, (int)level, memory_order_relaxed);
}

void oxs_server_stop_accepting(oxs_server_t *server)
{
    pthread_mutex_lock(&server->lock);
    server->accepting = false;
    pthread_mutex_unlock(&server->lock);
}

int oxs_server_pending(const oxs_server_t *server)
{
    oxs_server_t *mutable_server = (oxs_server_t *)server;
    pthread_mutex_lock(&mutable_server->lock);
    int pending = server->pending;
    pthread_mutex_unlock(&mutable_server->lock);
    return pending;
}

int oxs_server_drain(oxs_server_t *server, int64_t timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    if (timeout_ms >= 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }

    pthread_mutex_lock(&server->lock);
    while (server->pending > 0) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&server->idle, &server->lock);
        } else if (pthread_cond_timedwait(&server->idle, &server->lock, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    int pending = server->pending;
    pthread_mutex_unlock(&server->lock);
    return pending;
}

void oxs_server_destroy(oxs_server_t *server)
{
    if (server == NULL)
        return;

    pthread_mutex_lock(&server->lock);
    server->accepting = false;
    pthread_mutex_unlock(&server->lock);
    /* Requests hold models that are no longer registered (replaced or unloaded); once they
     * are done, the repository thread frees those models and can stop. */
    oxs_server_drain(server, -1);
    oxs__watchdog_stop(server);
    oxs__control_stop(server);
    if (server->registry != NULL)
        oxs__registry_stop(server->registry);

    /* Instances ran every queued request before exiting, so only pooled requests remain. */
    oxs_request_t *request = server->free_requests;
    while (request != NULL) {
        oxs_request_t *next = request->next_free;
        oxs__arena_destroy(&request->arena);
        oxs__free(&server->allocator, request);
        request = next;
    }

    oxs__registry_destroy(server->registry);
    oxs__control_destroy(server);
    oxs__metrics_destroy(&server->allocator, server->metrics);
    oxs__pool_destroy(server->pool);
    if (server->ort_acquired)
        oxs__ort_release();
    pthread_cond_destroy(&server->idle);
    pthread_mutex_destroy(&server->lock);
    oxs__free(&server->allocator, server->optimized_model_dir);
    oxs_allocator_t allocator = server->allocator;
    oxs__free(&allocator, server);
}

/* ---- pending requests ---------------------------------------------------------------------- */

oxs_status_t oxs__server_enqueue(oxs_server_t *server, oxs_request_t *request)
{
    pthread_mutex_lock(&server->lock);
    bool accepting = server->accepting;
    if (accepting)
        server->pending++;
    pthread_mutex_unlock(&server->lock);
    if (!accepting)
        return OXS_ERR_SHUTTING_DOWN;

    oxs_status_t result = oxs__scheduler_enqueue(request);
    if (result != OXS_OK)
        oxs__server_request_done(server);
    return result;
}

void oxs__server_request_done(oxs_server_t *server)
{
    pthread_mutex_lock(&server->lock);
    if (--server->pending == 0)
        pthread_cond_broadcast(&server->idle);
    pthread_mutex_unlock(&server->lock);
}

/* ---- request pooling -------------------------------------------------------------------- */

oxs_request_t *oxs__request_take(oxs_server_t *server)
{
    pthread_mutex_lock(&server->lock);
    oxs_request_t *request = server->free_requests;
    if (request != NULL) {
        server->free_requests = request->next_free;
        server->free_request_count--;
    }
    pthread_mutex_unlock(&server->lock);

    if (request == NULL) {
        request = oxs__calloc(&server->allocator, 1, sizeof(*request));
        if (request == NULL)
            return NULL;
        oxs__arena_init(&request->arena, &server->allocator, REQUEST_ARENA_CHUNK);
    }
    return request;
}

void oxs__request_give_back(oxs_server_t *server, oxs_request_t *request)
{
    /* Keep enough objects for a full queue plus the running requests; free the rest. */
    size_t keep = (size_t)server->options.queue_size + (size_t)server->options.workers + 16;
    oxs__arena_reset(&request->arena);

    pthread_mutex_lock(&server->lock);
    bool pooled = server->free_request_count < keep;
    if (pooled) {
        request->next_free = server->free_requests;
        server->free_requests = request;
        server->free_request_count++;
    }
    pthread_mutex_unlock(&server->lock);

    if (!pooled) {
        oxs__arena_destroy(&request->arena);
        oxs__free(&server->allocator, request);
    }
}
