/*
 * The onnxserve binary: parses the command line, creates the library's server, loads the
 * models, starts the HTTP frontend, then waits for SIGINT or SIGTERM and shuts down.
 *
 * Threads: the main thread creates no thread itself and runs no event loop; it only waits for
 * signals. docs/ARCHITECTURE.md gives the process's thread count. SIGINT, SIGTERM, SIGHUP and
 * SIGPIPE are blocked before the library or the frontend starts a thread, so every thread
 * inherits the mask and only sigwaitinfo here receives SIGINT, SIGTERM and SIGHUP.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define OXS_LEAK_CHECK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OXS_LEAK_CHECK 1
#endif
#endif
#ifdef OXS_LEAK_CHECK
#include <sanitizer/lsan_interface.h>
#endif

#include "codec/json.h"
#include "http/frontend.h"
#include "onnxserve.h"
#include "server/log.h"
#include "server/options.h"

/* How often the shutdown wait checks for requests still in flight. */
#define SHUTDOWN_POLL_MS 20

/* Exit status after a second SIGINT or SIGTERM, as a shell reports a process killed by SIGINT. */
#define EXIT_SECOND_SIGNAL 130
/* Exit status for a command-line error. */
#define EXIT_USAGE 2

/* Returns the number of CPUs this process may run on (its affinity mask), at least 1. */
static int count_cores(void)
{
    cpu_set_t set;

    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}

static int64_t monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static const char *signal_name(int signo)
{
    if (signo == SIGINT)
        return "SIGINT";
    if (signo == SIGTERM)
        return "SIGTERM";
    return "other";
}

static void log_startup(const oxs_logger_t *logger, const oxs_cli_options_t *cli, int cores)
{
    oxs_log_field_t fields[OXS_CLI_MAX_FIELDS + 4];
    oxs_cli_field_text_t storage;
    size_t count = 0;

    fields[count++] = OXS_LOG_STR("version", OXS_VERSION);
    fields[count++] = OXS_LOG_STR("onnxruntime_version", oxs_runtime_version());
    fields[count++] = OXS_LOG_NUM("cores", cores);
    fields[count++] = OXS_LOG_NUM("pid", getpid());
    count += oxs_cli_log_fields(cli, &storage, fields + count, OXS_CLI_MAX_FIELDS);
    oxs_log_write(logger, OXS_LOG_INFO, NULL, NULL, "onnxserve starting", fields, count);
}

/* Decodes a warmup body from config.json as the HTTP frontend decodes an infer request. */
static oxs_status_t decode_warmup(void *user, oxs_request_t *request, const char *body,
                                  size_t len, char *error, size_t error_size)
{
    (void)user;
    oxs_json_reply_t *reply = NULL;
    return oxs_json_decode_infer(request, body, len, len, &reply, error, error_size);
}

static void fill_server_options(const oxs_cli_options_t *cli, oxs_logger_t *logger,
                                oxs_options_t *options)
{
    oxs_options_init(options);
    options->workers = cli->workers;
    options->queue_size = cli->queue_size;
    options->intra_op_threads = cli->intra_op_threads;
    options->graph_optimization = cli->graph_optimization;
    options->enable_mem_arena = cli->enable_mem_arena ? 1 : 0;
    options->enable_mem_pattern = cli->enable_mem_pattern ? 1 : 0;
    options->optimized_model_dir = cli->optimized_model_dir;
    options->limits = cli->limits;
    options->warmup_decode = decode_warmup;
    options->log_fn = oxs_log_library_event;
    options->log_user = logger;
    options->log_level = (oxs_log_level_t)atomic_load(&logger->level);
    options->control_mode = cli->control_mode;
    options->stuck_inference_ms = cli->stuck_inference_ms;
    options->stuck_inference_fatal_ms = cli->stuck_inference_fatal_ms;
    options->capture_stacks = 1;
    options->poll_secs = cli->repository_poll_secs;
}

/* Loads one model in explicit mode, or every model for "*". A model that fails to load is
 * logged (it is UNAVAILABLE with the reason) and the server starts anyway. Returns false when
 * name is in no repository, which is most likely a typo. */
static bool load_at_start(const oxs_logger_t *logger, oxs_server_t *server, const char *name)
{
    char error[1024] = "";
    bool every = strcmp(name, "*") == 0;
    size_t count = every ? oxs_server_model_count(server) : 1;

    for (size_t i = 0; i < count; i++) {
        char chosen[160];
        oxs_model_t *model = NULL;
        if (every) {
            if (oxs_server_model_at(server, i, &model) != OXS_OK)
                break;
            snprintf(chosen, sizeof(chosen), "%s", oxs_model_name(model));
            oxs_model_release(model);
            if (i > 0 && oxs_server_model_at(server, i - 1, &model) == OXS_OK) {
                bool same = strcmp(oxs_model_name(model), chosen) == 0;
                oxs_model_release(model);
                if (same)
                    continue; /* another version of the same model */
            }
        } else {
            snprintf(chosen, sizeof(chosen), "%s", name);
        }
        oxs_status_t status = oxs_repository_control(server, OXS_REPOSITORY_LOAD, chosen, error,
                                                     sizeof(error));
        if (status != OXS_OK) {
            oxs_log_field_t fields[] = {
                OXS_LOG_STR("status", oxs_status_name(status)),
                OXS_LOG_STR("error", error),
            };
            oxs_log_write(logger, OXS_LOG_ERROR, NULL, chosen, "--load-model failed", fields,
                          sizeof(fields) / sizeof(fields[0]));
            if (status == OXS_ERR_NOT_FOUND)
                return false;
        }
    }
    return true;
}

/* Loads the model file or the repository. The library logs each model's load or failure
 * through the log callback, and a model that fails to load stays registered as UNAVAILABLE
 * with the reason, for /healthz. Returns false only when nothing could be registered: the
 * repository folder cannot be read, or the file name gives an invalid model name. */
static bool load_models(const oxs_logger_t *logger, const oxs_cli_options_t *cli,
                        oxs_server_t *server)
{
    char error[512] = "";
    oxs_status_t status;

    if (cli->model_file != NULL) {
        char name[256];
        oxs_model_t *model = NULL;

        oxs_cli_model_name(cli->model_file, name, sizeof(name));
        status = oxs_server_load_model_config(server, name, 1, cli->model_file, cli->model_config,
                                              error, sizeof(error));
        if (status == OXS_OK)
            return true;
        if (oxs_server_get_model(server, name, 1, &model) == OXS_OK) {
            oxs_model_release(model); /* registered as UNAVAILABLE, and already logged */
            return true;
        }
        oxs_log_field_t fields[] = {
            OXS_LOG_STR("path", cli->model_file),
            OXS_LOG_STR("status", oxs_status_name(status)),
            OXS_LOG_STR("error", error),
        };
        oxs_log_write(logger, OXS_LOG_ERROR, NULL, name, "failed to register the model", fields,
                      sizeof(fields) / sizeof(fields[0]));
        return false;
    }

    const char *path = NULL;
    status = OXS_OK;
    for (int i = 0; i < cli->model_repositories.count && status == OXS_OK; i++) {
        path = cli->model_repositories.items[i];
        status = oxs_server_add_repository(server, path, error, sizeof(error));
    }
    if (status == OXS_OK) {
        path = NULL;
        status = oxs_server_load_repositories(server, error, sizeof(error));
    }
    if (status != OXS_OK) {
        oxs_log_field_t fields[] = {
            OXS_LOG_STR("path", path != NULL ? path : ""),
            OXS_LOG_STR("status", oxs_status_name(status)),
            OXS_LOG_STR("error", error),
        };
        oxs_log_write(logger, OXS_LOG_ERROR, NULL, NULL, "failed to read the model repository",
                      fields, sizeof(fields) / sizeof(fields[0]));
        return false;
    }
    for (int i = 0; i < cli->load_models.count; i++) {
        const char *name = cli->load_models.items[i];
        if (strcmp(name, "*") != 0 &&
            oxs_model_name_check(name, strlen(name), error, sizeof(error)) != OXS_OK) {
            oxs_log_field_t field = OXS_LOG_STR("error", error);
            oxs_log_write(logger, OXS_LOG_ERROR, NULL, NULL, "--load-model: invalid name",
                          &field, 1);
            return false;
        }
        if (!load_at_start(logger, server, name))
            return false;
    }
    return true;
}

/* Logs how many models are READY, and warns when none is or when --default-model is unknown. */
static void log_model_summary(const oxs_logger_t *logger, const oxs_cli_options_t *cli,
                              oxs_server_t *server)
{
    size_t total = oxs_server_model_count(server);
    size_t ready = 0;
    size_t not_loaded = 0;

    for (size_t i = 0; i < total; i++) {
        oxs_model_t *model = NULL;
        if (oxs_server_model_at(server, i, &model) != OXS_OK)
            continue;
        if (oxs_model_state(model) == OXS_MODEL_READY)
            ready++;
        else if (strcmp(oxs_model_state_reason(model), "not loaded") == 0)
            not_loaded++; /* explicit mode: waits for a load request */
        oxs_model_release(model);
    }

    oxs_log_field_t fields[] = {
        OXS_LOG_NUM("models", total),
        OXS_LOG_NUM("ready", ready),
        OXS_LOG_NUM("unavailable", total - ready - not_loaded),
        OXS_LOG_NUM("not_loaded", not_loaded),
    };
    if (ready == 0 && cli->control_mode != OXS_CONTROL_EXPLICIT)
        oxs_log_write(logger, OXS_LOG_WARN, NULL, NULL,
                      "no model is ready; the server starts anyway and /healthz shows why",
                      fields, sizeof(fields) / sizeof(fields[0]));
    else
        oxs_log_write(logger, OXS_LOG_INFO, NULL, NULL, "models loaded", fields,
                      sizeof(fields) / sizeof(fields[0]));

    if (cli->default_model != NULL) {
        oxs_model_t *model = NULL;
        if (oxs_server_get_model(server, cli->default_model, 0, &model) == OXS_OK) {
            oxs_model_release(model);
        } else {
            oxs_log_field_t field = OXS_LOG_STR("default_model", cli->default_model);
            oxs_log_write(logger, OXS_LOG_WARN, NULL, NULL,
                          "--default-model names no loaded model; POST /predict answers 404",
                          &field, 1);
        }
    }
}

static void log_rescan_done(void *user, oxs_status_t status, const char *message)
{
    oxs_log_field_t fields[] = {
        OXS_LOG_STR("status", oxs_status_name(status)),
        OXS_LOG_STR("error", message),
    };
    /* A model that fails to load is logged on its own; this line reports the rescan. */
    if (status == OXS_OK)
        oxs_log_write(user, OXS_LOG_INFO, NULL, NULL, "SIGHUP rescan done", NULL, 0);
    else
        oxs_log_write(user, OXS_LOG_WARN, NULL, NULL, "SIGHUP rescan failed", fields, 2);
}

/* Waits for SIGINT or SIGTERM, and rescans the repositories on each SIGHUP meanwhile. Returns
 * the signal number that ends the wait. */
static int wait_for_signal(const oxs_logger_t *logger, const sigset_t *signals,
                           oxs_server_t *server, bool repositories)
{
    for (;;) {
        siginfo_t info;
        int signo = sigwaitinfo(signals, &info);
        if (signo == SIGHUP) {
            char error[256] = "";
            if (!repositories) {
                oxs_log_write(logger, OXS_LOG_WARN, NULL, NULL,
                              "SIGHUP ignored: no model repository to rescan", NULL, 0);
                continue;
            }
            oxs_status_t status = oxs_repository_submit(server, OXS_REPOSITORY_RESCAN, NULL,
                                                        log_rescan_done, (void *)logger, error,
                                                        sizeof(error));
            oxs_log_field_t field = OXS_LOG_STR("error", error);
            if (status == OXS_OK)
                oxs_log_write(logger, OXS_LOG_INFO, NULL, NULL,
                              "SIGHUP: rescanning the model repositories", NULL, 0);
            else
                oxs_log_write(logger, OXS_LOG_WARN, NULL, NULL, "SIGHUP rescan rejected", &field,
                              1);
            continue;
        }
        if (signo > 0)
            return signo;
        /* EINTR: a signal outside the set, such as SIGSTOP and SIGCONT from a job shell. */
    }
}

/* Drains after the first signal, once the caller has stopped accepting: waits until every
 * request received in full has its response. Returns 0 then. Exits at once with
 * EXIT_SECOND_SIGNAL on a second signal, or with 1 when --exit-timeout-secs passes. */
static int drain(const oxs_logger_t *logger, const sigset_t *signals, int exit_timeout_secs,
                 oxs_server_t *server, oxs_http_frontend_t *frontend)
{
    int64_t deadline = monotonic_ms() + (int64_t)exit_timeout_secs * 1000;

    for (;;) {
        int in_flight = oxs_http_in_flight(frontend);
        int pending = oxs_server_pending(server);
        if (in_flight == 0 && pending == 0)
            return 0;

        int64_t left_ms = deadline - monotonic_ms();
        if (left_ms <= 0) {
            oxs_log_field_t fields[] = {
                OXS_LOG_NUM("requests_in_flight", in_flight),
                OXS_LOG_NUM("requests_queued_or_running", pending),
                OXS_LOG_NUM("exit_timeout_secs", exit_timeout_secs),
            };
            oxs_log_write(logger, OXS_LOG_ERROR, NULL, NULL,
                          "exit timeout passed; abandoning the requests still in flight", fields,
                          sizeof(fields) / sizeof(fields[0]));
            /* Worker and I/O threads still run, so no exit handler or destructor may run. */
            _exit(1);
        }

        int64_t wait_ms = left_ms < SHUTDOWN_POLL_MS ? left_ms : SHUTDOWN_POLL_MS;
        struct timespec timeout = {.tv_sec = 0, .tv_nsec = (long)wait_ms * 1000000L};
        siginfo_t info;
        int signo = sigtimedwait(signals, &info, &timeout);
        if (signo > 0) {
            oxs_log_field_t fields[] = {
                OXS_LOG_STR("signal", signal_name(signo)),
                OXS_LOG_NUM("requests_in_flight", in_flight),
                OXS_LOG_NUM("requests_queued_or_running", pending),
            };
            oxs_log_write(logger, OXS_LOG_WARN, NULL, NULL,
                          "second signal received; exiting without waiting", fields,
                          sizeof(fields) / sizeof(fields[0]));
            _exit(EXIT_SECOND_SIGNAL);
        }
        /* signo < 0 means EAGAIN after the timeout or EINTR, and both poll again. */
    }
}

/* Ends the process without running exit handlers or static destructors. ONNX Runtime 1.29
 * leaves a thread running that can read memory its static destructors free, which
 * AddressSanitizer reported as a use after free in about one shutdown in five. By the time this
 * runs, onnxserve has released everything it owns and logs go out with write(2), so skipping
 * the handlers loses nothing. Output of --help and --version goes through stdio, flushed first. */
static _Noreturn void exit_without_handlers(int status)
{
    fflush(NULL);
#ifdef OXS_LEAK_CHECK
    /* LeakSanitizer normally checks from an exit handler, which _exit skips. */
    __lsan_do_leak_check();
#endif
    _exit(status);
}

static int run(int argc, char **argv);

int main(int argc, char **argv)
{
    exit_without_handlers(run(argc, argv));
}

static int run(int argc, char **argv)
{
    sigset_t blocked;
    sigset_t shutdown_signals;
    oxs_cli_options_t cli;
    oxs_logger_t logger;
    oxs_options_t options;
    oxs_server_t *server = NULL;
    oxs_http_frontend_t *frontend = NULL;
    char error[512] = "";
    int exit_status = 1;

    /* Before anything can start a thread, so that every thread inherits the mask. */
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGPIPE);
    sigaddset(&blocked, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &blocked, NULL);
    sigemptyset(&shutdown_signals);
    sigaddset(&shutdown_signals, SIGINT);
    sigaddset(&shutdown_signals, SIGTERM);
    sigset_t waited = shutdown_signals;
    sigaddset(&waited, SIGHUP);

    int cores = count_cores();
    oxs_cli_options_init(&cli, cores);
    if (!oxs_cli_parse(&cli, argc, argv, error, sizeof(error))) {
        fprintf(stderr, "onnxserve: %s\n", error);
        return EXIT_USAGE;
    }
    if (cli.help) {
        oxs_cli_print_help(stdout, cores);
        return 0;
    }
    if (cli.version) {
        printf("onnxserve %s (ONNX Runtime %s)\n", OXS_VERSION, oxs_runtime_version());
        return 0;
    }

    oxs_logger_init(&logger, cli.log_level, cli.log_format);
    log_startup(&logger, &cli, cores);

    fill_server_options(&cli, &logger, &options);
    oxs_status_t status = oxs_server_create(&options, &server, error, sizeof(error));
    if (status != OXS_OK) {
        oxs_log_field_t fields[] = {
            OXS_LOG_STR("status", oxs_status_name(status)),
            OXS_LOG_STR("error", error),
        };
        oxs_log_write(&logger, OXS_LOG_ERROR, NULL, NULL, "failed to create the server", fields,
                      sizeof(fields) / sizeof(fields[0]));
        goto cleanup;
    }

    oxs_http_config_t http = {
        .host = cli.host,
        .port = cli.http_port,
        .threads = cli.http_threads,
        .max_request_bytes = cli.max_request_bytes,
        .max_uri_bytes = cli.max_uri_bytes,
        .max_headers = cli.max_headers,
        .max_header_bytes = cli.max_header_bytes,
        .header_timeout_secs = cli.http_header_timeout_secs,
        .body_timeout_secs = cli.http_body_timeout_secs,
        .idle_timeout_secs = cli.http_idle_timeout_secs,
        .default_model = cli.default_model,
        .strict_readiness = cli.strict_readiness,
        .metrics_port = cli.metrics_port,
        .metrics_on_http_port = cli.metrics_on_http_port,
        .trace_file = cli.trace_file,
        .max_connections = cli.max_connections,
    };
    /* A port in use is reported before loading models, which can take long. The listeners
     * themselves open after loading, so clients never reach a half-loaded server. */
    status = oxs_http_check_listen(&http, error, sizeof(error));
    if (status == OXS_OK && cli.trace_file != NULL) {
        /* Checked before the models load, which can take long. */
        FILE *trace = fopen(cli.trace_file, "a");
        if (trace == NULL) {
            snprintf(error, sizeof(error), "--trace-file \"%s\" cannot be opened: %s",
                     cli.trace_file, strerror(errno));
            status = OXS_ERR_INVALID_ARGUMENT;
        } else {
            fclose(trace);
        }
    }
    if (status == OXS_OK) {
        if (!load_models(&logger, &cli, server))
            goto cleanup;
        log_model_summary(&logger, &cli, server);
        status = oxs_http_start(server, &http, &logger, &frontend, error, sizeof(error));
    }
    if (status != OXS_OK) {
        oxs_log_field_t fields[] = {
            OXS_LOG_STR("host", cli.host),
            OXS_LOG_NUM("http_port", cli.http_port),
            OXS_LOG_NUM("metrics_port", cli.metrics_port),
            OXS_LOG_STR("status", oxs_status_name(status)),
            OXS_LOG_STR("error", error),
        };
        oxs_log_write(&logger, OXS_LOG_ERROR, NULL, NULL, "failed to start the HTTP server",
                      fields, sizeof(fields) / sizeof(fields[0]));
        goto cleanup;
    }
    {
        /* Tests read the bound port from this line. */
        oxs_log_field_t fields[] = {
            OXS_LOG_STR("host", cli.host),
            OXS_LOG_NUM("http_port", oxs_http_port(frontend)),
            OXS_LOG_NUM("metrics_port", oxs_http_metrics_port(frontend)),
            OXS_LOG_NUM("http_threads", cli.http_threads),
        };
        oxs_log_write(&logger, OXS_LOG_INFO, NULL, NULL, "HTTP server listening", fields,
                      sizeof(fields) / sizeof(fields[0]));
    }

    int signo = wait_for_signal(&logger, &waited, server, cli.model_repositories.count > 0);
    /* Listeners close before the line below is logged, so that it is true when written. */
    oxs_http_stop_accepting(frontend);
    oxs_server_stop_accepting(server);
    {
        oxs_log_field_t fields[] = {
            OXS_LOG_STR("signal", signal_name(signo)),
            OXS_LOG_NUM("requests_in_flight", oxs_http_in_flight(frontend)),
            OXS_LOG_NUM("requests_queued_or_running", oxs_server_pending(server)),
            OXS_LOG_NUM("exit_timeout_secs", cli.exit_timeout_secs),
        };
        oxs_log_write(&logger, OXS_LOG_INFO, NULL, NULL,
                      "shutting down: no new connections or requests; finishing requests in "
                      "flight",
                      fields, sizeof(fields) / sizeof(fields[0]));
    }
    exit_status = drain(&logger, &shutdown_signals, cli.exit_timeout_secs, server, frontend);

cleanup:
    if (frontend != NULL)
        oxs_http_destroy(frontend);
    if (server != NULL)
        oxs_server_destroy(server);
    if (exit_status == 0)
        oxs_log_write(&logger, OXS_LOG_INFO, NULL, NULL, "shutdown complete", NULL, 0);
    return exit_status;
}
