/*
 * The onnxserve command line, driven by one table of options (see options.h).
 */
#include "server/options.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef enum cli_type {
    CLI_INT,    /* int field, decimal, within min..max */
    CLI_SIZE,   /* size_t field in bytes, with an optional KiB, MiB or GiB suffix */
    CLI_BOOL,   /* bool field: true or false */
    CLI_STRING, /* const char * field */
    CLI_HOST,   /* const char * field holding an IPv4 or IPv6 address */
    CLI_ENUM,   /* int-sized enum field, one of the choices */
    CLI_ACTION, /* bool field set by the flag alone (--help, --version) */
    CLI_LIST,   /* oxs_cli_list_t field: a non-empty value, the flag repeatable */
} cli_type_t;

typedef struct cli_choice {
    const char *name;
    int value;
} cli_choice_t;

typedef struct cli_option {
    const char *name;    /* flag without the leading "--" */
    const char *key;     /* log field name */
    cli_type_t type;
    size_t offset;       /* field in oxs_cli_options_t */
    const char *default_text; /* default as the flag's text; NULL: unset */
    bool default_cores;  /* the default is the number of cores (default_text is NULL) */
    const char *help_default; /* shown by --help in place of default_text; "": no default line */
    int64_t min;
    int64_t max;
    const char *metavar; /* value placeholder in --help */
    const char *unit;    /* unit in --help, or NULL */
    const cli_choice_t *choices;
    const char *help;
} cli_option_t;

#define KIB ((int64_t)1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)

#define FIELD(name) offsetof(oxs_cli_options_t, name)

/* set_value stores CLI_ENUM values through an int pointer. */
_Static_assert(sizeof(oxs_log_level_t) == sizeof(int), "enum size");
_Static_assert(sizeof(oxs_log_format_t) == sizeof(int), "enum size");
_Static_assert(sizeof(oxs_graph_opt_t) == sizeof(int), "enum size");
_Static_assert(sizeof(oxs_control_mode_t) == sizeof(int), "enum size");

static const cli_choice_t control_mode_choices[] = {
    {"none", OXS_CONTROL_NONE}, {"poll", OXS_CONTROL_POLL}, {"explicit", OXS_CONTROL_EXPLICIT},
    {NULL, 0},
};

static const cli_choice_t log_level_choices[] = {
    {"error", OXS_LOG_ERROR}, {"warn", OXS_LOG_WARN}, {"info", OXS_LOG_INFO},
    {"debug", OXS_LOG_DEBUG}, {NULL, 0},
};

static const cli_choice_t log_format_choices[] = {
    {"json", OXS_LOG_FORMAT_JSON}, {"text", OXS_LOG_FORMAT_TEXT}, {NULL, 0},
};

static const cli_choice_t graph_opt_choices[] = {
    {"disable", OXS_GRAPH_OPT_DISABLE}, {"basic", OXS_GRAPH_OPT_BASIC},
    {"extended", OXS_GRAPH_OPT_EXTENDED}, {"all", OXS_GRAPH_OPT_ALL}, {NULL, 0},
};

static const cli_option_t cli_table[] = {
    {.name = "model-repository", .key = "model_repository", .type = CLI_LIST,
     .offset = FIELD(model_repositories), .metavar = "DIR", .help_default = "",
     .help = "Serve the models in DIR, laid out as NAME/VERSION/model.onnx with an optional "
             "NAME/config.json (see docs/REPOSITORY.md). May be given several times. Give "
             "either this or one MODEL.onnx file."},
    {.name = "model-control-mode", .key = "model_control_mode", .type = CLI_ENUM,
     .offset = FIELD(control_mode), .default_text = "none", .metavar = "MODE",
     .choices = control_mode_choices,
     .help = "none: load every model at start; SIGHUP rescans the repositories. poll: the same, "
             "and rescan every --repository-poll-secs. explicit: load only the --load-model "
             "models, then what POST /v2/repository/models/NAME/load asks (the only mode that "
             "allows load and unload)."},
    {.name = "repository-poll-secs", .key = "repository_poll_secs", .type = CLI_INT,
     .offset = FIELD(repository_poll_secs), .default_text = "15", .min = 1, .max = 86400,
     .metavar = "N", .unit = "seconds",
     .help = "Time between two scans of the repositories in poll mode. A change is applied once "
             "two scans in a row see the same files."},
    {.name = "load-model", .key = "load_model", .type = CLI_LIST, .offset = FIELD(load_models),
     .metavar = "NAME", .help_default = "",
     .help = "In explicit mode, a model to load at start; \"*\" loads every model. May be "
             "given several times."},
    {.name = "strict-readiness", .key = "strict_readiness", .type = CLI_BOOL,
     .offset = FIELD(strict_readiness), .default_text = "true", .metavar = "BOOL",
     .help = "true: GET /v2/health/ready fails while a model that should be loaded has no "
             "READY version. false: ready once every model has loaded or failed."},
    {.name = "model-config", .key = "model_config", .type = CLI_STRING,
     .offset = FIELD(model_config), .metavar = "FILE", .help_default = "",
     .help = "config.json for the one MODEL.onnx file (a repository keeps it in "
             "NAME/config.json). It overrides the per-model defaults below."},
    {.name = "host", .key = "host", .type = CLI_HOST, .offset = FIELD(host),
     .default_text = "127.0.0.1", .metavar = "ADDRESS",
     .help = "IPv4 or IPv6 address the HTTP server listens on (0.0.0.0: every interface)."},
    {.name = "http-port", .key = "http_port", .type = CLI_INT, .offset = FIELD(http_port),
     .default_text = "8000", .min = 0, .max = 65535, .metavar = "PORT",
     .help = "TCP port of the HTTP server. 0 picks a free port, which the log reports."},
    {.name = "metrics-port", .key = "metrics_port", .type = CLI_INT,
     .offset = FIELD(metrics_port), .default_text = "8002", .min = -1, .max = 65535,
     .metavar = "PORT",
     .help = "TCP port that serves GET /metrics (Prometheus text format) and nothing else, on "
             "the --host address. 0 picks a free port, which the log reports; -1 turns it off."},
    {.name = "metrics-on-http-port", .key = "metrics_on_http_port", .type = CLI_BOOL,
     .offset = FIELD(metrics_on_http_port), .default_text = "false", .metavar = "BOOL",
     .help = "Also serve GET /metrics on the HTTP port."},
    {.name = "max-connections", .key = "max_connections", .type = CLI_INT,
     .offset = FIELD(max_connections), .default_text = "4096", .min = 1, .max = 1000000,
     .metavar = "N", .unit = "connections",
     .help = "Open connections on every port together. A connection past it is closed at once "
             "and logged. The server raises its open-file limit to its hard limit and warns "
             "when that is below N plus 64."},
    {.name = "http-threads", .key = "http_threads", .type = CLI_INT,
     .offset = FIELD(http_threads), .default_text = "1", .min = 1, .max = 1024, .metavar = "N",
     .unit = "threads", .help = "HTTP I/O threads, each running one event loop."},
    {.name = "workers", .key = "workers", .type = CLI_INT, .offset = FIELD(workers),
     .default_cores = true, .min = 1, .max = 1024, .metavar = "N", .unit = "threads",
     .help = "Instances of each model, each an inference thread running one request or batch "
             "at a time. Default for every model; config.json's instance_group overrides it."},
    {.name = "queue-size", .key = "queue_size", .type = CLI_INT, .offset = FIELD(queue_size),
     .default_text = "128", .min = 1, .max = 1000000, .metavar = "N", .unit = "requests",
     .help = "Requests that may wait in each model's queue. When it is full, new requests get "
             "503 with Retry-After. Default for every model; config.json's max_queue_size "
             "overrides it."},
    {.name = "intra-op-threads", .key = "intra_op_threads", .type = CLI_INT,
     .offset = FIELD(intra_op_threads), .default_text = "1", .min = 1, .max = 1024, .metavar = "N",
     .unit = "threads",
     .help = "Size of ONNX Runtime's process-wide intra-op thread pool, shared by every model. "
             "With 1, each request runs on its worker thread alone. Raise it when requests are "
             "large and few."},
    {.name = "max-request-bytes", .key = "max_request_bytes", .type = CLI_SIZE,
     .offset = FIELD(max_request_bytes), .default_text = "64MiB", .min = 1, .max = 64 * GIB,
     .metavar = "SIZE", .unit = "bytes",
     .help = "Largest request body accepted, after decompression. A larger one gets 413: "
             "from its Content-Length before the body is read, from a chunk's size, or while "
             "decompressing. Accepts a KiB, MiB or GiB suffix (or K, M, G)."},
    {.name = "max-header-bytes", .key = "max_header_bytes", .type = CLI_SIZE,
     .offset = FIELD(max_header_bytes), .default_text = "64KiB", .min = 1 * KIB, .max = 16 * MIB,
     .metavar = "SIZE", .unit = "bytes",
     .help = "Largest request line and headers together. A request past it gets 431."},
    {.name = "max-headers", .key = "max_headers", .type = CLI_INT, .offset = FIELD(max_headers),
     .default_text = "100", .min = 1, .max = 100000, .metavar = "N", .unit = "header fields",
     .help = "Header fields of one request. A request with more gets 431."},
    {.name = "max-uri-bytes", .key = "max_uri_bytes", .type = CLI_SIZE,
     .offset = FIELD(max_uri_bytes), .default_text = "16KiB", .min = 64, .max = 1 * MIB,
     .metavar = "SIZE", .unit = "bytes",
     .help = "Longest request target (path and query). A longer one gets 414."},
    {.name = "max-tensor-bytes", .key = "max_tensor_bytes", .type = CLI_SIZE,
     .offset = FIELD(limits.max_tensor_bytes), .default_text = "256MiB", .min = 1,
     .max = 64 * GIB, .metavar = "SIZE", .unit = "bytes",
     .help = "Largest input tensor, in bytes of element data (BYTES: with 4-byte length "
             "prefixes). A larger one gets 413. The default is 4 times the default "
             "--max-request-bytes, because \"0,\" in JSON is 2 bytes for 8 bytes of INT64 data."},
    {.name = "max-tensor-elements", .key = "max_tensor_elements", .type = CLI_SIZE,
     .offset = FIELD(limits.max_tensor_elements), .default_text = "67108864", .min = 1,
     .max = 64 * GIB, .metavar = "N", .unit = "elements",
     .help = "Elements of one input tensor (the product of its shape). More get 413."},
    {.name = "max-tensor-rank", .key = "max_tensor_rank", .type = CLI_INT,
     .offset = FIELD(limits.max_tensor_rank), .default_text = "8", .min = 0, .max = OXS_MAX_DIMS,
     .metavar = "N", .unit = "dims",
     .help = "Dims of one input tensor's shape, at most 16. More get 400."},
    {.name = "max-inputs", .key = "max_inputs", .type = CLI_INT, .offset = FIELD(limits.max_inputs),
     .default_text = "256", .min = 1, .max = 1000000, .metavar = "N", .unit = "inputs",
     .help = "Inputs of one request. More get 400."},
    {.name = "max-outputs", .key = "max_outputs", .type = CLI_INT,
     .offset = FIELD(limits.max_outputs), .default_text = "256", .min = 1, .max = 1000000,
     .metavar = "N", .unit = "outputs",
     .help = "Outputs that one request names. More get 400."},
    {.name = "max-bytes-element", .key = "max_bytes_element", .type = CLI_SIZE,
     .offset = FIELD(limits.max_bytes_element), .default_text = "16MiB", .min = 1,
     .max = 4 * GIB - 1, .metavar = "SIZE", .unit = "bytes",
     .help = "Largest element (string) of a BYTES tensor. A larger one gets 413."},
    {.name = "max-json-depth", .key = "max_json_depth", .type = CLI_INT,
     .offset = FIELD(limits.max_json_depth), .default_text = "32", .min = 2, .max = 1024,
     .metavar = "N", .unit = "levels",
     .help = "Nesting of objects and arrays in a JSON request body. Deeper bodies get 400."},
    {.name = "http-header-timeout-secs", .key = "http_header_timeout_secs", .type = CLI_INT,
     .offset = FIELD(http_header_timeout_secs), .default_text = "30", .min = 1, .max = 86400,
     .metavar = "N", .unit = "seconds",
     .help = "Time from a request's first byte to the end of its headers. A connection that "
             "takes longer is closed."},
    {.name = "http-body-timeout-secs", .key = "http_body_timeout_secs", .type = CLI_INT,
     .offset = FIELD(http_body_timeout_secs), .default_text = "60", .min = 1, .max = 86400,
     .metavar = "N", .unit = "seconds",
     .help = "Time a request body may go without receiving a byte. A connection that waits "
             "longer is closed."},
    {.name = "http-idle-timeout-secs", .key = "http_idle_timeout_secs", .type = CLI_INT,
     .offset = FIELD(http_idle_timeout_secs), .default_text = "60", .min = 1, .max = 86400,
     .metavar = "N", .unit = "seconds",
     .help = "Time a keep-alive connection may wait for its next request, or a client may take "
             "to read a response without progress. Longer, and the connection is closed."},
    {.name = "default-model", .key = "default_model", .type = CLI_STRING,
     .offset = FIELD(default_model), .metavar = "NAME",
     .help_default = "the only model, when exactly one is registered",
     .help = "Model that POST /predict runs."},
    {.name = "log-level", .key = "log_level", .type = CLI_ENUM, .offset = FIELD(log_level),
     .default_text = "info", .metavar = "LEVEL", .choices = log_level_choices,
     .help = "Log level: error, warn, info (adds one line per request) or debug. Each level "
             "includes the ones before it."},
    {.name = "log-format", .key = "log_format", .type = CLI_ENUM, .offset = FIELD(log_format),
     .default_text = "json", .metavar = "FORMAT", .choices = log_format_choices,
     .help = "Log lines on stderr: json (one object per line) or text (for a terminal)."},
    {.name = "exit-timeout-secs", .key = "exit_timeout_secs", .type = CLI_INT,
     .offset = FIELD(exit_timeout_secs), .default_text = "30", .min = 0, .max = 86400,
     .metavar = "N", .unit = "seconds",
     .help = "On SIGINT or SIGTERM, time allowed for requests in flight to finish. Past it, "
             "the server exits with status 1."},
    {.name = "stuck-inference-ms", .key = "stuck_inference_ms", .type = CLI_INT,
     .offset = FIELD(stuck_inference_ms), .default_text = "0", .min = 0, .max = 86400000,
     .metavar = "N", .unit = "milliseconds",
     .help = "A run longer than this is logged once, with the stack of the thread running it, "
             "and counted in onnxserve_stuck_inferences_total. 0: 20 times the model's p99 "
             "run time, at least 10 s."},
    {.name = "stuck-inference-fatal-ms", .key = "stuck_inference_fatal_ms", .type = CLI_INT,
     .offset = FIELD(stuck_inference_fatal_ms), .default_text = "0", .min = 0, .max = 86400000,
     .metavar = "N", .unit = "milliseconds",
     .help = "0: off. Otherwise GET /v2/health/live fails while a run has gone on this long, so "
             "that an orchestrator restarts the server."},
    {.name = "trace-file", .key = "trace_file", .type = CLI_STRING, .offset = FIELD(trace_file),
     .metavar = "FILE", .help_default = "not set",
     .help = "Appends one JSON line per request to FILE: its request and trace ids, model, "
             "status, and when it was received, queued, batched, computed and sent (Unix time in "
             "microseconds), for timeline analysis."},
    {.name = "graph-optimization-level", .key = "graph_optimization_level", .type = CLI_ENUM,
     .offset = FIELD(graph_optimization), .default_text = "all", .metavar = "LEVEL",
     .choices = graph_opt_choices,
     .help = "ONNX Runtime graph optimizations: disable, basic, extended or all. Default for "
             "every model; config.json's graph_optimization_level overrides it."},
    {.name = "enable-mem-arena", .key = "enable_mem_arena", .type = CLI_BOOL,
     .offset = FIELD(enable_mem_arena), .default_text = "true", .metavar = "BOOL",
     .help = "ONNX Runtime's CPU memory arena (true or false)."},
    {.name = "enable-mem-pattern", .key = "enable_mem_pattern", .type = CLI_BOOL,
     .offset = FIELD(enable_mem_pattern), .default_text = "true", .metavar = "BOOL",
     .help = "ONNX Runtime's memory pattern planning (true or false)."},
    {.name = "optimized-model-dir", .key = "optimized_model_dir", .type = CLI_STRING,
     .offset = FIELD(optimized_model_dir), .metavar = "DIR",
     .help_default = "not set, so optimized models are not saved",
     .help = "Folder where ONNX Runtime saves each model after graph optimization."},
    {.name = "help", .key = "help", .type = CLI_ACTION, .offset = FIELD(help),
     .help = "Print this help and exit."},
    {.name = "version", .key = "version", .type = CLI_ACTION, .offset = FIELD(version),
     .help = "Print the onnxserve and ONNX Runtime versions and exit."},
};

#define CLI_TABLE_SIZE (sizeof(cli_table) / sizeof(cli_table[0]))

static void *field_at(oxs_cli_options_t *options, const cli_option_t *option)
{
    return (char *)options + option->offset;
}

static const void *const_field_at(const oxs_cli_options_t *options, const cli_option_t *option)
{
    return (const char *)options + option->offset;
}

/* Parses a decimal integer with an optional binary suffix (KiB, MiB, GiB; K, M, G also work).
 * Returns false on anything else or on overflow. */
static bool parse_integer(const char *text, bool allow_suffix, int64_t *out)
{
    char *end = NULL;

    if (*text == '\0' || (*text != '-' && (*text < '0' || *text > '9')))
        return false;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno != 0 || end == text)
        return false;
    if (*end == '\0') {
        *out = value;
        return true;
    }
    if (!allow_suffix || value < 0)
        return false;

    int64_t scale;
    if (strcmp(end, "K") == 0 || strcmp(end, "KiB") == 0)
        scale = KIB;
    else if (strcmp(end, "M") == 0 || strcmp(end, "MiB") == 0)
        scale = MIB;
    else if (strcmp(end, "G") == 0 || strcmp(end, "GiB") == 0)
        scale = GIB;
    else
        return false;
    if (value > INT64_MAX / scale)
        return false;
    *out = value * scale;
    return true;
}

/* Writes a byte count as the shortest exact form: "64MiB", "1536KiB" or "1000". */
static void format_size(int64_t bytes, char *text, size_t size)
{
    if (bytes > 0 && bytes % GIB == 0)
        snprintf(text, size, "%" PRId64 "GiB", bytes / GIB);
    else if (bytes > 0 && bytes % MIB == 0)
        snprintf(text, size, "%" PRId64 "MiB", bytes / MIB);
    else if (bytes > 0 && bytes % KIB == 0)
        snprintf(text, size, "%" PRId64 "KiB", bytes / KIB);
    else
        snprintf(text, size, "%" PRId64, bytes);
}

/* Writes the expected-value part of a validation message, such as "an integer from 1 to 1024". */
static void describe_expected(const cli_option_t *option, char *text, size_t size)
{
    char low[24];
    char high[24];
    size_t used;

    switch (option->type) {
    case CLI_INT:
        snprintf(text, size, "an integer from %" PRId64 " to %" PRId64, option->min, option->max);
        break;
    case CLI_SIZE:
        format_size(option->min, low, sizeof(low));
        format_size(option->max, high, sizeof(high));
        snprintf(text, size, "a byte count from %s to %s (suffixes KiB, MiB, GiB)", low, high);
        break;
    case CLI_BOOL:
        snprintf(text, size, "true or false");
        break;
    case CLI_HOST:
        snprintf(text, size, "an IPv4 or IPv6 address such as 127.0.0.1 or ::1");
        break;
    case CLI_ENUM:
        used = (size_t)snprintf(text, size, "one of");
        for (const cli_choice_t *c = option->choices; c->name != NULL && used < size; c++)
            used += (size_t)snprintf(text + used, size - used, "%s %s",
                                     c == option->choices ? "" : ",", c->name);
        break;
    case CLI_STRING:
        snprintf(text, size, "a non-empty value");
        break;
    case CLI_LIST:
        snprintf(text, size, "a non-empty value, at most %d times", OXS_CLI_MAX_LIST);
        break;
    case CLI_ACTION:
        snprintf(text, size, "no value");
        break;
    }
}

static bool reject_value(const cli_option_t *option, const char *value, char *error,
                         size_t error_size)
{
    char expected[160];
    describe_expected(option, expected, sizeof(expected));
    snprintf(error, error_size, "--%s: invalid value \"%s\", expected %s", option->name, value,
             expected);
    return false;
}

/* Stores value (the flag's text) into the option's field after checking it. */
static bool set_value(oxs_cli_options_t *options, const cli_option_t *option, const char *value,
                      char *error, size_t error_size)
{
    void *field = field_at(options, option);
    int64_t number = 0;
    unsigned char address[sizeof(struct in6_addr)];

    switch (option->type) {
    case CLI_INT:
        if (!parse_integer(value, false, &number) || number < option->min || number > option->max)
            return reject_value(option, value, error, error_size);
        *(int *)field = (int)number;
        return true;
    case CLI_SIZE:
        if (!parse_integer(value, true, &number) || number < option->min || number > option->max)
            return reject_value(option, value, error, error_size);
        *(size_t *)field = (size_t)number;
        return true;
    case CLI_BOOL:
        if (strcmp(value, "true") == 0)
            *(bool *)field = true;
        else if (strcmp(value, "false") == 0)
            *(bool *)field = false;
        else
            return reject_value(option, value, error, error_size);
        return true;
    case CLI_HOST:
        if (inet_pton(AF_INET, value, address) != 1 && inet_pton(AF_INET6, value, address) != 1)
            return reject_value(option, value, error, error_size);
        *(const char **)field = value;
        return true;
    case CLI_STRING:
        if (*value == '\0')
            return reject_value(option, value, error, error_size);
        *(const char **)field = value;
        return true;
    case CLI_ENUM:
        for (const cli_choice_t *c = option->choices; c->name != NULL; c++) {
            if (strcmp(value, c->name) == 0) {
                /* Every enum field of oxs_cli_options_t has the size of an int. */
                *(int *)field = c->value;
                return true;
            }
        }
        return reject_value(option, value, error, error_size);
    case CLI_ACTION:
        *(bool *)field = true;
        return true;
    case CLI_LIST: {
        oxs_cli_list_t *list = field;
        if (*value == '\0' || list->count == OXS_CLI_MAX_LIST)
            return reject_value(option, value, error, error_size);
        list->items[list->count++] = value;
        return true;
    }
    }
    return reject_value(option, value, error, error_size);
}

static int clamp_cores(const cli_option_t *option, int cores)
{
    if (cores < option->min)
        return (int)option->min;
    if (cores > option->max)
        return (int)option->max;
    return cores;
}

void oxs_cli_options_init(oxs_cli_options_t *options, int cores)
{
    char unused[160];

    memset(options, 0, sizeof(*options));
    for (size_t i = 0; i < CLI_TABLE_SIZE; i++) {
        const cli_option_t *option = &cli_table[i];
        if (option->default_cores) {
            *(int *)field_at(options, option) = clamp_cores(option, cores);
        } else if (option->default_text != NULL) {
            /* The table's defaults are valid, which test_options checks. */
            set_value(options, option, option->default_text, unused, sizeof(unused));
        }
    }
}

static const cli_option_t *find_option(const char *name, size_t len)
{
    for (size_t i = 0; i < CLI_TABLE_SIZE; i++) {
        if (strlen(cli_table[i].name) == len && memcmp(cli_table[i].name, name, len) == 0)
            return &cli_table[i];
    }
    return NULL;
}

static bool set_positional(oxs_cli_options_t *options, const char *arg, char *error,
                           size_t error_size)
{
    char name[256];

    if (options->model_file != NULL) {
        snprintf(error, error_size,
                 "unexpected argument \"%s\": one MODEL.onnx file is already given (\"%s\"); "
                 "use --model-repository DIR to serve several models",
                 arg, options->model_file);
        return false;
    }
    oxs_cli_model_name(arg, name, sizeof(name));
    if (name[0] == '\0') {
        snprintf(error, error_size,
                 "invalid model file \"%s\": expected a path such as models/NAME.onnx, whose "
                 "file name gives the model name",
                 arg);
        return false;
    }
    options->model_file = arg;
    return true;
}

bool oxs_cli_parse(oxs_cli_options_t *options, int argc, char **argv, char *error,
                   size_t error_size)
{
    bool flags_done = false;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];

        if (flags_done || arg[0] != '-') {
            if (!set_positional(options, arg, error, error_size))
                return false;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            flags_done = true;
            continue;
        }
        if (arg[1] != '-') {
            snprintf(error, error_size, "unknown option \"%s\": flags start with \"--\"; see "
                     "onnxserve --help", arg);
            return false;
        }

        const char *name = arg + 2;
        const char *equals = strchr(name, '=');
        size_t name_len = equals != NULL ? (size_t)(equals - name) : strlen(name);
        const cli_option_t *option = find_option(name, name_len);
        if (option == NULL) {
            snprintf(error, error_size, "unknown option \"--%.*s\"; see onnxserve --help",
                     (int)name_len, name);
            return false;
        }

        const char *value;
        if (option->type == CLI_ACTION) {
            if (equals != NULL) {
                snprintf(error, error_size, "--%s takes no value, got \"%s\"", option->name,
                         equals + 1);
                return false;
            }
            value = "";
        } else if (equals != NULL) {
            value = equals + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            char expected[160];
            describe_expected(option, expected, sizeof(expected));
            snprintf(error, error_size, "--%s: missing value, expected %s", option->name,
                     expected);
            return false;
        }
        if (!set_value(options, option, value, error, error_size))
            return false;
    }

    if (options->help || options->version)
        return true;
    bool repositories = options->model_repositories.count > 0;
    if (repositories && options->model_file != NULL) {
        snprintf(error, error_size,
                 "both --model-repository \"%s\" and the model file \"%s\" are given; "
                 "give one of them",
                 options->model_repositories.items[0], options->model_file);
        return false;
    }
    if (options->control_mode != OXS_CONTROL_NONE && !repositories) {
        snprintf(error, error_size,
                 "--model-control-mode %s needs --model-repository DIR; a single MODEL.onnx "
                 "file is served in mode none",
                 oxs_control_mode_name(options->control_mode));
        return false;
    }
    if (options->metrics_port > 0 && options->metrics_port == options->http_port) {
        snprintf(error, error_size,
                 "--metrics-port %d is the --http-port too; give them different ports, or "
                 "--metrics-on-http-port true with --metrics-port -1 to serve both on one",
                 options->metrics_port);
        return false;
    }
    if (options->load_models.count > 0 && options->control_mode != OXS_CONTROL_EXPLICIT) {
        snprintf(error, error_size,
                 "--load-model \"%s\" needs --model-control-mode explicit; in mode %s every "
                 "model loads at start",
                 options->load_models.items[0], oxs_control_mode_name(options->control_mode));
        return false;
    }
    if (options->model_config != NULL && options->model_file == NULL) {
        snprintf(error, error_size,
                 "--model-config \"%s\" needs one MODEL.onnx file; in a repository, put the "
                 "file at NAME/config.json",
                 options->model_config);
        return false;
    }
    if (!repositories && options->model_file == NULL) {
        snprintf(error, error_size,
                 "no model given: pass --model-repository DIR or one MODEL.onnx file; see "
                 "onnxserve --help");
        return false;
    }
    return true;
}

void oxs_cli_model_name(const char *path, char *name, size_t name_size)
{
    const char *base = strrchr(path, '/');
    base = base != NULL ? base + 1 : path;
    size_t len = strlen(base);
    const char *suffix = ".onnx";
    size_t suffix_len = strlen(suffix);

    if (len >= suffix_len && strcmp(base + len - suffix_len, suffix) == 0)
        len -= suffix_len;
    if (len >= name_size)
        len = name_size - 1;
    memcpy(name, base, len);
    name[len] = '\0';
}

/* Writes an option's default for --help, such as "8000", "64MiB" or "number of cores (2 here)",
 * or "" when --help shows no default. */
static void describe_default(const cli_option_t *option, int cores, char *text, size_t size)
{
    if (option->help_default != NULL)
        snprintf(text, size, "%s", option->help_default);
    else if (option->type == CLI_ACTION)
        text[0] = '\0';
    else if (option->default_cores)
        snprintf(text, size, "number of cores (%d here)", clamp_cores(option, cores));
    else if (option->default_text != NULL)
        snprintf(text, size, "%s", option->default_text);
    else
        snprintf(text, size, "not set");
}

#define HELP_WIDTH 79
#define HELP_INDENT 6

/* Writes text word-wrapped to HELP_WIDTH columns, each line indented by HELP_INDENT spaces. */
static void print_wrapped(FILE *out, const char *text)
{
    const char *p = text;

    while (*p != '\0') {
        size_t room = HELP_WIDTH - HELP_INDENT;
        size_t len = strlen(p);
        if (len > room) {
            len = room;
            while (len > 0 && p[len] != ' ')
                len--;
            if (len == 0) /* one word longer than the line */
                len = strcspn(p, " ");
        }
        fprintf(out, "%*s%.*s\n", HELP_INDENT, "", (int)len, p);
        p += len;
        while (*p == ' ')
            p++;
    }
}

void oxs_cli_print_help(FILE *out, int cores)
{
    fprintf(out,
            "Usage: onnxserve [OPTIONS] --model-repository DIR\n"
            "       onnxserve [OPTIONS] MODEL.onnx\n"
            "\n"
            "Serves ONNX models over HTTP (KServe v2 REST, /predict and /healthz). A single\n"
            "MODEL.onnx is served as version 1 of the model named after the file, without\n"
            "\".onnx\". Flags accept \"--flag value\" and \"--flag=value\".\n"
            "\n"
            "Options:\n");
    for (size_t i = 0; i < CLI_TABLE_SIZE; i++) {
        const cli_option_t *option = &cli_table[i];
        char usage[64];
        char default_text[64];
        char line[256];

        if (option->metavar != NULL)
            snprintf(usage, sizeof(usage), "--%s %s", option->name, option->metavar);
        else
            snprintf(usage, sizeof(usage), "--%s", option->name);
        describe_default(option, cores, default_text, sizeof(default_text));

        fprintf(out, "  %s\n", usage);
        print_wrapped(out, option->help);
        if (default_text[0] != '\0' && option->unit != NULL) {
            snprintf(line, sizeof(line), "Default: %s. Unit: %s.", default_text, option->unit);
            print_wrapped(out, line);
        } else if (default_text[0] != '\0') {
            snprintf(line, sizeof(line), "Default: %s.", default_text);
            print_wrapped(out, line);
        }
    }
}

size_t oxs_cli_log_fields(const oxs_cli_options_t *options, oxs_cli_field_text_t *storage,
                          oxs_log_field_t *fields, size_t max_fields)
{
    size_t count = 0;

    if (max_fields > OXS_CLI_MAX_FIELDS)
        max_fields = OXS_CLI_MAX_FIELDS;
    if (count < max_fields && options->model_file != NULL)
        fields[count++] = OXS_LOG_STR("model_file", options->model_file);

    for (size_t i = 0; i < CLI_TABLE_SIZE && count < max_fields; i++) {
        const cli_option_t *option = &cli_table[i];
        const void *field = const_field_at(options, option);
        oxs_log_field_t *out = &fields[count];

        switch (option->type) {
        case CLI_ACTION:
            continue;
        case CLI_LIST: {
            const oxs_cli_list_t *list = field;
            size_t slot = strcmp(option->key, "model_repository") == 0 ? 0 : 1;
            char *text = storage->lists[slot];
            size_t used = 0;
            if (list->count == 0)
                continue;
            text[0] = '\0';
            for (int k = 0; k < list->count && used < sizeof(storage->lists[slot]); k++) {
                int n = snprintf(text + used, sizeof(storage->lists[slot]) - used, "%s%s",
                                 k > 0 ? "," : "", list->items[k]);
                used += n > 0 ? (size_t)n : 0;
            }
            *out = OXS_LOG_STR(option->key, text);
            break;
        }
        case CLI_INT:
            *out = OXS_LOG_NUM(option->key, *(const int *)field);
            break;
        case CLI_SIZE:
            *out = OXS_LOG_NUM(option->key, *(const size_t *)field);
            break;
        case CLI_BOOL:
            *out = OXS_LOG_STR(option->key, *(const bool *)field ? "true" : "false");
            break;
        case CLI_STRING:
        case CLI_HOST: {
            const char *text = *(const char *const *)field;
            if (text == NULL)
                continue;
            *out = OXS_LOG_STR(option->key, text);
            break;
        }
        case CLI_ENUM: {
            int value = *(const int *)field;
            const char *name = NULL;
            for (const cli_choice_t *c = option->choices; c->name != NULL; c++) {
                if (c->value == value)
                    name = c->name;
            }
            if (name == NULL) {
                snprintf(storage->text[count], sizeof(storage->text[count]), "%d", value);
                name = storage->text[count];
            }
            *out = OXS_LOG_STR(option->key, name);
            break;
        }
        }
        count++;
    }
    return count;
}
