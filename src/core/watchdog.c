/*
 * The watchdog: a thread that notices inferences that run far longer than their model's usual
 * time. It logs each such run once, with the native stack of the instance thread that runs it,
 * and counts it. While a run has gone on past the fatal limit, it reports the server not live,
 * so that an orchestrator restarts it.
 *
 * Threads: one watchdog thread per server (oxs-watchdog), started with the server. The stack
 * is taken by a signal handler on the stuck thread (options.capture_stacks): backtrace there,
 * symbols here.
 */
#include <errno.h>
#include <execinfo.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"

#define CHECK_PERIOD_US 100000
#define MAX_FRAMES 48
/* The automatic limit: 20 times the model's p99 run time, and at least 10 s. */
#define AUTO_FACTOR 20
#define AUTO_MINIMUM_US INT64_C(10000000)
/* How long the watchdog waits for the stuck thread to record its stack. */
#define CAPTURE_WAIT_US 200000

struct oxs__watchdog {
    oxs_server_t *server;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping;
    char why[300];           /* set while not live; under lock */
    _Atomic uint64_t stuck;  /* runs reported; written by the watchdog thread only */
};

/* ---- stacks ------------------------------------------------------------------------------------ */

/* One capture at a time, by the one watchdog thread that requests it. */
static void *captured_frames[MAX_FRAMES];
static atomic_int captured_depth;
static atomic_int capture_state; /* 0 idle, 1 requested, 2 done */
static pthread_once_t capture_once = PTHREAD_ONCE_INIT;
static bool capture_ready;

static void on_capture_signal(int signo)
{
    (void)signo;
    if (atomic_load(&capture_state) != 1)
        return;
    int depth = backtrace(captured_frames, MAX_FRAMES);
    atomic_store(&captured_depth, depth);
    atomic_store(&capture_state, 2);
}

static int capture_signal(void)
{
    return SIGRTMIN + 3;
}

static void install_capture(void)
{
    /* backtrace loads its unwinder on first use, which must not happen in a signal handler. */
    void *warm[2];
    backtrace(warm, 2);
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = on_capture_signal;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    capture_ready = sigaction(capture_signal(), &action, NULL) == 0;
}

/* Writes thread's stack, symbolized where the symbols are exported, into out. */
static void capture_stack(pthread_t thread, char *out, size_t size)
{
    snprintf(out, size, "not captured");
    pthread_once(&capture_once, install_capture);
    if (!capture_ready)
        return;
    atomic_store(&capture_state, 1);
    if (pthread_kill(thread, capture_signal()) != 0) {
        atomic_store(&capture_state, 0);
        return;
    }
    for (int64_t waited = 0; atomic_load(&capture_state) != 2 && waited < CAPTURE_WAIT_US;
         waited += 1000) {
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    if (atomic_load(&capture_state) != 2) {
        /* The thread has not run the handler yet. Should it run later, it finds the state
         * idle and returns at once. */
        atomic_store(&capture_state, 0);
        snprintf(out, size, "not captured: the thread did not answer the signal");
        return;
    }
    int depth = atomic_load(&captured_depth);
    char **symbols = backtrace_symbols(captured_frames, depth);
    atomic_store(&capture_state, 0);
    size_t used = 0;
    out[0] = '\0';
    /* Frame 0 is the handler and frame 1 the signal trampoline. Each symbol reads
     * "/path/module(function+offset) [address]"; the folders are left out. */
    for (int i = 2; i < depth && used < size; i++) {
        const char *frame = symbols != NULL ? symbols[i] : NULL;
        const char *open = frame != NULL ? strchr(frame, '(') : NULL;
        const char *base = frame;
        for (const char *c = frame; c != NULL && *c != '\0' && (open == NULL || c < open); c++)
            if (*c == '/')
                base = c + 1;
        int n = frame != NULL ? snprintf(out + used, size - used, "%s%s", used ? " | " : "", base)
                              : snprintf(out + used, size - used, "%s%p", used ? " | " : "",
                                         captured_frames[i]);
        used += n > 0 ? (size_t)n : 0;
    }
    free(symbols); /* from backtrace_symbols, which uses malloc */
}

/* ---- the thread ------------------------------------------------------------------------------ */

static int64_t threshold_for(const oxs_server_t *server, const oxs_model_t *model)
{
    if (server->options.stuck_inference_ms > 0)
        return server->options.stuck_inference_ms * 1000;
    int64_t automatic = AUTO_FACTOR * oxs__metrics_infer_p99_us(model->metrics);
    return automatic > AUTO_MINIMUM_US ? automatic : AUTO_MINIMUM_US;
}

static void report(oxs__watchdog_t *watchdog, oxs_model_t *model, const oxs__stuck_t *stuck,
                   int64_t threshold_us)
{
    oxs_server_t *server = watchdog->server;
    char stack[3000] = "not captured: options.capture_stacks is off";
    if (server->options.capture_stacks)
        capture_stack(stuck->thread, stack, sizeof(stack));
    atomic_store_explicit(&watchdog->stuck,
                          atomic_load_explicit(&watchdog->stuck, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    oxs_log_field_t fields[] = {
        {.key = "version", .num = model->version},
        {.key = "worker", .num = stuck->instance},
        {.key = "request_id", .str = stuck->request_id},
        {.key = "running_ms", .num = stuck->running_us / 1000},
        {.key = "threshold_ms", .num = threshold_us / 1000},
        {.key = "stack", .str = stack},
    };
    oxs__log(server, OXS_LOG_ERROR, model->name, "inference stuck", fields,
             sizeof(fields) / sizeof(fields[0]));
}

/* Checks every model once and returns why the server is not live, or "" when it is. */
static void check(oxs__watchdog_t *watchdog, char *why, size_t why_size)
{
    oxs_server_t *server = watchdog->server;
    int64_t fatal_us = server->options.stuck_inference_fatal_ms * 1000;
    size_t count = oxs_server_model_count(server);
    why[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        oxs_model_t *model = NULL;
        if (oxs_server_model_at(server, i, &model) != OXS_OK)
            break;
        if (model->metrics != NULL && oxs_model_state(model) == OXS_MODEL_READY) {
            int64_t threshold = threshold_for(server, model);
            oxs__stuck_t stuck;
            bool fatal = false;
            int64_t now = oxs__now_us();
            while (oxs__scheduler_find_stuck(model, now, threshold, fatal_us, &stuck, &fatal))
                report(watchdog, model, &stuck, threshold);
            if (fatal && why[0] == '\0')
                snprintf(why, why_size,
                         "model \"%s\" version %lld has an inference running for more than "
                         "%lld ms (--stuck-inference-fatal-ms)",
                         model->name, (long long)model->version,
                         (long long)server->options.stuck_inference_fatal_ms);
        }
        oxs_model_release(model);
    }
}

static void *watchdog_main(void *arg)
{
    oxs__watchdog_t *watchdog = arg;
    pthread_mutex_lock(&watchdog->lock);
    while (!watchdog->stopping) {
        pthread_mutex_unlock(&watchdog->lock);
        char why[sizeof(watchdog->why)];
        check(watchdog, why, sizeof(why));
        pthread_mutex_lock(&watchdog->lock);
        snprintf(watchdog->why, sizeof(watchdog->why), "%s", why);
        int64_t until = oxs__now_us() + CHECK_PERIOD_US;
        struct timespec wake = {.tv_sec = (time_t)(until / 1000000),
                                .tv_nsec = (long)(until % 1000000) * 1000};
        while (!watchdog->stopping &&
               pthread_cond_timedwait(&watchdog->wake, &watchdog->lock, &wake) != ETIMEDOUT) {
        }
    }
    pthread_mutex_unlock(&watchdog->lock);
    return NULL;
}

oxs_status_t oxs__watchdog_start(oxs_server_t *server, char *error, size_t error_size)
{
    oxs__watchdog_t *watchdog = oxs__calloc(&server->allocator, 1, sizeof(*watchdog));
    if (watchdog == NULL)
        return oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
    watchdog->server = server;
    pthread_mutex_init(&watchdog->lock, NULL);
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&watchdog->wake, &attributes);
    pthread_condattr_destroy(&attributes);
    server->watchdog = watchdog;
    int rc = pthread_create(&watchdog->thread, NULL, watchdog_main, watchdog);
    if (rc != 0)
        return oxs__fail(OXS_ERR_INTERNAL, error, error_size,
                         "starting the watchdog thread failed: %s", strerror(rc));
    watchdog->started = true;
    pthread_setname_np(watchdog->thread, "oxs-watchdog");
    return OXS_OK;
}

void oxs__watchdog_stop(oxs_server_t *server)
{
    oxs__watchdog_t *watchdog = server->watchdog;
    if (watchdog == NULL)
        return;
    if (watchdog->started) {
        pthread_mutex_lock(&watchdog->lock);
        watchdog->stopping = true;
        pthread_cond_broadcast(&watchdog->wake);
        pthread_mutex_unlock(&watchdog->lock);
        pthread_join(watchdog->thread, NULL);
    }
    pthread_cond_destroy(&watchdog->wake);
    pthread_mutex_destroy(&watchdog->lock);
    oxs__free(&server->allocator, watchdog);
    server->watchdog = NULL;
}

uint64_t oxs__watchdog_stuck_total(const oxs_server_t *server)
{
    oxs__watchdog_t *watchdog = server->watchdog;
    return watchdog != NULL ? atomic_load_explicit(&watchdog->stuck, memory_order_relaxed) : 0;
}

bool oxs_server_live(oxs_server_t *server, char *why, size_t why_size)
{
    oxs__watchdog_t *watchdog = server->watchdog;
    if (watchdog == NULL)
        return true;
    pthread_mutex_lock(&watchdog->lock);
    bool live = watchdog->why[0] == '\0';
    if (!live && why != NULL && why_size > 0)
        snprintf(why, why_size, "%s", watchdog->why);
    pthread_mutex_unlock(&watchdog->lock);
    return live;
}
