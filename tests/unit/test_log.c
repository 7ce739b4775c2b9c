/*
 * Unit tests for the log emitter (src/server/log.c): JSON and text lines, escaping of
 * client text, level filtering, long-line truncation, the repeat limit and concurrent writers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "server/log.h"

/* Length of "2026-12-04T20:25:11.123456Z". */
#define TS_LEN 27

typedef struct capture {
    FILE *file;
    oxs_logger_t logger;
    char *text; /* everything written, read back by capture_read */
} capture_t;

static int setup_capture(void **state)
{
    capture_t *capture = calloc(1, sizeof(*capture));
    if (capture == NULL)
        return -1;
    capture->file = tmpfile();
    if (capture->file == NULL) {
        free(capture);
        return -1;
    }
    oxs_logger_init(&capture->logger, OXS_LOG_INFO, OXS_LOG_FORMAT_JSON);
    capture->logger.fd = fileno(capture->file);
    *state = capture;
    return 0;
}

static int teardown_capture(void **state)
{
    capture_t *capture = *state;
    fclose(capture->file);
    free(capture->text);
    free(capture);
    return 0;
}

/* Reads back everything written so far as one NUL-terminated string. */
static const char *capture_read(capture_t *capture)
{
    int fd = fileno(capture->file);
    off_t size = lseek(fd, 0, SEEK_END);
    assert_true(size >= 0);

    free(capture->text);
    capture->text = malloc((size_t)size + 1);
    assert_non_null(capture->text);
    assert_int_equal(pread(fd, capture->text, (size_t)size, 0), size);
    capture->text[size] = '\0';
    return capture->text;
}

static size_t count_lines(const char *text)
{
    size_t lines = 0;
    for (const char *p = text; *p != '\0'; p++)
        lines += *p == '\n';
    return lines;
}

static void assert_timestamp(const char *ts)
{
    /* 2026-12-04T20:25:11.123456Z */
    const char *pattern = "dddd-dd-ddTdd:dd:dd.ddddddZ";
    for (size_t i = 0; i < TS_LEN; i++) {
        if (pattern[i] == 'd')
            assert_true(ts[i] >= '0' && ts[i] <= '9');
        else
            assert_int_equal(ts[i], pattern[i]);
    }

    struct tm parsed = {0};
    assert_int_equal(sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d", &parsed.tm_year, &parsed.tm_mon,
                            &parsed.tm_mday, &parsed.tm_hour, &parsed.tm_min, &parsed.tm_sec),
                     6);
    parsed.tm_year -= 1900;
    parsed.tm_mon -= 1;
    time_t logged = timegm(&parsed);
    time_t now = time(NULL);
    assert_true(logged <= now && now - logged <= 5);
}

/* Checks the JSON line's timestamp and returns what follows it: "\",\"level\"...". */
static const char *skip_json_timestamp(const char *line)
{
    assert_memory_equal(line, "{\"ts\":\"", 7);
    assert_timestamp(line + 7);
    return line + 7 + TS_LEN;
}

static void json_line_has_fixed_keys(void **state)
{
    capture_t *capture = *state;
    oxs_log_field_t fields[] = {
        OXS_LOG_STR("method", "POST"),
        OXS_LOG_NUM("status", 200),
        OXS_LOG_NUM("latency_us", -12),
    };

    oxs_log_write(&capture->logger, OXS_LOG_INFO, "req-1", "ocr_cls", "request", fields, 3);

    const char *rest = skip_json_timestamp(capture_read(capture));
    assert_string_equal(rest, "\",\"level\":\"info\",\"msg\":\"request\",\"request_id\":\"req-1\","
                              "\"model\":\"ocr_cls\",\"method\":\"POST\",\"status\":200,"
                              "\"latency_us\":-12}\n");
}

static void json_line_omits_null_ids(void **state)
{
    capture_t *capture = *state;

    oxs_log_write(&capture->logger, OXS_LOG_WARN, NULL, NULL, "plain", NULL, 0);

    const char *rest = skip_json_timestamp(capture_read(capture));
    assert_string_equal(rest, "\",\"level\":\"warn\",\"msg\":\"plain\"}\n");
}

static void json_escapes_control_characters(void **state)
{
    capture_t *capture = *state;
    oxs_log_field_t field = OXS_LOG_STR("path", "/a\"b\\c\nd\re\tf\x01g\x1fh\x7fi\xe2\x80\xa8j");

    oxs_log_write(&capture->logger, OXS_LOG_INFO, "id\"}", NULL, "m\n", &field, 1);

    const char *rest = skip_json_timestamp(capture_read(capture));
    assert_string_equal(rest, "\",\"level\":\"info\",\"msg\":\"m\\n\",\"request_id\":\"id\\\"}\","
                              "\"path\":\"/a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u001fh\\u007fi"
                              "\\u2028j\"}\n");
}

static void json_replaces_invalid_utf8(void **state)
{
    capture_t *capture = *state;
    /* Valid: e-acute (2 bytes), euro sign (3), U+1F600 (4). Invalid: a lone 0xff, an overlong
     * slash (c0 af), a UTF-16 surrogate (ed a0 80), a cut sequence (e2 82) and U+110000. */
    oxs_log_field_t fields[] = {
        OXS_LOG_STR("valid", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"),
        OXS_LOG_STR("lone", "a\xff" "b"),
        OXS_LOG_STR("overlong", "\xc0\xaf"),
        OXS_LOG_STR("surrogate", "\xed\xa0\x80"),
        OXS_LOG_STR("cut", "\xe2\x82"),
        OXS_LOG_STR("too_high", "\xf4\x90\x80\x80"),
    };

    oxs_log_write(&capture->logger, OXS_LOG_INFO, NULL, NULL, "utf8", fields, 6);

    const char *rest = skip_json_timestamp(capture_read(capture));
#define FFFD "\xef\xbf\xbd"
    assert_string_equal(rest, "\",\"level\":\"info\",\"msg\":\"utf8\","
                              "\"valid\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\","
                              "\"lone\":\"a" FFFD "b\","
                              "\"overlong\":\"" FFFD FFFD "\","
                              "\"surrogate\":\"" FFFD FFFD FFFD "\","
                              "\"cut\":\"" FFFD FFFD "\","
                              "\"too_high\":\"" FFFD FFFD FFFD FFFD "\"}\n");
#undef FFFD
}

static void level_filter_skips_debug(void **state)
{
    capture_t *capture = *state;

    assert_true(oxs_log_enabled(&capture->logger, OXS_LOG_ERROR));
    assert_true(oxs_log_enabled(&capture->logger, OXS_LOG_INFO));
    assert_false(oxs_log_enabled(&capture->logger, OXS_LOG_DEBUG));
    assert_false(oxs_log_enabled(NULL, OXS_LOG_ERROR));

    oxs_log_write(&capture->logger, OXS_LOG_DEBUG, NULL, NULL, "hidden", NULL, 0);
    assert_string_equal(capture_read(capture), "");

    oxs_logger_set(&capture->logger, OXS_LOG_ERROR, (oxs_log_format_t)capture->logger.format);
    oxs_log_write(&capture->logger, OXS_LOG_WARN, NULL, NULL, "hidden too", NULL, 0);
    oxs_log_write(&capture->logger, OXS_LOG_INFO, NULL, NULL, "hidden too", NULL, 0);
    assert_string_equal(capture_read(capture), "");
}

static void text_format_quotes_values(void **state)
{
    capture_t *capture = *state;
    oxs_log_field_t fields[] = {
        OXS_LOG_STR("path", "/v2/models/x/infer"),
        OXS_LOG_STR("agent", "curl 8.0"),
        OXS_LOG_STR("empty", ""),
        OXS_LOG_STR("sneaky", "a\nb=c"),
        OXS_LOG_NUM("status", 404),
    };
    capture->logger.format = OXS_LOG_FORMAT_TEXT;

    oxs_log_write(&capture->logger, OXS_LOG_ERROR, "r1", "m", "request failed", fields, 5);

    const char *text = capture_read(capture);
    assert_timestamp(text);
    assert_string_equal(text + TS_LEN,
                        " ERROR request failed request_id=r1 model=m path=/v2/models/x/infer "
                        "agent=\"curl 8.0\" empty=\"\" sneaky=\"a\\nb=c\" status=404\n");
}

static void long_line_is_truncated(void **state)
{
    capture_t *capture = *state;
    size_t big = 100000;
    char *value = malloc(big + 1);
    assert_non_null(value);
    memset(value, 'x', big);
    value[big] = '\0';
    oxs_log_field_t fields[] = {
        OXS_LOG_STR("first", "kept"),
        OXS_LOG_STR("body", value),
        OXS_LOG_NUM("after", 1),
    };

    oxs_log_write(&capture->logger, OXS_LOG_INFO, NULL, NULL, "big", fields, 3);
    free(value);

    const char *text = capture_read(capture);
    size_t len = strlen(text);
    assert_int_equal(count_lines(text), 1);
    assert_true(len <= 16384);
    assert_true(len > 16000);
    assert_non_null(strstr(text, "\"first\":\"kept\",\"body\":\"xxx"));
    assert_null(strstr(text, "\"after\""));
    const char *tail = "xxx\",\"truncated\":true}\n";
    assert_string_equal(text + len - strlen(tail), tail);
}

static void long_message_is_truncated_in_text(void **state)
{
    capture_t *capture = *state;
    size_t big = 40000;
    char *msg = malloc(big + 1);
    assert_non_null(msg);
    memset(msg, 'y', big);
    msg[big] = '\0';
    oxs_log_field_t field = OXS_LOG_NUM("after", 1);
    capture->logger.format = OXS_LOG_FORMAT_TEXT;

    oxs_log_write(&capture->logger, OXS_LOG_INFO, NULL, NULL, msg, &field, 1);
    free(msg);

    const char *text = capture_read(capture);
    size_t len = strlen(text);
    assert_int_equal(count_lines(text), 1);
    assert_true(len <= 16384);
    const char *tail = "yyy truncated=true\n";
    assert_string_equal(text + len - strlen(tail), tail);
}

static void repeated_errors_are_limited(void **state)
{
    capture_t *capture = *state;

    for (int i = 0; i < 25; i++)
        oxs_log_write(&capture->logger, OXS_LOG_ERROR, NULL, "m", "disk full", NULL, 0);
    /* Another message and the same message for another model have their own limits. */
    oxs_log_write(&capture->logger, OXS_LOG_ERROR, NULL, "m", "other error", NULL, 0);
    oxs_log_write(&capture->logger, OXS_LOG_ERROR, NULL, "n", "disk full", NULL, 0);
    /* Info lines, such as one per request, are never limited. */
    for (int i = 0; i < 25; i++)
        oxs_log_write(&capture->logger, OXS_LOG_INFO, NULL, "m", "request", NULL, 0);
    assert_int_equal(count_lines(capture_read(capture)), 10 + 1 + 1 + 25);

    struct timespec pause = {.tv_sec = 1, .tv_nsec = 50 * 1000000L};
    nanosleep(&pause, NULL);
    oxs_log_write(&capture->logger, OXS_LOG_ERROR, NULL, "m", "disk full", NULL, 0);

    const char *text = capture_read(capture);
    assert_int_equal(count_lines(text), 10 + 1 + 1 + 25 + 1);
    const char *tail = "\"msg\":\"disk full\",\"model\":\"m\",\"suppressed\":15}\n";
    assert_string_equal(text + strlen(text) - strlen(tail), tail);
}

static void library_adapter_writes_model(void **state)
{
    capture_t *capture = *state;
    oxs_log_field_t field = OXS_LOG_NUM("load_us", 1500);

    oxs_log_library_event(&capture->logger, OXS_LOG_INFO, "silero_vad", "model loaded", &field,
                          1);

    const char *rest = skip_json_timestamp(capture_read(capture));
    assert_string_equal(rest, "\",\"level\":\"info\",\"msg\":\"model loaded\","
                              "\"model\":\"silero_vad\",\"load_us\":1500}\n");
}

static void level_names_parse(void **state)
{
    (void)state;
    oxs_log_level_t level = OXS_LOG_ERROR;

    assert_true(oxs_log_level_parse("debug", &level));
    assert_int_equal(level, OXS_LOG_DEBUG);
    assert_true(oxs_log_level_parse("warn", &level));
    assert_int_equal(level, OXS_LOG_WARN);
    assert_true(oxs_log_level_parse("error", &level));
    assert_int_equal(level, OXS_LOG_ERROR);
    assert_true(oxs_log_level_parse("info", &level));
    assert_int_equal(level, OXS_LOG_INFO);
    assert_false(oxs_log_level_parse("INFO", &level));
    assert_false(oxs_log_level_parse("warning", &level));
    assert_false(oxs_log_level_parse("", &level));
}

#define WRITER_THREADS 4
#define WRITER_LINES 300

typedef struct writer_arg {
    const oxs_logger_t *logger;
    int index;
} writer_arg_t;

static void *write_lines(void *arg)
{
    const writer_arg_t *writer = arg;
    char padding[3000];
    memset(padding, 'a' + writer->index, sizeof(padding) - 1);
    padding[sizeof(padding) - 1] = '\0';

    for (int i = 0; i < WRITER_LINES; i++) {
        oxs_log_field_t fields[] = {OXS_LOG_NUM("thread", writer->index), OXS_LOG_NUM("i", i),
                                    OXS_LOG_STR("padding", padding)};
        oxs_log_write(writer->logger, OXS_LOG_INFO, NULL, NULL, "concurrent", fields, 3);
    }
    return NULL;
}

static void concurrent_lines_stay_whole(void **state)
{
    capture_t *capture = *state;
    pthread_t threads[WRITER_THREADS];
    writer_arg_t args[WRITER_THREADS];

    for (int t = 0; t < WRITER_THREADS; t++) {
        args[t] = (writer_arg_t){.logger = &capture->logger, .index = t};
        assert_int_equal(pthread_create(&threads[t], NULL, write_lines, &args[t]), 0);
    }
    for (int t = 0; t < WRITER_THREADS; t++)
        assert_int_equal(pthread_join(threads[t], NULL), 0);

    char *text = (char *)capture_read(capture);
    assert_int_equal(count_lines(text), WRITER_THREADS * WRITER_LINES);
    char *line = text;
    while (*line != '\0') {
        char *end = strchr(line, '\n');
        assert_non_null(end);
        *end = '\0';
        assert_memory_equal(line, "{\"ts\":\"", 7);
        assert_int_equal(end[-1], '}');
        const char *padding = strstr(line, "\"padding\":\"");
        assert_non_null(padding);
        assert_int_equal(strlen(padding), strlen("\"padding\":\"\"}") + 2999);
        line = end + 1;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(json_line_has_fixed_keys, setup_capture, teardown_capture),
        cmocka_unit_test_setup_teardown(json_line_omits_null_ids, setup_capture, teardown_capture),
        cmocka_unit_test_setup_teardown(json_escapes_control_characters, setup_capture,
                                        teardown_capture),
        cmocka_unit_test_setup_teardown(json_replaces_invalid_utf8, setup_capture,
                                        teardown_capture),
        cmocka_unit_test_setup_teardown(level_filter_skips_debug, setup_capture, teardown_capture),
        cmocka_unit_test_setup_teardown(text_format_quotes_values, setup_capture,
                                        teardown_capture),
        cmocka_unit_test_setup_teardown(long_line_is_truncated, setup_capture, teardown_capture),
        cmocka_unit_test_setup_teardown(long_message_is_truncated_in_text, setup_capture,
                                        teardown_capture),
        cmocka_unit_test_setup_teardown(repeated_errors_are_limited, setup_capture,
                                        teardown_capture),
        cmocka_unit_test_setup_teardown(library_adapter_writes_model, setup_capture,
                                        teardown_capture),
        cmocka_unit_test(level_names_parse),
        cmocka_unit_test_setup_teardown(concurrent_lines_stay_whole, setup_capture,
                                        teardown_capture),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
