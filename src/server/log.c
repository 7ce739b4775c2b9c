/*
 * The server's log emitter (see log.h). Each line is built in a fixed thread-local buffer, so
 * logging never allocates, and written with one write(2), so lines from different threads do
 * not interleave (the kernel writes a pipe write of at most PIPE_BUF bytes in one piece).
 */
#include "server/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Maximum line length in bytes. Strings that do not fit are cut, and the line gets
 * "truncated":true. */
#define LOG_LINE_MAX 16384
/* Room kept free at the end of the line for the closing text after a cut. */
#define LOG_TAIL_RESERVE 48

/* Repeated error and warning lines: each thread writes at most LOG_REPEAT_BURST lines with the
 * same level, model and message per LOG_REPEAT_WINDOW_MS and drops the rest. The first such line
 * written after the window carries "suppressed": the number of lines dropped. The count is per
 * thread, so the limit needs no lock. */
#define LOG_REPEAT_SLOTS 8
#define LOG_REPEAT_BURST 10
#define LOG_REPEAT_WINDOW_MS 1000

typedef struct log_line {
    char *data;
    size_t len;
    size_t limit;   /* LOG_LINE_MAX - LOG_TAIL_RESERVE */
    bool truncated; /* a string was cut or a field left out */
} log_line_t;

typedef struct log_repeat_slot {
    uint64_t hash;
    int64_t window_start_ms; /* CLOCK_MONOTONIC */
    int written;
    int64_t suppressed;
} log_repeat_slot_t;

static _Thread_local char log_buffer[LOG_LINE_MAX];
static _Thread_local log_repeat_slot_t log_repeat[LOG_REPEAT_SLOTS];
static _Thread_local unsigned log_repeat_next;

static const char *const log_level_names[] = {"error", "warn", "info", "debug"};
static const char *const log_level_upper[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void oxs_logger_init(oxs_logger_t *logger, oxs_log_level_t level, oxs_log_format_t format)
{
    atomic_init(&logger->level, (int)level);
    atomic_init(&logger->format, (int)format);
    logger->fd = 2;
}

void oxs_logger_set(const oxs_logger_t *logger, oxs_log_level_t level, oxs_log_format_t format)
{
    /* The logger is shared through const pointers; only these atomic fields change. */
    oxs_logger_t *shared = (oxs_logger_t *)logger;
    atomic_store_explicit(&shared->level, (int)level, memory_order_relaxed);
    atomic_store_explicit(&shared->format, (int)format, memory_order_relaxed);
}

bool oxs_log_level_parse(const char *text, oxs_log_level_t *out)
{
    for (size_t i = 0; i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++) {
        if (strcmp(text, log_level_names[i]) == 0) {
            *out = (oxs_log_level_t)i;
            return true;
        }
    }
    return false;
}

static void line_append(log_line_t *line, const char *bytes, size_t len)
{
    if (line->truncated || line->len > line->limit || len > line->limit - line->len) {
        line->truncated = true;
        return;
    }
    memcpy(line->data + line->len, bytes, len);
    line->len += len;
}

static void line_puts(log_line_t *line, const char *text)
{
    line_append(line, text, strlen(text));
}

static void line_put_int(log_line_t *line, int64_t value)
{
    char digits[24];
    int n = snprintf(digits, sizeof(digits), "%" PRId64, value);
    line_append(line, digits, (size_t)n);
}

/* Returns the length of the valid UTF-8 sequence at text[0..len), or 0 when it is invalid
 * (overlong forms, UTF-16 surrogates and code points above U+10FFFF are invalid). */
static size_t utf8_sequence_length(const unsigned char *text, size_t len)
{
    unsigned char c = text[0];
    size_t need;
    uint32_t code;
    uint32_t min;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 2;
        code = c & 0x1f;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        code = c & 0x0f;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        code = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (len < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((text[i] & 0xc0) != 0x80)
            return 0;
        code = (code << 6) | (text[i] & 0x3f);
    }
    if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff))
        return 0;
    return need;
}

/* Appends text as the inside of a JSON string: quote, backslash, control characters, DEL,
 * U+2028 and U+2029 are escaped, and each byte of invalid UTF-8 becomes U+FFFD. When the line
 * runs out of room the text is cut at a character boundary. */
static void line_put_escaped(log_line_t *line, const char *text)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)text;
    size_t left = strlen(text);

    while (left > 0 && !line->truncated) {
        char escape[8];
        const char *out = escape;
        size_t out_len;
        size_t used = 1;
        unsigned char c = *p;

        if (c == '"' || c == '\\') {
            escape[0] = '\\';
            escape[1] = (char)c;
            out_len = 2;
        } else if (c == '\n') {
            memcpy(escape, "\\n", 2);
            out_len = 2;
        } else if (c == '\r') {
            memcpy(escape, "\\r", 2);
            out_len = 2;
        } else if (c == '\t') {
            memcpy(escape, "\\t", 2);
            out_len = 2;
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(escape, "\\u00", 4);
            escape[4] = hex[c >> 4];
            escape[5] = hex[c & 0xf];
            out_len = 6;
        } else if (c < 0x80) {
            out = (const char *)p;
            out_len = 1;
        } else {
            used = utf8_sequence_length(p, left);
            if (used == 0) {
                used = 1;
                out = "\xef\xbf\xbd";
                out_len = 3;
            } else if (used == 3 && p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
                out = p[2] == 0xa8 ? "\\u2028" : "\\u2029";
                out_len = 6;
            } else {
                out = (const char *)p;
                out_len = used;
            }
        }
        line_append(line, out, out_len);
        p += used;
        left -= used;
    }
}

/* Appends text as a quoted JSON string. Once started, the string is always closed: the quotes
 * may use two bytes of the tail reserve. Does nothing on a line that is already cut. */
static void line_put_json_string(log_line_t *line, const char *text)
{
    if (line->truncated)
        return;
    line->data[line->len++] = '"';
    line_put_escaped(line, text);
    line->data[line->len++] = '"';
}

/* Text format: a value that is empty or contains a space, quote, equals sign or control
 * character is written quoted and escaped. Any other value is written escaped, without quotes. */
static bool text_value_needs_quotes(const char *text)
{
    if (*text == '\0')
        return true;
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
        if (*p <= 0x20 || *p == '"' || *p == '=' || *p == 0x7f)
            return true;
    }
    return false;
}

static void line_put_text_value(log_line_t *line, const char *text)
{
    if (text_value_needs_quotes(text)) {
        line_put_json_string(line, text);
        return;
    }
    line_put_escaped(line, text);
}

static void line_put_timestamp(log_line_t *line)
{
    struct timespec now;
    struct tm utc;
    char text[40];

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &utc);
    int n = snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ",
                     utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min,
                     utc.tm_sec, now.tv_nsec / 1000);
    line_append(line, text, (size_t)n);
}

/* Starts one "key":value or key=value field; returns false when the line has no room left. */
static bool line_begin_field(log_line_t *line, oxs_log_format_t format, const char *key)
{
    if (line->truncated)
        return false;
    size_t start = line->len;
    if (format == OXS_LOG_FORMAT_JSON) {
        line_append(line, ",", 1);
        line_put_json_string(line, key);
        line_append(line, ":", 1);
    } else {
        line_append(line, " ", 1);
        line_put_escaped(line, key);
        line_append(line, "=", 1);
    }
    if (line->truncated) {
        line->len = start; /* drop the half-written key */
        return false;
    }
    return true;
}

static void line_put_str_field(log_line_t *line, oxs_log_format_t format, const char *key,
                               const char *value)
{
    if (!line_begin_field(line, format, key))
        return;
    if (format == OXS_LOG_FORMAT_JSON)
        line_put_json_string(line, value);
    else
        line_put_text_value(line, value);
}

static void line_put_num_field(log_line_t *line, oxs_log_format_t format, const char *key,
                               int64_t value)
{
    size_t start = line->len;
    if (!line_begin_field(line, format, key))
        return;
    line_put_int(line, value);
    if (line->truncated)
        line->len = start;
}

static uint64_t hash_text(uint64_t hash, const char *text)
{
    /* FNV-1a, 64 bits. */
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
        hash ^= *p;
        hash *= 0x100000001b3ull;
    }
    return hash;
}

/* Decides whether an error or warning line may be written now. Returns false to drop it;
 * otherwise stores in *suppressed how many identical lines were dropped before it. */
static bool repeat_allows(oxs_log_level_t level, const char *model, const char *msg,
                          int64_t *suppressed)
{
    uint64_t hash = 0xcbf29ce484222325ull ^ (uint64_t)level;
    struct timespec now;
    log_repeat_slot_t *slot = NULL;

    *suppressed = 0;
    hash = hash_text(hash, model != NULL ? model : "");
    hash = hash_text(hash ^ 0xff, msg);
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;

    for (size_t i = 0; i < LOG_REPEAT_SLOTS; i++) {
        if (log_repeat[i].written > 0 && log_repeat[i].hash == hash) {
            slot = &log_repeat[i];
            break;
        }
    }
    if (slot == NULL) {
        /* NOTE: evicting a slot discards its count of dropped lines, so that count is never logged. */
        slot = &log_repeat[log_repeat_next++ % LOG_REPEAT_SLOTS];
        slot->hash = hash;
        slot->window_start_ms = now_ms;
        slot->written = 1;
        slot->suppressed = 0;
        return true;
    }
    if (now_ms - slot->window_start_ms >= LOG_REPEAT_WINDOW_MS) {
        *suppressed = slot->suppressed;
        slot->window_start_ms = now_ms;
        slot->written = 1;
        slot->suppressed = 0;
        return true;
    }
    if (slot->written < LOG_REPEAT_BURST) {
        slot->written++;
        return true;
    }
    slot->suppressed++;
    return false;
}

static void write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report a failing log descriptor */
        }
        data += n;
        len -= (size_t)n;
    }
}

void oxs_log_write(const oxs_logger_t *logger, oxs_log_level_t level, const char *request_id,
                   const char *model, const char *msg, const oxs_log_field_t *fields,
                   size_t field_count)
{
    int64_t suppressed = 0;

    if (!oxs_log_enabled(logger, level) || (unsigned)level > OXS_LOG_DEBUG)
        return;
    if (msg == NULL)
        msg = "";
    if (level <= OXS_LOG_WARN && !repeat_allows(level, model, msg, &suppressed))
        return;

    oxs_log_format_t format = (oxs_log_format_t)atomic_load_explicit(
        &((oxs_logger_t *)logger)->format, memory_order_relaxed);
    log_line_t line = {.data = log_buffer, .len = 0, .limit = LOG_LINE_MAX - LOG_TAIL_RESERVE};

    if (format == OXS_LOG_FORMAT_JSON) {
        line_puts(&line, "{\"ts\":\"");
        line_put_timestamp(&line);
        line_puts(&line, "\",\"level\":\"");
        line_puts(&line, log_level_names[level]);
        line_puts(&line, "\",\"msg\":");
        line_put_json_string(&line, msg);
    } else {
        line_put_timestamp(&line);
        line_puts(&line, " ");
        line_puts(&line, log_level_upper[level]);
        line_puts(&line, " ");
        line_put_escaped(&line, msg);
    }

    if (request_id != NULL)
        line_put_str_field(&line, format, "request_id", request_id);
    if (model != NULL)
        line_put_str_field(&line, format, "model", model);
    for (size_t i = 0; i < field_count; i++) {
        const char *key = fields[i].key != NULL ? fields[i].key : "";
        if (fields[i].str != NULL)
            line_put_str_field(&line, format, key, fields[i].str);
        else
            line_put_num_field(&line, format, key, fields[i].num);
    }
    if (suppressed > 0)
        line_put_num_field(&line, format, "suppressed", suppressed);

    /* The tail reserve has room for the closing text, even after a cut. */
    const char *tail;
    if (format == OXS_LOG_FORMAT_JSON)
        tail = line.truncated ? ",\"truncated\":true}\n" : "}\n";
    else
        tail = line.truncated ? " truncated=true\n" : "\n";
    memcpy(line.data + line.len, tail, strlen(tail));
    line.len += strlen(tail);

    write_all(logger->fd, line.data, line.len);
}

void oxs_log_library_event(void *user, oxs_log_level_t level, const char *model, const char *msg,
                           const oxs_log_field_t *fields, size_t field_count)
{
    oxs_log_write(user, level, NULL, model, msg, fields, field_count);
}
