/*
 * The server's log emitter: one line per event on stderr, either one JSON object per line
 * ({"ts": RFC 3339 with microseconds, "level", "msg", then fields}) or readable text.
 * Thread-safe: a line is formatted in a thread-local buffer and written with one write(2).
 * The level is checked before anything is formatted. Every string is JSON-escaped, so text a
 * client sent can never break a line.
 */
#ifndef OXS_SERVER_LOG_H
#define OXS_SERVER_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "onnxserve.h"

typedef enum oxs_log_format {
    OXS_LOG_FORMAT_JSON = 0,
    OXS_LOG_FORMAT_TEXT = 1,
} oxs_log_format_t;

typedef struct oxs_logger {
    _Atomic int level;  /* oxs_log_level_t; changed at run time by POST /v2/logging */
    _Atomic int format; /* oxs_log_format_t */
    int fd; /* 2 unless a test redirects it */
} oxs_logger_t;

void oxs_logger_init(oxs_logger_t *logger, oxs_log_level_t level, oxs_log_format_t format);

static inline bool oxs_log_enabled(const oxs_logger_t *logger, oxs_log_level_t level)
{
    return logger != NULL &&
           (int)level <= atomic_load_explicit(&((oxs_logger_t *)logger)->level,
                                              memory_order_relaxed);
}

/* Changes the level and format while other threads log. Any thread. */
void oxs_logger_set(const oxs_logger_t *logger, oxs_log_level_t level, oxs_log_format_t format);

/* Writes one event. request_id and model may be NULL (then they are left out). */
void oxs_log_write(const oxs_logger_t *logger, oxs_log_level_t level, const char *request_id,
                   const char *model, const char *msg, const oxs_log_field_t *fields,
                   size_t field_count);

/* Adapter with the library's oxs_log_fn signature; user is an oxs_logger_t. */
void oxs_log_library_event(void *user, oxs_log_level_t level, const char *model, const char *msg,
                           const oxs_log_field_t *fields, size_t field_count);

/* Parses "error", "warn", "info" or "debug"; returns false for anything else. */
bool oxs_log_level_parse(const char *text, oxs_log_level_t *out);

#define OXS_LOG_STR(k, v) ((oxs_log_field_t){.key = (k), .str = (v), .num = 0})
#define OXS_LOG_NUM(k, v) ((oxs_log_field_t){.key = (k), .str = NULL, .num = (int64_t)(v)})

#endif /* OXS_SERVER_LOG_H */
