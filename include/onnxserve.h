/*
 * onnxserve: load ONNX models once and run inference requests on a fixed pool of threads.
 *
 * Every exported symbol starts with oxs_. All state hangs off an oxs_server_t, so several
 * servers can live in one process. The library never prints or aborts. It creates threads only
 * when a model loads (the model's instances), never on the request path, and reports through
 * return codes and an optional log callback.
 *
 * Threads: functions marked "any thread" may be called concurrently. Completion callbacks run
 * on one of the model's instance threads and must not block for long.
 */
#ifndef ONNXSERVE_H
#define ONNXSERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OXS_VERSION "0.1.0"

/* ---------------------------------------------------------------------------------------------
 * Status codes. The numbers never change meaning; new codes are appended.
 * X(code, name, default message)
 */
#define OXS_STATUS_TABLE(X)                                                     \
    X(OXS_OK, 0, "ok")                                                          \
    X(OXS_ERR_INVALID_ARGUMENT, 1, "invalid argument")                          \
    X(OXS_ERR_NOT_FOUND, 2, "not found")                                        \
    X(OXS_ERR_UNAVAILABLE, 3, "unavailable")                                    \
    X(OXS_ERR_QUEUE_FULL, 4, "request queue is full")                           \
    X(OXS_ERR_TOO_LARGE, 5, "too large")                                        \
    X(OXS_ERR_UNSUPPORTED, 6, "unsupported")                                    \
    X(OXS_ERR_OUT_OF_MEMORY, 7, "out of memory")                                \
    X(OXS_ERR_SHUTTING_DOWN, 8, "server is shutting down")                      \
    X(OXS_ERR_RUNTIME, 9, "inference failed")                                   \
    X(OXS_ERR_INTERNAL, 10, "internal error")                                  \
    X(OXS_ERR_TIMEOUT, 11, "deadline passed before the request ran")            \
    X(OXS_ERR_CANCELED, 12, "request canceled")                                 \
    X(OXS_ERR_FORBIDDEN, 13, "not allowed by the server's configuration")

typedef enum oxs_status {
#define OXS__STATUS_ENUM(code, number, message) code = number,
    OXS_STATUS_TABLE(OXS__STATUS_ENUM)
#undef OXS__STATUS_ENUM
} oxs_status_t;

/* Returns the enum name of a status ("OXS_ERR_NOT_FOUND"), or "OXS_UNKNOWN". Any thread. */
const char *oxs_status_name(oxs_status_t status);
/* Returns the default message of a status ("not found"). Any thread. */
const char *oxs_status_message(oxs_status_t status);

/* ---------------------------------------------------------------------------------------------
 * Datatypes, named as the KServe v2 protocol names them.
 * X(code, protocol name, element size in bytes)
 */
#define OXS_DATATYPE_TABLE(X)                                                   \
    X(OXS_DT_INVALID, "INVALID", 0)                                             \
    X(OXS_DT_BOOL, "BOOL", 1)                                                   \
    X(OXS_DT_UINT8, "UINT8", 1)                                                 \
    X(OXS_DT_UINT16, "UINT16", 2)                                               \
    X(OXS_DT_UINT32, "UINT32", 4)                                               \
    X(OXS_DT_UINT64, "UINT64", 8)                                               \
    X(OXS_DT_INT8, "INT8", 1)                                                   \
    X(OXS_DT_INT16, "INT16", 2)                                                 \
    X(OXS_DT_INT32, "INT32", 4)                                                 \
    X(OXS_DT_INT64, "INT64", 8)                                                 \
    X(OXS_DT_FP16, "FP16", 2)                                                   \
    X(OXS_DT_FP32, "FP32", 4)                                                   \
    X(OXS_DT_FP64, "FP64", 8)                                                   \
    X(OXS_DT_BF16, "BF16", 2)                                                   \
    X(OXS_DT_BYTES, "BYTES", 0)

typedef enum oxs_datatype {
#define OXS__DATATYPE_ENUM(code, name, size) code,
    OXS_DATATYPE_TABLE(OXS__DATATYPE_ENUM)
#undef OXS__DATATYPE_ENUM
    OXS_DT_COUNT
} oxs_datatype_t;

/* Returns the protocol name ("FP32") of a datatype, or "INVALID". */
const char *oxs_datatype_name(oxs_datatype_t datatype);
/* Returns the datatype with this protocol name (length len), or OXS_DT_INVALID. */
oxs_datatype_t oxs_datatype_from_name(const char *name, size_t len);
/* Returns the element size in bytes, or 0 for INVALID and BYTES. */
size_t oxs_datatype_size(oxs_datatype_t datatype);

/* Maximum tensor rank accepted anywhere in the library. */
#define OXS_MAX_DIMS 16

/* ---------------------------------------------------------------------------------------------
 * Allocator and logging hooks. Every allocation the library makes goes through the allocator,
 * so a test can count or fail allocations. ONNX Runtime's own allocations do not.
 */
typedef struct oxs_allocator {
    void *(*malloc_fn)(void *user, size_t size);
    void *(*realloc_fn)(void *user, void *ptr, size_t size);
    void (*free_fn)(void *user, void *ptr);
    void *user;
} oxs_allocator_t;

typedef enum oxs_log_level {
    OXS_LOG_ERROR = 0,
    OXS_LOG_WARN = 1,
    OXS_LOG_INFO = 2,
    OXS_LOG_DEBUG = 3,
} oxs_log_level_t;

/* One structured field of a log event. */
typedef struct oxs_log_field {
    const char *key;
    const char *str; /* used when not NULL */
    int64_t num;     /* used when str is NULL */
} oxs_log_field_t;

/* Receives library log events; called from any library thread, possibly concurrently.
 * model may be NULL. fields are valid only during the call. */
typedef void (*oxs_log_fn)(void *user, oxs_log_level_t level, const char *model, const char *msg,
                           const oxs_log_field_t *fields, size_t field_count);

/* ---------------------------------------------------------------------------------------------
 * Server options. Call oxs_options_init first, then change fields.
 */
typedef enum oxs_graph_opt {
    OXS_GRAPH_OPT_DISABLE = 0,
    OXS_GRAPH_OPT_BASIC = 1,
    OXS_GRAPH_OPT_EXTENDED = 2,
    OXS_GRAPH_OPT_ALL = 99,
} oxs_graph_opt_t;

typedef struct oxs_request oxs_request_t;

/* Decodes one warmup request body from a model's config.json (a KServe v2 infer request, as
 * JSON text of len bytes) into request, the way the caller's frontend decodes requests. */
typedef oxs_status_t (*oxs_warmup_decode_fn)(void *user, oxs_request_t *request,
                                             const char *body, size_t len, char *error,
                                             size_t error_size);

/* How the models of the server's repositories are loaded (see oxs_server_add_repository). */
typedef enum oxs_control_mode {
    OXS_CONTROL_NONE = 0,     /* every model at start; a rescan applies changes */
    OXS_CONTROL_POLL = 1,     /* as NONE, and the repositories are rescanned every poll_secs */
    OXS_CONTROL_EXPLICIT = 2, /* only the models that oxs_repository_control loads */
} oxs_control_mode_t;

/* Returns "none", "poll" or "explicit". */
const char *oxs_control_mode_name(oxs_control_mode_t mode);

/* Caps on what one request may contain. Each is checked before memory is taken for the part it
 * limits, and a request past one fails with a message that names the limit by the onnxserve
 * flag that sets it (field max_x is flag --max-x). Sizes fail with OXS_ERR_TOO_LARGE, counts
 * and nesting with OXS_ERR_INVALID_ARGUMENT. */
typedef struct oxs_limits {
    size_t max_tensor_bytes;    /* one input tensor's data (BYTES: with 4-byte length prefixes) */
    size_t max_tensor_elements; /* elements of one input tensor */
    int max_tensor_rank;        /* dims of one input tensor, 0 to OXS_MAX_DIMS */
    int max_inputs;             /* inputs of one request */
    int max_outputs;            /* outputs one request names */
    size_t max_bytes_element;   /* one element of a BYTES tensor, in bytes */
    int max_json_depth;         /* nested objects and arrays in a JSON request body */
} oxs_limits_t;

typedef struct oxs_options {
    int workers;               /* instances of each model without an instance_group, >= 1 */
    int queue_size;            /* requests that may wait in each model's queue, >= 1 */
    int intra_op_threads;      /* ONNX Runtime's process-wide intra-op pool size, >= 1 */
    oxs_graph_opt_t graph_optimization;
    int enable_mem_arena;      /* ONNX Runtime CPU memory arena, 0 or 1 */
    int enable_mem_pattern;    /* ONNX Runtime memory pattern planning, 0 or 1 */
    const char *optimized_model_dir; /* folder for optimized model files, or NULL */
    oxs_limits_t limits;
    oxs_allocator_t allocator; /* all zero: the C library's malloc, realloc and free */
    oxs_warmup_decode_fn warmup_decode; /* NULL: config.json may only use "warmup": "random" */
    void *warmup_user;
    oxs_log_fn log_fn;         /* NULL: no logging */
    void *log_user;
    oxs_log_level_t log_level; /* events above this level are not formatted */
    oxs_control_mode_t control_mode;
    int poll_secs;             /* seconds between two scans in OXS_CONTROL_POLL, 1 to 86400 */
    int64_t stuck_inference_ms; /* a run longer than this is reported; 0: 20 times the model's
                                 * p99 run time, at least 10 s */
    int64_t stuck_inference_fatal_ms; /* 0: off; else a run this long makes the server not live */
    int capture_stacks;        /* 1: log a stuck thread's stack, taken by a signal handler that
                                * the library installs for SIGRTMIN+3 */
} oxs_options_t;

/* Fills options with the defaults: 1 worker, a queue of 128 requests, 1 intra-op thread,
 * all graph optimizations, memory arena and pattern on, malloc, control mode none, a scan every
 * 15 seconds in poll mode, and the limits of oxs_limits_init. */
void oxs_options_init(oxs_options_t *options);

/* Fills limits with the defaults: 256 MiB and 64 Mi elements per input tensor, rank 8, 256
 * inputs and 256 outputs per request, 16 MiB per BYTES element, JSON nested 32 levels deep. */
void oxs_limits_init(oxs_limits_t *limits);

/* Returns the limits of the server that request belongs to. */
const oxs_limits_t *oxs_request_limits(const oxs_request_t *request);

/* ---------------------------------------------------------------------------------------------
 * Server context.
 */
typedef struct oxs_server oxs_server_t;

/* Creates a server: the ONNX Runtime environment (once per process), the queue and the
 * worker threads. options is copied, the optimized_model_dir string included.
 * On error *out is NULL and, when error is not NULL, a message is written to it. */
oxs_status_t oxs_server_create(const oxs_options_t *options, oxs_server_t **out, char *error,
                               size_t error_size);

/* Stops accepting requests, waits until every queued and running request has completed and
 * its callback returned, then frees everything. Must not be called from a completion callback. */
void oxs_server_destroy(oxs_server_t *server);

/* Changes the level of the events given to options.log_fn. Any thread. */
void oxs_server_set_log_level(oxs_server_t *server, oxs_log_level_t level);

/* Stops accepting new requests: oxs_request_submit returns OXS_ERR_SHUTTING_DOWN afterwards.
 * Requests already queued still run. Any thread. */
void oxs_server_stop_accepting(oxs_server_t *server);

/* Waits until no request is queued or running, for at most timeout_ms (negative: forever).
 * Returns the number of requests still queued or running. Any thread except a worker. */
int oxs_server_drain(oxs_server_t *server, int64_t timeout_ms);

/* Returns the number of requests queued or running right now. Any thread. */
int oxs_server_pending(const oxs_server_t *server);

/* Returns the ONNX Runtime version string. */
const char *oxs_runtime_version(void);

/* ---------------------------------------------------------------------------------------------
 * Models. A model handle is reference counted: every handle returned to the caller must be
 * released once with oxs_model_release. Until a LOADING model's session is built (and for a
 * model that failed before that), its accessors report no inputs, no outputs and empty
 * metadata. The load time is 0 while LOADING.
 */
typedef struct oxs_model oxs_model_t;

typedef enum oxs_model_state {
    OXS_MODEL_LOADING = 0,
    OXS_MODEL_READY = 1,
    OXS_MODEL_UNAVAILABLE = 2,
    OXS_MODEL_UNLOADING = 3,
} oxs_model_state_t;

/* Returns "LOADING", "READY", "UNAVAILABLE" or "UNLOADING". */
const char *oxs_model_state_name(oxs_model_state_t state);

/* Loads the model file at path as name, version (a positive integer). A model that fails to
 * load stays registered as UNAVAILABLE with the reason, and the call returns the error.
 * Blocks while ONNX Runtime builds the session. Any thread. */
oxs_status_t oxs_server_load_model(oxs_server_t *server, const char *name, int64_t version,
                                   const char *path, char *error, size_t error_size);

/* Loads a model like oxs_server_load_model, with the per-model configuration read from
 * config_path (a config.json; NULL: none). An invalid configuration makes the model
 * UNAVAILABLE with a message that names the key and the allowed values. */
oxs_status_t oxs_server_load_model_config(oxs_server_t *server, const char *name,
                                          int64_t version, const char *path,
                                          const char *config_path, char *error,
                                          size_t error_size);

/* Checks a model name: 1 to 128 of [A-Za-z0-9_.-], not starting with '.', and not a word
 * that an endpoint uses ("stats"). On error the message names the name and the rule. */
oxs_status_t oxs_model_name_check(const char *name, size_t len, char *error, size_t error_size);

/* Adds a model repository folder, laid out as NAME/VERSION/model.onnx with an optional
 * NAME/config.json (see docs/REPOSITORY.md). Nothing is loaded yet. Fails when the folder
 * cannot be read. Call before oxs_server_load_repositories. */
oxs_status_t oxs_server_add_repository(oxs_server_t *server, const char *path, char *error,
                                       size_t error_size);

/* Scans the repositories and loads what the control mode loads at start: every model (the
 * versions their version_policy selects) in none and poll modes, none in explicit mode. Then
 * starts polling in poll mode. A model that fails to load is UNAVAILABLE with the reason.
 * Blocks while loading. Returns OXS_OK unless a repository cannot be read. */
oxs_status_t oxs_server_load_repositories(oxs_server_t *server, char *error, size_t error_size);

/* Adds the repository at path and loads it: oxs_server_add_repository, then
 * oxs_server_load_repositories. */
oxs_status_t oxs_server_load_repository(oxs_server_t *server, const char *path, char *error,
                                        size_t error_size);

typedef enum oxs_repository_action {
    OXS_REPOSITORY_LOAD = 0,   /* load the model, or apply its changed files (explicit mode) */
    OXS_REPOSITORY_UNLOAD = 1, /* stop serving the model; accepted requests finish (explicit) */
    OXS_REPOSITORY_RESCAN = 2, /* none and poll modes: apply every change in the repositories;
                                * explicit: apply the changed files of the loaded models */
} oxs_repository_action_t;

/* Receives the outcome of a repository action, on the library's repository thread. message
 * is "" on success and valid only during the call. */
typedef void (*oxs_repository_done_fn)(void *user, oxs_status_t status, const char *message);

/* Queues a repository action for the library's repository thread, which runs one at a time,
 * and returns at once. LOAD and UNLOAD need OXS_CONTROL_EXPLICIT (else OXS_ERR_FORBIDDEN) and
 * a valid name (else OXS_ERR_INVALID_ARGUMENT); RESCAN takes no name. done (may be NULL) is
 * called once when the action has finished, unless this call fails. Any thread. */
oxs_status_t oxs_repository_submit(oxs_server_t *server, oxs_repository_action_t action,
                                   const char *name, oxs_repository_done_fn done, void *user,
                                   char *error, size_t error_size);

/* Checks what oxs_repository_submit checks first, in this order: the mode (OXS_ERR_FORBIDDEN
 * unless LOAD and UNLOAD run in explicit mode), then the name (OXS_ERR_INVALID_ARGUMENT).
 * Any thread. */
oxs_status_t oxs_repository_check(const oxs_server_t *server, oxs_repository_action_t action,
                                  const char *name, char *error, size_t error_size);

/* Runs a repository action and waits for it. Any thread except the library's own. */
oxs_status_t oxs_repository_control(oxs_server_t *server, oxs_repository_action_t action,
                                    const char *name, char *error, size_t error_size);

/* Returns true when the server is ready. strict: every model that should be loaded has a READY
 * version (models never loaded in explicit mode, or unloaded, do not count). Not strict: no
 * such model is still loading its first version. When not ready, why (may be NULL) names the
 * first model that is not. Any thread. */
bool oxs_server_ready(oxs_server_t *server, bool strict, char *why, size_t why_size);


/* Returns false while an inference has run longer than options.stuck_inference_fatal_ms; why
 * (may be NULL) then names the model. Any thread. */
bool oxs_server_live(oxs_server_t *server, char *why, size_t why_size);

/* Finds a model by name and version in any state. Version 0 finds the highest READY version,
 * or the highest version when none is READY. */
oxs_status_t oxs_server_get_model(oxs_server_t *server, const char *name, int64_t version,
                                  oxs_model_t **out);

/* Writes the READY versions of the model name, lowest first, into versions (at most max) and
 * returns how many there are. Any thread. */
size_t oxs_server_ready_versions(oxs_server_t *server, const char *name, int64_t *versions,
                                 size_t max);

/* Returns the number of model versions the server tracks, and the i-th one (acquired) in name,
 * then version order. A model with no version to report (never loaded in explicit mode, an
 * invalid config.json, no version folder) counts once, with version 0. */
size_t oxs_server_model_count(oxs_server_t *server);
oxs_status_t oxs_server_model_at(oxs_server_t *server, size_t index, oxs_model_t **out);

void oxs_model_acquire(oxs_model_t *model);
void oxs_model_release(oxs_model_t *model);

const char *oxs_model_name(const oxs_model_t *model);
int64_t oxs_model_version(const oxs_model_t *model);
oxs_model_state_t oxs_model_state(const oxs_model_t *model);
/* Returns the reason a model is UNAVAILABLE (paths removed), or "" when there is none:
 * "unloaded" after an unload, "not loaded" for a model never loaded in explicit mode. */
const char *oxs_model_state_reason(const oxs_model_t *model);
/* Returns the load time in microseconds. */
int64_t oxs_model_load_us(const oxs_model_t *model);

/* One input or output of a model. Dimensions that are symbolic or dynamic are -1. */
typedef struct oxs_tensor_info {
    const char *name;
    oxs_datatype_t datatype; /* OXS_DT_INVALID when ONNX's type has no protocol name */
    const char *onnx_type;   /* ONNX's element type name, such as "float" */
    int rank;                /* -1 when the rank is unknown */
    const int64_t *dims;
} oxs_tensor_info_t;

size_t oxs_model_input_count(const oxs_model_t *model);
size_t oxs_model_output_count(const oxs_model_t *model);
const oxs_tensor_info_t *oxs_model_input(const oxs_model_t *model, size_t index);
const oxs_tensor_info_t *oxs_model_output(const oxs_model_t *model, size_t index);

/* Returns the index of the input (or output) named name (length len), or -1. */
int oxs_model_find_input(const oxs_model_t *model, const char *name, size_t len);
int oxs_model_find_output(const oxs_model_t *model, const char *name, size_t len);

/* Model metadata from the ONNX file. Strings are never NULL. */
typedef struct oxs_model_metadata {
    const char *producer_name;
    const char *graph_name;
    const char *domain;
    const char *description;
    int64_t model_version; /* the ONNX file's model_version field */
    int64_t opset;         /* default-domain opset, or -1 when unknown */
    size_t custom_count;   /* custom metadata key/value pairs */
    const char *const *custom_keys;
    const char *const *custom_values;
} oxs_model_metadata_t;

const oxs_model_metadata_t *oxs_model_metadata(const oxs_model_t *model);

/* ---------------------------------------------------------------------------------------------
 * Metrics and statistics. docs/METRICS.md lists the metrics.
 */

/* A count and the total time of what it counts, in microseconds. */
typedef struct oxs_duration_stat {
    uint64_t count;
    uint64_t total_us;
} oxs_duration_stat_t;

/* A model version's statistics since it loaded, as Triton's statistics extension reports them:
 * successful and failed requests (submission to completion), time in the queue, and the three
 * parts of a run. */
typedef struct oxs_model_stats {
    oxs_duration_stat_t success;
    oxs_duration_stat_t fail;
    oxs_duration_stat_t queue;
    oxs_duration_stat_t compute_input;
    oxs_duration_stat_t compute_infer;
    oxs_duration_stat_t compute_output;
    uint64_t inference_count;   /* rows run */
    uint64_t execution_count;   /* runs of the model */
    uint64_t last_inference_ms; /* Unix time of the last completion in milliseconds, or 0 */
} oxs_model_stats_t;

/* Fills out with model's statistics; all zero for a record that serves nothing. Any thread. */
void oxs_model_stats(const oxs_model_t *model, oxs_model_stats_t *out);

/* Counts a request for model that the caller failed before submitting it (a body that did not
 * decode, say) under the outcome of status. Any thread. */
void oxs_model_count_rejected(oxs_model_t *model, oxs_status_t status);

/* Counts an inference request for a model (or version) the server does not have, as outcome
 * "invalid" without model labels: label values only ever come from loaded models. Any thread. */
void oxs_server_count_unknown_model(oxs_server_t *server);

/* Receives text that the library writes, len bytes, not NUL-terminated. */
typedef void (*oxs_text_fn)(void *user, const char *text, size_t len);

/* Writes the metrics of every READY model version, and the pending requests, in the Prometheus
 * text format (version 0.0.4). Any thread. */
void oxs_server_write_metrics(oxs_server_t *server, oxs_text_fn write, void *user);

/* ---------------------------------------------------------------------------------------------
 * Per-model configuration: an optional config.json beside the model's versions, over the
 * server's options, completed from the model itself (see docs/CONFIGURATION.md).
 */
#define OXS_MAX_INSTANCE_GROUPS 8
#define OXS_MAX_GPUS 16
#define OXS_MAX_PREFERRED_BATCH_SIZES 16
#define OXS_MAX_PRIORITY_LEVELS 16
#define OXS_MAX_POLICY_VERSIONS 64
#define OXS_MAX_EXECUTION_PROVIDERS 3

typedef enum oxs_instance_kind { OXS_INSTANCE_CPU = 0, OXS_INSTANCE_GPU = 1 } oxs_instance_kind_t;

/* count instances of the model, each an inference thread, on the CPU or on the listed GPUs. */
typedef struct oxs_instance_group {
    int count;
    oxs_instance_kind_t kind;
    int gpu_count;
    int gpus[OXS_MAX_GPUS];
} oxs_instance_group_t;

typedef enum oxs_version_policy {
    OXS_VERSION_LATEST = 0,   /* the num_versions highest versions */
    OXS_VERSION_ALL = 1,      /* every version */
    OXS_VERSION_SPECIFIC = 2, /* the listed versions */
} oxs_version_policy_t;

typedef enum oxs_execution_provider {
    OXS_EP_CPU = 0,
    OXS_EP_CUDA = 1,
    OXS_EP_TENSORRT = 2,
} oxs_execution_provider_t;

/* The configuration in effect for a model, every field filled in. */
typedef struct oxs_model_config {
    int from_file;                /* 1 when a config.json was read */
    int max_batch_size;           /* 0: the model has no batch dimension to batch on */
    int dynamic_batching;         /* 1: requests are batched by the scheduler */
    int64_t max_queue_delay_us;   /* maximum wait for more requests to join a batch */
    double target_p99_ms;         /* > 0: the delay adapts to keep p99 under this */
    int preferred_batch_size_count;
    int preferred_batch_sizes[OXS_MAX_PREFERRED_BATCH_SIZES];
    int max_queue_size;           /* requests waiting for an instance */
    int64_t default_timeout_us;   /* queue deadline of requests that give none; 0: none */
    int priority_levels;          /* 0: one level; else 1 (highest) to priority_levels */
    int default_priority;
    int instance_group_count;
    oxs_instance_group_t instance_groups[OXS_MAX_INSTANCE_GROUPS];
    int instance_count;           /* the sum of the groups' counts */
    int allow_cpu_fallback;       /* kind gpu without a usable GPU runs on the CPU */
    oxs_version_policy_t version_policy;
    int num_versions;             /* for OXS_VERSION_LATEST */
    int version_count;            /* for OXS_VERSION_SPECIFIC */
    int64_t versions[OXS_MAX_POLICY_VERSIONS];
    int intra_op_threads;         /* 0: the process-wide pool; else the model's own pool */
    int inter_op_threads;
    oxs_graph_opt_t graph_optimization;
    int execution_provider_count; /* in order of preference */
    oxs_execution_provider_t execution_providers[OXS_MAX_EXECUTION_PROVIDERS];
    int warmup_random;            /* 1: warm up with inputs generated from the metadata */
    size_t warmup_count;          /* KServe v2 request bodies run before READY */
    const char *const *warmup_bodies;
} oxs_model_config_t;

/* Returns the configuration in effect, or NULL while the model is LOADING or UNAVAILABLE. */
const oxs_model_config_t *oxs_model_config(const oxs_model_t *model);

/* Returns the names used in config.json: "cpu" or "gpu"; "latest", "all" or "specific";
 * "cpu", "cuda" or "tensorrt"; "disable", "basic", "extended" or "all". */
const char *oxs_instance_kind_name(oxs_instance_kind_t kind);
const char *oxs_version_policy_name(oxs_version_policy_t policy);
const char *oxs_execution_provider_name(oxs_execution_provider_t provider);
const char *oxs_graph_opt_name(oxs_graph_opt_t level);

/* ---------------------------------------------------------------------------------------------
 * Requests and responses.
 *
 * Lifetime: oxs_request_create returns a request owned by the caller. oxs_request_submit takes
 * ownership; the callback then receives an oxs_response_t that owns the request too, and the
 * callback's receiver frees both with one oxs_response_destroy. When submit fails, the caller
 * still owns the request and frees it with oxs_request_destroy.
 */
typedef struct oxs_response oxs_response_t;

/* Creates a request for a READY model. The request holds a reference to the model. Any thread. */
oxs_status_t oxs_request_create(oxs_server_t *server, oxs_model_t *model, oxs_request_t **out);
void oxs_request_destroy(oxs_request_t *request);

oxs_model_t *oxs_request_model(const oxs_request_t *request);

/* Sets the id that library log lines (the watchdog's) give the request, such as the frontend's
 * X-Request-ID; copied, cut at 128 bytes. Without it they use the request id. */
void oxs_request_set_log_id(oxs_request_t *request, const char *id);

/* Sets the request id (copied, at most 128 bytes). */
oxs_status_t oxs_request_set_id(oxs_request_t *request, const char *id, size_t len);
const char *oxs_request_id(const oxs_request_t *request);

/* Allocates len bytes of scratch memory that lives as long as the request, aligned to 16 bytes.
 * Returns NULL when out of memory. The memory comes from the request's arena and is freed with it. */
void *oxs_request_scratch(oxs_request_t *request, size_t len);

/* Adds an input tensor of a fixed-size datatype (not BYTES) and returns its buffer (byte_size
 * bytes, from a pool, 64-byte aligned, uninitialized) for the caller to fill before submit.
 * The name, datatype and shape are checked against the model's input. On error the message
 * names the input, the value and what was expected. */
oxs_status_t oxs_request_add_input(oxs_request_t *request, const char *name, size_t name_len,
                                   oxs_datatype_t datatype, const int64_t *shape, int rank,
                                   void **data, size_t *byte_size, char *error, size_t error_size);

/* Adds a BYTES input (an ONNX string tensor) and returns a buffer of data_size bytes for the
 * caller to fill with the elements in row-major order. Each element is a 4-byte little-endian
 * length and then that many bytes, the layout of the KServe v2 binary extension. The name and shape are
 * checked here; oxs_request_submit checks that the elements fill data_size exactly and that
 * their number matches the shape. Elements may hold any bytes, NUL included. */
oxs_status_t oxs_request_add_bytes_input(oxs_request_t *request, const char *name,
                                         size_t name_len, const int64_t *shape, int rank,
                                         size_t data_size, void **data, char *error,
                                         size_t error_size);

/* Checks that data (size bytes) contains exactly count length-prefixed BYTES elements. On
 * OXS_ERR_INVALID_ARGUMENT, *bad_element is the first element that does not fit (count when
 * bytes are left over) and *bad_offset where it starts. Any thread. */
oxs_status_t oxs_bytes_check(const void *data, size_t size, size_t count, size_t *bad_element,
                             size_t *bad_offset);

/* Returns the number of inputs added so far. */
size_t oxs_request_input_count(const oxs_request_t *request);

/* Restricts the response to the named output. Without any call, every output is returned. */
oxs_status_t oxs_request_add_output(oxs_request_t *request, const char *name, size_t name_len,
                                    char *error, size_t error_size);

/* Sets the request's priority: 1 is the highest, up to the model's priority_levels; 0 (the
 * default) uses the model's default_priority. */
oxs_status_t oxs_request_set_priority(oxs_request_t *request, int priority, char *error,
                                      size_t error_size);

/* Maximum queue deadline a request or a model may set: one hour. */
#define OXS_MAX_TIMEOUT_US INT64_C(3600000000)

/* Sets how long the request may wait in the queue, in microseconds, at most
 * OXS_MAX_TIMEOUT_US; 0 (the default) uses the model's default_timeout_us. A request still queued at its deadline completes with
 * OXS_ERR_TIMEOUT without running. */
oxs_status_t oxs_request_set_timeout_us(oxs_request_t *request, int64_t timeout_us,
                                        char *error, size_t error_size);

/* Cancels a submitted request: one still queued completes with OXS_ERR_CANCELED without
 * running, and one running alone has its ONNX Runtime call terminated. The callback runs as
 * usual. The caller must make sure the response is not destroyed during the call, for example
 * by taking a lock that its callback also takes before destroying it. Any thread. */
void oxs_request_cancel(oxs_request_t *request);

/* Called once per successfully submitted request, on a worker thread. The receiver owns
 * response. */
typedef void (*oxs_complete_fn)(void *user, oxs_response_t *response);

/* Checks that every model input is present, then queues the request. Returns at once:
 * OXS_ERR_QUEUE_FULL when the queue is full, OXS_ERR_SHUTTING_DOWN after stop_accepting,
 * OXS_ERR_INVALID_ARGUMENT (message in error) when an input is missing. On any error the caller
 * keeps the request; on OXS_OK the request belongs to the library until the callback. */
oxs_status_t oxs_request_submit(oxs_request_t *request, oxs_complete_fn callback, void *user,
                                char *error, size_t error_size);

oxs_status_t oxs_response_status(const oxs_response_t *response);
/* Returns the error message (names the model and input, no file paths), or "" on success. */
const char *oxs_response_error(const oxs_response_t *response);
oxs_request_t *oxs_response_request(const oxs_response_t *response);

/* One output tensor of a response. data stays valid until oxs_response_destroy. For BYTES,
 * data contains element_count length-prefixed elements (see oxs_request_add_bytes_input) and
 * byte_size is their total size. */
typedef struct oxs_tensor_view {
    const char *name;
    oxs_datatype_t datatype;
    int rank;
    const int64_t *shape;
    const void *data;
    size_t byte_size;
    size_t element_count;
} oxs_tensor_view_t;

size_t oxs_response_output_count(const oxs_response_t *response);
oxs_status_t oxs_response_output(const oxs_response_t *response, size_t index,
                                 oxs_tensor_view_t *out);

/* Microseconds spent waiting in the queue and running the model. */
int64_t oxs_response_queue_us(const oxs_response_t *response);
int64_t oxs_response_compute_us(const oxs_response_t *response);
/* Returns the rows (dim 0) of the batch the request ran in, its own when it ran alone. */
int oxs_response_batch_size(const oxs_response_t *response);

/* When a request passed each step, on the monotonic clock (CLOCK_MONOTONIC) in microseconds;
 * 0 for a step it did not reach. */
typedef struct oxs_response_times {
    int64_t queued_us;         /* entered its model's queue */
    int64_t started_us;        /* an instance took it (its batch formed) */
    int64_t compute_started_us; /* ONNX Runtime's Run began */
    int64_t compute_ended_us;  /* Run returned */
    int64_t ended_us;          /* its outputs were ready */
} oxs_response_times_t;

void oxs_response_times(const oxs_response_t *response, oxs_response_times_t *out);

/* Frees the response, its request and every tensor buffer, returning buffers to the pools. */
void oxs_response_destroy(oxs_response_t *response);

#ifdef __cplusplus
}
#endif

#endif /* ONNXSERVE_H */
