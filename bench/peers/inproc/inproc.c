/*
 * The ceiling for bench/compare: ONNX Runtime called in process, with no server and no
 * protocol. For each concurrency N it starts N threads that share one session, and each thread
 * runs the model in a loop on its own random input of a fixed shape for a fixed time. It
 * reports throughput and latency percentiles in the JSON fields that onnxserve-bench writes.
 *
 *   onnxserve-inproc --model FILE --shape [INPUT=]D0,D1,... [--batch N] [--concurrency 1,2]
 *                    [--warmup-secs S] [--window-secs S] [--intra-op-threads N]
 *                    [--label TEXT] [--json FILE]
 *
 * The session options match the peers' servers: intra-op threads from the flag (default 1),
 * one inter-op thread, sequential execution, all graph optimizations, spinning off, and
 * ONNX Runtime's defaults otherwise (memory arena and memory pattern on). The caller pins the
 * process to its CPUs (taskset).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <onnxruntime_c_api.h>

#define PROGRAM "onnxserve-inproc"
#define MAX_DIMS 8
#define MAX_STEPS 32

static const OrtApi *ort;

typedef struct options {
    const char *model_path;
    const char *input_name; /* NULL: the model's first input */
    int64_t shape[MAX_DIMS];
    int rank;
    int64_t batch; /* 0: keep dim 0 of --shape */
    int concurrency[MAX_STEPS];
    int steps;
    double warmup_secs;
    double window_secs;
    int intra_op_threads;
    const char *label;
    const char *json_path;
} options_t;

/* One thread's loop: its input, its output name and the latencies it measured. */
typedef struct worker {
    OrtSession *session;
    const char *input_name;
    const char *output_name;
    OrtValue *input;
    double measure_start; /* seconds on CLOCK_MONOTONIC */
    double measure_end;
    double *latencies_ms;
    size_t count;
    size_t capacity;
    char error[512];
    pthread_t thread;
} worker_t;

typedef struct step_result {
    int concurrency;
    double throughput; /* runs per second */
    double p50_ms, p90_ms, p99_ms, p999_ms, max_ms;
    size_t runs;
} step_result_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: " PROGRAM " --model FILE --shape [INPUT=]D0,D1,... [options]\n"
            "Runs ONNX Runtime in process with N threads sharing one session, each running the\n"
            "model in a loop, and reports runs per second and latency percentiles.\n"
            "\n"
            "  --model FILE            ONNX model to load (required)\n"
            "  --shape [INPUT=]DIMS    input shape, comma-separated (required); INPUT names the\n"
            "                          float input, else the model's first input is used\n"
            "  --batch N               replace dim 0 of --shape with N\n"
            "  --concurrency LIST      thread counts to run one after another (default 1)\n"
            "  --warmup-secs S         runs before each measured window, in seconds (default 2)\n"
            "  --window-secs S         measured window of each step, in seconds (default 10)\n"
            "  --intra-op-threads N    ONNX Runtime intra-op threads (default 1)\n"
            "  --label TEXT            label written to the JSON output (default inproc)\n"
            "  --json FILE             write the results as JSON to FILE\n"
            "  --help                  print this help\n");
}

static double now_secs(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Prints an ONNX Runtime error with what failed, frees it and exits. */
static void check_status(OrtStatus *status, const char *what)
{
    if (status == NULL)
        return;
    fprintf(stderr, PROGRAM ": %s failed: %s\n", what, ort->GetErrorMessage(status));
    ort->ReleaseStatus(status);
    exit(1);
}

static bool parse_positive(const char *text, long long max, long long *value)
{
    char *end;
    errno = 0;
    long long parsed = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || parsed < 1 || parsed > max)
        return false;
    *value = parsed;
    return true;
}

static bool parse_seconds(const char *text, double *value)
{
    char *end;
    errno = 0;
    double parsed = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(parsed >= 0.0) || parsed > 86400.0)
        return false;
    *value = parsed;
    return true;
}

/* Parses a comma-separated list of positive integers into values; returns the count or -1. */
static int parse_list(const char *text, long long max, long long *values, int capacity)
{
    char copy[512];
    if (strlen(text) >= sizeof(copy))
        return -1;
    strcpy(copy, text);
    int count = 0;
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        if (count == capacity || !parse_positive(item, max, &values[count]))
            return -1;
        count++;
    }
    return count;
}

static void parse_options(int argc, char **argv, options_t *options)
{
    *options = (options_t){.warmup_secs = 2.0, .window_secs = 10.0, .intra_op_threads = 1,
                           .label = "inproc", .steps = 1, .concurrency = {1}};
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i];
        if (strcmp(flag, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (i + 1 == argc) {
            fprintf(stderr, PROGRAM ": %s: missing value (see --help)\n", flag);
            exit(2);
        }
        const char *value = argv[++i];
        long long number;
        long long list[MAX_STEPS > MAX_DIMS ? MAX_STEPS : MAX_DIMS];
        bool valid = true;
        if (strcmp(flag, "--model") == 0) {
            options->model_path = value;
        } else if (strcmp(flag, "--shape") == 0) {
            const char *equals = strchr(value, '=');
            const char *dims = value;
            if (equals != NULL) {
                options->input_name = strndup(value, (size_t)(equals - value));
                dims = equals + 1;
            }
            int rank = parse_list(dims, INT32_MAX, list, MAX_DIMS);
            valid = rank > 0;
            for (int d = 0; d < rank; d++)
                options->shape[d] = list[d];
            options->rank = rank;
        } else if (strcmp(flag, "--batch") == 0) {
            valid = parse_positive(value, INT32_MAX, &number);
            options->batch = number;
        } else if (strcmp(flag, "--concurrency") == 0) {
            int steps = parse_list(value, 1024, list, MAX_STEPS);
            valid = steps > 0;
            for (int s = 0; s < steps; s++)
                options->concurrency[s] = (int)list[s];
            options->steps = steps;
        } else if (strcmp(flag, "--warmup-secs") == 0) {
            valid = parse_seconds(value, &options->warmup_secs);
        } else if (strcmp(flag, "--window-secs") == 0) {
            valid = parse_seconds(value, &options->window_secs) && options->window_secs > 0.0;
        } else if (strcmp(flag, "--intra-op-threads") == 0) {
            valid = parse_positive(value, 1024, &number);
            options->intra_op_threads = (int)number;
        } else if (strcmp(flag, "--label") == 0) {
            options->label = value;
        } else if (strcmp(flag, "--json") == 0) {
            options->json_path = value;
        } else {
            fprintf(stderr, PROGRAM ": unknown option %s (see --help)\n", flag);
            exit(2);
        }
        if (!valid) {
            fprintf(stderr, PROGRAM ": %s: invalid value \"%s\" (see --help)\n", flag, value);
            exit(2);
        }
    }
    if (options->model_path == NULL || options->rank == 0) {
        fprintf(stderr, PROGRAM ": --model and --shape are required (see --help)\n");
        exit(2);
    }
    if (options->batch > 0)
        options->shape[0] = options->batch;
}

static OrtSession *create_session(OrtEnv *env, const options_t *options)
{
    OrtSessionOptions *session_options;
    check_status(ort->CreateSessionOptions(&session_options), "creating session options");
    check_status(ort->SetIntraOpNumThreads(session_options, options->intra_op_threads),
                 "setting intra-op threads");
    check_status(ort->SetInterOpNumThreads(session_options, 1), "setting inter-op threads");
    check_status(ort->SetSessionExecutionMode(session_options, ORT_SEQUENTIAL),
                 "setting the execution mode");
    check_status(ort->SetSessionGraphOptimizationLevel(session_options, ORT_ENABLE_ALL),
                 "setting the graph optimization level");
    check_status(ort->AddSessionConfigEntry(session_options, "session.intra_op.allow_spinning", "0"),
                 "turning spinning off");
    OrtSession *session;
    check_status(ort->CreateSession(env, options->model_path, session_options, &session),
                 "loading the model");
    ort->ReleaseSessionOptions(session_options);
    return session;
}

/* Fills a new FP32 tensor of the given shape with values in [0, 1). */
static OrtValue *create_random_input(const options_t *options, unsigned seed)
{
    size_t count = 1;
    for (int d = 0; d < options->rank; d++)
        count *= (size_t)options->shape[d];
    OrtAllocator *allocator;
    check_status(ort->GetAllocatorWithDefaultOptions(&allocator), "getting the allocator");
    OrtValue *value;
    check_status(ort->CreateTensorAsOrtValue(allocator, options->shape, (size_t)options->rank,
                                             ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &value),
                 "creating the input tensor");
    float *data;
    check_status(ort->GetTensorMutableData(value, (void **)&data), "reading the input tensor");
    for (size_t i = 0; i < count; i++)
        data[i] = (float)rand_r(&seed) / ((float)RAND_MAX + 1.0f);
    return value;
}

static void record_latency(worker_t *worker, double ms)
{
    if (worker->count == worker->capacity) {
        size_t capacity = worker->capacity ? worker->capacity * 2 : 65536;
        double *grown = realloc(worker->latencies_ms, capacity * sizeof(double));
        if (grown == NULL) {
            fprintf(stderr, PROGRAM ": out of memory for %zu latencies\n", capacity);
            exit(1);
        }
        worker->latencies_ms = grown;
        worker->capacity = capacity;
    }
    worker->latencies_ms[worker->count++] = ms;
}

/* Runs the model until measure_end and keeps the latencies of the runs that started at or
 * after measure_start and ended by measure_end. */
static void *run_worker(void *arg)
{
    worker_t *worker = arg;
    for (;;) {
        double started = now_secs();
        if (started >= worker->measure_end)
            break;
        OrtValue *output = NULL;
        OrtStatus *status = ort->Run(worker->session, NULL, &worker->input_name,
                                     (const OrtValue *const *)&worker->input, 1,
                                     &worker->output_name, 1, &output);
        double finished = now_secs();
        if (status != NULL) {
            snprintf(worker->error, sizeof(worker->error), "%s", ort->GetErrorMessage(status));
            ort->ReleaseStatus(status);
            break;
        }
        ort->ReleaseValue(output);
        if (started >= worker->measure_start && finished <= worker->measure_end)
            record_latency(worker, (finished - started) * 1e3);
    }
    return NULL;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted values, p in (0, 100]. */
static double percentile(const double *sorted, size_t count, double p)
{
    if (count == 0)
        return 0.0;
    double rank = p / 100.0 * (double)count;
    size_t index = (size_t)rank;
    if ((double)index < rank)
        index++;
    if (index == 0)
        index = 1;
    return sorted[(index > count ? count : index) - 1];
}

static step_result_t run_step(OrtSession *session, const char *input_name,
                              const char *output_name, const options_t *options, int concurrency)
{
    worker_t *workers = calloc((size_t)concurrency, sizeof(worker_t));
    if (workers == NULL) {
        fprintf(stderr, PROGRAM ": out of memory for %d threads\n", concurrency);
        exit(1);
    }
    double start = now_secs();
    for (int t = 0; t < concurrency; t++) {
        worker_t *worker = &workers[t];
        worker->session = session;
        worker->input_name = input_name;
        worker->output_name = output_name;
        worker->input = create_random_input(options, 1000u + (unsigned)t);
        worker->measure_start = start + options->warmup_secs;
        worker->measure_end = worker->measure_start + options->window_secs;
        int error = pthread_create(&worker->thread, NULL, run_worker, worker);
        if (error != 0) {
            fprintf(stderr, PROGRAM ": starting thread %d failed: %s\n", t, strerror(error));
            exit(1);
        }
    }

    size_t total = 0;
    for (int t = 0; t < concurrency; t++) {
        pthread_join(workers[t].thread, NULL);
        if (workers[t].error[0] != '\0') {
            fprintf(stderr, PROGRAM ": Run failed on thread %d: %s\n", t, workers[t].error);
            exit(1);
        }
        total += workers[t].count;
    }
    double *all = malloc((total ? total : 1) * sizeof(double));
    if (all == NULL) {
        fprintf(stderr, PROGRAM ": out of memory for %zu latencies\n", total);
        exit(1);
    }
    size_t filled = 0;
    for (int t = 0; t < concurrency; t++) {
        memcpy(all + filled, workers[t].latencies_ms, workers[t].count * sizeof(double));
        filled += workers[t].count;
        free(workers[t].latencies_ms);
        ort->ReleaseValue(workers[t].input);
    }
    free(workers);
    qsort(all, total, sizeof(double), compare_doubles);

    step_result_t result = {
        .concurrency = concurrency,
        .throughput = (double)total / options->window_secs,
        .p50_ms = percentile(all, total, 50.0),
        .p90_ms = percentile(all, total, 90.0),
        .p99_ms = percentile(all, total, 99.0),
        .p999_ms = percentile(all, total, 99.9),
        .max_ms = total ? all[total - 1] : 0.0,
        .runs = total,
    };
    free(all);
    return result;
}

/* Writes text as a JSON string; labels and paths come from the command line. */
static void write_json_string(FILE *out, const char *text)
{
    fputc('"', out);
    for (const unsigned char *c = (const unsigned char *)text; *c != '\0'; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(out, "\\%c", *c);
        else if (*c < 0x20)
            fprintf(out, "\\u%04x", *c);
        else
            fputc(*c, out);
    }
    fputc('"', out);
}

static void write_json(const options_t *options, const char *model_name,
                       const step_result_t *results, int steps)
{
    FILE *out = fopen(options->json_path, "w");
    if (out == NULL) {
        fprintf(stderr, PROGRAM ": opening %s failed: %s\n", options->json_path, strerror(errno));
        exit(1);
    }
    fputs("{\"label\":", out);
    write_json_string(out, options->label);
    fputs(",\"model\":", out);
    write_json_string(out, model_name);
    fprintf(out, ",\"protocol\":\"inprocess\",\"mode\":\"closed\",\"batch\":%" PRId64
                 ",\"intra_op_threads\":%d,\"shape\":[",
            options->shape[0], options->intra_op_threads);
    for (int d = 0; d < options->rank; d++)
        fprintf(out, "%s%" PRId64, d ? "," : "", options->shape[d]);
    fputs("],\"steps\":[", out);
    for (int s = 0; s < steps; s++) {
        const step_result_t *r = &results[s];
        /* One fixed window per step, so "windows" is 1 and the stability rule does not apply;
         * there is no server, so the server times are null. */
        fprintf(out,
                "%s{\"concurrency\":%d,\"throughput\":%.3f,\"p50_ms\":%.4f,\"p90_ms\":%.4f,"
                "\"p99_ms\":%.4f,\"p999_ms\":%.4f,\"max_ms\":%.4f,\"requests\":%zu,"
                "\"errors\":{},\"windows\":1,\"stable\":true,\"server_queue_us\":null,"
                "\"server_compute_us\":null}",
                s ? "," : "", r->concurrency, r->throughput, r->p50_ms, r->p90_ms, r->p99_ms,
                r->p999_ms, r->max_ms, r->runs);
    }
    fputs("]}\n", out);
    if (fclose(out) != 0) {
        fprintf(stderr, PROGRAM ": writing %s failed: %s\n", options->json_path, strerror(errno));
        exit(1);
    }
}

int main(int argc, char **argv)
{
    options_t options;
    parse_options(argc, argv, &options);

    ort = OrtGetApiBase()->GetApi(ORT_API_VERSION);
    if (ort == NULL) {
        fprintf(stderr, PROGRAM ": ONNX Runtime %s does not provide API version %d\n",
                OrtGetApiBase()->GetVersionString(), ORT_API_VERSION);
        return 1;
    }
    OrtEnv *env;
    check_status(ort->CreateEnv(ORT_LOGGING_LEVEL_ERROR, PROGRAM, &env), "creating the environment");
    OrtSession *session = create_session(env, &options);

    OrtAllocator *allocator;
    check_status(ort->GetAllocatorWithDefaultOptions(&allocator), "getting the allocator");
    char *first_input, *output_name;
    check_status(ort->SessionGetInputName(session, 0, allocator, &first_input),
                 "reading the input name");
    check_status(ort->SessionGetOutputName(session, 0, allocator, &output_name),
                 "reading the output name");
    const char *input_name = options.input_name ? options.input_name : first_input;

    const char *base = strrchr(options.model_path, '/');
    base = base ? base + 1 : options.model_path;
    char model_name[256];
    snprintf(model_name, sizeof(model_name), "%s", base);
    char *dot = strrchr(model_name, '.');
    if (dot != NULL && strcmp(dot, ".onnx") == 0)
        *dot = '\0';

    step_result_t results[MAX_STEPS];
    printf("%-12s %6s %12s %10s %10s %10s %10s\n", "label", "conc", "runs/s", "p50 ms",
           "p99 ms", "max ms", "runs");
    for (int s = 0; s < options.steps; s++) {
        results[s] = run_step(session, input_name, output_name, &options, options.concurrency[s]);
        const step_result_t *r = &results[s];
        printf("%-12s %6d %12.1f %10.3f %10.3f %10.3f %10zu\n", options.label, r->concurrency,
               r->throughput, r->p50_ms, r->p99_ms, r->max_ms, r->runs);
        fflush(stdout);
    }
    if (options.json_path != NULL)
        write_json(&options, model_name, results, options.steps);

    allocator->Free(allocator, first_input);
    allocator->Free(allocator, output_name);
    ort->ReleaseSession(session);
    ort->ReleaseEnv(env);
    return 0;
}
