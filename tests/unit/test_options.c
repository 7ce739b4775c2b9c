/*
 * Unit tests for the command line (src/server/options.c): defaults, both flag forms, value
 * validation and its messages, the model arguments, --help and the startup log fields.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/options.h"

#define CORES 6
#define MIB ((size_t)1024 * 1024)

/* Parses a NULL-terminated argument list after "onnxserve"; returns whether parsing succeeded
 * and leaves the message in error. */
static bool parse_args(oxs_cli_options_t *options, char *error, size_t error_size,
                       const char *first, ...)
{
    char *argv[64];
    int argc = 0;
    va_list args;

    argv[argc++] = (char *)"onnxserve";
    va_start(args, first);
    for (const char *arg = first; arg != NULL; arg = va_arg(args, const char *)) {
        assert_true(argc < 63);
        argv[argc++] = (char *)arg;
    }
    va_end(args);
    argv[argc] = NULL;

    oxs_cli_options_init(options, CORES);
    error[0] = '\0';
    return oxs_cli_parse(options, argc, argv, error, error_size);
}

/* Asserts that the arguments fail with exactly the expected message. */
#define assert_rejected(expected, ...)                                                       \
    do {                                                                                     \
        oxs_cli_options_t rejected_options;                                                  \
        char rejected_error[512];                                                            \
        assert_false(parse_args(&rejected_options, rejected_error, sizeof(rejected_error),   \
                                __VA_ARGS__, NULL));                                         \
        assert_string_equal(rejected_error, expected);                                       \
    } while (0)

static void defaults_match_documentation(void **state)
{
    (void)state;
    oxs_cli_options_t options;

    oxs_cli_options_init(&options, CORES);

    assert_int_equal(options.model_repositories.count, 0);
    assert_null(options.model_file);
    assert_string_equal(options.host, "127.0.0.1");
    assert_int_equal(options.http_port, 8000);
    assert_int_equal(options.http_threads, 1);
    assert_int_equal(options.workers, CORES);
    assert_int_equal(options.queue_size, 128);
    assert_int_equal(options.intra_op_threads, 1);
    assert_int_equal(options.max_request_bytes, 64 * MIB);
    assert_int_equal(options.limits.max_tensor_bytes, 256 * MIB);
    assert_int_equal(options.http_idle_timeout_secs, 60);
    assert_null(options.default_model);
    assert_int_equal(options.log_level, OXS_LOG_INFO);
    assert_int_equal(options.log_format, OXS_LOG_FORMAT_JSON);
    assert_int_equal(options.exit_timeout_secs, 30);
    assert_int_equal(options.graph_optimization, OXS_GRAPH_OPT_ALL);
    assert_true(options.enable_mem_arena);
    assert_true(options.enable_mem_pattern);
    assert_null(options.optimized_model_dir);
    assert_false(options.help);
    assert_false(options.version);
}

static void workers_default_is_clamped(void **state)
{
    (void)state;
    oxs_cli_options_t options;

    oxs_cli_options_init(&options, 0);
    assert_int_equal(options.workers, 1);
    oxs_cli_options_init(&options, 5000);
    assert_int_equal(options.workers, 1024);
}

static void both_flag_forms_parse(void **state)
{
    (void)state;
    oxs_cli_options_t options;
    char error[512];

    assert_true(parse_args(&options, error, sizeof(error), "--model-repository", "/models",
                           "--host=0.0.0.0", "--http-port", "0", "--http-threads=3", "--workers",
                           "2", "--queue-size=5", "--intra-op-threads", "4",
                           "--max-request-bytes=1MiB", "--max-tensor-bytes", "10K",
                           "--http-idle-timeout-secs=7", "--default-model", "ocr_cls",
                           "--log-level=debug", "--log-format", "text", "--exit-timeout-secs=0",
                           "--graph-optimization-level", "basic", "--enable-mem-arena=false",
                           "--enable-mem-pattern", "false", "--optimized-model-dir=/tmp/opt",
                           NULL));
    assert_string_equal(error, "");
    assert_string_equal(options.model_repositories.items[0], "/models");
    assert_string_equal(options.host, "0.0.0.0");
    assert_int_equal(options.http_port, 0);
    assert_int_equal(options.http_threads, 3);
    assert_int_equal(options.workers, 2);
    assert_int_equal(options.queue_size, 5);
    assert_int_equal(options.intra_op_threads, 4);
    assert_int_equal(options.max_request_bytes, MIB);
    assert_int_equal(options.limits.max_tensor_bytes, 10240);
    assert_int_equal(options.http_idle_timeout_secs, 7);
    assert_string_equal(options.default_model, "ocr_cls");
    assert_int_equal(options.log_level, OXS_LOG_DEBUG);
    assert_int_equal(options.log_format, OXS_LOG_FORMAT_TEXT);
    assert_int_equal(options.exit_timeout_secs, 0);
    assert_int_equal(options.graph_optimization, OXS_GRAPH_OPT_BASIC);
    assert_false(options.enable_mem_arena);
    assert_false(options.enable_mem_pattern);
    assert_string_equal(options.optimized_model_dir, "/tmp/opt");
}

static void last_repeated_flag_wins(void **state)
{
    (void)state;
    oxs_cli_options_t options;
    char error[512];

    assert_true(parse_args(&options, error, sizeof(error), "m.onnx", "--workers", "3",
                           "--workers=9", NULL));
    assert_int_equal(options.workers, 9);
}

static void sizes_accept_suffixes(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        size_t bytes;
    } cases[] = {
        {"1", 1},          {"1000", 1000},       {"2K", 2048},
        {"2KiB", 2048},    {"3M", 3 * MIB},      {"3MiB", 3 * MIB},
        {"1G", 1024 * MIB}, {"64GiB", 65536 * MIB},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        oxs_cli_options_t options;
        char error[512];
        assert_true(parse_args(&options, error, sizeof(error), "m.onnx", "--max-request-bytes",
                               cases[i].text, NULL));
        assert_int_equal(options.max_request_bytes, cases[i].bytes);
    }
}

static void bad_integers_are_rejected(void **state)
{
    (void)state;

    assert_rejected("--workers: invalid value \"abc\", expected an integer from 1 to 1024",
                    "m.onnx", "--workers", "abc");
    assert_rejected("--workers: invalid value \"0\", expected an integer from 1 to 1024",
                    "m.onnx", "--workers=0");
    assert_rejected("--workers: invalid value \"\", expected an integer from 1 to 1024",
                    "m.onnx", "--workers=");
    assert_rejected("--workers: invalid value \"2.5\", expected an integer from 1 to 1024",
                    "m.onnx", "--workers=2.5");
    assert_rejected("--workers: invalid value \" 2\", expected an integer from 1 to 1024",
                    "m.onnx", "--workers= 2");
    assert_rejected("--workers: invalid value \"4K\", expected an integer from 1 to 1024",
                    "m.onnx", "--workers=4K");
    assert_rejected("--http-port: invalid value \"65536\", expected an integer from 0 to 65535",
                    "m.onnx", "--http-port", "65536");
    assert_rejected("--http-port: invalid value \"-1\", expected an integer from 0 to 65535",
                    "m.onnx", "--http-port", "-1");
    assert_rejected("--queue-size: invalid value \"99999999999999999999\", expected an integer "
                    "from 1 to 1000000",
                    "m.onnx", "--queue-size", "99999999999999999999");
    assert_rejected("--exit-timeout-secs: invalid value \"-5\", expected an integer from 0 to "
                    "86400",
                    "m.onnx", "--exit-timeout-secs=-5");
}

static void bad_sizes_are_rejected(void **state)
{
    (void)state;
    const char *expected_tail = "\", expected a byte count from 1 to 64GiB (suffixes KiB, MiB, GiB)";
    const char *values[] = {"0", "1.5M", "10MB", "-1K", "65G", "9999999999999999999G", "M"};

    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        oxs_cli_options_t options;
        char error[512];
        char expected[512];
        snprintf(expected, sizeof(expected), "--max-request-bytes: invalid value \"%s%s",
                 values[i], expected_tail);
        assert_false(parse_args(&options, error, sizeof(error), "m.onnx", "--max-request-bytes",
                                values[i], NULL));
        assert_string_equal(error, expected);
    }
}

static void bad_choices_are_rejected(void **state)
{
    (void)state;

    assert_rejected("--log-level: invalid value \"loud\", expected one of error, warn, info, debug",
                    "m.onnx", "--log-level", "loud");
    assert_rejected("--log-format: invalid value \"JSON\", expected one of json, text", "m.onnx",
                    "--log-format=JSON");
    assert_rejected("--graph-optimization-level: invalid value \"99\", expected one of disable, "
                    "basic, extended, all",
                    "m.onnx", "--graph-optimization-level=99");
    assert_rejected("--enable-mem-arena: invalid value \"yes\", expected true or false", "m.onnx",
                    "--enable-mem-arena", "yes");
    assert_rejected("--host: invalid value \"localhost\", expected an IPv4 or IPv6 address such "
                    "as 127.0.0.1 or ::1",
                    "m.onnx", "--host", "localhost");
    assert_rejected("--default-model: invalid value \"\", expected a non-empty value", "m.onnx",
                    "--default-model=");
}

static void ipv6_host_is_accepted(void **state)
{
    (void)state;
    oxs_cli_options_t options;
    char error[512];

    assert_true(parse_args(&options, error, sizeof(error), "m.onnx", "--host", "::1", NULL));
    assert_string_equal(options.host, "::1");
}

static void flag_errors_name_the_flag(void **state)
{
    (void)state;

    assert_rejected("--workers: missing value, expected an integer from 1 to 1024", "m.onnx",
                    "--workers");
    assert_rejected("unknown option \"--wokers\"; see onnxserve --help", "m.onnx", "--wokers",
                    "2");
    assert_rejected("unknown option \"--wokers\"; see onnxserve --help", "m.onnx", "--wokers=2");
    assert_rejected("unknown option \"-w\": flags start with \"--\"; see onnxserve --help",
                    "m.onnx", "-w", "2");
    assert_rejected("--help takes no value, got \"yes\"", "--help=yes");
}

static void model_file_gives_name(void **state)
{
    (void)state;
    oxs_cli_options_t options;
    char error[512];
    char name[16];

    assert_true(parse_args(&options, error, sizeof(error), "--workers", "1",
                           "models/silero_vad.onnx", NULL));
    assert_string_equal(options.model_file, "models/silero_vad.onnx");
    assert_int_equal(options.model_repositories.count, 0);

    oxs_cli_model_name("models/silero_vad.onnx", name, sizeof(name));
    assert_string_equal(name, "silero_vad");
    oxs_cli_model_name("plain", name, sizeof(name));
    assert_string_equal(name, "plain");
    oxs_cli_model_name("/a.b/c.onnx.onnx", name, sizeof(name));
    assert_string_equal(name, "c.onnx");
    oxs_cli_model_name("a_very_long_model_name.onnx", name, sizeof(name));
    assert_string_equal(name, "a_very_long_mod");
}

static void double_dash_ends_flags(void **state)
{
    (void)state;
    oxs_cli_options_t options;
    char error[512];

    assert_true(parse_args(&options, error, sizeof(error), "--", "--odd.onnx", NULL));
    assert_string_equal(options.model_file, "--odd.onnx");
}

static void model_arguments_are_checked(void **state)
{
    (void)state;

    assert_rejected("no model given: pass --model-repository DIR or one MODEL.onnx file; see "
                    "onnxserve --help",
                    "--workers", "2");
    assert_rejected("both --model-repository \"r\" and the model file \"m.onnx\" are given; give "
                    "one of them",
                    "--model-repository", "r", "m.onnx");
    assert_rejected("unexpected argument \"b.onnx\": one MODEL.onnx file is already given "
                    "(\"a.onnx\"); use --model-repository DIR to serve several models",
                    "a.onnx", "b.onnx");
    assert_rejected("invalid model file \"dir/.onnx\": expected a path such as models/NAME.onnx, "
                    "whose file name gives the model name",
                    "dir/.onnx");
    assert_rejected("invalid model file \"dir/\": expected a path such as models/NAME.onnx, "
                    "whose file name gives the model name",
                    "dir/");
}

static void help_and_version_need_no_model(void **state)
{
    (void)state;
    oxs_cli_options_t options;
    char error[512];

    assert_true(parse_args(&options, error, sizeof(error), "--help", NULL));
    assert_true(options.help);
    assert_true(parse_args(&options, error, sizeof(error), "--version", NULL));
    assert_true(options.version);
}

static void help_lists_every_flag(void **state)
{
    (void)state;
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    assert_non_null(out);

    oxs_cli_print_help(out, 3);
    assert_int_equal(fclose(out), 0);

    const char *flags[] = {
        "--model-repository DIR", "--host ADDRESS", "--http-port PORT", "--http-threads N",
        "--workers N", "--queue-size N", "--intra-op-threads N", "--max-request-bytes SIZE",
        "--max-tensor-bytes SIZE", "--http-idle-timeout-secs N", "--default-model NAME",
        "--log-level LEVEL", "--log-format FORMAT", "--exit-timeout-secs N",
        "--graph-optimization-level LEVEL", "--enable-mem-arena BOOL",
        "--enable-mem-pattern BOOL", "--optimized-model-dir DIR", "--help", "--version",
    };
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        if (strstr(text, flags[i]) == NULL)
            fail_msg("--help does not list %s", flags[i]);
    }
    assert_non_null(strstr(text, "Default: 8000."));
    assert_non_null(strstr(text, "Default: 64MiB. Unit: bytes."));
    assert_non_null(strstr(text, "Default: number of cores (3 here). Unit: threads."));
    assert_non_null(strstr(text, "Default: 30. Unit: seconds."));
    assert_non_null(strstr(text, "Default: all."));
    assert_non_null(strstr(text, "MODEL.onnx"));
    free(text);
}

static const oxs_log_field_t *find_field(const oxs_log_field_t *fields, size_t count,
                                         const char *key)
{
    for (size_t i = 0; i < count; i++) {
        if (strcmp(fields[i].key, key) == 0)
            return &fields[i];
    }
    fail_msg("no log field %s", key);
    return NULL;
}

static void log_fields_cover_flags(void **state)
{
    (void)state;
    oxs_cli_options_t options;
    char error[512];
    oxs_cli_field_text_t storage;
    oxs_log_field_t fields[OXS_CLI_MAX_FIELDS];

    assert_true(parse_args(&options, error, sizeof(error), "x.onnx", "--http-port", "0",
                           "--log-format", "text", "--enable-mem-pattern=false", NULL));
    size_t count = oxs_cli_log_fields(&options, &storage, fields, OXS_CLI_MAX_FIELDS);

    /* Every flag except --help and --version, plus model_file; the five unset strings and
     * lists are left out. */
    assert_int_equal(count, 39 + 1 - 5);
    assert_string_equal(find_field(fields, count, "model_file")->str, "x.onnx");
    assert_string_equal(find_field(fields, count, "host")->str, "127.0.0.1");
    assert_null(find_field(fields, count, "http_port")->str);
    assert_int_equal(find_field(fields, count, "http_port")->num, 0);
    assert_int_equal(find_field(fields, count, "workers")->num, CORES);
    assert_int_equal(find_field(fields, count, "max_request_bytes")->num, 64 * MIB);
    assert_string_equal(find_field(fields, count, "log_format")->str, "text");
    assert_string_equal(find_field(fields, count, "log_level")->str, "info");
    assert_string_equal(find_field(fields, count, "graph_optimization_level")->str, "all");
    assert_string_equal(find_field(fields, count, "enable_mem_arena")->str, "true");
    assert_string_equal(find_field(fields, count, "enable_mem_pattern")->str, "false");
    for (size_t i = 0; i < count; i++) {
        assert_null(strchr(fields[i].key, '-'));
        assert_string_not_equal(fields[i].key, "help");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_match_documentation),
        cmocka_unit_test(workers_default_is_clamped),
        cmocka_unit_test(both_flag_forms_parse),
        cmocka_unit_test(last_repeated_flag_wins),
        cmocka_unit_test(sizes_accept_suffixes),
        cmocka_unit_test(bad_integers_are_rejected),
        cmocka_unit_test(bad_sizes_are_rejected),
        cmocka_unit_test(bad_choices_are_rejected),
        cmocka_unit_test(ipv6_host_is_accepted),
        cmocka_unit_test(flag_errors_name_the_flag),
        cmocka_unit_test(model_file_gives_name),
        cmocka_unit_test(double_dash_ends_flags),
        cmocka_unit_test(model_arguments_are_checked),
        cmocka_unit_test(help_and_version_need_no_model),
        cmocka_unit_test(help_lists_every_flag),
        cmocka_unit_test(log_fields_cover_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
