/*
 * Definitions shared by the library's modules (core, backend, repository). Not installed.
 * Cross-file internal functions carry the oxs__ prefix.
 */
#ifndef OXS_CORE_INTERNAL_H
#define OXS_CORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "onnxserve.h"

/* ---- allocation (alloc.c) ----------------------------------------------------------------- */

void *oxs__malloc(const oxs_allocator_t *allocator, size_t size);
void *oxs__calloc(const oxs_allocator_t *allocator, size_t count, size_t size);
void oxs__free(const oxs_allocator_t *allocator, void *ptr);
char *oxs__strndup(const oxs_allocator_t *allocator, const char *text, size_t len);
char *oxs__strdup(const oxs_allocator_t *allocator, const char *text);

/* Writes a formatted message into error (if not NULL) and returns status. */
oxs_status_t oxs__fail(oxs_status_t status, char *error, size_t error_size, const char *format,
                       ...) __attribute__((format(printf, 4, 5)));

/* Replaces absolute filesystem paths in text with "<path>", in place. */
void oxs__redact_paths(char *text);

/* Replaces every occurrence of needle (a relative path, say) in text with "<path>", in place.
 * Needles shorter than the replacement are left alone. */
void oxs__redact_text(char *text, const char *needle);

/* Reads the whole file at path into *text (NUL-terminated, freed by the caller) and its
 * length. Returns 0, an errno value, or EFBIG when the file is over max_bytes. */
int oxs__read_file(const oxs_allocator_t *allocator, const char *path, size_t max_bytes,
                   char **text, size_t *len);

/* Returns the number of CPUs this process may run on, at least 1. */
int oxs__cpu_count(void);

/* Monotonic clock in microseconds. */
int64_t oxs__now_us(void);

/* ---- per-request arena (arena.c) ---------------------------------------------------------- */

typedef struct oxs__arena_chunk oxs__arena_chunk_t;

/* A bump allocator: allocations live until oxs__arena_reset, which keeps one chunk so a
 * reused arena does not allocate again for requests of the same size. */
typedef struct oxs__arena {
    const oxs_allocator_t *allocator;
    oxs__arena_chunk_t *head;  /* newest chunk; older ones follow through next */
    size_t chunk_size;         /* size of the next first chunk, grown to the kept chunk's size */
} oxs__arena_t;

void oxs__arena_init(oxs__arena_t *arena, const oxs_allocator_t *allocator, size_t chunk_size);
void *oxs__arena_alloc(oxs__arena_t *arena, size_t size); /* 16-byte aligned, NULL when out */
void oxs__arena_reset(oxs__arena_t *arena);
void oxs__arena_destroy(oxs__arena_t *arena);

/* ---- tensor buffer pool (pool.c) ---------------------------------------------------------- */

/* Buffers of power-of-two size classes, 64-byte aligned, kept on free lists for reuse. */
typedef struct oxs__pool oxs__pool_t;

oxs__pool_t *oxs__pool_create(const oxs_allocator_t *allocator, size_t max_cached_bytes);
void oxs__pool_destroy(oxs__pool_t *pool);
void *oxs__pool_get(oxs__pool_t *pool, size_t size); /* NULL when out of memory */
void oxs__pool_put(oxs__pool_t *pool, void *buffer);

/* ---- metrics (core/metrics.c) ---------------------------------------------------------------- */

/* How a request ended, as the metrics count it. */
typedef enum oxs__outcome {
    OXS__OUTCOME_SUCCESS,
    OXS__OUTCOME_REJECTED, /* queue full or shutting down: never queued */
    OXS__OUTCOME_TIMEOUT,
    OXS__OUTCOME_CANCELED,
    OXS__OUTCOME_INVALID,  /* the request did not match the model */
    OXS__OUTCOME_BACKEND,  /* ONNX Runtime or the server failed it */
    OXS__OUTCOME_COUNT,
} oxs__outcome_t;

/* A model's counters and histograms, one shard per thread, each written by that thread only. */
typedef struct oxs__metrics oxs__metrics_t;

oxs__metrics_t *oxs__metrics_create(const oxs_allocator_t *allocator);
void oxs__metrics_destroy(const oxs_allocator_t *allocator, oxs__metrics_t *metrics);

oxs__outcome_t oxs__outcome_of(oxs_status_t status);

/* Counts a request that ended with outcome before it was queued. */
void oxs__metrics_rejected(oxs__metrics_t *metrics, oxs__outcome_t outcome);

/* Counts a finished request and its durations: total_us from enqueue to completion, the rest
 * from its response. Instance thread. */
void oxs__metrics_finished(oxs__metrics_t *metrics, const oxs_response_t *response,
                           int64_t total_us, int64_t started_us, int64_t ended_us);

/* Counts one run of the model over rows rows. Instance thread. */
void oxs__metrics_execution(oxs__metrics_t *metrics, int64_t rows);

/* Returns the upper bound, in microseconds, of the histogram bucket that contains the 99th
 * percentile of the model's run times (ONNX Runtime's Run), or 0 before the first run. */
int64_t oxs__metrics_infer_p99_us(oxs__metrics_t *metrics);

/* Writes per-GPU memory and utilization for the GPUs that READY models place instances on,
 * read through NVML loaded at run time (core/gpu.c). Writes nothing without NVML or such a GPU. */
void oxs__gpu_write_metrics(oxs_server_t *server, void (*emit)(void *user, const char *line),
                            void *user);

/* ---- watchdog (core/watchdog.c) ----------------------------------------------------------- */

typedef struct oxs__watchdog oxs__watchdog_t;
oxs_status_t oxs__watchdog_start(oxs_server_t *server, char *error, size_t error_size);
void oxs__watchdog_stop(oxs_server_t *server); /* joins the thread and frees it */
/* Returns the number of stuck runs reported so far. */
uint64_t oxs__watchdog_stuck_total(const oxs_server_t *server);

/* ---- ONNX Runtime backend (backend/ort.c) ------------------------------------------------- */

typedef struct oxs__session oxs__session_t;
typedef struct oxs__scheduler oxs__scheduler_t;

/* Takes a reference on the process-wide ONNX Runtime environment, creating it on first use
 * with a global intra-op pool of intra_op_threads threads. */
oxs_status_t oxs__ort_acquire(int intra_op_threads, char *error, size_t error_size);
void oxs__ort_release(void);

/* ---- models (repository/registry.c and backend/ort.c) -------------------------------------- */

/* ---- per-model configuration (repository/config.c) ----------------------------------------- */

/* max_batch_size of a model whose batch dimension is found without a config.json saying. */
#define OXS_DEFAULT_MAX_BATCH_SIZE 8

/* A model's configuration and the storage behind it. */
typedef struct oxs__config {
    oxs_model_config_t config;
    bool batch_given;     /* config.json gave max_batch_size */
    bool groups_given;    /* config.json gave instance_group */
    char file[64];        /* the file's name for messages, "config.json" without one */
    char *warmup_storage; /* one block behind config.warmup_bodies */
} oxs__config_t;

/* Fills config with the server's options: no file, no batching, --workers instances. */
void oxs__config_defaults(const oxs_server_t *server, oxs_model_config_t *config);

/* Largest config.json read. */
#define OXS__MAX_CONFIG_BYTES (1 << 20)

/* Reads the config.json at path (named file in messages) over the defaults. On error the
 * message names the file, the key and the allowed values, and nothing is kept. */
oxs_status_t oxs__config_read(const oxs_server_t *server, const char *path, const char *file,
                              oxs__config_t *out, char *error, size_t error_size);

/* Parses config.json text (len bytes) like oxs__config_read. */
oxs_status_t oxs__config_parse(const oxs_server_t *server, const char *text, size_t len,
                               const char *file, oxs__config_t *out, char *error,
                               size_t error_size);

/* Completes a loaded model's configuration from its shapes: the batch dimension and
 * max_batch_size when config.json does not give them. */
oxs_status_t oxs__config_complete(oxs_model_t *model, oxs__config_t *config, char *error,
                                  size_t error_size);

void oxs__config_free(const oxs_server_t *server, oxs__config_t *config);

/* Storage behind one oxs_tensor_info_t. */
typedef struct oxs__io {
    oxs_tensor_info_t info;
    int onnx_element_type; /* ONNXTensorElementDataType */
    int64_t dims[OXS_MAX_DIMS];
} oxs__io_t;

struct oxs_model {
    atomic_int refs;
    oxs_server_t *server;
    char *name;
    int64_t version;
    _Atomic int state;      /* oxs_model_state_t */
    atomic_bool described;  /* inputs, outputs and metadata are written and stay until free */
    char reason[512];       /* why UNAVAILABLE, paths removed; written before state changes */
    int64_t load_us;

    /* Kept by the repository (repository.c) under its lock. */
    uint64_t files;         /* signature of the version folder's files it was loaded from */
    uint64_t config_text;   /* signature of the config.json text it was loaded with */
    bool failed;            /* UNAVAILABLE because loading these files failed */
    bool dormant;           /* a record not meant to serve: never loaded, or unloaded */
    const oxs_model_t *unloading; /* for an UNLOADING record: the model it waits for */
    oxs_model_t *retired_next;    /* on the repository thread's list of models to free */

    oxs__session_t *session;
    size_t input_count;
    size_t output_count;
    oxs__io_t *inputs;
    oxs__io_t *outputs;
    const char **input_names;  /* for Run, point into inputs[i].info.name */
    const char **output_names;

    oxs__metrics_t *metrics;   /* NULL for a record that serves nothing */
    oxs__config_t config;      /* in effect once READY */
    oxs__scheduler_t *scheduler; /* queue and instance threads, once loaded */

    oxs_model_metadata_t metadata;
    char *metadata_strings;    /* one allocation behind every metadata string */
    char **custom_storage;     /* keys then values, custom_capacity each */
    size_t custom_capacity;
};

/* Loads the ONNX file into model (name, version and server already set): creates the
 * session and fills inputs, outputs and metadata. */
oxs_status_t oxs__session_load(oxs_model_t *model, const char *path, char *error,
                               size_t error_size);
void oxs__session_unload(oxs_model_t *model);

/* Most requests one batch joins; batches of more wait for the next run. */
#define OXS__MAX_BATCH_REQUESTS 256

/* Runs the request's model on its inputs, fills the response's outputs. run_options is an
 * OrtRunOptions of the calling instance, which cancellation may terminate. */
void oxs__session_run(oxs_request_t *request, void *run_options);

/* Runs requests, whose inputs match apart from dim 0, as one batch concatenated along dim 0,
 * and splits the outputs back into each response. Fills every response, success or error. */
void oxs__session_run_batch(oxs_request_t **requests, size_t count, void *run_options);

/* An OrtRunOptions per instance, and terminating a run that uses it. */
void *oxs__run_options_create(void);
void oxs__run_options_destroy(void *options);
void oxs__run_options_terminate(void *options, bool terminate);

/* Releases an OrtValue held by a response. */
void oxs__value_release(void *value);

/* ---- requests -------------------------------------------------------------------------- */

typedef struct oxs__input {
    int index; /* model input index */
    oxs_datatype_t datatype;
    int rank;
    int64_t shape[OXS_MAX_DIMS];
    void *data; /* from the pool; BYTES: length-prefixed elements */
    size_t byte_size;
    size_t element_count;
} oxs__input_t;

typedef struct oxs__output {
    int index; /* model output index */
    void *value; /* OrtValue owned by the response */
    void *pooled; /* this request's rows of a batch output, from the tensor pool */
    oxs_tensor_view_t view;
    int64_t shape[OXS_MAX_DIMS];
} oxs__output_t;

struct oxs_response {
    oxs_status_t status;
    char error[512];
    size_t output_count;
    oxs__output_t *outputs; /* arena */
    int64_t queue_us;
    int64_t compute_us;
    int64_t infer_span_us[2]; /* monotonic start and end of ONNX Runtime's Run; 0 when not run */
    int batch_size; /* rows of the batch it ran in */
};

struct oxs_request {
    oxs_server_t *server;
    oxs_model_t *model;
    oxs_request_t *next_free; /* free list link while pooled */
    oxs__arena_t arena;

    char id[129];
    size_t id_len;
    char log_id[129]; /* the frontend's id for logs (X-Request-ID), or "" */

    size_t input_count;
    oxs__input_t *inputs;  /* model->input_count slots, arena */
    bool *output_selected; /* model->output_count, arena; NULL: every output */
    size_t selected_count;

    oxs_complete_fn callback;
    void *callback_user;
    int64_t enqueued_us;

    /* Scheduling, guarded by the model's scheduler lock once submitted. */
    oxs_request_t *queue_next;
    int priority;         /* 1 (highest) to the model's levels; 0 until submit */
    int64_t timeout_us;   /* from the caller; 0: the model's default_timeout_us */
    int64_t deadline_us;  /* monotonic; 0: none */
    int64_t rows;         /* dim 0 shared by every input, or -1 when they differ */
    atomic_bool canceled;
    bool running;
    void *instance;       /* the instance running it alone, for cancellation */

    oxs_response_t response;
};

/* Creates a request whatever the model's state: warmup runs while the model is LOADING. */
oxs_status_t oxs__request_create(oxs_server_t *server, oxs_model_t *model, oxs_request_t **out);

/* Returns the request's input for model input index, or NULL. */
const oxs__input_t *oxs__request_input(const oxs_request_t *request, int index);

/* ---- scheduler (core/scheduler.c) ----------------------------------------------------------- */

/* Starts a loaded model's instance threads and its queue, from its configuration. */
oxs_status_t oxs__scheduler_start(oxs_model_t *model, char *error, size_t error_size);

/* Runs what is queued, then joins the instance threads. Safe on a model that never started. */
void oxs__scheduler_stop(oxs_model_t *model);

/* Queues a request on its model: OXS_ERR_QUEUE_FULL at once when the model's queue is full. */
oxs_status_t oxs__scheduler_enqueue(oxs_request_t *request);

/* Marks a submitted request canceled; see oxs_request_cancel. */
void oxs__scheduler_cancel(oxs_request_t *request);

/* An inference the watchdog found running too long. */
typedef struct oxs__stuck {
    int instance;
    pthread_t thread;
    int64_t running_us;
    char request_id[129];
} oxs__stuck_t;

/* Looks for a run of the model that started threshold_us or more before now_us and has not been
 * reported: fills out and returns 1 for the first one, else 0. Sets *fatal when any run has
 * gone on for fatal_us (> 0) or more, reported or not. Watchdog thread. */
int oxs__scheduler_find_stuck(oxs_model_t *model, int64_t now_us, int64_t threshold_us,
                              int64_t fatal_us, oxs__stuck_t *out, bool *fatal);

/* Returns the number of requests waiting in the model's queue. */
int oxs__scheduler_queued(const oxs_model_t *model);

/* Called by an instance after a request's callback returned: the server's pending count. */
void oxs__server_request_done(oxs_server_t *server);

/* ---- server -------------------------------------------------------------------------------- */

typedef struct oxs__registry oxs__registry_t;
typedef struct oxs__control oxs__control_t;

struct oxs_server {
    oxs_options_t options;
    char *optimized_model_dir;
    oxs_allocator_t allocator;
    oxs__pool_t *pool;
    oxs__registry_t *registry;
    oxs__control_t *control;
    oxs__metrics_t *metrics; /* requests that reached no model */
    oxs__watchdog_t *watchdog;
    _Atomic int log_level;   /* oxs_log_level_t; options.log_level until changed */

    pthread_mutex_t lock;         /* counters, request free list */
    pthread_cond_t idle;          /* drain waits for pending == 0 */
    int pending;                  /* queued plus running, over every model */
    bool accepting;
    oxs_request_t *free_requests; /* pooled request objects */
    size_t free_request_count;
    bool ort_acquired;
};

/* Takes a request object from the server's free list (or allocates one) and returns it. */
oxs_request_t *oxs__request_take(oxs_server_t *server);
void oxs__request_give_back(oxs_server_t *server, oxs_request_t *request);

/* Queues a request for a worker; OXS_ERR_QUEUE_FULL or OXS_ERR_SHUTTING_DOWN at once. */
oxs_status_t oxs__server_enqueue(oxs_server_t *server, oxs_request_t *request);

/* Logs through the options' callback when the level is enabled. */
void oxs__log(const oxs_server_t *server, oxs_log_level_t level, const char *model,
              const char *msg, const oxs_log_field_t *fields, size_t field_count);

/* Registry (repository/registry.c). */
oxs__registry_t *oxs__registry_create(oxs_server_t *server);
/* Stops every model's scheduler, running what is queued first. */
void oxs__registry_stop(oxs__registry_t *registry);
void oxs__registry_destroy(oxs__registry_t *registry);

/* Releases what a model holds; called when its last reference goes. Not on one of the
 * model's own instance threads, which it joins. */
void oxs__model_free(oxs_model_t *model);

/* Repository thread (repository/repository.c): runs repository actions and the poll, and
 * frees models whose last reference went, so that no instance thread ever joins itself. */
oxs_status_t oxs__control_start(oxs_server_t *server, char *error, size_t error_size);
/* Finishes the action running, frees the models handed over, and joins the thread. */
void oxs__control_stop(oxs_server_t *server);
/* Frees what oxs__control_start made; after oxs__control_stop and the registry's destroy. */
void oxs__control_destroy(oxs_server_t *server);
/* Hands a model whose last reference went to the repository thread, or frees it now when the
 * thread has stopped. */
void oxs__control_retire(oxs_model_t *model);

#endif /* OXS_CORE_INTERNAL_H */
