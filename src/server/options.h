/*
 * The onnxserve command line. One table in options.c lists every flag with its type, default,
 * bounds, unit and help text. Parsing, --help, validation messages and the startup log all read
 * that table, so a new flag is one table row plus one field here.
 */
#ifndef OXS_SERVER_OPTIONS_H
#define OXS_SERVER_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "onnxserve.h"
#include "server/log.h"

/* Most values a repeatable flag keeps. */
#define OXS_CLI_MAX_LIST 16

/* The values of a flag that may be given several times, in order. */
typedef struct oxs_cli_list {
    const char *items[OXS_CLI_MAX_LIST];
    int count;
} oxs_cli_list_t;

typedef struct oxs_cli_options {
    oxs_cli_list_t model_repositories; /* NAME/VERSION/model.onnx folders */
    oxs_control_mode_t control_mode;
    int repository_poll_secs;
    oxs_cli_list_t load_models;   /* explicit mode: models loaded at start ("*": all) */
    bool strict_readiness;
    const char *model_file;       /* the positional MODEL.onnx, or NULL */
    const char *model_config;     /* config.json for model_file, or NULL */
    const char *host;
    int http_port;
    int metrics_port;           /* -1: off */
    bool metrics_on_http_port;
    int http_threads;
    int max_connections;
    int workers;
    int queue_size;
    int intra_op_threads;
    size_t max_request_bytes;
    size_t max_header_bytes;
    int max_headers;
    size_t max_uri_bytes;
    oxs_limits_t limits;          /* the library's per-request limits */
    int http_header_timeout_secs;
    int http_body_timeout_secs;
    int http_idle_timeout_secs;
    const char *default_model; /* NULL: the only model */
    oxs_log_level_t log_level;
    oxs_log_format_t log_format;
    int exit_timeout_secs;
    int stuck_inference_ms;       /* 0: automatic */
    int stuck_inference_fatal_ms; /* 0: off */
    const char *trace_file;       /* NULL: none */
    oxs_graph_opt_t graph_optimization;
    bool enable_mem_arena;
    bool enable_mem_pattern;
    const char *optimized_model_dir; /* NULL: optimized models are not saved */
    bool help;
    bool version;
} oxs_cli_options_t;

/* Fills options with every flag's default. cores is the number of CPUs the process may use;
 * the flags whose default is "number of cores" take it (at least 1). */
void oxs_cli_options_init(oxs_cli_options_t *options, int cores);

/* Parses argv[1..argc) into options, which oxs_cli_options_init filled. Accepts "--flag value"
 * and "--flag=value"; "--" ends the flags. String fields point into argv. Returns false with a
 * message in error (such as `--workers: invalid value "abc", expected an integer from 1 to
 * 1024`) on an unknown flag, a bad value, or a missing or doubled model. With --help or
 * --version the model check is skipped. */
bool oxs_cli_parse(oxs_cli_options_t *options, int argc, char **argv, char *error,
                   size_t error_size);

/* Writes the usage text: every flag with its value, default, unit and help. */
void oxs_cli_print_help(FILE *out, int cores);

/* Returns the model name for the positional model file: its file name without ".onnx".
 * Writes at most name_size bytes including the NUL. */
void oxs_cli_model_name(const char *path, char *name, size_t name_size);

/* Maximum number of log fields oxs_cli_log_fields fills. */
#define OXS_CLI_MAX_FIELDS 64

/* Storage for the text of flag values while they are logged. */
typedef struct oxs_cli_field_text {
    char text[OXS_CLI_MAX_FIELDS][24];
    char lists[2][1024]; /* repeatable flags, values joined by commas */
} oxs_cli_field_text_t;

/* Fills fields with one entry per flag (key: the flag name with '_' for '-'), for the startup
 * log line. Strings point into options or storage. Returns the number of fields. */
size_t oxs_cli_log_fields(const oxs_cli_options_t *options, oxs_cli_field_text_t *storage,
                          oxs_log_field_t *fields, size_t max_fields);

#endif /* OXS_SERVER_OPTIONS_H */
