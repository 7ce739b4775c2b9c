/* Allocation through the server's allocator, error formatting and small shared helpers. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sched.h>

#include "core/internal.h"

void *oxs__malloc(const oxs_allocator_t *allocator, size_t size)
{
    if (size == 0)
        size = 1;
    if (allocator != NULL && allocator->malloc_fn != NULL)
        return allocator->malloc_fn(allocator->user, size);
    return malloc(size);
}

void *oxs__calloc(const oxs_allocator_t *allocator, size_t count, size_t size)
{
    if (size != 0 && count > SIZE_MAX / size)
        return NULL;
    void *ptr = oxs__malloc(allocator, count * size);
    if (ptr != NULL)
        memset(ptr, 0, count * size);
    return ptr;
}

void oxs__free(const oxs_allocator_t *allocator, void *ptr)
{
    if (ptr == NULL)
        return;
    if (allocator != NULL && allocator->free_fn != NULL)
        allocator->free_fn(allocator->user, ptr);
    else
        free(ptr);
}

char *oxs__strndup(const oxs_allocator_t *allocator, const char *text, size_t len)
{
    char *copy = oxs__malloc(allocator, len + 1);
    if (copy == NULL)
        return NULL;
    memcpy(copy, text, len);
    copy[len] = '\0';
    return copy;
}

char *oxs__strdup(const oxs_allocator_t *allocator, const char *text)
{
    return oxs__strndup(allocator, text, strlen(text));
}

oxs_status_t oxs__fail(oxs_status_t status, char *error, size_t error_size, const char *format,
                       ...)
{
    if (error != NULL && error_size > 0) {
        va_list args;
        va_start(args, format);
        vsnprintf(error, error_size, format, args);
        va_end(args);
    }
    return status;
}

/* A path starts with '/' at the start of the text or after a space, quote, bracket or '=' and
 * runs to the next space or quote. ONNX Runtime puts model paths in load errors; clients must
 * not see the server's filesystem layout. */
void oxs__redact_paths(char *text)
{
    static const char replacement[] = "<path>";
    char *out = text;
    const char *in = text;
    char previous = ' ';

    while (*in != '\0') {
        bool boundary = strchr(" \t\"'([=:", previous) != NULL;
        if (*in == '/' && boundary && in[1] != '\0' && in[1] != ' ') {
            const char *start = in;
            while (*in != '\0' && strchr(" \t\"')],", *in) == NULL)
                in++;
            /* out never runs ahead of in, so the replacement fits when the path is at least as
             * long as the replacement. A shorter path is copied through unchanged. */
            if ((size_t)(in - out) >= sizeof(replacement) - 1) {
                memcpy(out, replacement, sizeof(replacement) - 1);
                out += sizeof(replacement) - 1;
            } else {
                memmove(out, start, (size_t)(in - start));
                out += in - start;
            }
            previous = '>';
            continue;
        }
        previous = *in;
        *out++ = *in++;
    }
    *out = '\0';
}

void oxs__redact_text(char *text, const char *needle)
{
    static const char replacement[] = "<path>";
    size_t needle_len = strlen(needle);
    if (needle_len < sizeof(replacement) - 1)
        return; /* too short to replace in place, and too short to reveal a layout */

    char *found;
    char *from = text;
    while ((found = strstr(from, needle)) != NULL) {
        memcpy(found, replacement, sizeof(replacement) - 1);
        memmove(found + sizeof(replacement) - 1, found + needle_len,
                strlen(found + needle_len) + 1);
        from = found + sizeof(replacement) - 1;
    }
}

int64_t oxs__now_us(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

/* ---- tables ------------------------------------------------------------------------------ */

const char *oxs_status_name(oxs_status_t status)
{
    switch (status) {
#define OXS__STATUS_NAME(code, number, message) \
    case code:                                   \
        return #code;
        OXS_STATUS_TABLE(OXS__STATUS_NAME)
#undef OXS__STATUS_NAME
    }
    return "OXS_UNKNOWN";
}

const char *oxs_status_message(oxs_status_t status)
{
    switch (status) {
#define OXS__STATUS_MESSAGE(code, number, message) \
    case code:                                      \
        return message;
        OXS_STATUS_TABLE(OXS__STATUS_MESSAGE)
#undef OXS__STATUS_MESSAGE
    }
    return "unknown status";
}

static const struct {
    const char *name;
    size_t size;
} datatype_table[OXS_DT_COUNT] = {
#define OXS__DATATYPE_ROW(code, name, size) [code] = {name, size},
    OXS_DATATYPE_TABLE(OXS__DATATYPE_ROW)
#undef OXS__DATATYPE_ROW
};

const char *oxs_datatype_name(oxs_datatype_t datatype)
{
    if ((unsigned)datatype >= OXS_DT_COUNT)
        return "INVALID";
    return datatype_table[datatype].name;
}

oxs_datatype_t oxs_datatype_from_name(const char *name, size_t len)
{
    for (int i = 1; i < OXS_DT_COUNT; i++) {
        const char *candidate = datatype_table[i].name;
        if (strlen(candidate) == len && memcmp(candidate, name, len) == 0)
            return (oxs_datatype_t)i;
    }
    return OXS_DT_INVALID;
}

size_t oxs_datatype_size(oxs_datatype_t datatype)
{
    if ((unsigned)datatype >= OXS_DT_COUNT)
        return 0;
    return datatype_table[datatype].size;
}

const char *oxs_model_state_name(oxs_model_state_t state)
{
    switch (state) {
    case OXS_MODEL_LOADING:
        return "LOADING";
    case OXS_MODEL_READY:
        return "READY";
    case OXS_MODEL_UNAVAILABLE:
        return "UNAVAILABLE";
    case OXS_MODEL_UNLOADING:
        return "UNLOADING";
    }
    return "UNKNOWN";
}

int oxs__read_file(const oxs_allocator_t *allocator, const char *path, size_t max_bytes,
                   char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    FILE *file = fopen(path, "rb");
    if (file == NULL)
        return errno;
    char *data = oxs__malloc(allocator, max_bytes + 1);
    if (data == NULL) {
        fclose(file);
        return ENOMEM;
    }
    size_t used = fread(data, 1, max_bytes + 1, file);
    int failure = ferror(file) ? EIO : 0;
    fclose(file);
    if (failure == 0 && used > max_bytes)
        failure = EFBIG;
    if (failure != 0) {
        oxs__free(allocator, data);
        return failure;
    }
    data[used] = '\0';
    *text = data;
    *len = used;
    return 0;
}

int oxs__cpu_count(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    return 1;
}
