/* Shared types of onnxserve-bench, the load generator: options, input tensors, prebuilt requests,
 * response checks and per-step results. */
#ifndef OXS_BENCH_LOADGEN_H
#define OXS_BENCH_LOADGEN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "stats.h"

#define BENCH_MAX_STEPS 64
#define BENCH_MAX_SHAPES 32
#define BENCH_MAX_RANK 16

typedef enum { BENCH_PROTOCOL_JSON, BENCH_PROTOCOL_BINARY, BENCH_PROTOCOL_PREDICT } bench_protocol;

typedef struct {
  char *name;
  int rank;
  int64_t dims[BENCH_MAX_RANK];
} bench_shape_option;

typedef struct {
  const char *url;
  const char *model;
  const char *model_version; /* NULL: the server's default version */
  bench_protocol protocol;
  bench_shape_option shapes[BENCH_MAX_SHAPES];
  int shape_count;
  int64_t batch; /* 0: not given */
  const char *datatype;
  int no_metadata;
  const char *input_file;
  int closed_loop; /* 1: --concurrency sweep, 0: --request-rate sweep */
  double steps[BENCH_MAX_STEPS];
  int step_count;
  int connections; /* open loop: most connections open at once */
  double warmup_secs;
  double window_secs;
  double stability_percent;
  int max_windows;
  const char *csv_path;
  const char *json_path;
  const char *svg_path;
  const char *label;
  uint64_t seed;
  double timeout_secs;
  int quiet;
} bench_options;

/* Returns 0 and fills options, 1 after --help (printed on stdout), or -1 after an error message
 * on stderr. */
int bench_parse_options(int argc, char **argv, bench_options *options);
void bench_free_options(bench_options *options);
const char *bench_protocol_name(bench_protocol protocol);

/* One input tensor with its values in little-endian row-major bytes. */
typedef struct {
  char *name;
  char datatype[16];
  int rank;
  int64_t dims[BENCH_MAX_RANK];
  size_t element_size;
  size_t element_count;
  unsigned char *data;
} bench_tensor;

typedef struct {
  bench_tensor *tensors;
  int count;
  int output_count; /* outputs in the model's metadata, or 0 when unknown */
} bench_inputs;

/* Builds the inputs from the metadata document (NULL with --no-metadata) and the options: the
 * values come from --input-file or from the seeded generator. Returns 0, or -1 after a message. */
int bench_build_inputs(const bench_options *options, const char *metadata_json,
                       size_t metadata_length, bench_inputs *inputs);
void bench_free_inputs(bench_inputs *inputs);
/* Writes element index of tensor to out as a JSON number (or true/false for BOOL). */
void bench_write_element(FILE *out, const bench_tensor *tensor, size_t index);

/* One HTTP request, header and body, built once and sent as is on every connection. */
typedef struct {
  char *bytes;
  size_t length;
} bench_request;

/* Builds the request of the chosen protocol for inputs against host (the Host header). */
int bench_build_request(const bench_options *options, const char *host, const bench_inputs *inputs,
                        bench_request *request);
/* Builds a GET request for path. */
int bench_build_get(const char *host, const char *path, bench_request *request);
void bench_free_request(bench_request *request);

/* Checks a 200 response body: the output shapes are present and well formed. For JSON and
 * binary responses expected_outputs (when positive) is the number of outputs that must come
 * back. binary_header_length is the response's Inference-Header-Content-Length, or -1 when
 * absent. Returns 1 when the body passes. */
int bench_check_response(bench_protocol protocol, const char *body, size_t length,
                         long long binary_header_length, int expected_outputs);

/* Cumulative queue and compute-infer counters summed over a model's versions, from
 * GET /v2/models/NAME[/versions/V]/stats. */
typedef struct {
  int valid;
  uint64_t queue_count, queue_ns;
  uint64_t compute_count, compute_ns;
} bench_server_stats;

int bench_parse_server_stats(const char *json, size_t length, bench_server_stats *stats);

/* Error kinds counted next to HTTP status codes. */
enum { BENCH_ERROR_CONNECT, BENCH_ERROR_TIMEOUT, BENCH_ERROR_BAD_RESPONSE, BENCH_ERROR_KINDS };
extern const char *const bench_error_kind_names[BENCH_ERROR_KINDS];

typedef struct {
  /* Failed responses by HTTP status code. A 200 whose body fails the check counts as
   * bad_response instead. */
  uint64_t by_status[600];
  uint64_t by_kind[BENCH_ERROR_KINDS];
} bench_errors;

uint64_t bench_errors_total(const bench_errors *errors);

/* The result of one step of the sweep, measured over its last window. summary.count counts
 * every request that ended in that window, successful or failed. */
typedef struct {
  double load; /* connections (closed loop) or requests per second (open loop) */
  bench_summary summary;
  bench_errors errors;
  int windows;
  int stable;
  int has_server_stats;
  double server_queue_us;
  double server_compute_us;
} bench_step_result;

/* The connections, the libuv loop and the measurement state of a run. */
typedef struct bench_runner bench_runner;
/* Creates the runner for options->url. inputs may be NULL until bench_runner_set_inputs. */
bench_runner *bench_runner_new(const bench_options *options, const bench_inputs *inputs);
void bench_runner_set_inputs(bench_runner *runner, const bench_inputs *inputs);
/* Builds the inference and statistics requests once the inputs are set. */
int bench_runner_prepare(bench_runner *runner);
void bench_runner_free(bench_runner *runner);
/* GETs path on a new connection and returns the status (0 on a connection error or timeout)
 * with the body in a malloc'd buffer that the caller frees. */
int bench_runner_get(bench_runner *runner, const char *path, char **body, size_t *length);
/* Runs one step: warm-up, then windows until the stability rule is met or max_windows have run.
 * Returns 0, or -1 when out of memory. */
int bench_runner_run_step(bench_runner *runner, int step_index, bench_step_result *result);
const char *bench_runner_host(const bench_runner *runner);

/* Writes the results. The file writers return 0, or -1 after a message on stderr. */
void bench_print_table(FILE *out, const bench_options *options, const bench_step_result *results,
                       int count);
int bench_write_csv(const char *path, const bench_options *options,
                    const bench_step_result *results, int count);
int bench_write_json(const char *path, const bench_options *options,
                     const bench_step_result *results, int count);
int bench_write_svg(const char *path, const bench_options *options,
                    const bench_step_result *results, int count);

#endif
