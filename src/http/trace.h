/*
 * The trace file (--trace-file): one JSON line per request with the times it passed each step,
 * for offline timeline analysis. Shared by every I/O loop of a frontend.
 */
#ifndef OXS_HTTP_TRACE_H
#define OXS_HTTP_TRACE_H

#include <stdint.h>

#include "onnxserve.h"

typedef struct oxs__http_trace oxs__http_trace_t;

/* One request's line. Times are on the monotonic clock in microseconds, 0 when not reached. */
typedef struct oxs__http_trace_record {
    const char *request_id;
    const char *trace_id; /* "" without a traceparent */
    const char *model;    /* "" when the request named none */
    const char *method;
    const char *path;
    int status;
    int64_t received_us;
    oxs_response_times_t times;
    int64_t sent_us;
} oxs__http_trace_record_t;

/* Opens (appends to) the file at path. */
oxs_status_t oxs__http_trace_open(const char *path, oxs__http_trace_t **out, char *error,
                                  size_t error_size);
void oxs__http_trace_close(oxs__http_trace_t *trace);

/* Writes one line, with times as Unix time in microseconds. Any I/O thread. */
void oxs__http_trace_write(oxs__http_trace_t *trace, const oxs__http_trace_record_t *record);

#endif /* OXS_HTTP_TRACE_H */
