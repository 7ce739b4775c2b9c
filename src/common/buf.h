/*
 * A growable byte buffer with a hard maximum, used to write response bodies and log lines.
 * The owner reuses one buffer across requests (oxs_buf_reset keeps the memory), so steady
 * traffic does not allocate. Header-only so the library and the frontend share it.
 */
#ifndef OXS_COMMON_BUF_H
#define OXS_COMMON_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct oxs_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max; /* 0: no maximum */
    bool failed; /* set when an append did not fit or memory ran out; later appends do nothing */
    bool out_of_memory; /* set with failed when memory ran out, as opposed to the maximum */
} oxs_buf_t;

static inline void oxs_buf_init(oxs_buf_t *buf, size_t max)
{
    memset(buf, 0, sizeof(*buf));
    buf->max = max;
}

static inline void oxs_buf_free(oxs_buf_t *buf)
{
    free(buf->data);
    memset(buf, 0, sizeof(*buf));
}

static inline void oxs_buf_reset(oxs_buf_t *buf)
{
    buf->len = 0;
    buf->failed = false;
    buf->out_of_memory = false;
}

/* Makes room for extra more bytes; returns false (and marks the buffer failed) if it cannot. */
static inline bool oxs_buf_reserve(oxs_buf_t *buf, size_t extra)
{
    if (buf->failed)
        return false;
    if (extra <= buf->cap - buf->len)
        return true;
    size_t need = buf->len + extra;
    if (need < buf->len || (buf->max != 0 && need > buf->max)) {
        buf->failed = true;
        return false;
    }
    size_t cap = buf->cap ? buf->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (buf->max != 0 && cap > buf->max)
        cap = buf->max;
    char *data = realloc(buf->data, cap + 1); /* +1 keeps room for a terminating NUL */
    if (data == NULL) {
        buf->failed = true;
        buf->out_of_memory = true;
        return false;
    }
    buf->data = data;
    buf->cap = cap;
    return true;
}

static inline void oxs_buf_append(oxs_buf_t *buf, const void *bytes, size_t len)
{
    if (len == 0 || !oxs_buf_reserve(buf, len))
        return;
    memcpy(buf->data + buf->len, bytes, len);
    buf->len += len;
}

static inline void oxs_buf_puts(oxs_buf_t *buf, const char *text)
{
    oxs_buf_append(buf, text, strlen(text));
}

static inline void oxs_buf_putc(oxs_buf_t *buf, char c)
{
    if (buf->len < buf->cap && !buf->failed)
        buf->data[buf->len++] = c;
    else
        oxs_buf_append(buf, &c, 1);
}

__attribute__((format(printf, 2, 3))) static inline void oxs_buf_printf(oxs_buf_t *buf,
                                                                      const char *format, ...)
{
    va_list args;
    va_start(args, format);
    char small[256];
    int n = vsnprintf(small, sizeof(small), format, args);
    va_end(args);
    if (n < 0) {
        buf->failed = true;
        return;
    }
    if ((size_t)n < sizeof(small)) {
        oxs_buf_append(buf, small, (size_t)n);
        return;
    }
    if (!oxs_buf_reserve(buf, (size_t)n + 1))
        return;
    va_start(args, format);
    vsnprintf(buf->data + buf->len, (size_t)n + 1, format, args);
    va_end(args);
    buf->len += (size_t)n;
}

/* Returns the contents as a NUL-terminated string (the NUL is not counted in len). */
static inline const char *oxs_buf_cstr(oxs_buf_t *buf)
{
    if (buf->data == NULL && !oxs_buf_reserve(buf, 1))
        return "";
    buf->data[buf->len] = '\0';
    return buf->data;
}

#endif /* OXS_COMMON_BUF_H */
