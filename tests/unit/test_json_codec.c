/*
 * Unit tests for the JSON codec against a real server with the generated identity and scale
 * models from $ONNXSERVE_TEST_DATA. Decoded requests run through the models, so the tests read
 * back exactly what the decoder wrote into the input buffers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yajl/yajl_parse.h>

#include "codec/float16.h"
#include "codec/json.h"
#include "exit_now.h"

#define ERROR_SIZE 1024

static oxs_server_t *server;
static oxs_model_t *identity;
static oxs_model_t *scale;
static oxs_model_t *classifier; /* PaddleOCR's classifier, NULL when the sample is missing */

/* ---- fixtures ------------------------------------------------------------------------------- */

static oxs_model_t *load_model(const char *name, const char *path)
{
    char error[ERROR_SIZE];
    oxs_model_t *model = NULL;
    if (oxs_server_load_model(server, name, 1, path, error, sizeof(error)) != OXS_OK) {
        fprintf(stderr, "loading %s failed: %s\n", path, error);
        return NULL;
    }
    if (oxs_server_get_model(server, name, 1, &model) != OXS_OK)
        return NULL;
    return model;
}

static int setup_server(void **state)
{
    (void)state;
    const char *data = getenv("ONNXSERVE_TEST_DATA");
    if (data == NULL) {
        fprintf(stderr, "ONNXSERVE_TEST_DATA is not set\n");
        return -1;
    }

    oxs_options_t options;
    oxs_options_init(&options);
    options.workers = 1;
    char error[ERROR_SIZE];
    if (oxs_server_create(&options, &server, error, sizeof(error)) != OXS_OK) {
        fprintf(stderr, "oxs_server_create failed: %s\n", error);
        return -1;
    }

    char path[4096];
    snprintf(path, sizeof(path), "%s/identity.onnx", data);
    identity = load_model("identity", path);
    snprintf(path, sizeof(path), "%s/scale.onnx", data);
    scale = load_model("scale", path);
    if (identity == NULL || scale == NULL)
        return -1;

    const char *models = getenv("ONNXSERVE_MODELS");
    if (models != NULL) {
        snprintf(path, sizeof(path), "%s/ch_ppocr_mobile_v2.0_cls_infer.onnx", models);
        if (access(path, R_OK) == 0)
            classifier = load_model("classifier", path);
    }
    return 0;
}

static int teardown_server(void **state)
{
    (void)state;
    if (classifier != NULL)
        oxs_model_release(classifier);
    if (identity != NULL)
        oxs_model_release(identity);
    if (scale != NULL)
        oxs_model_release(scale);
    if (server != NULL)
        oxs_server_destroy(server);
    return 0;
}

/* ---- helpers -------------------------------------------------------------------------------- */

#define assert_contains(text, part)                                                           \
    do {                                                                                      \
        if (strstr((text), (part)) == NULL)                                                   \
            fail_msg("expected \"%s\" in \"%s\"", (part), (text));                            \
    } while (0)

static oxs_request_t *new_request(oxs_model_t *model)
{
    oxs_request_t *request = NULL;
    assert_int_equal(oxs_request_create(server, model, &request), OXS_OK);
    return request;
}

/* Decodes a JSON-only infer request body into request, dropping the reply plan. */
static oxs_status_t decode_json(oxs_request_t *request, const char *body, size_t len,
                                char *error, size_t error_size)
{
    oxs_json_reply_t *reply = NULL;
    return oxs_json_decode_infer(request, body, len, len, &reply, error, error_size);
}

/* Encodes a response with every output as JSON. */
static void encode_json(oxs_buf_t *out, const oxs_response_t *response)
{
    size_t json_len = 0;
    char error[256];
    assert_int_equal(oxs_json_encode_infer(out, response, NULL, &json_len, error, sizeof(error)),
                     OXS_OK);
    assert_int_equal(json_len, 0);
}

/* Decodes body as an infer request for model and frees the request; returns the status and
 * leaves the message in error. */
static oxs_status_t decode_infer(oxs_model_t *model, const char *body, char *error)
{
    oxs_request_t *request = new_request(model);
    error[0] = '\0';
    oxs_status_t status = decode_json(request, body, strlen(body), error, ERROR_SIZE);
    oxs_request_destroy(request);
    return status;
}

static oxs_status_t decode_predict(oxs_model_t *model, const char *body, char *error)
{
    oxs_request_t *request = new_request(model);
    error[0] = '\0';
    oxs_status_t status =
        oxs_json_decode_predict(request, body, strlen(body), error, ERROR_SIZE);
    oxs_request_destroy(request);
    return status;
}

typedef struct completion {
    pthread_mutex_t lock;
    pthread_cond_t done;
    oxs_response_t *response;
} completion_t;

static void on_complete(void *user, oxs_response_t *response)
{
    completion_t *completion = user;
    pthread_mutex_lock(&completion->lock);
    completion->response = response;
    pthread_cond_signal(&completion->done);
    pthread_mutex_unlock(&completion->lock);
}

/* Submits request and waits for its response, which the caller destroys. */
static oxs_response_t *run_request(oxs_request_t *request)
{
    completion_t completion = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL};
    char error[ERROR_SIZE] = "";
    oxs_status_t status = oxs_request_submit(request, on_complete, &completion, error,
                                             sizeof(error));
    if (status != OXS_OK) {
        oxs_request_destroy(request);
        fail_msg("submit failed: %s", error);
    }

    pthread_mutex_lock(&completion.lock);
    while (completion.response == NULL)
        pthread_cond_wait(&completion.done, &completion.lock);
    pthread_mutex_unlock(&completion.lock);
    if (oxs_response_status(completion.response) != OXS_OK)
        fail_msg("inference failed: %s", oxs_response_error(completion.response));
    return completion.response;
}

/* Identity model inputs with a one-element default each, so any test can submit. */
static const struct {
    const char *name;
    const char *datatype;
    const char *value;
} identity_inputs[] = {
    {"x_bool", "BOOL", "true"},   {"x_uint8", "UINT8", "0"},   {"x_uint16", "UINT16", "0"},
    {"x_uint32", "UINT32", "0"},  {"x_uint64", "UINT64", "0"}, {"x_int8", "INT8", "0"},
    {"x_int16", "INT16", "0"},    {"x_int32", "INT32", "0"},   {"x_int64", "INT64", "0"},
    {"x_fp32", "FP32", "0"},      {"x_fp64", "FP64", "0"},     {"x_fp16", "FP16", "0"},
    {"x_bf16", "BF16", "0"},
};

/* Builds an infer body from inputs (comma-separated input objects) plus defaults for every
 * identity input they do not name, and extra top-level members (may be ""). */
static void identity_body(char *body, size_t size, const char *inputs, const char *extra)
{
    size_t used = (size_t)snprintf(body, size, "{%s\"inputs\":[%s", extra, inputs);
    for (size_t i = 0; i < sizeof(identity_inputs) / sizeof(identity_inputs[0]); i++) {
        char quoted[64];
        snprintf(quoted, sizeof(quoted), "\"%s\"", identity_inputs[i].name);
        if (strstr(inputs, quoted) != NULL)
            continue;
        used += (size_t)snprintf(body + used, size - used,
                                 ",{\"name\":\"%s\",\"shape\":[1,1],\"datatype\":\"%s\","
                                 "\"data\":[%s]}",
                                 identity_inputs[i].name, identity_inputs[i].datatype,
                                 identity_inputs[i].value);
        assert_true(used < size);
    }
    snprintf(body + used, size - used, "]}");
}

/* Decodes the identity body built from inputs and extra, runs it and returns the response. */
static oxs_response_t *run_identity(const char *inputs, const char *extra)
{
    static char body[1 << 16];
    char error[ERROR_SIZE];
    identity_body(body, sizeof(body), inputs, extra);

    oxs_request_t *request = new_request(identity);
    oxs_status_t status = decode_json(request, body, strlen(body), error, sizeof(error));
    if (status != OXS_OK) {
        oxs_request_destroy(request);
        fail_msg("decode failed (%s): %s\nbody: %s", oxs_status_name(status), error, body);
    }
    return run_request(request);
}

/* Returns the output named name of response. */
static oxs_tensor_view_t output_named(const oxs_response_t *response, const char *name)
{
    oxs_tensor_view_t view;
    for (size_t i = 0; i < oxs_response_output_count(response); i++) {
        assert_int_equal(oxs_response_output(response, i, &view), OXS_OK);
        if (strcmp(view.name, name) == 0)
            return view;
    }
    fail_msg("no output \"%s\"", name);
    return view;
}

static bool json_is_valid(const char *text, size_t len)
{
    yajl_handle parser = yajl_alloc(NULL, NULL, NULL);
    bool valid = yajl_parse(parser, (const unsigned char *)text, len) == yajl_status_ok &&
                 yajl_complete_parse(parser) == yajl_status_ok;
    yajl_free(parser);
    return valid;
}

/* ---- decoding: values ------------------------------------------------------------------------ */

static void test_infer_int64_beyond_2_pow_53(void **state)
{
    (void)state;
    oxs_response_t *response = run_identity(
        "{\"name\":\"x_int64\",\"shape\":[1,4],\"datatype\":\"INT64\","
        "\"data\":[9007199254740993,-9223372036854775808,9223372036854775807,-1]}",
        "");
    oxs_tensor_view_t view = output_named(response, "y_int64");
    const int64_t *values = view.data;
    assert_int_equal(view.element_count, 4);
    assert_true(values[0] == INT64_C(9007199254740993));
    assert_true(values[1] == INT64_MIN);
    assert_true(values[2] == INT64_MAX);
    assert_true(values[3] == -1);
    oxs_response_destroy(response);
}

static void test_infer_uint64_max(void **state)
{
    (void)state;
    oxs_response_t *response = run_identity(
        "{\"name\":\"x_uint64\",\"shape\":[1,3],\"datatype\":\"UINT64\","
        "\"data\":[18446744073709551615,9007199254740993,-0]}",
        "");
    oxs_tensor_view_t view = output_named(response, "y_uint64");
    const uint64_t *values = view.data;
    assert_true(values[0] == UINT64_MAX);
    assert_true(values[1] == UINT64_C(9007199254740993));
    assert_true(values[2] == 0);
    oxs_response_destroy(response);
}

static void test_infer_small_integer_limits(void **state)
{
    (void)state;
    oxs_response_t *response = run_identity(
        "{\"name\":\"x_int8\",\"shape\":[1,2],\"datatype\":\"INT8\",\"data\":[-128,127]},"
        "{\"name\":\"x_int16\",\"shape\":[1,2],\"datatype\":\"INT16\",\"data\":[-32768,32767]},"
        "{\"name\":\"x_int32\",\"shape\":[1,2],\"datatype\":\"INT32\","
        "\"data\":[-2147483648,2147483647]},"
        "{\"name\":\"x_uint8\",\"shape\":[1,2],\"datatype\":\"UINT8\",\"data\":[0,255]},"
        "{\"name\":\"x_uint16\",\"shape\":[1,2],\"datatype\":\"UINT16\",\"data\":[0,65535]},"
        "{\"name\":\"x_uint32\",\"shape\":[1,2],\"datatype\":\"UINT32\",\"data\":[0,4294967295]}",
        "");
    const int8_t *i8 = output_named(response, "y_int8").data;
    const int16_t *i16 = output_named(response, "y_int16").data;
    const int32_t *i32 = output_named(response, "y_int32").data;
    const uint8_t *u8 = output_named(response, "y_uint8").data;
    const uint16_t *u16 = output_named(response, "y_uint16").data;
    const uint32_t *u32 = output_named(response, "y_uint32").data;
    assert_int_equal(i8[0], INT8_MIN);
    assert_int_equal(i8[1], INT8_MAX);
    assert_int_equal(i16[0], INT16_MIN);
    assert_int_equal(i16[1], INT16_MAX);
    assert_int_equal(i32[0], INT32_MIN);
    assert_int_equal(i32[1], INT32_MAX);
    assert_int_equal(u8[0], 0);
    assert_int_equal(u8[1], UINT8_MAX);
    assert_int_equal(u16[1], UINT16_MAX);
    assert_int_equal(u32[1], UINT32_MAX);
    oxs_response_destroy(response);
}

static const char *const float_texts[] = {
    "0.1",        "1e-45",          "3.4028235e38",   "-0.0",        "1.17549435e-38",
    "16777217",   "0.30000001192092896", "1e-50",     "2.5E+3",      "-123456.789",
};
#define FLOAT_TEXT_COUNT (sizeof(float_texts) / sizeof(float_texts[0]))

static void test_infer_fp32_equals_strtof(void **state)
{
    (void)state;
    char input[1024];
    size_t used = (size_t)snprintf(input, sizeof(input),
                                   "{\"name\":\"x_fp32\",\"shape\":[1,%zu],\"datatype\":\"FP32\","
                                   "\"data\":[",
                                   FLOAT_TEXT_COUNT);
    for (size_t i = 0; i < FLOAT_TEXT_COUNT; i++)
        used += (size_t)snprintf(input + used, sizeof(input) - used, "%s%s", i ? "," : "",
                                 float_texts[i]);
    snprintf(input + used, sizeof(input) - used, "]}");

    oxs_response_t *response = run_identity(input, "");
    const float *values = output_named(response, "y_fp32").data;
    for (size_t i = 0; i < FLOAT_TEXT_COUNT; i++) {
        float expected = strtof(float_texts[i], NULL);
        if (memcmp(&values[i], &expected, sizeof(float)) != 0)
            fail_msg("%s: got %.9g, strtof gives %.9g", float_texts[i], (double)values[i],
                     (double)expected);
    }
    oxs_response_destroy(response);
}

static void test_infer_fp64_equals_strtod(void **state)
{
    (void)state;
    static const char *const texts[] = {"0.1", "2.2250738585072014e-308", "1.7976931348623157e308",
                                        "5e-324", "9007199254740993", "-0.0"};
    oxs_response_t *response = run_identity(
        "{\"name\":\"x_fp64\",\"shape\":[1,6],\"datatype\":\"FP64\",\"data\":[0.1,"
        "2.2250738585072014e-308,1.7976931348623157e308,5e-324,9007199254740993,-0.0]}",
        "");
    const double *values = output_named(response, "y_fp64").data;
    for (size_t i = 0; i < 6; i++) {
        double expected = strtod(texts[i], NULL);
        if (memcmp(&values[i], &expected, sizeof(double)) != 0)
            fail_msg("%s: got %.17g, strtod gives %.17g", texts[i], values[i], expected);
    }
    oxs_response_destroy(response);
}

/* Each FP16 and BF16 text decodes to the bits next to it, rounded to nearest with ties to
 * even from the decimal value. */
static void test_infer_float16_rounding(void **state)
{
    (void)state;
    oxs_response_t *response = run_identity(
        "{\"name\":\"x_fp16\",\"shape\":[1,8],\"datatype\":\"FP16\",\"data\":[1.00048828125,"
        "1.000488281250000000000000000001,65504,65519.99999999999999999999,5.9604644775390625e-8,"
        "-0,-1e-30,0.1]},"
        "{\"name\":\"x_bf16\",\"shape\":[1,6],\"datatype\":\"BF16\",\"data\":[1.01171875,"
        "1.01171874999999999999999999999,3.3895313892515355e38,9.2e-41,-0.0,0.1]}",
        "\"outputs\":[{\"name\":\"y_fp16\"},{\"name\":\"y_bf16\"}],");
    static const uint16_t fp16_expected[] = {0x3C00, 0x3C01, 0x7BFF, 0x7BFF,
                                             0x0001, 0x8000, 0x8000, 0x2E66};
    static const uint16_t bf16_expected[] = {0x3F82, 0x3F81, 0x7F7F, 0x0001, 0x8000, 0x3DCD};

    oxs_tensor_view_t view = output_named(response, "y_fp16");
    assert_int_equal(view.datatype, OXS_DT_FP16);
    assert_int_equal(view.element_count, 8);
    for (size_t i = 0; i < 8; i++)
        if (((const uint16_t *)view.data)[i] != fp16_expected[i])
            fail_msg("FP16 element %zu is 0x%04X, expected 0x%04X", i,
                     ((const uint16_t *)view.data)[i], fp16_expected[i]);
    view = output_named(response, "y_bf16");
    assert_int_equal(view.datatype, OXS_DT_BF16);
    assert_int_equal(view.element_count, 6);
    for (size_t i = 0; i < 6; i++)
        if (((const uint16_t *)view.data)[i] != bf16_expected[i])
            fail_msg("BF16 element %zu is 0x%04X, expected 0x%04X", i,
                     ((const uint16_t *)view.data)[i], bf16_expected[i]);
    oxs_response_destroy(response);
}

/* "NaN", "Infinity" and "-Infinity" decode into every float datatype, also when the data comes
 * before the datatype, and encode back as the same strings. */
static void test_infer_special_float_strings(void **state)
{
    (void)state;
    oxs_response_t *response = run_identity(
        "{\"name\":\"x_fp16\",\"shape\":[1,4],\"datatype\":\"FP16\","
        "\"data\":[\"NaN\",\"Infinity\",\"-Infinity\",1.5]},"
        "{\"data\":[\"NaN\",\"Infinity\",\"-Infinity\",1.5],\"name\":\"x_bf16\",\"shape\":[1,4],"
        "\"datatype\":\"BF16\"},"
        "{\"name\":\"x_fp32\",\"shape\":[2,2],\"datatype\":\"FP32\","
        "\"data\":[[\"NaN\",\"Infinity\"],[\"-Infinity\",1.5]]},"
        "{\"name\":\"x_fp64\",\"datatype\":\"FP64\",\"data\":[\"NaN\",\"Infinity\",\"-Infinity\",1.5],"
        "\"shape\":[1,4]}",
        "\"outputs\":[{\"name\":\"y_fp16\"},{\"name\":\"y_bf16\"},{\"name\":\"y_fp32\"},"
        "{\"name\":\"y_fp64\"}],");

    static const uint16_t fp16_expected[] = {0x7E00, 0x7C00, 0xFC00, 0x3E00};
    static const uint16_t bf16_expected[] = {0x7FC0, 0x7F80, 0xFF80, 0x3FC0};
    oxs_tensor_view_t view = output_named(response, "y_fp16");
    assert_memory_equal(view.data, fp16_expected, sizeof(fp16_expected));
    view = output_named(response, "y_bf16");
    assert_memory_equal(view.data, bf16_expected, sizeof(bf16_expected));
    view = output_named(response, "y_fp32");
    const float *floats = view.data;
    assert_true(isnan(floats[0]));
    assert_true(isinf(floats[1]) && floats[1] > 0);
    assert_true(isinf(floats[2]) && floats[2] < 0);
    assert_true(floats[3] == 1.5f);
    view = output_named(response, "y_fp64");
    const double *doubles = view.data;
    assert_true(isnan(doubles[0]));
    assert_true(isinf(doubles[1]) && doubles[1] > 0);
    assert_true(isinf(doubles[2]) && doubles[2] < 0);
    assert_true(doubles[3] == 1.5);

    oxs_buf_t out;
    oxs_buf_init(&out, 0);
    encode_json(&out, response);
    const char *text = oxs_buf_cstr(&out);
    assert_true(json_is_valid(out.data, out.len));
    assert_contains(text, "\"name\":\"y_fp16\",\"datatype\":\"FP16\",\"shape\":[1,4],"
                          "\"data\":[\"NaN\",\"Infinity\",\"-Infinity\",1.5]");
    assert_contains(text, "\"name\":\"y_bf16\",\"datatype\":\"BF16\",\"shape\":[1,4],"
                          "\"data\":[\"NaN\",\"Infinity\",\"-Infinity\",1.5]");
    assert_contains(text, "\"name\":\"y_fp32\",\"datatype\":\"FP32\",\"shape\":[2,2],"
                          "\"data\":[\"NaN\",\"Infinity\",\"-Infinity\",1.5]");
    assert_contains(text, "\"name\":\"y_fp64\",\"datatype\":\"FP64\",\"shape\":[1,4],"
                          "\"data\":[\"NaN\",\"Infinity\",\"-Infinity\",1.5]");
    assert_null(strstr(text, "null"));
    oxs_buf_free(&out);
    oxs_response_destroy(response);
}

static void test_infer_long_float_text(void **state)
{
    (void)state;
    /* 80 digits: longer than the decoder's stack copy. */
    const char *text = "0.1000000000000000000000000000000000000000000000000000000000000000000000000000001";
    char input[512];
    snprintf(input, sizeof(input),
             "{\"name\":\"x_fp64\",\"shape\":[1,1],\"datatype\":\"FP64\",\"data\":[%s]}", text);
    oxs_response_t *response = run_identity(input, "");
    const double *values = output_named(response, "y_fp64").data;
    assert_true(values[0] == strtod(text, NULL));
    oxs_response_destroy(response);
}

static void test_infer_bool_values(void **state)
{
    (void)state;
    oxs_response_t *response = run_identity(
        "{\"name\":\"x_bool\",\"shape\":[1,3],\"datatype\":\"BOOL\",\"data\":[true,false,true]}",
        "");
    const uint8_t *values = output_named(response, "y_bool").data;
    assert_int_equal(values[0], 1);
    assert_int_equal(values[1], 0);
    assert_int_equal(values[2], 1);
    oxs_response_destroy(response);
}

static void test_infer_nested_equals_flat(void **state)
{
    (void)state;
    oxs_response_t *nested = run_identity(
        "{\"name\":\"x_int32\",\"shape\":[2,3],\"datatype\":\"INT32\","
        "\"data\":[[1,2,3],[4,5,6]]}",
        "");
    oxs_response_t *flat = run_identity(
        "{\"name\":\"x_int32\",\"shape\":[2,3],\"datatype\":\"INT32\",\"data\":[1,2,3,4,5,6]}",
        "");
    oxs_tensor_view_t a = output_named(nested, "y_int32");
    oxs_tensor_view_t b = output_named(flat, "y_int32");
    const int32_t *values = a.data;
    assert_int_equal(a.element_count, 6);
    assert_int_equal(a.shape[0], 2);
    assert_int_equal(a.shape[1], 3);
    assert_int_equal(values[0], 1);
    assert_int_equal(values[5], 6);
    assert_memory_equal(a.data, b.data, 6 * sizeof(int32_t));
    oxs_response_destroy(nested);
    oxs_response_destroy(flat);
}

static void test_infer_data_before_shape(void **state)
{
    (void)state;
    /* data first: the decoder records the values and converts them at the end of the object. */
    oxs_response_t *response = run_identity(
        "{\"data\":[[9007199254740993,2],[3,4]],\"datatype\":\"INT64\",\"shape\":[2,2],"
        "\"name\":\"x_int64\"},"
        "{\"datatype\":\"FP32\",\"data\":[0.1,1e-45],\"name\":\"x_fp32\",\"shape\":[1,2]},"
        "{\"shape\":[1,2],\"data\":[false,true],\"name\":\"x_bool\",\"datatype\":\"BOOL\"}",
        "");
    const int64_t *ints = output_named(response, "y_int64").data;
    const float *floats = output_named(response, "y_fp32").data;
    const uint8_t *bools = output_named(response, "y_bool").data;
    assert_true(ints[0] == INT64_C(9007199254740993));
    assert_true(ints[3] == 4);
    assert_true(floats[0] == strtof("0.1", NULL));
    assert_true(floats[1] == strtof("1e-45", NULL));
    assert_int_equal(bools[0], 0);
    assert_int_equal(bools[1], 1);
    oxs_response_destroy(response);
}

static void test_infer_ignores_parameters(void **state)
{
    (void)state;
    oxs_response_t *response = run_identity(
        "{\"name\":\"x_int8\",\"parameters\":{\"a\":[1,{\"b\":null}]},\"shape\":[1,1],"
        "\"future_key\":[[1]],\"datatype\":\"INT8\",\"data\":[7]}",
        "\"parameters\":{\"binary_data_output\":false,\"nested\":{\"x\":[1,2]}},\"other\":1,");
    const int8_t *values = output_named(response, "y_int8").data;
    assert_int_equal(values[0], 7);
    oxs_response_destroy(response);
}

static void test_infer_zero_sized_dim(void **state)
{
    (void)state;
    char body[4096];
    char error[ERROR_SIZE];
    identity_body(body, sizeof(body),
                  "{\"name\":\"x_int32\",\"shape\":[2,0],\"datatype\":\"INT32\",\"data\":[]}", "");
    assert_int_equal(decode_infer(identity, body, error), OXS_OK);
    identity_body(body, sizeof(body),
                  "{\"name\":\"x_int32\",\"shape\":[2,0],\"datatype\":\"INT32\",\"data\":[[],[]]}",
                  "");
    assert_int_equal(decode_infer(identity, body, error), OXS_OK);
}

static void test_infer_sets_id(void **state)
{
    (void)state;
    char error[ERROR_SIZE];
    const char *body = "{\"id\":\"abc-1\",\"inputs\":[]}";
    oxs_request_t *request = new_request(identity);
    assert_int_equal(decode_json(request, body, strlen(body), error, sizeof(error)),
                     OXS_OK);
    assert_string_equal(oxs_request_id(request), "abc-1");
    oxs_request_destroy(request);
}

static void test_infer_keeps_preset_id(void **state)
{
    (void)state;
    char error[ERROR_SIZE];
    const char *body = "{\"id\":\"from-body\",\"inputs\":[]}";
    oxs_request_t *request = new_request(identity);
    assert_int_equal(oxs_request_set_id(request, "from-header", 11), OXS_OK);
    assert_int_equal(decode_json(request, body, strlen(body), error, sizeof(error)),
                     OXS_OK);
    assert_string_equal(oxs_request_id(request), "from-header");
    oxs_request_destroy(request);
}

static void test_infer_requested_outputs(void **state)
{
    (void)state;
    oxs_response_t *response = run_identity(
        "{\"name\":\"x_int16\",\"shape\":[1,1],\"datatype\":\"INT16\",\"data\":[5]}",
        "\"outputs\":[{\"name\":\"y_int16\",\"parameters\":{}}],");
    assert_int_equal(oxs_response_output_count(response), 1);
    oxs_tensor_view_t view = output_named(response, "y_int16");
    assert_int_equal(((const int16_t *)view.data)[0], 5);
    oxs_response_destroy(response);
}

/* ---- decoding: errors --------------------------------------------------------------------------- */

/* Decodes the single input object input (plus defaults) and checks status and message. */
static void expect_input_error(const char *input, oxs_status_t status, const char *part)
{
    char body[8192];
    char error[ERROR_SIZE];
    identity_body(body, sizeof(body), input, "");
    oxs_status_t got = decode_infer(identity, body, error);
    if (got != status)
        fail_msg("expected %s, got %s (%s)\nbody: %s", oxs_status_name(status),
                 oxs_status_name(got), error, body);
    assert_contains(error, part);
}

static void expect_body_error(const char *body, oxs_status_t status, const char *part)
{
    char error[ERROR_SIZE];
    oxs_status_t got = decode_infer(identity, body, error);
    if (got != status)
        fail_msg("expected %s, got %s (%s)\nbody: %s", oxs_status_name(status),
                 oxs_status_name(got), error, body);
    assert_contains(error, part);
}

static void test_error_invalid_json(void **state)
{
    (void)state;
    expect_body_error("{\"inputs\": [", OXS_ERR_INVALID_ARGUMENT, "invalid JSON at byte 12");
    expect_body_error("{\"inputs\": [}", OXS_ERR_INVALID_ARGUMENT, "invalid JSON at byte");
    expect_body_error("{\"id\": \"a\",}", OXS_ERR_INVALID_ARGUMENT, "invalid JSON at byte 12");
    expect_body_error("{\"id\": 'a'}", OXS_ERR_INVALID_ARGUMENT, "invalid JSON at byte 8: lexical error: invalid char in json text");
    expect_body_error("{\"inputs\":[]} x", OXS_ERR_INVALID_ARGUMENT, "invalid JSON at byte");
    expect_body_error("{\"id\":\"ab\xff\",\"inputs\":[]}", OXS_ERR_INVALID_ARGUMENT,
                      "id: a string is not valid UTF-8 (byte 2 of the string)");
}

static void test_error_empty_body(void **state)
{
    (void)state;
    expect_body_error("", OXS_ERR_INVALID_ARGUMENT, "request body is empty: expected a JSON object");
    expect_body_error(" \n", OXS_ERR_INVALID_ARGUMENT, "request body is empty");
}

static void test_error_wrong_json_types(void **state)
{
    (void)state;
    expect_body_error("[1]", OXS_ERR_INVALID_ARGUMENT,
                      "request body: expected a JSON object, got array");
    expect_body_error("42", OXS_ERR_INVALID_ARGUMENT,
                      "request body: expected a JSON object, got number");
    expect_body_error("{\"inputs\":\"x\"}", OXS_ERR_INVALID_ARGUMENT,
                      "inputs: expected an array of objects, got string");
    expect_body_error("{\"inputs\":[1]}", OXS_ERR_INVALID_ARGUMENT,
                      "inputs[0]: expected an object, got number");
    expect_body_error("{\"id\":5,\"inputs\":[]}", OXS_ERR_INVALID_ARGUMENT,
                      "id: expected a string, got number");
    expect_body_error("{\"parameters\":[],\"inputs\":[]}", OXS_ERR_INVALID_ARGUMENT,
                      "parameters: expected an object, got array");
    expect_body_error("{\"inputs\":[],\"outputs\":{}}", OXS_ERR_INVALID_ARGUMENT,
                      "outputs: expected an array of objects, got object");
    expect_body_error("{\"inputs\":[],\"outputs\":[{\"name\":1}]}", OXS_ERR_INVALID_ARGUMENT,
                      "outputs[0].name: expected a string, got number");
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":\"2\",\"datatype\":\"FP32\",\"data\":[1]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "inputs[0].shape: expected an array of integers, got string");
    expect_input_error("{\"name\":7,\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}",
                       OXS_ERR_INVALID_ARGUMENT, "inputs[0].name: expected a string, got number");
    expect_input_error("{\"name\":\"x_fp32\",\"datatype\":[\"FP32\"]}", OXS_ERR_INVALID_ARGUMENT,
                       "inputs[0].datatype: expected a string, got array");
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":1}",
                       OXS_ERR_INVALID_ARGUMENT, "inputs[0].data: expected an array, got number");
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1,\"2\"]}", OXS_ERR_INVALID_ARGUMENT,
                       "inputs[0].shape[1]: expected a non-negative integer, got string");
    expect_input_error("{\"name\":\"x_fp32\",\"parameters\":true}", OXS_ERR_INVALID_ARGUMENT,
                       "inputs[0].parameters: expected an object, got boolean");
}

static void test_error_missing_fields(void **state)
{
    (void)state;
    expect_body_error("{\"id\":\"a\"}", OXS_ERR_INVALID_ARGUMENT,
                      "request body: missing \"inputs\"");
    expect_input_error("{\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":[1]}",
                       OXS_ERR_INVALID_ARGUMENT, "inputs[0]: missing \"name\"");
    expect_input_error("{\"name\":\"x_fp32\",\"datatype\":\"FP32\",\"data\":[1]}",
                       OXS_ERR_INVALID_ARGUMENT, "input \"x_fp32\": missing \"shape\"");
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1,1],\"data\":[1]}",
                       OXS_ERR_INVALID_ARGUMENT, "input \"x_fp32\": missing \"datatype\"");
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1,1],\"datatype\":\"FP32\"}",
                       OXS_ERR_INVALID_ARGUMENT, "input \"x_fp32\": missing \"data\"");
    expect_body_error("{\"inputs\":[],\"outputs\":[{}]}", OXS_ERR_INVALID_ARGUMENT,
                      "outputs[0]: missing \"name\"");
}

static void test_error_unknown_input(void **state)
{
    (void)state;
    expect_input_error("{\"name\":\"nope\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":[1]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "inputs[0].name: model \"identity\" has no input \"nope\"; its inputs are "
                       "x_bool, x_uint8, x_uint16");
}

static void test_error_duplicate_input(void **state)
{
    (void)state;
    expect_input_error(
        "{\"name\":\"x_fp32\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":[1]},"
        "{\"name\":\"x_fp32\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":[2]}",
        OXS_ERR_INVALID_ARGUMENT,
        "inputs[1]: input \"x_fp32\" appears more than once, expected each input once");
}

static void test_error_duplicate_key(void **state)
{
    (void)state;
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1,1],\"shape\":[1,1]}",
                       OXS_ERR_INVALID_ARGUMENT, "inputs[0]: duplicate key \"shape\"");
    expect_body_error("{\"inputs\":[],\"inputs\":[]}", OXS_ERR_INVALID_ARGUMENT,
                      "request body: duplicate key \"inputs\"");
}

static void test_error_unknown_datatype(void **state)
{
    (void)state;
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1,1],\"datatype\":\"FP8\",\"data\":[1]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "inputs[0].datatype: unknown datatype \"FP8\"; supported: BOOL, UINT8, "
                       "UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BF16");
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1,1],\"datatype\":\"fp32\",\"data\":[1]}",
                       OXS_ERR_INVALID_ARGUMENT, "unknown datatype \"fp32\"");
}

static void test_error_unsupported_datatype(void **state)
{
    (void)state;
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1,1],\"datatype\":\"STRING\",\"data\":[1]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "inputs[0].datatype: unknown datatype \"STRING\"; supported: BOOL");
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1,1],\"datatype\":\"BYTES\",\"data\":[\"a\"]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "input \"x_fp32\": datatype BYTES, the model expects FP32");
    /* FP16 and BF16 are converted now, so sending one where FP32 is declared is a mismatch. */
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1,1],\"datatype\":\"FP16\",\"data\":[1]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "input \"x_fp32\": datatype FP16, the model expects FP32");
}

static void test_error_datatype_mismatch(void **state)
{
    (void)state;
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1,1],\"datatype\":\"INT32\",\"data\":[1]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "input \"x_fp32\": datatype INT32, the model expects FP32");
    /* The datatype before the name is checked once the name arrives. */
    expect_input_error("{\"datatype\":\"FP64\",\"name\":\"x_fp32\",\"shape\":[1,1],\"data\":[1]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "input \"x_fp32\": datatype FP64, the model expects FP32");
}

static void test_error_element_count(void **state)
{
    (void)state;
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[2,3],\"datatype\":\"FP32\","
                       "\"data\":[1,2,3,4,5]}",
                       OXS_ERR_INVALID_ARGUMENT, "input \"x_fp32\": data has 5 values, shape [2,3] needs 6");
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[2,3],\"datatype\":\"FP32\","
                       "\"data\":[1,2,3,4,5,6,7]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "input \"x_fp32\": data has more than 6 values, shape [2,3] needs 6");
    /* The same checks on recorded data. */
    expect_input_error("{\"data\":[1,2,3,4,5],\"name\":\"x_fp32\",\"shape\":[2,3],"
                       "\"datatype\":\"FP32\"}",
                       OXS_ERR_INVALID_ARGUMENT, "input \"x_fp32\": data has 5 values, shape [2,3] needs 6");
}

static void test_error_nesting_mismatch(void **state)
{
    (void)state;
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[2,3],\"datatype\":\"FP32\","
                       "\"data\":[[1,2],[3,4]]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "input \"x_fp32\": data[0] has 2 items, shape [2,3] needs 3 in dim 1");
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[2,3],\"datatype\":\"FP32\","
                       "\"data\":[[1,2,3],[4,5,6],[7,8,9]]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "input \"x_fp32\": data has more than 2 items, shape [2,3] needs 2 in dim 0");
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[2,3],\"datatype\":\"FP32\","
                       "\"data\":[[1,2,3,4],[5,6]]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "input \"x_fp32\": data[0] has more than 3 items, shape [2,3] needs 3 in dim 1");
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1,1],\"datatype\":\"FP32\","
                       "\"data\":[[[1]]]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "input \"x_fp32\": data[0][0] is an array, but shape [1,1] has only 2 dims");
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[2,2],\"datatype\":\"FP32\","
                       "\"data\":[[1,2],3]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "input \"x_fp32\": data[1] is a number, but shape [2,2] needs an array of "
                       "2 items there");
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1,2],\"datatype\":\"FP32\","
                       "\"data\":[1,[2]]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "input \"x_fp32\": data mixes values and arrays at index 1");
    expect_input_error("{\"data\":[[1,2],[3,4]],\"name\":\"x_fp32\",\"shape\":[2,3],"
                       "\"datatype\":\"FP32\"}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "input \"x_fp32\": data[0] has 2 items, shape [2,3] needs 3 in dim 1");
}

static void test_error_bad_dims(void **state)
{
    (void)state;
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1,-3],\"datatype\":\"FP32\",\"data\":[]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "inputs[0].shape[1]: value -3 is negative, expected an integer in "
                       "[0, 9223372036854775807]");
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[99999999999999999999,1]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "inputs[0].shape[0]: value 99999999999999999999 is too large");
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1.5,1]}", OXS_ERR_INVALID_ARGUMENT,
                       "inputs[0].shape[0]: value 1.5 is not an integer");
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[4294967296,4294967296,4]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "inputs[0].shape: [4294967296,4294967296,4] has more than "
                       "9223372036854775807 elements");
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}",
                       OXS_ERR_INVALID_ARGUMENT, "inputs[0].shape: more than 16 dims");
}

static void test_error_shape_against_model(void **state)
{
    (void)state;
    /* The core checks the rank; its message names the input and both shapes. */
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1,1,1],\"datatype\":\"FP32\","
                       "\"data\":[1]}",
                       OXS_ERR_INVALID_ARGUMENT, "x_fp32");
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1,1,1],\"datatype\":\"FP32\","
                       "\"data\":[1]}",
                       OXS_ERR_INVALID_ARGUMENT, "[1,1,1]");
}

static void test_error_tensor_too_large(void **state)
{
    (void)state;
    /* 40 GB of FP32 is over the default 256 MiB cap; the core's status passes through. */
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[100000,100000],\"datatype\":\"FP32\","
                       "\"data\":[]}",
                       OXS_ERR_TOO_LARGE, "x_fp32");
}

static void test_error_quotes_client_text(void **state)
{
    (void)state;
    /* Control characters are shown as \xNN and long names are cut. */
    expect_input_error("{\"name\":\"a\\u0001b\",\"shape\":[1,1]}", OXS_ERR_INVALID_ARGUMENT,
                       "has no input \"a\\x01b\"");
    expect_input_error("{\"name\":\"0123456789012345678901234567890123456789EXTRA\"}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "has no input \"0123456789012345678901234567890123456789...\"");
}

static void test_error_small_buffer(void **state)
{
    (void)state;
    char error[16];
    memset(error, 'z', sizeof(error));
    const char *body = "{\"inputs\":[{\"name\":\"nope\"}]}";
    oxs_request_t *request = new_request(identity);
    oxs_status_t status = decode_json(request, body, strlen(body), error, sizeof(error));
    oxs_request_destroy(request);
    assert_int_equal(status, OXS_ERR_INVALID_ARGUMENT);
    assert_string_equal(error, "inputs[0].name:");
}

static void test_error_integer_range(void **state)
{
    (void)state;
    expect_input_error("{\"name\":\"x_uint8\",\"shape\":[1,3],\"datatype\":\"UINT8\","
                       "\"data\":[1,2,300]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "input \"x_uint8\": value 300 at index 2 is out of range for UINT8 [0, 255]");
    expect_input_error("{\"name\":\"x_uint8\",\"shape\":[1,1],\"datatype\":\"UINT8\",\"data\":[-1]}",
                       OXS_ERR_INVALID_ARGUMENT, "value -1 at index 0 is out of range for UINT8 [0, 255]");
    expect_input_error("{\"name\":\"x_int8\",\"shape\":[1,1],\"datatype\":\"INT8\",\"data\":[-129]}",
                       OXS_ERR_INVALID_ARGUMENT, "value -129 at index 0 is out of range for INT8 [-128, 127]");
    expect_input_error("{\"name\":\"x_int16\",\"shape\":[1,1],\"datatype\":\"INT16\",\"data\":[32768]}",
                       OXS_ERR_INVALID_ARGUMENT, "out of range for INT16 [-32768, 32767]");
    expect_input_error("{\"name\":\"x_uint16\",\"shape\":[1,1],\"datatype\":\"UINT16\",\"data\":[65536]}",
                       OXS_ERR_INVALID_ARGUMENT, "out of range for UINT16 [0, 65535]");
    expect_input_error("{\"name\":\"x_int32\",\"shape\":[1,1],\"datatype\":\"INT32\","
                       "\"data\":[2147483648]}",
                       OXS_ERR_INVALID_ARGUMENT, "out of range for INT32 [-2147483648, 2147483647]");
    expect_input_error("{\"name\":\"x_uint32\",\"shape\":[1,1],\"datatype\":\"UINT32\","
                       "\"data\":[4294967296]}",
                       OXS_ERR_INVALID_ARGUMENT, "out of range for UINT32 [0, 4294967295]");
    expect_input_error("{\"name\":\"x_int64\",\"shape\":[1,1],\"datatype\":\"INT64\","
                       "\"data\":[9223372036854775808]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "value 9223372036854775808 at index 0 is out of range for INT64 "
                       "[-9223372036854775808, 9223372036854775807]");
    expect_input_error("{\"name\":\"x_int64\",\"shape\":[1,1],\"datatype\":\"INT64\","
                       "\"data\":[-9223372036854775809]}",
                       OXS_ERR_INVALID_ARGUMENT, "out of range for INT64");
    expect_input_error("{\"name\":\"x_uint64\",\"shape\":[1,1],\"datatype\":\"UINT64\","
                       "\"data\":[18446744073709551616]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "value 18446744073709551616 at index 0 is out of range for UINT64 "
                       "[0, 18446744073709551615]");
    expect_input_error("{\"name\":\"x_uint64\",\"shape\":[1,1],\"datatype\":\"UINT64\","
                       "\"data\":[-1]}",
                       OXS_ERR_INVALID_ARGUMENT, "value -1 at index 0 is out of range for UINT64");
    expect_input_error("{\"name\":\"x_int64\",\"shape\":[1,1],\"datatype\":\"INT64\",\"data\":["
                       "1000000000000000000000000000000000000000000000000000000000000000000000]}",
                       OXS_ERR_INVALID_ARGUMENT, "is out of range for INT64");
}

static void test_error_not_an_integer(void **state)
{
    (void)state;
    expect_input_error("{\"name\":\"x_int32\",\"shape\":[1,2],\"datatype\":\"INT32\",\"data\":[1,2.5]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "input \"x_int32\": value 2.5 at index 1 is not valid for INT32: expected an integer");
    expect_input_error("{\"name\":\"x_int64\",\"shape\":[1,1],\"datatype\":\"INT64\",\"data\":[1e3]}",
                       OXS_ERR_INVALID_ARGUMENT, "value 1e3 at index 0 is not valid for INT64: expected an integer");
    expect_input_error("{\"name\":\"x_uint8\",\"shape\":[1,1],\"datatype\":\"UINT8\",\"data\":[1.0]}",
                       OXS_ERR_INVALID_ARGUMENT, "value 1.0 at index 0 is not valid for UINT8");
}

static void test_error_float_range(void **state)
{
    (void)state;
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":[1e39]}",
                       OXS_ERR_INVALID_ARGUMENT, "input \"x_fp32\": value 1e39 at index 0 is out of range for FP32");
    expect_input_error("{\"name\":\"x_fp64\",\"shape\":[1,1],\"datatype\":\"FP64\",\"data\":[1e309]}",
                       OXS_ERR_INVALID_ARGUMENT, "value 1e309 at index 0 is out of range for FP64");
    expect_input_error("{\"name\":\"x_fp16\",\"shape\":[1,3],\"datatype\":\"FP16\",\"data\":[1,2,70000]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "input \"x_fp16\": value 70000 at index 2 is out of range for FP16 (largest "
                       "finite magnitude 65504)");
    /* 65520 is halfway between 65504 and 65536, and ties to even pick 65536, which is infinite. */
    expect_input_error("{\"name\":\"x_fp16\",\"shape\":[1,2],\"datatype\":\"FP16\",\"data\":[65519,-65520]}",
                       OXS_ERR_INVALID_ARGUMENT, "value -65520 at index 1 is out of range for FP16");
    expect_input_error("{\"name\":\"x_bf16\",\"shape\":[1,1],\"datatype\":\"BF16\",\"data\":[1e39]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "input \"x_bf16\": value 1e39 at index 0 is out of range for BF16 (largest "
                       "finite magnitude 3.3895314e+38)");
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":[-3.5e38]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "value -3.5e38 at index 0 is out of range for FP32 (largest finite "
                       "magnitude 3.40282347e+38)");
}

static void test_error_wrong_value_type(void **state)
{
    (void)state;
    expect_input_error("{\"name\":\"x_bool\",\"shape\":[1,2],\"datatype\":\"BOOL\",\"data\":[true,1]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "input \"x_bool\": value 1 at index 1 is not valid for BOOL: expected true or false");
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":[true]}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "input \"x_fp32\": value true at index 0 is not valid for FP32: expected a number");
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":[\"1\"]}",
                       OXS_ERR_INVALID_ARGUMENT, "value \"1\" at index 0 is not valid for FP32");
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":[null]}",
                       OXS_ERR_INVALID_ARGUMENT, "value null at index 0 is not valid for FP32");
    expect_input_error("{\"name\":\"x_fp32\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":[{}]}",
                       OXS_ERR_INVALID_ARGUMENT, "at index 0 is not valid for FP32");
    /* Recorded data keeps strings until the datatype shows whether "NaN" and such are valid. */
    expect_input_error("{\"data\":[1,\"x\"],\"name\":\"x_fp32\",\"shape\":[1,2],\"datatype\":\"FP32\"}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "input \"x_fp32\": value \"x\" at index 1 is not valid for FP32: expected a "
                       "number or one of the strings \"NaN\", \"Infinity\", \"-Infinity\"");
    expect_input_error("{\"data\":[\"NaN\"],\"name\":\"x_int32\",\"shape\":[1,1],\"datatype\":\"INT32\"}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "input \"x_int32\": value \"NaN\" at index 0 is not valid for INT32: expected "
                       "an integer");
    expect_input_error("{\"datatype\":\"INT8\",\"data\":[\"NaN\"],\"name\":\"x_int8\"}",
                       OXS_ERR_INVALID_ARGUMENT,
                       "value \"NaN\" at index 0 is not valid for INT8: expected an integer");
    /* Only the exact spellings stand for NaN and the infinities. */
    const char *const near_misses[] = {"nan", "NAN", "inf", "Inf", "infinity", "+Infinity",
                                       " NaN", "NaN ", "-NaN", ""};
    for (size_t i = 0; i < sizeof(near_misses) / sizeof(near_misses[0]); i++) {
        char input[256];
        snprintf(input, sizeof(input),
                 "{\"name\":\"x_fp16\",\"shape\":[1,1],\"datatype\":\"FP16\",\"data\":[\"%s\"]}",
                 near_misses[i]);
        expect_input_error(input, OXS_ERR_INVALID_ARGUMENT,
                           "at index 0 is not valid for FP16: expected a number or one of the "
                           "strings");
    }
    expect_input_error("{\"data\":[1],\"name\":\"x_bool\",\"shape\":[1,1],\"datatype\":\"BOOL\"}",
                       OXS_ERR_INVALID_ARGUMENT, "value 1 at index 0 is not valid for BOOL");
}

static void test_error_unknown_output(void **state)
{
    (void)state;
    expect_body_error("{\"inputs\":[],\"outputs\":[{\"name\":\"nope\"}]}", OXS_ERR_INVALID_ARGUMENT,
                      "outputs[0].name: model \"identity\" has no output \"nope\"; its outputs are "
                      "y_bool, y_uint8");
    expect_body_error("{\"inputs\":[],\"outputs\":[{\"name\":\"y_bool\"},{\"name\":\"y_bool\"}]}",
                      OXS_ERR_INVALID_ARGUMENT, "outputs[1]: output \"y_bool\" is requested more than once");
}

static void test_error_long_id(void **state)
{
    (void)state;
    char body[512];
    char id[130];
    memset(id, 'a', 129);
    id[129] = '\0';
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"inputs\":[]}", id);
    expect_body_error(body, OXS_ERR_INVALID_ARGUMENT, "has 129 bytes, expected at most 128");
}

/* Builds {"inputs":[],"extra":[[[...]]]} whose deepest array sits at depth levels. */
static void deep_body(char *body, size_t size, int levels)
{
    size_t used = (size_t)snprintf(body, size, "{\"inputs\":[],\"extra\":");
    for (int i = 1; i < levels; i++)
        body[used++] = '[';
    for (int i = 1; i < levels; i++)
        body[used++] = ']';
    snprintf(body + used, size - used, "}");
}

static void test_error_depth_limit(void **state)
{
    (void)state;
    char body[1024];
    char error[ERROR_SIZE];
    oxs_limits_t limits;
    oxs_limits_init(&limits);
    deep_body(body, sizeof(body), limits.max_json_depth);
    assert_int_equal(decode_infer(identity, body, error), OXS_OK);
    deep_body(body, sizeof(body), limits.max_json_depth + 1);
    expect_body_error(body, OXS_ERR_INVALID_ARGUMENT,
                      "request body: objects and arrays nest deeper than the limit of 32 levels "
                      "set by --max-json-depth");
    deep_body(body, sizeof(body), 500);
    expect_body_error(body, OXS_ERR_INVALID_ARGUMENT, "deeper than the limit of 32 levels");
}

static void test_error_deep_data(void **state)
{
    (void)state;
    char input[512];
    size_t used = (size_t)snprintf(input, sizeof(input),
                                   "{\"name\":\"x_fp32\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":");
    for (int i = 0; i < 40; i++)
        input[used++] = '[';
    input[used++] = '1';
    for (int i = 0; i < 40; i++)
        input[used++] = ']';
    snprintf(input + used, sizeof(input) - used, "}");
    expect_input_error(input, OXS_ERR_INVALID_ARGUMENT, "is an array, but shape [1,1] has only 2 dims");
}

/* ---- /predict -------------------------------------------------------------------------------- */

/* Decodes body as a /predict request for the scale model, runs it and returns the response. */
static oxs_response_t *run_predict(oxs_model_t *model, const char *body)
{
    char error[ERROR_SIZE];
    oxs_request_t *request = new_request(model);
    oxs_status_t status = oxs_json_decode_predict(request, body, strlen(body), error, sizeof(error));
    if (status != OXS_OK) {
        oxs_request_destroy(request);
        fail_msg("decode failed (%s): %s\nbody: %s", oxs_status_name(status), error, body);
    }
    return run_request(request);
}

static void expect_scale_output(oxs_response_t *response, int64_t rows)
{
    oxs_tensor_view_t view = output_named(response, "y");
    const float *values = view.data;
    assert_int_equal(view.rank, 2);
    assert_int_equal(view.shape[0], rows);
    assert_int_equal(view.shape[1], 4);
    for (size_t i = 0; i < (size_t)rows * 4; i++)
        assert_true(values[i] == 2.0f * (float)(i + 1) + 1.0f);
}

static void test_predict_nested(void **state)
{
    (void)state;
    oxs_response_t *response = run_predict(scale, "{\"data\":[[1,2,3,4],[5,6,7,8]]}");
    expect_scale_output(response, 2);
    oxs_response_destroy(response);
}

static void test_predict_flat_with_shape(void **state)
{
    (void)state;
    oxs_response_t *response = run_predict(scale, "{\"shape\":[3,4],\"data\":[1,2,3,4,5,6,7,8,9,10,11,12]}");
    expect_scale_output(response, 3);
    oxs_response_destroy(response);
}

static void test_predict_leading_dim_inferred(void **state)
{
    (void)state;
    oxs_response_t *response = run_predict(scale, "{\"data\":[1,2,3,4,5,6,7,8]}");
    expect_scale_output(response, 2);
    oxs_response_destroy(response);
}

static void test_predict_fp32_equals_strtof(void **state)
{
    (void)state;
    oxs_response_t *response = run_predict(scale, "{\"data\":[0.1,1e-45,3.4028235e37,-0.0]}");
    const float *values = output_named(response, "y").data;
    assert_true(values[0] == 2.0f * strtof("0.1", NULL) + 1.0f);
    assert_true(values[2] == 2.0f * strtof("3.4028235e37", NULL) + 1.0f);
    oxs_response_destroy(response);
}

static void expect_predict_error(oxs_model_t *model, const char *body, const char *part)
{
    char error[ERROR_SIZE];
    oxs_status_t status = decode_predict(model, body, error);
    if (status != OXS_ERR_INVALID_ARGUMENT)
        fail_msg("expected OXS_ERR_INVALID_ARGUMENT, got %s (%s)\nbody: %s",
                 oxs_status_name(status), error, body);
    assert_contains(error, part);
}

static void test_predict_errors(void **state)
{
    (void)state;
    expect_predict_error(scale, "{\"data\":[1,2,3,4,5,6]}",
                         "data has 6 values but the model input \"x\" has dims [-1,4]: 6 is not a "
                         "multiple of 4");
    expect_predict_error(scale, "{\"data\":[[1,2,3,4],[5,6]]}",
                         "data[1] has 2 items, but the arrays before it at that depth have 4; "
                         "nested data must be rectangular");
    expect_predict_error(scale, "{\"data\":[[1,2,3,4],5]}",
                         "data[1]: expected an array, got a number; nested data must be rectangular");
    expect_predict_error(scale, "{\"data\":[1,[2]]}", "data[1]: expected a number, got an array");
    expect_predict_error(scale, "{\"data\":[1,\"2\",3,4]}",
                         "data[1]: expected a number or one of the strings \"NaN\", "
                         "\"Infinity\", \"-Infinity\", got string \"2\"");
    expect_predict_error(scale, "{\"data\":[1,2,3,4],\"shape\":[2,4]}",
                         "data has 4 values, but shape [2,4] needs 8");
    expect_predict_error(scale, "{\"data\":[[1,2,3,4]],\"shape\":[4,1]}",
                         "shape [4,1] does not match data, which is nested as [1,4]");
    expect_predict_error(scale, "{\"shape\":[1,4]}", "request body: missing \"data\"");
    expect_predict_error(scale, "{\"data\":[1,2,3,4],\"shap\":[1,4]}",
                         "request body: unknown key \"shap\", expected \"data\" or \"shape\"");
    expect_predict_error(scale, "{\"data\":{}}", "data: expected an array, got object");
    expect_predict_error(scale, "{\"data\":[1e39,1,2,3]}",
                         "data: value 1e39 at index 0 is out of range for FP32");
    expect_predict_error(scale, "[1,2]", "request body: expected a JSON object, got array");
    expect_predict_error(scale, "{\"data\":[1,2,3,4],\"shape\":[1,-4]}",
                         "shape[1]: value -4 is negative");
    expect_predict_error(scale, "{\"data\":[1,2,3", "invalid JSON at byte");
    expect_predict_error(scale, "{\"data\":[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}",
                         "data: nesting is deeper than 16 levels, at most 16 dims are supported");
    /* The core checks the nested shape against the model's static dims. */
    expect_predict_error(scale, "{\"data\":[[1,2,3]]}", "\"x\"");
}

static void test_predict_needs_one_fp32_input(void **state)
{
    (void)state;
    expect_predict_error(identity, "{\"data\":[1]}",
                         "model \"identity\" has 13 inputs: x_bool (BOOL [-1,-1]), x_uint8 (UINT8 "
                         "[-1,-1])");
    expect_predict_error(identity, "{\"data\":[1]}",
                         "/predict needs a model with exactly one FP32 input");
}

static void test_predict_unknown_dims(void **state)
{
    (void)state;
    if (classifier == NULL)
        skip();
    expect_predict_error(classifier, "{\"data\":[1,2,3,4,5,6,7,8,9,10,11,12]}",
                         "data has 12 values but the model input \"x\" has dims [-1,3,-1,-1]: dims "
                         "0, 2 and 3 are unknown; send \"shape\" or nested data");
}

/* ---- allocations ------------------------------------------------------------------------------ */

static atomic_size_t allocation_count;

static void *counting_malloc(void *user, size_t size)
{
    (void)user;
    atomic_fetch_add(&allocation_count, 1);
    return malloc(size);
}

static void *counting_realloc(void *user, void *ptr, size_t size)
{
    (void)user;
    atomic_fetch_add(&allocation_count, 1);
    return realloc(ptr, size);
}

static void counting_free(void *user, void *ptr)
{
    (void)user;
    free(ptr);
}

/* Returns the library allocations made while decoding body into a fresh request on counted,
 * a server whose allocator counts. */
static size_t allocations_for_decode(oxs_server_t *counted, oxs_model_t *model, const char *body,
                                     bool predict)
{
    char error[ERROR_SIZE];
    oxs_request_t *request = NULL;
    assert_int_equal(oxs_request_create(counted, model, &request), OXS_OK);
    size_t before = atomic_load(&allocation_count);
    oxs_status_t status = predict
                              ? oxs_json_decode_predict(request, body, strlen(body), error, sizeof(error))
                              : decode_json(request, body, strlen(body), error, sizeof(error));
    size_t after = atomic_load(&allocation_count);
    oxs_request_destroy(request);
    if (status != OXS_OK)
        fail_msg("decode failed: %s", error);
    return after - before;
}

static void test_decode_allocations_bounded(void **state)
{
    (void)state;
    oxs_options_t options;
    oxs_options_init(&options);
    options.workers = 1;
    options.allocator = (oxs_allocator_t){counting_malloc, counting_realloc, counting_free, NULL};
    char error[ERROR_SIZE];
    oxs_server_t *counted = NULL;
    assert_int_equal(oxs_server_create(&options, &counted, error, sizeof(error)), OXS_OK);
    char path[4096];
    snprintf(path, sizeof(path), "%s/scale.onnx", getenv("ONNXSERVE_TEST_DATA"));
    assert_int_equal(oxs_server_load_model(counted, "scale", 1, path, error, sizeof(error)), OXS_OK);
    oxs_model_t *model = NULL;
    assert_int_equal(oxs_server_get_model(counted, "scale", 1, &model), OXS_OK);

    const char *infer = "{\"id\":\"a\",\"inputs\":[{\"name\":\"x\",\"shape\":[2,4],"
                        "\"datatype\":\"FP32\",\"data\":[[1,2,3,4],[5,6,7,8]]}]}";
    const char *predict = "{\"data\":[[1,2,3,4],[5,6,7,8]]}";
    for (int i = 0; i < 3; i++) { /* warm the request pool, arena and buffer pool */
        allocations_for_decode(counted, model, infer, false);
        allocations_for_decode(counted, model, predict, true);
    }
    /* The yajl handle and all parse state come from the request's arena. */
    assert_int_equal(allocations_for_decode(counted, model, infer, false), 0);
    assert_int_equal(allocations_for_decode(counted, model, predict, true), 0);

    /* Data before the shape is recorded in arrays that double: few allocations, not one per
     * value. */
    size_t values = 20000;
    size_t size = values * 4 + 256;
    char *body = malloc(size);
    assert_non_null(body);
    size_t used = (size_t)snprintf(body, size, "{\"inputs\":[{\"name\":\"x\",\"data\":[");
    for (size_t i = 0; i < values; i++)
        used += (size_t)snprintf(body + used, size - used, "%s1", i ? "," : "");
    snprintf(body + used, size - used, "],\"shape\":[%zu,4],\"datatype\":\"FP32\"}]}", values / 4);
    size_t recorded = allocations_for_decode(counted, model, body, false);
    assert_true(recorded <= 16);
    free(body);

    oxs_model_release(model);
    oxs_server_destroy(counted);
}

/* ---- encoding ---------------------------------------------------------------------------------- */

static void expect_string_escape(const char *text, size_t len, const char *expected)
{
    oxs_buf_t out;
    oxs_buf_init(&out, 0);
    oxs_json_write_string(&out, text, len);
    assert_string_equal(oxs_buf_cstr(&out), expected);
    assert_true(json_is_valid(out.data, out.len));
    oxs_buf_free(&out);
}

static void test_write_string_escapes(void **state)
{
    (void)state;
    expect_string_escape("plain", 5, "\"plain\"");
    expect_string_escape("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
    expect_string_escape("\n\t\x01\x1f\x7f", 5, "\"\\u000a\\u0009\\u0001\\u001f\\u007f\"");
    expect_string_escape("a\0b", 3, "\"a\\u0000b\"");
    expect_string_escape("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14,
                         "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    expect_string_escape("\xff", 1, "\"\\ufffd\"");
    expect_string_escape("\xc0\xaf", 2, "\"\\ufffd\\ufffd\"");           /* overlong '/' */
    expect_string_escape("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""); /* surrogate */
    expect_string_escape("\xf4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\""); /* > U+10FFFF */
    expect_string_escape("a\xe2\x82", 3, "\"a\\ufffd\\ufffd\"");        /* cut sequence */
    expect_string_escape("\xe2\x80\xa8", 3, "\"\\u2028\"");
}

static void test_encode_error(void **state)
{
    (void)state;
    oxs_buf_t out;
    oxs_buf_init(&out, 0);
    oxs_json_encode_error(&out, "input \"x\": bad\n");
    assert_string_equal(oxs_buf_cstr(&out), "{\"error\":\"input \\\"x\\\": bad\\u000a\"}");
    oxs_buf_free(&out);
}

static void test_encode_infer_round_trip(void **state)
{
    (void)state;
    oxs_response_t *response = run_identity(
        "{\"name\":\"x_int64\",\"shape\":[1,2],\"datatype\":\"INT64\","
        "\"data\":[9007199254740993,-9223372036854775808]}",
        "\"id\":\"req-7\",\"outputs\":[{\"name\":\"y_int64\"}],");
    oxs_buf_t out;
    oxs_buf_init(&out, 0);
    encode_json(&out, response);
    assert_string_equal(oxs_buf_cstr(&out),
                        "{\"model_name\":\"identity\",\"model_version\":\"1\",\"id\":\"req-7\","
                        "\"outputs\":[{\"name\":\"y_int64\",\"datatype\":\"INT64\",\"shape\":[1,2],"
                        "\"data\":[9007199254740993,-9223372036854775808]}]}");
    oxs_buf_free(&out);
    oxs_response_destroy(response);
}

static void test_encode_infer_every_datatype(void **state)
{
    (void)state;
    oxs_response_t *response = run_identity(
        "{\"name\":\"x_bool\",\"shape\":[1,2],\"datatype\":\"BOOL\",\"data\":[true,false]},"
        "{\"name\":\"x_uint64\",\"shape\":[1,1],\"datatype\":\"UINT64\",\"data\":[18446744073709551615]},"
        "{\"name\":\"x_int8\",\"shape\":[1,1],\"datatype\":\"INT8\",\"data\":[-128]},"
        "{\"name\":\"x_fp32\",\"shape\":[1,3],\"datatype\":\"FP32\",\"data\":[0.1,3.4028235e38,1e-45]},"
        "{\"name\":\"x_fp64\",\"shape\":[1,2],\"datatype\":\"FP64\",\"data\":[0.1,5e-324]},"
        "{\"name\":\"x_fp16\",\"shape\":[1,4],\"datatype\":\"FP16\",\"data\":[0.1,65504,-0,6e-8]},"
        "{\"name\":\"x_bf16\",\"shape\":[1,3],\"datatype\":\"BF16\",\"data\":[0.1,-3.3895e38,9.2e-41]}",
        "");
    oxs_buf_t out;
    oxs_buf_init(&out, 0);
    encode_json(&out, response);
    const char *text = oxs_buf_cstr(&out);
    assert_true(json_is_valid(out.data, out.len));
    assert_contains(text, "{\"name\":\"y_bool\",\"datatype\":\"BOOL\",\"shape\":[1,2],\"data\":[true,false]}");
    assert_contains(text, "\"name\":\"y_uint64\",\"datatype\":\"UINT64\",\"shape\":[1,1],\"data\":[18446744073709551615]");
    assert_contains(text, "\"data\":[-128]");
    assert_contains(text, "\"name\":\"y_fp32\",\"datatype\":\"FP32\",\"shape\":[1,3],\"data\":[0.1,3.4028235e+38,1e-45]");
    assert_contains(text, "\"name\":\"y_fp64\",\"datatype\":\"FP64\",\"shape\":[1,2],\"data\":[0.1,5e-324]");
    assert_contains(text, "\"name\":\"y_fp16\",\"datatype\":\"FP16\",\"shape\":[1,4],\"data\":[0.1,65500,-0.0,6e-08]");
    assert_contains(text, "\"name\":\"y_bf16\",\"datatype\":\"BF16\",\"shape\":[1,3],\"data\":[0.1,-3.39e+38,9e-41]");
    assert_false(strstr(text, "\"id\"") != NULL); /* no id in the body or set by the caller */
    oxs_buf_free(&out);
    oxs_response_destroy(response);
}

static void test_encode_float_reads_back(void **state)
{
    (void)state;
    /* Every printed FP32 value must parse back to the same float. */
    oxs_response_t *response = run_identity(
        "{\"name\":\"x_fp32\",\"shape\":[1,6],\"datatype\":\"FP32\","
        "\"data\":[0.3,16777217,1.17549435e-38,-2.5e-7,123456.789,0.30000001]}",
        "\"outputs\":[{\"name\":\"y_fp32\"}],");
    oxs_tensor_view_t view = output_named(response, "y_fp32");
    const float *values = view.data;
    oxs_buf_t out;
    oxs_buf_init(&out, 0);
    encode_json(&out, response);
    const char *text = oxs_buf_cstr(&out);
    const char *cursor = strstr(text, "\"data\":[");
    assert_non_null(cursor);
    cursor += strlen("\"data\":[");
    for (size_t i = 0; i < 6; i++) {
        char *end = NULL;
        float parsed = strtof(cursor, &end);
        if (parsed != values[i])
            fail_msg("value %zu printed as %.20s reads back as %.9g, not %.9g", i, cursor,
                     (double)parsed, (double)values[i]);
        cursor = end + 1;
    }
    oxs_buf_free(&out);
    oxs_response_destroy(response);
}

/* Appends the elements of one "data" array of the encoded response to bits, reading numbers
 * with the codec's own FP16/BF16 parser and the three special strings by name. */
static void read_float16_data(const char *cursor, bool is_bf16, uint16_t *bits, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const char *end = strpbrk(cursor, ",]");
        assert_non_null(end);
        char text[64];
        size_t len = (size_t)(end - cursor);
        assert_true(len < sizeof(text));
        memcpy(text, cursor, len);
        text[len] = '\0';
        if (strcmp(text, "\"NaN\"") == 0)
            bits[i] = is_bf16 ? 0x7FC0 : 0x7E00;
        else if (strcmp(text, "\"Infinity\"") == 0)
            bits[i] = is_bf16 ? 0x7F80 : 0x7C00;
        else if (strcmp(text, "\"-Infinity\"") == 0)
            bits[i] = is_bf16 ? 0xFF80 : 0xFC00;
        else if (!oxs__float16_parse(is_bf16, text, &bits[i]))
            fail_msg("element %zu: \"%s\" is out of range", i, text);
        cursor = end + 1;
    }
}

static bool float16_is_nan(bool is_bf16, uint16_t bits)
{
    return is_bf16 ? (bits & 0x7F80) == 0x7F80 && (bits & 0x7F) != 0
                   : (bits & 0x7C00) == 0x7C00 && (bits & 0x3FF) != 0;
}

/* All 65,536 FP16 and BF16 bit patterns go through the whole codec: formatted into a request,
 * decoded, run through the identity model, encoded into a response and read back. */
static void test_encode_float16_every_pattern(void **state)
{
    (void)state;
    enum { COUNT = 65536 };
    size_t size = 2 * COUNT * OXS__FLOAT16_TEXT_MAX + 4096;
    char *inputs = malloc(size);
    uint16_t *read_back = malloc(COUNT * sizeof(uint16_t));
    assert_non_null(inputs);
    assert_non_null(read_back);

    size_t used = 0;
    for (int type = 0; type < 2; type++) {
        bool is_bf16 = type == 1;
        used += (size_t)snprintf(inputs + used, size - used,
                                 "%s{\"name\":\"%s\",\"shape\":[1,%d],\"datatype\":\"%s\",\"data\":[",
                                 is_bf16 ? "," : "", is_bf16 ? "x_bf16" : "x_fp16", COUNT,
                                 is_bf16 ? "BF16" : "FP16");
        for (uint32_t pattern = 0; pattern < COUNT; pattern++) {
            char text[OXS__FLOAT16_TEXT_MAX];
            oxs__float16_format(is_bf16, (uint16_t)pattern, text);
            bool is_number = (text[0] >= '0' && text[0] <= '9') || (text[0] == '-' && text[1] != 'I');
            used += (size_t)snprintf(inputs + used, size - used, "%s%s%s%s", pattern > 0 ? "," : "",
                                     is_number ? "" : "\"", text, is_number ? "" : "\"");
        }
        used += (size_t)snprintf(inputs + used, size - used, "]}");
        assert_true(used < size);
    }

    static char body[1 << 22];
    char error[ERROR_SIZE];
    identity_body(body, sizeof(body), inputs, "\"outputs\":[{\"name\":\"y_fp16\"},{\"name\":\"y_bf16\"}],");
    free(inputs);
    oxs_request_t *request = new_request(identity);
    oxs_status_t status = decode_json(request, body, strlen(body), error, sizeof(error));
    if (status != OXS_OK) {
        oxs_request_destroy(request);
        fail_msg("decode failed (%s): %s", oxs_status_name(status), error);
    }
    oxs_response_t *response = run_request(request);

    oxs_buf_t out;
    oxs_buf_init(&out, 0);
    encode_json(&out, response);
    const char *text = oxs_buf_cstr(&out);
    assert_false(out.failed);
    assert_true(json_is_valid(out.data, out.len));

    for (int type = 0; type < 2; type++) {
        bool is_bf16 = type == 1;
        oxs_tensor_view_t view = output_named(response, is_bf16 ? "y_bf16" : "y_fp16");
        const uint16_t *decoded = view.data;
        assert_int_equal(view.element_count, COUNT);

        char header[128];
        snprintf(header, sizeof(header), "\"name\":\"%s\",\"datatype\":\"%s\",\"shape\":[1,%d],\"data\":[",
                 is_bf16 ? "y_bf16" : "y_fp16", is_bf16 ? "BF16" : "FP16", COUNT);
        const char *cursor = strstr(text, header);
        assert_non_null(cursor);
        read_float16_data(cursor + strlen(header), is_bf16, read_back, COUNT);

        for (uint32_t pattern = 0; pattern < COUNT; pattern++) {
            bool is_nan = float16_is_nan(is_bf16, (uint16_t)pattern);
            if (is_nan ? !float16_is_nan(is_bf16, decoded[pattern]) : decoded[pattern] != pattern)
                fail_msg("%s 0x%04X decodes as 0x%04X", is_bf16 ? "BF16" : "FP16", pattern,
                         decoded[pattern]);
            if (is_nan ? !float16_is_nan(is_bf16, read_back[pattern]) : read_back[pattern] != pattern)
                fail_msg("%s 0x%04X encodes to text that reads back as 0x%04X",
                         is_bf16 ? "BF16" : "FP16", pattern, read_back[pattern]);
        }
    }
    oxs_buf_free(&out);
    oxs_response_destroy(response);
    free(read_back);
}

static void test_encode_predict(void **state)
{
    (void)state;
    char error[ERROR_SIZE];
    const char *body = "{\"data\":[[0.5,1,1.5,2]]}";
    oxs_request_t *request = new_request(scale);
    assert_int_equal(oxs_request_set_id(request, "p-1", 3), OXS_OK);
    assert_int_equal(oxs_json_decode_predict(request, body, strlen(body), error, sizeof(error)),
                     OXS_OK);
    oxs_response_t *response = run_request(request);
    oxs_buf_t out;
    oxs_buf_init(&out, 0);
    oxs_json_encode_predict(&out, response);
    assert_string_equal(oxs_buf_cstr(&out),
                        "{\"output\":[2,3,4,5],\"shape\":[1,4],\"model\":\"scale\","
                        "\"request_id\":\"p-1\"}");
    oxs_buf_free(&out);
    oxs_response_destroy(response);

    /* NaN and the infinities go in and come out as strings on /predict too. */
    body = "{\"data\":[[\"NaN\",\"Infinity\",\"-Infinity\",1]]}";
    request = new_request(scale);
    assert_int_equal(oxs_request_set_id(request, "p-2", 3), OXS_OK);
    assert_int_equal(oxs_json_decode_predict(request, body, strlen(body), error, sizeof(error)),
                     OXS_OK);
    response = run_request(request);
    oxs_buf_init(&out, 0);
    oxs_json_encode_predict(&out, response);
    assert_string_equal(oxs_buf_cstr(&out),
                        "{\"output\":[\"NaN\",\"Infinity\",\"-Infinity\",3],\"shape\":[1,4],"
                        "\"model\":\"scale\",\"request_id\":\"p-2\"}");
    oxs_buf_free(&out);
    oxs_response_destroy(response);
}

static void test_encode_model_metadata(void **state)
{
    (void)state;
    oxs_buf_t out;
    oxs_buf_init(&out, 0);
    const int64_t versions[] = {1};
    oxs_json_encode_model_metadata(&out, identity, versions, 1);
    const char *text = oxs_buf_cstr(&out);
    assert_true(json_is_valid(out.data, out.len));
    assert_contains(text, "{\"name\":\"identity\",\"versions\":[\"1\"],\"platform\":\"onnxruntime_onnx\"");
    assert_contains(text, "\"inputs\":[{\"name\":\"x_bool\",\"datatype\":\"BOOL\",\"shape\":[-1,-1]}");
    assert_contains(text, "{\"name\":\"y_fp64\",\"datatype\":\"FP64\",\"shape\":[-1,-1]}");
    assert_contains(text, "{\"name\":\"x_fp16\",\"datatype\":\"FP16\",\"shape\":[-1,-1]}");
    assert_contains(text, "{\"name\":\"y_bf16\",\"datatype\":\"BF16\",\"shape\":[-1,-1]}]");
    assert_contains(text, "\"producer_name\":\"onnxserve-tests\"");
    assert_contains(text, "\"opset\":13");
    assert_contains(text, "\"graph_name\":\"identity\"");
    assert_contains(text, "\"metadata\":{\"purpose\":\"datatype round trips\"}");
    assert_contains(text, "\"state\":\"READY\",\"state_reason\":\"\"}");
    oxs_buf_free(&out);
}

static void test_encode_respects_buffer_max(void **state)
{
    (void)state;
    oxs_buf_t out;
    oxs_buf_init(&out, 64);
    const int64_t versions[] = {1};
    oxs_json_encode_model_metadata(&out, identity, versions, 1);
    assert_true(out.failed);
    assert_true(out.len <= 64);
    oxs_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_infer_int64_beyond_2_pow_53),
        cmocka_unit_test(test_infer_uint64_max),
        cmocka_unit_test(test_infer_small_integer_limits),
        cmocka_unit_test(test_infer_fp32_equals_strtof),
        cmocka_unit_test(test_infer_fp64_equals_strtod),
        cmocka_unit_test(test_infer_float16_rounding),
        cmocka_unit_test(test_infer_special_float_strings),
        cmocka_unit_test(test_infer_long_float_text),
        cmocka_unit_test(test_infer_bool_values),
        cmocka_unit_test(test_infer_nested_equals_flat),
        cmocka_unit_test(test_infer_data_before_shape),
        cmocka_unit_test(test_infer_ignores_parameters),
        cmocka_unit_test(test_infer_zero_sized_dim),
        cmocka_unit_test(test_infer_sets_id),
        cmocka_unit_test(test_infer_keeps_preset_id),
        cmocka_unit_test(test_infer_requested_outputs),
        cmocka_unit_test(test_error_invalid_json),
        cmocka_unit_test(test_error_empty_body),
        cmocka_unit_test(test_error_wrong_json_types),
        cmocka_unit_test(test_error_missing_fields),
        cmocka_unit_test(test_error_unknown_input),
        cmocka_unit_test(test_error_duplicate_input),
        cmocka_unit_test(test_error_duplicate_key),
        cmocka_unit_test(test_error_unknown_datatype),
        cmocka_unit_test(test_error_unsupported_datatype),
        cmocka_unit_test(test_error_datatype_mismatch),
        cmocka_unit_test(test_error_element_count),
        cmocka_unit_test(test_error_nesting_mismatch),
        cmocka_unit_test(test_error_bad_dims),
        cmocka_unit_test(test_error_shape_against_model),
        cmocka_unit_test(test_error_tensor_too_large),
        cmocka_unit_test(test_error_quotes_client_text),
        cmocka_unit_test(test_error_small_buffer),
        cmocka_unit_test(test_error_integer_range),
        cmocka_unit_test(test_error_not_an_integer),
        cmocka_unit_test(test_error_float_range),
        cmocka_unit_test(test_error_wrong_value_type),
        cmocka_unit_test(test_error_unknown_output),
        cmocka_unit_test(test_error_long_id),
        cmocka_unit_test(test_error_depth_limit),
        cmocka_unit_test(test_error_deep_data),
        cmocka_unit_test(test_predict_nested),
        cmocka_unit_test(test_predict_flat_with_shape),
        cmocka_unit_test(test_predict_leading_dim_inferred),
        cmocka_unit_test(test_predict_fp32_equals_strtof),
        cmocka_unit_test(test_predict_errors),
        cmocka_unit_test(test_predict_needs_one_fp32_input),
        cmocka_unit_test(test_predict_unknown_dims),
        cmocka_unit_test(test_decode_allocations_bounded),
        cmocka_unit_test(test_write_string_escapes),
        cmocka_unit_test(test_encode_error),
        cmocka_unit_test(test_encode_infer_round_trip),
        cmocka_unit_test(test_encode_infer_every_datatype),
        cmocka_unit_test(test_encode_float_reads_back),
        cmocka_unit_test(test_encode_float16_every_pattern),
        cmocka_unit_test(test_encode_predict),
        cmocka_unit_test(test_encode_model_metadata),
        cmocka_unit_test(test_encode_respects_buffer_max),
    };
    oxs_test_exit(cmocka_run_group_tests(tests, setup_server, teardown_server));
}
