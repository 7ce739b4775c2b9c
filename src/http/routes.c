/*
 * Route table and matching. Paths are split at '/' before percent-decoding, so a model name may
 * contain an encoded slash ("%2F") without changing the route.
 */
#include "http/routes.h"

#include <stdio.h>
#include <string.h>

#define MAX_SEGMENTS 8
#define MAX_VERSION_DIGITS 19 /* INT64_MAX has 19 digits */

typedef struct route_pattern {
    const char *pattern; /* segments separated by '/'; "{name}" and "{version}" capture */
    oxs__http_method_t method;
    oxs__http_endpoint_t endpoint;
} route_pattern_t;

static const route_pattern_t route_table[] = {
    {"predict", OXS__HTTP_POST, OXS__EP_PREDICT_DEFAULT},
    {"models/{name}/predict", OXS__HTTP_POST, OXS__EP_PREDICT_MODEL},
    {"v2", OXS__HTTP_GET, OXS__EP_SERVER_METADATA},
    {"v2/health/live", OXS__HTTP_GET, OXS__EP_HEALTH_LIVE},
    {"v2/health/ready", OXS__HTTP_GET, OXS__EP_HEALTH_READY},
    {"v2/models/stats", OXS__HTTP_GET, OXS__EP_STATS},
    {"v2/models/{name}/stats", OXS__HTTP_GET, OXS__EP_STATS},
    {"v2/models/{name}/versions/{version}/stats", OXS__HTTP_GET, OXS__EP_STATS},
    {"v2/models/{name}", OXS__HTTP_GET, OXS__EP_MODEL_METADATA},
    {"v2/models/{name}/versions/{version}", OXS__HTTP_GET, OXS__EP_MODEL_METADATA},
    {"v2/models/{name}/ready", OXS__HTTP_GET, OXS__EP_MODEL_READY},
    {"v2/models/{name}/versions/{version}/ready", OXS__HTTP_GET, OXS__EP_MODEL_READY},
    {"v2/models/{name}/infer", OXS__HTTP_POST, OXS__EP_MODEL_INFER},
    {"v2/models/{name}/versions/{version}/infer", OXS__HTTP_POST, OXS__EP_MODEL_INFER},
    {"v2/models/{name}/config", OXS__HTTP_GET, OXS__EP_MODEL_CONFIG},
    {"v2/models/{name}/versions/{version}/config", OXS__HTTP_GET, OXS__EP_MODEL_CONFIG},
    {"healthz", OXS__HTTP_GET, OXS__EP_HEALTHZ},
    {"metrics", OXS__HTTP_GET, OXS__EP_METRICS},
    {"v2/logging", OXS__HTTP_GET, OXS__EP_LOGGING},
    {"v2/logging", OXS__HTTP_POST, OXS__EP_LOGGING_UPDATE},
    {"v2/repository/index", OXS__HTTP_POST, OXS__EP_REPOSITORY_INDEX},
    {"v2/repository/models/{name}/load", OXS__HTTP_POST, OXS__EP_REPOSITORY_LOAD},
    {"v2/repository/models/{name}/unload", OXS__HTTP_POST, OXS__EP_REPOSITORY_UNLOAD},
};

typedef struct segment {
    const char *text;
    size_t len;
} segment_t;

bool oxs__http_target_path(const char *target, size_t len, const char **path, size_t *path_len)
{
    const char *start = target;
    const char *end = target + len;

    if (len > 0 && target[0] != '/') {
        /* Absolute form: skip "scheme://authority". */
        const char *scheme_end = memchr(target, ':', len);
        if (scheme_end == NULL || end - scheme_end < 3 || scheme_end[1] != '/' ||
            scheme_end[2] != '/')
            return false;
        start = memchr(scheme_end + 3, '/', (size_t)(end - (scheme_end + 3)));
        if (start == NULL)
            return false;
    }
    if (start == end || *start != '/')
        return false;

    const char *stop = start;
    while (stop < end && *stop != '?' && *stop != '#')
        stop++;
    *path = start;
    *path_len = (size_t)(stop - start);
    return true;
}

/* Splits "/a/b/c" into segments; returns the count, or MAX_SEGMENTS + 1 when there are more. */
static size_t split_path(const char *path, size_t len, segment_t *segments)
{
    size_t count = 0;
    size_t pos = 1; /* skip the leading '/' */

    while (pos <= len) {
        const char *slash = memchr(path + pos, '/', len - pos);
        size_t seg_end = slash ? (size_t)(slash - path) : len;
        if (count == MAX_SEGMENTS)
            return MAX_SEGMENTS + 1;
        segments[count].text = path + pos;
        segments[count].len = seg_end - pos;
        count++;
        pos = seg_end + 1;
    }
    return count;
}

/* Splits a pattern the same way; patterns are short constants. */
static size_t split_pattern(const char *pattern, segment_t *segments)
{
    size_t count = 0;
    const char *pos = pattern;

    for (;;) {
        const char *slash = strchr(pos, '/');
        size_t len = slash ? (size_t)(slash - pos) : strlen(pos);
        segments[count].text = pos;
        segments[count].len = len;
        count++;
        if (slash == NULL)
            return count;
        pos = slash + 1;
    }
}

static bool segment_is(const segment_t *segment, const char *text)
{
    return segment->len == strlen(text) && memcmp(segment->text, text, segment->len) == 0;
}

static bool pattern_matches(const segment_t *pattern, size_t pattern_count,
                            const segment_t *path, size_t path_count)
{
    if (pattern_count != path_count)
        return false;
    for (size_t i = 0; i < pattern_count; i++) {
        if (segment_is(&pattern[i], "{name}") || segment_is(&pattern[i], "{version}")) {
            if (path[i].len == 0)
                return false;
            continue;
        }
        if (pattern[i].len != path[i].len ||
            memcmp(pattern[i].text, path[i].text, path[i].len) != 0)
            return false;
    }
    return true;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes a segment into out (NUL-terminated). Returns false on a malformed escape or
 * a NUL byte, encoded or not, so that the result is one C string. */
static bool percent_decode(const segment_t *segment, oxs_buf_t *out)
{
    for (size_t i = 0; i < segment->len; i++) {
        char c = segment->text[i];
        if (c == '\0')
            return false;
        if (c == '%') {
            if (i + 2 >= segment->len)
                return false;
            int high = hex_value(segment->text[i + 1]);
            int low = hex_value(segment->text[i + 2]);
            if (high < 0 || low < 0 || (high == 0 && low == 0))
                return false;
            c = (char)(high * 16 + low);
            i += 2;
        }
        oxs_buf_putc(out, c);
    }
    oxs_buf_cstr(out);
    return !out->failed;
}

static bool parse_version(const char *text, size_t len, int64_t *version)
{
    int64_t value = 0;

    if (len == 0 || len > MAX_VERSION_DIGITS)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return false;
        int digit = text[i] - '0';
        if (value > (INT64_MAX - digit) / 10)
            return false;
        value = value * 10 + digit;
    }
    if (value <= 0)
        return false;
    *version = value;
    return true;
}

/* Fills the route's captures from the path segments matched by pattern. */
static int capture_segments(const segment_t *pattern, const segment_t *path, size_t count,
                            oxs_buf_t *scratch, oxs__http_route_t *route, char *error,
                            size_t error_size)
{
    for (size_t i = 0; i < count; i++) {
        if (segment_is(&pattern[i], "{name}")) {
            oxs_buf_reset(scratch);
            bool valid = percent_decode(&path[i], scratch);
            if (scratch->out_of_memory) {
                snprintf(error, error_size, "out of memory while decoding the model name");
                return 500;
            }
            if (!valid) {
                snprintf(error, error_size,
                         "model name \"%.*s\" in the path is not valid percent-encoding",
                         (int)path[i].len, path[i].text);
                return 400;
            }
            route->model = scratch->data;
        } else if (segment_is(&pattern[i], "{version}")) {
            char digits[MAX_VERSION_DIGITS + 1];
            oxs_buf_t decoded;
            bool ok;

            oxs_buf_init(&decoded, sizeof(digits));
            ok = percent_decode(&path[i], &decoded) &&
                 parse_version(decoded.data, decoded.len, &route->version);
            bool out_of_memory = decoded.out_of_memory;
            oxs_buf_free(&decoded);
            if (out_of_memory) {
                snprintf(error, error_size, "out of memory while decoding the model version");
                return 500;
            }
            if (!ok) {
                snprintf(error, error_size,
                         "model version \"%.*s\" is invalid; expected a positive integer",
                         (int)path[i].len, path[i].text);
                return 400;
            }
        }
    }
    return 0;
}

int oxs__http_route_match(oxs__http_method_t method, const char *method_name, const char *path,
                          size_t path_len, oxs_buf_t *scratch, oxs__http_route_t *route,
                          const char **allow, char *error, size_t error_size)
{
    segment_t path_segments[MAX_SEGMENTS];
    segment_t pattern_segments[MAX_SEGMENTS];
    size_t path_count = split_path(path, path_len, path_segments);
    bool get_allowed = false, post_allowed = false; /* by routes of this path */
    /* HEAD is served by every GET route. */
    oxs__http_method_t effective = method == OXS__HTTP_HEAD ? OXS__HTTP_GET : method;

    route->model = NULL;
    route->version = 0;
    *allow = NULL;

    if (path_count <= MAX_SEGMENTS) {
        for (size_t i = 0; i < sizeof(route_table) / sizeof(route_table[0]); i++) {
            const route_pattern_t *entry = &route_table[i];
            size_t pattern_count = split_pattern(entry->pattern, pattern_segments);

            if (!pattern_matches(pattern_segments, pattern_count, path_segments, path_count))
                continue;
            if (entry->method != effective) {
                get_allowed |= entry->method == OXS__HTTP_GET;
                post_allowed |= entry->method == OXS__HTTP_POST;
                continue;
            }
            route->endpoint = entry->endpoint;
            return capture_segments(pattern_segments, path_segments, path_count, scratch, route,
                                    error, error_size);
        }
    }

    if (get_allowed || post_allowed) {
        *allow = get_allowed && post_allowed ? "GET, HEAD, POST"
                 : get_allowed               ? "GET, HEAD"
                                             : "POST";
        snprintf(error, error_size, "method %s is not allowed on path \"%.*s\"; expected %s",
                 method_name, (int)path_len, path,
                 get_allowed && post_allowed ? "GET, HEAD or POST"
                 : get_allowed               ? "GET or HEAD"
                                             : "POST");
        return 405;
    }
    snprintf(error, error_size, "path \"%.*s\" not found", (int)path_len, path);
    return 404;
}
