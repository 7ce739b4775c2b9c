/* Command line of onnxserve-bench. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadgen.h"

static const char usage_text[] =
    "Usage: onnxserve-bench --model NAME [OPTIONS]\n"
    "\n"
    "Load generator for onnxserve and other servers that accept its requests. Each step of a\n"
    "sweep warms up, then measures windows until two in a row agree, and reports throughput,\n"
    "latency percentiles and errors.\n"
    "\n"
    "Target and requests:\n"
    "  --url URL                 Server address, http://HOST:PORT (default http://127.0.0.1:8000)\n"
    "  --model NAME              Model to load (required)\n"
    "  --model-version V         Model version (default: the server's default version)\n"
    "  --protocol P              json: POST /v2/models/NAME[/versions/V]/infer with JSON data;\n"
    "                            binary: the same with the binary tensor extension;\n"
    "                            predict: POST /models/NAME/predict with {\"data\", \"shape\"}\n"
    "                            (default json)\n"
    "  --shape INPUT=D0,D1,...   Full shape of an input, for its dynamic (-1) dims; with predict,\n"
    "                            the one input's shape (repeatable)\n"
    "  --batch N                 First dim of every input whose first dim is dynamic, also over\n"
    "                            --shape (default 1 where no --shape gives it)\n"
    "  --datatype TYPE           Input datatype with --no-metadata (default FP32)\n"
    "  --no-metadata             Do not GET /v2/models/NAME or its statistics (for servers that\n"
    "                            serve only POST /predict); needs --protocol predict and --shape\n"
    "  --input-file FILE         Inputs as a KServe v2 infer request body (JSON) instead of random\n"
    "                            values; --shape and --batch do not apply\n"
    "  --seed N                  Seed of the random input values and arrival times (default 1)\n"
    "\n"
    "Load (give one of the two sweeps; default --concurrency 1):\n"
    "  --concurrency C1,C2,...   Closed loop: per step, C keep-alive connections with one request\n"
    "                            in flight each\n"
    "  --request-rate R1,R2,...  Open loop: per step, Poisson arrivals at R requests per second;\n"
    "                            latency counts from each request's scheduled send time\n"
    "  --connections N           Open loop: most connections open at once (default 64)\n"
    "  --timeout-secs S          Per-request timeout in seconds, counted as a \"timeout\" error\n"
    "                            (default 30)\n"
    "\n"
    "Measurement:\n"
    "  --warmup-secs S           Warm-up before each step's first window, in seconds (default 2)\n"
    "  --window-secs S           Length of a measurement window, in seconds (default 5)\n"
    "  --stability-percent P     Two consecutive windows agree when their throughput and p50\n"
    "                            differ by at most P percent (default 10)\n"
    "  --max-windows N           Most windows per step; the step ends unstable after N\n"
    "                            (default 4)\n"
    "\n"
    "Output (the table goes to stdout, or to stderr when a result file is \"-\"):\n"
    "  --csv FILE                Results as CSV (\"-\": stdout)\n"
    "  --json FILE               Results as JSON (\"-\": stdout)\n"
    "  --svg FILE                Chart of p50 and p99 latency against throughput (\"-\": stdout)\n"
    "  --label TEXT              Name of the system under test in the outputs (default onnxserve)\n"
    "  --quiet                   No table and no progress line\n"
    "  --help                    Print this help and exit\n"
    "\n"
    "Every response must have status 200 and carry its output shapes. Errors are counted by HTTP\n"
    "status and as connect, timeout or bad_response. A step reports its last window: throughput\n"
    "(successful responses per second), latency percentiles of the successful responses in ms,\n"
    "and requests (every request that ended in the window). Against onnxserve it also reports\n"
    "the server's mean queue time per request and compute time per run (a batch) in\n"
    "microseconds, from GET /v2/models/NAME/stats before and after that window. A progress line\n"
    "is shown only when stderr is a terminal.\n";

const char *bench_protocol_name(bench_protocol protocol) {
  switch (protocol) {
  case BENCH_PROTOCOL_BINARY:
    return "binary";
  case BENCH_PROTOCOL_PREDICT:
    return "predict";
  case BENCH_PROTOCOL_JSON:
    break;
  }
  return "json";
}

static int parse_double(const char *flag, const char *text, double minimum, double *value) {
  char *end = NULL;
  errno = 0;
  double parsed = strtod(text, &end);
  if (errno != 0 || end == text || *end != '\0' || !isfinite(parsed) || parsed < minimum) {
    fprintf(stderr, "onnxserve-bench: invalid %s value \"%s\": expected a number >= %g\n", flag,
            text, minimum);
    return -1;
  }
  *value = parsed;
  return 0;
}

static int parse_integer(const char *flag, const char *text, long long minimum, long long *value) {
  char *end = NULL;
  errno = 0;
  long long parsed = strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || parsed < minimum) {
    fprintf(stderr, "onnxserve-bench: invalid %s value \"%s\": expected an integer >= %lld\n",
            flag, text, minimum);
    return -1;
  }
  *value = parsed;
  return 0;
}

/* Parses "A,B,C" into steps, each at least minimum. */
static int parse_steps(const char *flag, const char *text, double minimum, int integers,
                       bench_options *options) {
  char *copy = strdup(text);
  if (copy == NULL) return -1;
  options->step_count = 0;
  int rc = 0;
  char *save = NULL;
  for (char *item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
    if (options->step_count == BENCH_MAX_STEPS) {
      fprintf(stderr, "onnxserve-bench: %s has more than %d values\n", flag, BENCH_MAX_STEPS);
      rc = -1;
      break;
    }
    double value = 0;
    if (integers) {
      long long parsed = 0;
      rc = parse_integer(flag, item, (long long)minimum, &parsed);
      value = (double)parsed;
    } else {
      rc = parse_double(flag, item, minimum, &value);
      if (rc == 0 && value <= 0) {
        fprintf(stderr, "onnxserve-bench: invalid %s value \"%s\": expected a positive number\n",
                flag, item);
        rc = -1;
      }
    }
    if (rc != 0) break;
    options->steps[options->step_count++] = value;
  }
  free(copy);
  if (rc == 0 && options->step_count == 0) {
    fprintf(stderr, "onnxserve-bench: %s needs at least one value\n", flag);
    rc = -1;
  }
  return rc;
}

/* Parses "NAME=D0,D1,..." for --shape. */
static int parse_shape(const char *text, bench_options *options) {
  const char *equals = strrchr(text, '=');
  if (equals == NULL || equals == text || equals[1] == '\0') {
    fprintf(stderr, "onnxserve-bench: invalid --shape \"%s\": expected INPUT=D0,D1,...\n", text);
    return -1;
  }
  if (options->shape_count == BENCH_MAX_SHAPES) {
    fprintf(stderr, "onnxserve-bench: more than %d --shape options\n", BENCH_MAX_SHAPES);
    return -1;
  }
  bench_shape_option *shape = &options->shapes[options->shape_count];
  memset(shape, 0, sizeof(*shape));
  const char *cursor = equals + 1;
  while (1) {
    if (shape->rank == BENCH_MAX_RANK) {
      fprintf(stderr, "onnxserve-bench: --shape \"%s\" has more than %d dims\n", text,
              BENCH_MAX_RANK);
      return -1;
    }
    char *end = NULL;
    errno = 0;
    long long dim = strtoll(cursor, &end, 10);
    if (errno != 0 || end == cursor || dim < 0 || (*end != ',' && *end != '\0')) {
      fprintf(stderr,
              "onnxserve-bench: invalid --shape \"%s\": each dim must be an integer >= 0\n", text);
      return -1;
    }
    shape->dims[shape->rank++] = dim;
    if (*end == '\0') break;
    cursor = end + 1;
  }
  shape->name = strndup(text, (size_t)(equals - text));
  if (shape->name == NULL) return -1;
  options->shape_count++;
  return 0;
}

static void set_defaults(bench_options *options) {
  memset(options, 0, sizeof(*options));
  options->url = "http://127.0.0.1:8000";
  options->protocol = BENCH_PROTOCOL_JSON;
  options->datatype = "FP32";
  options->closed_loop = 1;
  options->steps[0] = 1;
  options->step_count = 1;
  options->connections = 64;
  options->warmup_secs = 2;
  options->window_secs = 5;
  options->stability_percent = 10;
  options->max_windows = 4;
  options->label = "onnxserve";
  options->seed = 1;
  options->timeout_secs = 30;
}

/* Flags that take a value. */
static const char *const value_flags[] = {
    "--url", "--model", "--model-version", "--protocol", "--shape", "--batch", "--datatype",
    "--input-file", "--concurrency", "--request-rate", "--connections", "--warmup-secs",
    "--window-secs", "--stability-percent", "--max-windows", "--csv", "--json", "--svg",
    "--label", "--seed", "--timeout-secs", NULL};

static int takes_value(const char *flag) {
  for (int i = 0; value_flags[i] != NULL; i++) {
    if (strcmp(flag, value_flags[i]) == 0) return 1;
  }
  return 0;
}

static int apply_flag(const char *flag, const char *value, bench_options *options,
                      int *saw_concurrency, int *saw_rate) {
  long long integer = 0;
  if (strcmp(flag, "--url") == 0) {
    options->url = value;
  } else if (strcmp(flag, "--model") == 0) {
    options->model = value;
  } else if (strcmp(flag, "--model-version") == 0) {
    options->model_version = value;
  } else if (strcmp(flag, "--protocol") == 0) {
    if (strcmp(value, "json") == 0) {
      options->protocol = BENCH_PROTOCOL_JSON;
    } else if (strcmp(value, "binary") == 0) {
      options->protocol = BENCH_PROTOCOL_BINARY;
    } else if (strcmp(value, "predict") == 0) {
      options->protocol = BENCH_PROTOCOL_PREDICT;
    } else {
      fprintf(stderr, "onnxserve-bench: invalid --protocol \"%s\": expected json, binary or "
                      "predict\n", value);
      return -1;
    }
  } else if (strcmp(flag, "--shape") == 0) {
    return parse_shape(value, options);
  } else if (strcmp(flag, "--batch") == 0) {
    if (parse_integer(flag, value, 1, &integer) != 0) return -1;
    options->batch = integer;
  } else if (strcmp(flag, "--datatype") == 0) {
    options->datatype = value;
  } else if (strcmp(flag, "--input-file") == 0) {
    options->input_file = value;
  } else if (strcmp(flag, "--concurrency") == 0) {
    *saw_concurrency = 1;
    options->closed_loop = 1;
    return parse_steps(flag, value, 1, 1, options);
  } else if (strcmp(flag, "--request-rate") == 0) {
    *saw_rate = 1;
    options->closed_loop = 0;
    return parse_steps(flag, value, 0, 0, options);
  } else if (strcmp(flag, "--connections") == 0) {
    if (parse_integer(flag, value, 1, &integer) != 0) return -1;
    if (integer > 100000) {
      fprintf(stderr, "onnxserve-bench: invalid --connections %s: at most 100000\n", value);
      return -1;
    }
    options->connections = (int)integer;
  } else if (strcmp(flag, "--warmup-secs") == 0) {
    return parse_double(flag, value, 0, &options->warmup_secs);
  } else if (strcmp(flag, "--window-secs") == 0) {
    if (parse_double(flag, value, 0.01, &options->window_secs) != 0) return -1;
  } else if (strcmp(flag, "--stability-percent") == 0) {
    return parse_double(flag, value, 0, &options->stability_percent);
  } else if (strcmp(flag, "--max-windows") == 0) {
    if (parse_integer(flag, value, 1, &integer) != 0) return -1;
    if (integer > 1000) {
      fprintf(stderr, "onnxserve-bench: invalid --max-windows %s: at most 1000\n", value);
      return -1;
    }
    options->max_windows = (int)integer;
  } else if (strcmp(flag, "--csv") == 0) {
    options->csv_path = value;
  } else if (strcmp(flag, "--json") == 0) {
    options->json_path = value;
  } else if (strcmp(flag, "--svg") == 0) {
    options->svg_path = value;
  } else if (strcmp(flag, "--label") == 0) {
    options->label = value;
  } else if (strcmp(flag, "--seed") == 0) {
    if (parse_integer(flag, value, 0, &integer) != 0) return -1;
    options->seed = (uint64_t)integer;
  } else if (strcmp(flag, "--timeout-secs") == 0) {
    if (parse_double(flag, value, 0.001, &options->timeout_secs) != 0) return -1;
  }
  return 0;
}

static int check_combinations(const bench_options *options, int saw_concurrency, int saw_rate) {
  if (saw_concurrency && saw_rate) {
    fprintf(stderr, "onnxserve-bench: give --concurrency or --request-rate, not both\n");
    return -1;
  }
  if (options->model == NULL || options->model[0] == '\0') {
    fprintf(stderr, "onnxserve-bench: missing --model NAME (see --help)\n");
    return -1;
  }
  if (options->no_metadata) {
    if (options->protocol != BENCH_PROTOCOL_PREDICT) {
      fprintf(stderr, "onnxserve-bench: --no-metadata needs --protocol predict\n");
      return -1;
    }
    if (options->shape_count != 1 && options->input_file == NULL) {
      fprintf(stderr, "onnxserve-bench: --no-metadata needs one --shape INPUT=D0,D1,...\n");
      return -1;
    }
  }
  if (options->protocol == BENCH_PROTOCOL_PREDICT && options->model_version != NULL) {
    fprintf(stderr, "onnxserve-bench: --model-version does not apply to --protocol predict, "
                    "whose path has no version\n");
    return -1;
  }
  int stdout_files = 0;
  const char *paths[] = {options->csv_path, options->json_path, options->svg_path};
  for (int i = 0; i < 3; i++) {
    if (paths[i] != NULL && strcmp(paths[i], "-") == 0) stdout_files++;
  }
  if (stdout_files > 1) {
    fprintf(stderr, "onnxserve-bench: only one of --csv, --json and --svg may be \"-\"\n");
    return -1;
  }
  return 0;
}

int bench_parse_options(int argc, char **argv, bench_options *options) {
  set_defaults(options);
  int saw_concurrency = 0;
  int saw_rate = 0;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
      fputs(usage_text, stdout);
      return 1;
    }
    if (strcmp(arg, "--no-metadata") == 0) {
      options->no_metadata = 1;
      continue;
    }
    if (strcmp(arg, "--quiet") == 0) {
      options->quiet = 1;
      continue;
    }
    /* --flag=value or --flag value. */
    char flag[64];
    const char *value = NULL;
    const char *equals = strchr(arg, '=');
    if (strncmp(arg, "--", 2) == 0 && equals != NULL && (size_t)(equals - arg) < sizeof(flag)) {
      memcpy(flag, arg, (size_t)(equals - arg));
      flag[equals - arg] = '\0';
      value = equals + 1;
    } else if (strlen(arg) < sizeof(flag)) {
      strcpy(flag, arg);
    } else {
      flag[0] = '\0';
    }
    if (!takes_value(flag)) {
      fprintf(stderr, "onnxserve-bench: unknown option \"%s\" (see --help)\n", arg);
      bench_free_options(options);
      return -1;
    }
    if (value == NULL) {
      if (i + 1 >= argc) {
        fprintf(stderr, "onnxserve-bench: %s needs a value (see --help)\n", flag);
        bench_free_options(options);
        return -1;
      }
      value = argv[++i];
    }
    if (apply_flag(flag, value, options, &saw_concurrency, &saw_rate) != 0) {
      bench_free_options(options);
      return -1;
    }
  }
  if (check_combinations(options, saw_concurrency, saw_rate) != 0) {
    bench_free_options(options);
    return -1;
  }
  return 0;
}

void bench_free_options(bench_options *options) {
  for (int i = 0; i < options->shape_count; i++) free(options->shapes[i].name);
  options->shape_count = 0;
}
