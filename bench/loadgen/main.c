/* onnxserve-bench: load generator for onnxserve and servers that accept its /predict body. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadgen.h"

static int fetch_metadata(bench_runner *runner, const bench_options *options, char **body,
                          size_t *length) {
  char path[1024];
  if (options->model_version != NULL) {
    snprintf(path, sizeof(path), "/v2/models/%s/versions/%s", options->model,
             options->model_version);
  } else {
    snprintf(path, sizeof(path), "/v2/models/%s", options->model);
  }
  int status = bench_runner_get(runner, path, body, length);
  if (status == 200) return 0;
  if (status == 0) {
    fprintf(stderr, "onnxserve-bench: GET %s on %s failed: no response (is the server "
                    "running?)\n", path, options->url);
  } else {
    fprintf(stderr, "onnxserve-bench: GET %s on %s returned HTTP %d: %.*s\n", path, options->url,
            status, (int)(*length > 500 ? 500 : *length), *body ? *body : "");
  }
  free(*body);
  *body = NULL;
  return -1;
}

static int write_results(const bench_options *options, const bench_step_result *results,
                         int count) {
  int rc = 0;
  if (options->csv_path != NULL && bench_write_csv(options->csv_path, options, results, count)) {
    rc = -1;
  }
  if (options->json_path != NULL &&
      bench_write_json(options->json_path, options, results, count)) {
    rc = -1;
  }
  if (options->svg_path != NULL && bench_write_svg(options->svg_path, options, results, count)) {
    rc = -1;
  }
  return rc;
}

int main(int argc, char **argv) {
  bench_options options;
  int parsed = bench_parse_options(argc, argv, &options);
  if (parsed != 0) return parsed > 0 ? 0 : 2;

  /* A server that closes a connection while a request is being written must cost one error, not
   * the process. */
  signal(SIGPIPE, SIG_IGN);

  int exit_code = 1;
  char *metadata = NULL;
  size_t metadata_length = 0;
  bench_inputs inputs;
  memset(&inputs, 0, sizeof(inputs));
  bench_step_result *results = NULL;
  bench_runner *runner = bench_runner_new(&options, NULL);
  if (runner == NULL) goto done;
  if (!options.no_metadata && fetch_metadata(runner, &options, &metadata, &metadata_length) != 0) {
    goto done;
  }
  if (bench_build_inputs(&options, metadata, metadata_length, &inputs) != 0) goto done;
  bench_runner_set_inputs(runner, &inputs);
  if (bench_runner_prepare(runner) != 0) goto done;

  /* The table goes to stderr when a result file takes stdout. */
  int stdout_taken = 0;
  const char *paths[] = {options.csv_path, options.json_path, options.svg_path};
  for (int i = 0; i < 3; i++) stdout_taken |= paths[i] != NULL && strcmp(paths[i], "-") == 0;
  FILE *table = stdout_taken ? stderr : stdout;

  results = calloc((size_t)options.step_count, sizeof(*results));
  if (results == NULL) goto done;
  for (int step = 0; step < options.step_count; step++) {
    if (bench_runner_run_step(runner, step, &results[step]) != 0) goto done;
  }
  if (!options.quiet) bench_print_table(table, &options, results, options.step_count);
  exit_code = write_results(&options, results, options.step_count) == 0 ? 0 : 1;

done:
  free(results);
  bench_free_inputs(&inputs);
  free(metadata);
  bench_runner_free(runner);
  bench_free_options(&options);
  return exit_code;
}
