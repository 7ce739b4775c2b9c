/*
 * Unit tests of HTTP routing: request targets, the route table, percent-decoding of model names
 * and version checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "common/buf.h"
#include "http/routes.h"

static void test_route_decodes_name(void **state)
{
    oxs_buf_t scratch;
    oxs__http_route_t route;
    const char *allow;
    char error[256];
    const char *path = "/v2/models/a%2Fb%20c/versions/12/infer";

    (void)state;
    oxs_buf_init(&scratch, 0);
    assert_int_equal(oxs__http_route_match(OXS__HTTP_POST, "POST", path, strlen(path), &scratch,
                                           &route, &allow, error, sizeof(error)),
                     0);
    assert_int_equal(route.endpoint, OXS__EP_MODEL_INFER);
    assert_string_equal(route.model, "a/b c");
    assert_int_equal(route.version, 12);
    oxs_buf_free(&scratch);
}

static void test_route_rejects_bad_escape(void **state)
{
    oxs_buf_t scratch;
    oxs__http_route_t route;
    const char *allow;
    char error[256];
    const char *paths[] = {"/v2/models/a%zz", "/v2/models/a%2", "/v2/models/a%00b"};

    (void)state;
    oxs_buf_init(&scratch, 0);
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        assert_int_equal(oxs__http_route_match(OXS__HTTP_GET, "GET", paths[i], strlen(paths[i]),
                                               &scratch, &route, &allow, error, sizeof(error)),
                         400);
        assert_non_null(strstr(error, "percent-encoding"));
    }
    oxs_buf_free(&scratch);
}

static void test_route_table(void **state)
{
    static const struct {
        oxs__http_method_t method;
        const char *path;
        int status;
        oxs__http_endpoint_t endpoint;
    } cases[] = {
        {OXS__HTTP_POST, "/predict", 0, OXS__EP_PREDICT_DEFAULT},
        {OXS__HTTP_POST, "/models/m/predict", 0, OXS__EP_PREDICT_MODEL},
        {OXS__HTTP_GET, "/v2", 0, OXS__EP_SERVER_METADATA},
        {OXS__HTTP_GET, "/v2/health/live", 0, OXS__EP_HEALTH_LIVE},
        {OXS__HTTP_HEAD, "/v2/health/ready", 0, OXS__EP_HEALTH_READY},
        {OXS__HTTP_GET, "/v2/models/m", 0, OXS__EP_MODEL_METADATA},
        {OXS__HTTP_GET, "/v2/models/m/versions/3", 0, OXS__EP_MODEL_METADATA},
        {OXS__HTTP_GET, "/v2/models/m/ready", 0, OXS__EP_MODEL_READY},
        {OXS__HTTP_GET, "/v2/models/m/versions/3/ready", 0, OXS__EP_MODEL_READY},
        {OXS__HTTP_POST, "/v2/models/m/infer", 0, OXS__EP_MODEL_INFER},
        {OXS__HTTP_GET, "/healthz", 0, OXS__EP_HEALTHZ},
        {OXS__HTTP_POST, "/v2/repository/index", 0, OXS__EP_REPOSITORY_INDEX},
        {OXS__HTTP_POST, "/v2/repository/models/m/load", 0, OXS__EP_REPOSITORY_LOAD},
        {OXS__HTTP_POST, "/v2/repository/models/m/unload", 0, OXS__EP_REPOSITORY_UNLOAD},
        {OXS__HTTP_GET, "/v2/repository/index", 405, 0},
        {OXS__HTTP_GET, "/v2/logging", 0, OXS__EP_LOGGING},
        {OXS__HTTP_POST, "/v2/logging", 0, OXS__EP_LOGGING_UPDATE},
        {OXS__HTTP_OTHER, "/v2/logging", 405, 0},
        {OXS__HTTP_POST, "/v2/repository/models/m", 404, 0},
        {OXS__HTTP_GET, "/", 404, 0},
        {OXS__HTTP_GET, "/v2/", 404, 0},
        {OXS__HTTP_GET, "/v2/models//ready", 404, 0},
        {OXS__HTTP_GET, "/v2/models/m/versions", 404, 0},
        {OXS__HTTP_GET, "/a/b/c/d/e/f/g/h/i/j", 404, 0},
        {OXS__HTTP_POST, "/healthz", 405, 0},
        {OXS__HTTP_OTHER, "/predict", 405, 0},
    };
    oxs_buf_t scratch;

    (void)state;
    oxs_buf_init(&scratch, 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        oxs__http_route_t route;
        const char *allow;
        char error[256];
        int status = oxs__http_route_match(cases[i].method, "M", cases[i].path,
                                           strlen(cases[i].path), &scratch, &route, &allow, error,
                                           sizeof(error));
        if (status != cases[i].status)
            fail_msg("%s: status %d, expected %d", cases[i].path, status, cases[i].status);
        if (status == 0 && route.endpoint != cases[i].endpoint)
            fail_msg("%s: endpoint %d, expected %d", cases[i].path, route.endpoint,
                     cases[i].endpoint);
    }
    oxs_buf_free(&scratch);
}

static void test_target_path_forms(void **state)
{
    const char *path;
    size_t len;

    (void)state;
    assert_true(oxs__http_target_path("/v2?x=1", 7, &path, &len));
    assert_int_equal(len, 3);
    assert_true(oxs__http_target_path("http://h:1/v2#f", 15, &path, &len));
    assert_memory_equal(path, "/v2", 3);
    assert_int_equal(len, 3);
    assert_false(oxs__http_target_path("*", 1, &path, &len));
    assert_false(oxs__http_target_path("http://host", 11, &path, &len));
}

static void test_route_version_checks(void **state)
{
    static const struct {
        const char *path;
        int status;
        int64_t version;
    } cases[] = {
        {"/v2/models/m/versions/1", 0, 1},
        {"/v2/models/m/versions/%31%32", 0, 12},
        {"/v2/models/m/versions/9223372036854775807", 0, INT64_MAX},
        {"/v2/models/m/versions/9223372036854775808", 400, 0},
        {"/v2/models/m/versions/0", 400, 0},
        {"/v2/models/m/versions/-1", 400, 0},
        {"/v2/models/m/versions/+1", 400, 0},
        {"/v2/models/m/versions/1.0", 400, 0},
        {"/v2/models/m/versions/abc", 400, 0},
    };
    oxs_buf_t scratch;

    (void)state;
    oxs_buf_init(&scratch, 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        oxs__http_route_t route;
        const char *allow;
        char error[256];
        int status = oxs__http_route_match(OXS__HTTP_GET, "GET", cases[i].path,
                                           strlen(cases[i].path), &scratch, &route, &allow, error,
                                           sizeof(error));

        if (status != cases[i].status)
            fail_msg("%s: status %d, expected %d", cases[i].path, status, cases[i].status);
        if (status == 0 && route.version != cases[i].version)
            fail_msg("%s: version %lld, expected %lld", cases[i].path, (long long)route.version,
                     (long long)cases[i].version);
        if (status == 400 && strstr(error, "expected a positive integer") == NULL)
            fail_msg("%s: message \"%s\"", cases[i].path, error);
    }
    oxs_buf_free(&scratch);
}

static void test_route_method_not_allowed(void **state)
{
    oxs_buf_t scratch;
    oxs__http_route_t route;
    const char *allow = NULL;
    char error[256];

    (void)state;
    oxs_buf_init(&scratch, 0);
    assert_int_equal(oxs__http_route_match(OXS__HTTP_OTHER, "DELETE", "/v2/models/m", 12, &scratch,
                                           &route, &allow, error, sizeof(error)),
                     405);
    assert_string_equal(allow, "GET, HEAD");
    assert_string_equal(error, "method DELETE is not allowed on path \"/v2/models/m\"; "
                               "expected GET or HEAD");
    assert_int_equal(oxs__http_route_match(OXS__HTTP_GET, "GET", "/predict", 8, &scratch, &route,
                                           &allow, error, sizeof(error)),
                     405);
    assert_string_equal(allow, "POST");
    oxs_buf_free(&scratch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_decodes_name),
        cmocka_unit_test(test_route_rejects_bad_escape),
        cmocka_unit_test(test_route_table),
        cmocka_unit_test(test_target_path_forms),
        cmocka_unit_test(test_route_version_checks),
        cmocka_unit_test(test_route_method_not_allowed),
    };

    return cmocka_run_group_tests_name("http_routes", tests, NULL, NULL);
}
