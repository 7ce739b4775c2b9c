/*
 * The trace file: JSON lines written under a mutex, each flushed at once so that a crash loses
 * at most the line being written.
 */
#include "http/trace.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/json.h"
#include "common/buf.h"

struct oxs__http_trace {
    FILE *file;
    pthread_mutex_t lock;
    oxs_buf_t line; /* reused for every line, under lock */
    int64_t unix_minus_monotonic_us;
};

static int64_t clock_us(clockid_t clock)
{
    struct timespec now;
    clock_gettime(clock, &now);
    return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

oxs_status_t oxs__http_trace_open(const char *path, oxs__http_trace_t **out, char *error,
                                  size_t error_size)
{
    *out = NULL;
    oxs__http_trace_t *trace = calloc(1, sizeof(*trace));
    if (trace == NULL) {
        snprintf(error, error_size, "out of memory");
        return OXS_ERR_OUT_OF_MEMORY;
    }
    trace->file = fopen(path, "a");
    if (trace->file == NULL) {
        snprintf(error, error_size, "--trace-file \"%s\" cannot be opened: %s", path,
                 strerror(errno));
        free(trace);
        return OXS_ERR_INVALID_ARGUMENT;
    }
    pthread_mutex_init(&trace->lock, NULL);
    oxs_buf_init(&trace->line, 64 * 1024);
    trace->unix_minus_monotonic_us = clock_us(CLOCK_REALTIME) - clock_us(CLOCK_MONOTONIC);
    *out = trace;
    return OXS_OK;
}

void oxs__http_trace_close(oxs__http_trace_t *trace)
{
    if (trace == NULL)
        return;
    fclose(trace->file);
    oxs_buf_free(&trace->line);
    pthread_mutex_destroy(&trace->lock);
    free(trace);
}

static void write_time(oxs_buf_t *line, const char *key, int64_t monotonic_us, int64_t offset)
{
    if (monotonic_us != 0)
        oxs_buf_printf(line, ",\"%s\":%lld", key, (long long)(monotonic_us + offset));
}

static void write_text(oxs_buf_t *line, const char *key, const char *value)
{
    if (value == NULL || value[0] == '\0')
        return;
    oxs_buf_printf(line, ",\"%s\":", key);
    oxs_json_write_string(line, value, strlen(value));
}

void oxs__http_trace_write(oxs__http_trace_t *trace, const oxs__http_trace_record_t *record)
{
    oxs_buf_t *line = &trace->line;
    int64_t offset = trace->unix_minus_monotonic_us;

    pthread_mutex_lock(&trace->lock);
    oxs_buf_reset(line);
    oxs_buf_puts(line, "{\"request_id\":");
    oxs_json_write_string(line, record->request_id, strlen(record->request_id));
    write_text(line, "trace_id", record->trace_id);
    write_text(line, "model", record->model);
    write_text(line, "method", record->method);
    write_text(line, "path", record->path);
    oxs_buf_printf(line, ",\"status\":%d", record->status);
    write_time(line, "received_us", record->received_us, offset);
    write_time(line, "queued_us", record->times.queued_us, offset);
    write_time(line, "batch_start_us", record->times.started_us, offset);
    write_time(line, "compute_start_us", record->times.compute_started_us, offset);
    write_time(line, "compute_end_us", record->times.compute_ended_us, offset);
    write_time(line, "outputs_ready_us", record->times.ended_us, offset);
    write_time(line, "sent_us", record->sent_us, offset);
    oxs_buf_puts(line, "}\n");
    if (!line->failed) {
        fwrite(line->data, 1, line->len, trace->file);
        fflush(trace->file);
    }
    pthread_mutex_unlock(&trace->lock);
}
