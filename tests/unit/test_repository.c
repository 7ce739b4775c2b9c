/*
 * Unit tests of model repositories through the library API. They cover version policies, rescans
 * that replace a version while a request still uses the old one, unloads that wait for their last
 * request, duplicate names, links that leave a repository, name checks, and load and unload
 * cycles that give back every allocation. Repositories are built in temporary folders from the
 * models of tests/tools/make_models.py ($ONNXSERVE_TEST_DATA).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "exit_now.h"
#include "onnxserve.h"
#include "wait_response.h"

/* ---- files ---------------------------------------------------------------------------------- */

static void data_path(const char *name, char *out, size_t size)
{
    const char *dir = getenv("ONNXSERVE_TEST_DATA");
    snprintf(out, size, "%s/%s", dir ? dir : "tests/data", name);
}

static void make_folders(const char *path)
{
    char partial[4300];
    snprintf(partial, sizeof(partial), "%s", path);
    for (char *slash = strchr(partial + 1, '/'); slash != NULL; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        mkdir(partial, 0755);
        *slash = '/';
    }
    mkdir(partial, 0755);
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    FILE *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), in)) > 0)
        assert_int_equal(fwrite(chunk, 1, n, out), n);
    fclose(in);
    fclose(out);
}

static void write_text(const char *path, const char *text)
{
    FILE *out = fopen(path, "w");
    assert_non_null(out);
    fputs(text, out);
    fclose(out);
}

/* Puts the test model file at root/name/version/model.onnx. */
static void add_version(const char *root, const char *name, int version, const char *model_file)
{
    char folder[4096], source[4096], target[4200];
    snprintf(folder, sizeof(folder), "%s/%s/%d", root, name, version);
    make_folders(folder);
    data_path(model_file, source, sizeof(source));
    snprintf(target, sizeof(target), "%s/model.onnx", folder);
    copy_file(source, target);
}

static void remove_tree(const char *path)
{
    char command[4200];
    snprintf(command, sizeof(command), "rm -rf '%s'", path);
    assert_int_equal(system(command), 0);
}

static void make_root(char *root, size_t size)
{
    snprintf(root, size, "/tmp/oxs-repository-XXXXXX");
    assert_non_null(mkdtemp(root));
}

/* ---- servers -------------------------------------------------------------------------------- */

typedef struct counting {
    atomic_long live; /* allocations not freed yet */
} counting_t;

static void *counting_malloc(void *user, size_t size)
{
    atomic_fetch_add(&((counting_t *)user)->live, 1);
    return malloc(size);
}

static void *counting_realloc(void *user, void *ptr, size_t size)
{
    if (ptr == NULL)
        atomic_fetch_add(&((counting_t *)user)->live, 1);
    return realloc(ptr, size);
}

static void counting_free(void *user, void *ptr)
{
    if (ptr != NULL)
        atomic_fetch_sub(&((counting_t *)user)->live, 1);
    free(ptr);
}

static oxs_server_t *create_server(oxs_control_mode_t mode, counting_t *counts)
{
    oxs_options_t options;
    oxs_options_init(&options);
    options.workers = 1;
    options.control_mode = mode;
    if (counts != NULL) {
        options.allocator.malloc_fn = counting_malloc;
        options.allocator.realloc_fn = counting_realloc;
        options.allocator.free_fn = counting_free;
        options.allocator.user = counts;
    }
    oxs_server_t *server = NULL;
    char error[512] = "";
    assert_int_equal(oxs_server_create(&options, &server, error, sizeof(error)), OXS_OK);
    return server;
}

static void add_repository(oxs_server_t *server, const char *root)
{
    char error[512] = "";
    assert_int_equal(oxs_server_add_repository(server, root, error, sizeof(error)), OXS_OK);
}

static void rescan(oxs_server_t *server)
{
    char error[512] = "";
    oxs_repository_control(server, OXS_REPOSITORY_RESCAN, NULL, error, sizeof(error));
}

static void assert_versions(oxs_server_t *server, const char *name, const int64_t *expected,
                            size_t count)
{
    int64_t versions[16];
    size_t found = oxs_server_ready_versions(server, name, versions, 16);
    assert_int_equal(found, count);
    for (size_t i = 0; i < count; i++)
        assert_int_equal(versions[i], expected[i]);
}

/* Returns the state of name's version, or -1 when the server has no such record. */
static int state_of(oxs_server_t *server, const char *name, int64_t version, char *reason,
                    size_t reason_size)
{
    oxs_model_t *model = NULL;
    if (oxs_server_get_model(server, name, version, &model) != OXS_OK)
        return -1;
    int state = oxs_model_state(model);
    if (reason != NULL)
        snprintf(reason, reason_size, "%s", oxs_model_state_reason(model));
    oxs_model_release(model);
    return state;
}

/* ---- inference on a retained model ----------------------------------------------------------- */

/* Runs scale (y = 2x + 1 on x [1, 4]) on model and returns y[0] for x = 1, 2, 3, 4. */
static float run_scale(oxs_server_t *server, oxs_model_t *model)
{
    oxs_request_t *request = NULL;
    char error[512] = "";
    assert_int_equal(oxs_request_create(server, model, &request), OXS_OK);
    int64_t shape[2] = {1, 4};
    void *data = NULL;
    size_t bytes = 0;
    assert_int_equal(oxs_request_add_input(request, "x", 1, OXS_DT_FP32, shape, 2, &data, &bytes,
                                           error, sizeof(error)),
                     OXS_OK);
    const float x[4] = {1, 2, 3, 4};
    memcpy(data, x, sizeof(x));

    waiter_t waiter = WAITER_INIT;
    assert_int_equal(oxs_request_submit(request, on_complete, &waiter, error, sizeof(error)),
                     OXS_OK);
    wait_response(&waiter);
    assert_int_equal(oxs_response_status(waiter.response), OXS_OK);
    oxs_tensor_view_t view;
    assert_int_equal(oxs_response_output(waiter.response, 0, &view), OXS_OK);
    float first = ((const float *)view.data)[0];
    oxs_response_destroy(waiter.response);
    return first;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_policies_select_versions(void **state)
{
    (void)state;
    char root[64], config[4200];
    make_root(root, sizeof(root));
    for (int v = 1; v <= 3; v++)
        add_version(root, "scale", v, "scale.onnx");
    oxs_server_t *server = create_server(OXS_CONTROL_NONE, NULL);
    add_repository(server, root);
    char error[512] = "";
    assert_int_equal(oxs_server_load_repositories(server, error, sizeof(error)), OXS_OK);
    assert_versions(server, "scale", (const int64_t[]){3}, 1);
    assert_int_equal(state_of(server, "scale", 1, NULL, 0), -1);

    snprintf(config, sizeof(config), "%s/scale/config.json", root);
    write_text(config, "{\"version_policy\": {\"latest\": {\"num_versions\": 2}}}");
    rescan(server);
    assert_versions(server, "scale", (const int64_t[]){2, 3}, 2);

    write_text(config, "{\"version_policy\": {\"all\": {}}}");
    rescan(server);
    assert_versions(server, "scale", (const int64_t[]){1, 2, 3}, 3);

    write_text(config, "{\"version_policy\": {\"specific\": {\"versions\": [1, 5]}}}");
    rescan(server);
    assert_versions(server, "scale", (const int64_t[]){1}, 1);
    char reason[512];
    assert_int_equal(state_of(server, "scale", 5, reason, sizeof(reason)),
                     OXS_MODEL_UNAVAILABLE);
    assert_non_null(strstr(reason, "version 5"));
    assert_int_equal(state_of(server, "scale", 3, NULL, 0), -1);

    oxs_server_destroy(server);
    remove_tree(root);
}

static void test_rescan_keeps_retained_model(void **state)
{
    (void)state;
    char root[64];
    make_root(root, sizeof(root));
    add_version(root, "scale", 1, "scale.onnx");
    oxs_server_t *server = create_server(OXS_CONTROL_NONE, NULL);
    add_repository(server, root);
    char error[512] = "";
    assert_int_equal(oxs_server_load_repositories(server, error, sizeof(error)), OXS_OK);

    oxs_model_t *old = NULL;
    assert_int_equal(oxs_server_get_model(server, "scale", 0, &old), OXS_OK);
    add_version(root, "scale", 2, "scale.onnx");
    rescan(server);

    oxs_model_t *current = NULL;
    assert_int_equal(oxs_server_get_model(server, "scale", 0, &current), OXS_OK);
    assert_int_equal(oxs_model_version(current), 2);
    assert_int_equal(state_of(server, "scale", 1, NULL, 0), -1);
    /* Version 1 left the registry, but the handle taken before still runs requests. */
    assert_int_equal(oxs_model_state(old), OXS_MODEL_READY);
    assert_true(run_scale(server, old) == 3.0f);
    assert_true(run_scale(server, current) == 3.0f);
    oxs_model_release(old);
    oxs_model_release(current);
    oxs_server_destroy(server);
    remove_tree(root);
}

static void test_failed_new_version_keeps_old(void **state)
{
    (void)state;
    char root[64], error[512] = "", reason[512] = "", broken[4200];
    make_root(root, sizeof(root));
    add_version(root, "scale", 1, "scale.onnx");
    oxs_server_t *server = create_server(OXS_CONTROL_NONE, NULL);
    add_repository(server, root);
    assert_int_equal(oxs_server_load_repositories(server, error, sizeof(error)), OXS_OK);

    snprintf(broken, sizeof(broken), "%s/scale/2", root);
    make_folders(broken);
    snprintf(broken, sizeof(broken), "%s/scale/2/model.onnx", root);
    write_text(broken, "not an ONNX model\n");
    rescan(server);
    assert_int_equal(state_of(server, "scale", 2, reason, sizeof(reason)),
                     OXS_MODEL_UNAVAILABLE);
    assert_true(strlen(reason) > 0);
    assert_versions(server, "scale", (const int64_t[]){1}, 1);
    /* Version 1 still serves requests without a version, so the server stays ready. */
    assert_true(oxs_server_ready(server, true, NULL, 0));
    oxs_server_destroy(server);
    remove_tree(root);
}

static void test_unload_waits_for_last_request(void **state)
{
    (void)state;
    char root[64], error[512] = "", reason[512] = "";
    make_root(root, sizeof(root));
    add_version(root, "scale", 1, "scale.onnx");
    oxs_server_t *server = create_server(OXS_CONTROL_EXPLICIT, NULL);
    add_repository(server, root);
    assert_int_equal(oxs_server_load_repositories(server, error, sizeof(error)), OXS_OK);
    assert_int_equal(state_of(server, "scale", 0, reason, sizeof(reason)), OXS_MODEL_UNAVAILABLE);
    assert_string_equal(reason, "not loaded");
    assert_true(oxs_server_ready(server, true, NULL, 0));

    assert_int_equal(oxs_repository_control(server, OXS_REPOSITORY_LOAD, "scale", error,
                                            sizeof(error)),
                     OXS_OK);
    oxs_model_t *retained = NULL;
    assert_int_equal(oxs_server_get_model(server, "scale", 1, &retained), OXS_OK);
    assert_int_equal(oxs_repository_control(server, OXS_REPOSITORY_UNLOAD, "scale", error,
                                            sizeof(error)),
                     OXS_OK);
    assert_int_equal(state_of(server, "scale", 1, NULL, 0), OXS_MODEL_UNLOADING);
    assert_true(run_scale(server, retained) == 3.0f);
    oxs_model_release(retained);

    /* The repository thread frees the model, then marks the record UNAVAILABLE. */
    int seen = OXS_MODEL_UNLOADING;
    for (int i = 0; i < 10000 && seen == OXS_MODEL_UNLOADING; i++) {
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
        seen = state_of(server, "scale", 1, reason, sizeof(reason));
    }
    assert_int_equal(seen, OXS_MODEL_UNAVAILABLE);
    assert_string_equal(reason, "unloaded");
    assert_true(oxs_server_ready(server, true, NULL, 0));

    assert_int_equal(oxs_repository_control(server, OXS_REPOSITORY_LOAD, "scale", error,
                                            sizeof(error)),
                     OXS_OK);
    assert_int_equal(state_of(server, "scale", 1, NULL, 0), OXS_MODEL_READY);
    assert_int_equal(oxs_repository_control(server, OXS_REPOSITORY_LOAD, "absent", error,
                                            sizeof(error)),
                     OXS_ERR_NOT_FOUND);
    oxs_server_destroy(server);
    remove_tree(root);
}

static void test_load_unload_cycles_free_all(void **state)
{
    (void)state;
    char root[64], error[512] = "";
    make_root(root, sizeof(root));
    add_version(root, "scale", 1, "scale.onnx");
    counting_t counts = {0};
    oxs_server_t *server = create_server(OXS_CONTROL_EXPLICIT, &counts);
    add_repository(server, root);
    assert_int_equal(oxs_server_load_repositories(server, error, sizeof(error)), OXS_OK);

    long baseline = 0;
    for (int cycle = 0; cycle < 50; cycle++) {
        assert_int_equal(oxs_repository_control(server, OXS_REPOSITORY_LOAD, "scale", error,
                                                sizeof(error)),
                         OXS_OK);
        assert_int_equal(oxs_repository_control(server, OXS_REPOSITORY_UNLOAD, "scale", error,
                                                sizeof(error)),
                         OXS_OK);
        /* The next action runs after the thread freed what the unload released. */
        oxs_repository_control(server, OXS_REPOSITORY_UNLOAD, "absent", error, sizeof(error));
        if (cycle == 1)
            baseline = atomic_load(&counts.live);
    }
    long live = atomic_load(&counts.live);
    printf("library allocations alive after 2 cycles: %ld, after 50: %ld\n", baseline, live);
    assert_int_equal(live, baseline);
    oxs_server_destroy(server);
    assert_int_equal(atomic_load(&counts.live), 0);
    remove_tree(root);
}

static void test_duplicate_name_loads_neither(void **state)
{
    (void)state;
    char first[64], second[64], error[512] = "", reason[512] = "";
    make_root(first, sizeof(first));
    make_root(second, sizeof(second));
    add_version(first, "scale", 1, "scale.onnx");
    add_version(second, "scale", 1, "scale.onnx");
    add_version(second, "matrix", 1, "matrix.onnx");
    oxs_server_t *server = create_server(OXS_CONTROL_NONE, NULL);
    add_repository(server, first);
    add_repository(server, second);
    assert_int_equal(oxs_server_load_repositories(server, error, sizeof(error)), OXS_OK);
    assert_int_equal(state_of(server, "scale", 0, reason, sizeof(reason)), OXS_MODEL_UNAVAILABLE);
    assert_non_null(strstr(reason, "two model repositories"));
    assert_int_equal(state_of(server, "scale", 1, NULL, 0), -1);
    assert_int_equal(state_of(server, "matrix", 1, NULL, 0), OXS_MODEL_READY);
    assert_false(oxs_server_ready(server, true, NULL, 0));
    assert_true(oxs_server_ready(server, false, NULL, 0));
    oxs_server_destroy(server);
    remove_tree(first);
    remove_tree(second);
}

static void test_links_leaving_repository_rejected(void **state)
{
    (void)state;
    char root[64], source[4096], link[4200], error[512] = "", reason[512] = "";
    make_root(root, sizeof(root));
    /* outside: a link to the test data folder's file. */
    snprintf(link, sizeof(link), "%s/outside/1", root);
    make_folders(link);
    data_path("scale.onnx", source, sizeof(source));
    char absolute[4096];
    assert_non_null(realpath(source, absolute));
    snprintf(link, sizeof(link), "%s/outside/1/model.onnx", root);
    assert_int_equal(symlink(absolute, link), 0);
    /* inside: a link to a hidden folder of the same repository. */
    add_version(root, "inside", 7, "scale.onnx");
    snprintf(link, sizeof(link), "%s/inside/.store", root);
    char from[4200];
    snprintf(from, sizeof(from), "%s/inside/7", root);
    assert_int_equal(rename(from, link), 0);
    snprintf(link, sizeof(link), "%s/inside/1", root);
    assert_int_equal(symlink(".store", link), 0);

    oxs_server_t *server = create_server(OXS_CONTROL_NONE, NULL);
    add_repository(server, root);
    assert_int_equal(oxs_server_load_repositories(server, error, sizeof(error)), OXS_OK);
    assert_int_equal(state_of(server, "outside", 1, reason, sizeof(reason)),
                     OXS_MODEL_UNAVAILABLE);
    assert_non_null(strstr(reason, "leaves the model repository"));
    assert_int_equal(state_of(server, "inside", 1, NULL, 0), OXS_MODEL_READY);
    oxs_server_destroy(server);
    remove_tree(root);
}

static void test_control_needs_explicit_mode(void **state)
{
    (void)state;
    char error[512] = "";
    oxs_server_t *server = create_server(OXS_CONTROL_POLL, NULL);
    assert_int_equal(oxs_repository_control(server, OXS_REPOSITORY_LOAD, "scale", error,
                                            sizeof(error)),
                     OXS_ERR_FORBIDDEN);
    assert_non_null(strstr(error, "--model-control-mode=explicit"));
    assert_int_equal(oxs_repository_control(server, OXS_REPOSITORY_UNLOAD, "scale", error,
                                            sizeof(error)),
                     OXS_ERR_FORBIDDEN);
    oxs_server_destroy(server);
}

static void test_model_name_rules(void **state)
{
    (void)state;
    static const char *const valid[] = {"a", "resnet-50_v1.2", "A.b"};
    static const char *const invalid[] = {"", ".", "..", ".hidden", "a/b", "../x", "a b",
                                          "stats", "caf\xc3\xa9"};
    char error[512];
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
        assert_int_equal(oxs_model_name_check(valid[i], strlen(valid[i]), error, sizeof(error)),
                         OXS_OK);
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
        assert_int_equal(oxs_model_name_check(invalid[i], strlen(invalid[i]), error,
                                              sizeof(error)),
                         OXS_ERR_INVALID_ARGUMENT);
    char long_name[130];
    memset(long_name, 'a', sizeof(long_name));
    assert_int_equal(oxs_model_name_check(long_name, 128, error, sizeof(error)), OXS_OK);
    assert_int_equal(oxs_model_name_check(long_name, 129, error, sizeof(error)),
                     OXS_ERR_INVALID_ARGUMENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policies_select_versions),
        cmocka_unit_test(test_rescan_keeps_retained_model),
        cmocka_unit_test(test_failed_new_version_keeps_old),
        cmocka_unit_test(test_unload_waits_for_last_request),
        cmocka_unit_test(test_load_unload_cycles_free_all),
        cmocka_unit_test(test_duplicate_name_loads_neither),
        cmocka_unit_test(test_links_leaving_repository_rejected),
        cmocka_unit_test(test_control_needs_explicit_mode),
        cmocka_unit_test(test_model_name_rules),
    };
    oxs_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
