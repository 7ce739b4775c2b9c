/*
 * /predict request decoder: {"data": [...], "shape": [...]} for a model with one FP32 input.
 * The shape of nested data is known only once the data has been read, so the body is parsed
 * twice: a first pass checks the structure, counts the values and reads "shape"; a second
 * pass converts the numbers straight into the tensor buffer. Both passes keep their state in
 * request scratch memory.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "codec/json.h"
#include "codec/json_internal.h"

typedef enum predict_where {
    PREDICT_START,
    PREDICT_ROOT,
    PREDICT_ROOT_VALUE,
    PREDICT_DATA,
    PREDICT_SHAPE,
    PREDICT_END,
} predict_where_t;

typedef enum predict_key { KEY_DATA, KEY_SHAPE } predict_key_t;

/* What the items at one depth of data are, which must agree across the whole array. */
typedef enum item_kind { ITEMS_UNKNOWN, ITEMS_ARRAYS, ITEMS_NUMBERS } item_kind_t;

typedef struct predict_decoder {
    oxs_request_t *request;
    oxs__msg_t msg;
    oxs_status_t status;
    bool converting; /* second pass */

    predict_where_t where;
    predict_key_t key;
    unsigned keys_seen;
    int depth; /* open objects and arrays */

    /* data, depth 1 being the outer array */
    int data_depth;
    int data_rank;                     /* deepest array level reached */
    int64_t items[OXS_MAX_DIMS + 1];   /* items so far in the open array at each depth */
    int64_t dims[OXS_MAX_DIMS + 1];    /* length every array at that depth must have, -1 unknown */
    item_kind_t kinds[OXS_MAX_DIMS + 1];
    size_t value_count;

    /* "shape" */
    int shape_rank;
    int64_t shape[OXS_MAX_DIMS];

    /* second pass */
    float *buffer;
    size_t count;
    size_t index;
} predict_decoder_t;

__attribute__((format(printf, 2, 3))) static int fail(predict_decoder_t *d, const char *format,
                                                      ...)
{
    d->status = OXS_ERR_INVALID_ARGUMENT;
    oxs__msg_init(&d->msg, d->msg.text, d->msg.size);

    va_list args;
    va_start(args, format);
    char line[512];
    vsnprintf(line, sizeof(line), format, args);
    va_end(args);
    oxs__msg_printf(&d->msg, "%s", line);
    return 0;
}

static oxs__msg_t *fail_begin(predict_decoder_t *d, oxs_status_t status)
{
    d->status = status;
    oxs__msg_init(&d->msg, d->msg.text, d->msg.size);
    return &d->msg;
}

/* Appends the path of the next item at the current data depth, as data[1][0]. */
static void msg_data_path(oxs__msg_t *msg, const predict_decoder_t *d)
{
    oxs__msg_printf(msg, "data");
    for (int level = 1; level < d->data_depth; level++)
        oxs__msg_printf(msg, "[%" PRId64 "]", d->items[level] - 1);
    oxs__msg_printf(msg, "[%" PRId64 "]", d->items[d->data_depth]);
}

/* Checks that the next item at the current depth has kind, as every earlier one at that depth
 * had, and counts it. */
static int count_item(predict_decoder_t *d, item_kind_t kind, const char *got)
{
    item_kind_t *expected = &d->kinds[d->data_depth];
    if (*expected == ITEMS_UNKNOWN)
        *expected = kind;
    if (*expected != kind) {
        oxs__msg_t *msg = fail_begin(d, OXS_ERR_INVALID_ARGUMENT);
        msg_data_path(msg, d);
        oxs__msg_printf(msg, ": expected %s, got %s; nested data must be rectangular",
                        *expected == ITEMS_ARRAYS ? "an array" : "a number", got);
        return 0;
    }
    d->items[d->data_depth]++;
    return 1;
}

/* ---- first pass: structure ----------------------------------------------------------------- */

static int scan_array_start(predict_decoder_t *d)
{
    if (d->data_depth > 0 && !count_item(d, ITEMS_ARRAYS, "an array"))
        return 0;
    if (d->data_depth == OXS_MAX_DIMS)
        return fail(d, "data: nesting is deeper than %d levels, at most %d dims are supported",
                    OXS_MAX_DIMS, OXS_MAX_DIMS);

    d->data_depth++;
    d->items[d->data_depth] = 0;
    if (d->data_depth > d->data_rank) {
        d->data_rank = d->data_depth;
        d->dims[d->data_depth] = -1;
    }
    return 1;
}

static int scan_array_end(predict_decoder_t *d)
{
    int depth = d->data_depth;
    if (d->dims[depth] < 0) {
        d->dims[depth] = d->items[depth];
    } else if (d->dims[depth] != d->items[depth]) {
        oxs__msg_t *msg = fail_begin(d, OXS_ERR_INVALID_ARGUMENT);
        oxs__msg_printf(msg, "data");
        for (int level = 1; level < depth; level++)
            oxs__msg_printf(msg, "[%" PRId64 "]", d->items[level] - 1);
        oxs__msg_printf(msg, " has %" PRId64 " items, but the arrays before it at that depth have %" PRId64
                        "; nested data must be rectangular",
                        d->items[depth], d->dims[depth]);
        return 0;
    }
    d->data_depth--;
    return 1;
}

static int scan_value(predict_decoder_t *d, const char *type, const char *text, size_t len)
{
    float special = 0;
    bool is_string = strcmp(type, "string") == 0;
    bool is_special = is_string && oxs__json_convert_special(OXS_DT_FP32, text, len, &special, 0);
    if (strcmp(type, "number") != 0 && !is_special) {
        oxs__msg_t *msg = fail_begin(d, OXS_ERR_INVALID_ARGUMENT);
        msg_data_path(msg, d);
        oxs__msg_printf(msg, ": expected a number or one of the strings \"NaN\", \"Infinity\", "
                        "\"-Infinity\", got %s", type);
        if (is_string) {
            oxs__msg_printf(msg, " ");
            oxs__msg_quote(msg, text, len);
        }
        return 0;
    }
    if (!count_item(d, ITEMS_NUMBERS, "a number"))
        return 0;
    d->value_count++;
    return 1;
}

static int scan_dim(predict_decoder_t *d, const char *text, size_t len)
{
    if (d->shape_rank == OXS_MAX_DIMS)
        return fail(d, "shape: more than %d dims, at most %d are supported", OXS_MAX_DIMS,
                    OXS_MAX_DIMS);

    int64_t value = 0;
    const char *problem = oxs__json_parse_dim(text, len, &value);
    if (problem != NULL) {
        oxs__msg_t *msg = fail_begin(d, OXS_ERR_INVALID_ARGUMENT);
        oxs__msg_printf(msg, "shape[%d]: value ", d->shape_rank);
        oxs__msg_value(msg, text, len);
        oxs__msg_printf(msg, " %s, expected an integer in [0, %" PRId64 "]", problem, INT64_MAX);
        return 0;
    }
    d->shape[d->shape_rank++] = value;
    return 1;
}

/* Fails with a wrong-type message that shows the scalar received (strings quoted). */
static int fail_scalar(predict_decoder_t *d, const char *field, const char *expected,
                       const char *type, const char *text, size_t len)
{
    oxs__msg_t *msg = fail_begin(d, OXS_ERR_INVALID_ARGUMENT);
    oxs__msg_printf(msg, "%s: expected %s, got %s", field, expected, type);
    if (text != NULL && strcmp(type, "string") == 0) {
        oxs__msg_printf(msg, " ");
        oxs__msg_quote(msg, text, len);
    } else if (text != NULL && strcmp(type, "number") == 0) {
        oxs__msg_printf(msg, " ");
        oxs__msg_value(msg, text, len);
    }
    return 0;
}

/* ---- callbacks shared by both passes ------------------------------------------------------- */

static int on_scalar(predict_decoder_t *d, const char *type, const char *text, size_t len)
{
    switch (d->where) {
    case PREDICT_START:
        return fail(d, "request body: expected a JSON object, got %s", type);
    case PREDICT_ROOT_VALUE:
        d->where = PREDICT_ROOT;
        return fail_scalar(d, d->key == KEY_DATA ? "data" : "shape", "an array", type, text,
                           len);
    case PREDICT_SHAPE:
        if (d->converting)
            return 1;
        if (strcmp(type, "number") != 0) {
            char field[32];
            snprintf(field, sizeof(field), "shape[%d]", d->shape_rank);
            return fail_scalar(d, field, "a non-negative integer", type, text, len);
        }
        return scan_dim(d, text, len);
    case PREDICT_DATA:
        if (!d->converting)
            return scan_value(d, type, text, len);
        if (d->index >= d->count)
            return fail(d, "data: more values than the first pass counted");
        if (strcmp(type, "string") == 0) {
            /* The first pass accepted only "NaN", "Infinity" and "-Infinity". */
            oxs__json_convert_special(OXS_DT_FP32, text, len, d->buffer, d->index++);
            return 1;
        }
        oxs__number_result_t result = oxs__json_convert_number(d->request, OXS_DT_FP32, text, len,
                                                               d->buffer, d->index);
        if (result != OXS__NUMBER_OK) {
            oxs__msg_t *msg = fail_begin(d, result == OXS__NUMBER_OUT_OF_MEMORY
                                                ? OXS_ERR_OUT_OF_MEMORY
                                                : OXS_ERR_INVALID_ARGUMENT);
            oxs__json_number_error(msg, "data", result, OXS_DT_FP32, text, len, d->index);
            return 0;
        }
        d->index++;
        return 1;
    default:
        return 1;
    }
}

static int on_start(predict_decoder_t *d, bool is_array)
{
    int max_depth = oxs_request_limits(d->request)->max_json_depth;
    if (++d->depth > max_depth)
        return fail(d, OXS__JSON_DEPTH_ERROR, max_depth);

    switch (d->where) {
    case PREDICT_START:
        if (is_array)
            return fail(d, "request body: expected a JSON object, got array");
        d->where = PREDICT_ROOT;
        return 1;
    case PREDICT_ROOT_VALUE:
        if (!is_array)
            return fail(d, "%s: expected an array, got object",
                        d->key == KEY_DATA ? "data" : "shape");
        if (d->key == KEY_SHAPE) {
            d->where = PREDICT_SHAPE;
            return 1;
        }
        d->where = PREDICT_DATA;
        if (d->converting) {
            d->data_depth = 1;
            return 1;
        }
        return scan_array_start(d);
    case PREDICT_SHAPE:
        return fail(d, "shape[%d]: expected a non-negative integer, got %s", d->shape_rank,
                    is_array ? "array" : "object");
    case PREDICT_DATA:
        if (!is_array)
            return scan_value(d, "object", NULL, 0);
        if (d->converting) {
            d->data_depth++;
            return 1;
        }
        return scan_array_start(d);
    default:
        return 1;
    }
}

static int on_end(predict_decoder_t *d)
{
    d->depth--;
    switch (d->where) {
    case PREDICT_ROOT:
        d->where = PREDICT_END;
        if ((d->keys_seen & (1u << KEY_DATA)) == 0)
            return fail(d, "request body: missing \"data\"");
        return 1;
    case PREDICT_SHAPE:
        d->where = PREDICT_ROOT;
        return 1;
    case PREDICT_DATA:
        if (d->converting)
            d->data_depth--;
        else if (!scan_array_end(d))
            return 0;
        if (d->data_depth == 0)
            d->where = PREDICT_ROOT;
        return 1;
    default:
        return 1;
    }
}

static int on_key(predict_decoder_t *d, const unsigned char *key, size_t len)
{
    predict_key_t found;
    if (len == 4 && memcmp(key, "data", 4) == 0) {
        found = KEY_DATA;
    } else if (len == 5 && memcmp(key, "shape", 5) == 0) {
        found = KEY_SHAPE;
    } else {
        oxs__msg_t *msg = fail_begin(d, OXS_ERR_INVALID_ARGUMENT);
        oxs__msg_printf(msg, "request body: unknown key ");
        oxs__msg_quote(msg, (const char *)key, len);
        oxs__msg_printf(msg, ", expected \"data\" or \"shape\"");
        return 0;
    }
    if (d->keys_seen & (1u << found))
        return fail(d, "request body: duplicate key \"%s\"", found == KEY_DATA ? "data" : "shape");
    d->keys_seen |= 1u << found;
    d->key = found;
    d->where = PREDICT_ROOT_VALUE;
    return 1;
}

static int cb_null(void *context)
{
    return on_scalar(context, "null", "null", 4);
}

static int cb_boolean(void *context, int value)
{
    return on_scalar(context, "boolean", value ? "true" : "false", value ? 4 : 5);
}

static int cb_number(void *context, const char *text, size_t len)
{
    return on_scalar(context, "number", text, len);
}

static int cb_string(void *context, const unsigned char *text, size_t len)
{
    return on_scalar(context, "string", (const char *)text, len);
}

static int cb_map_key(void *context, const unsigned char *key, size_t len)
{
    return on_key(context, key, len);
}

static int cb_start_map(void *context)
{
    return on_start(context, false);
}

static int cb_start_array(void *context)
{
    return on_start(context, true);
}

static int cb_end(void *context)
{
    return on_end(context);
}

static const yajl_callbacks predict_callbacks = {
    .yajl_null = cb_null,
    .yajl_boolean = cb_boolean,
    .yajl_number = cb_number,
    .yajl_string = cb_string,
    .yajl_start_map = cb_start_map,
    .yajl_map_key = cb_map_key,
    .yajl_end_map = cb_end,
    .yajl_start_array = cb_start_array,
    .yajl_end_array = cb_end,
};

/* ---- shape resolution and the two passes ---------------------------------------------------- */

static void msg_model_input_list(oxs__msg_t *msg, const oxs_model_t *model)
{
    size_t count = oxs_model_input_count(model);
    for (size_t i = 0; i < count; i++) {
        const oxs_tensor_info_t *info = oxs_model_input(model, i);
        oxs__msg_printf(msg, "%s%s (%s ", i > 0 ? ", " : "", info->name,
                        info->datatype != OXS_DT_INVALID ? oxs_datatype_name(info->datatype)
                                                         : info->onnx_type);
        if (info->rank >= 0)
            oxs__msg_shape(msg, info->dims, info->rank);
        else
            oxs__msg_printf(msg, "of unknown rank");
        oxs__msg_printf(msg, ")");
    }
}

/* Returns the model's only input when it is FP32, else NULL with the message written. */
static const oxs_tensor_info_t *predict_input(const oxs_model_t *model, oxs__msg_t *msg)
{
    size_t count = oxs_model_input_count(model);
    if (count == 1 && oxs_model_input(model, 0)->datatype == OXS_DT_FP32)
        return oxs_model_input(model, 0);

    oxs__msg_printf(msg, "model \"%s\" has %zu input%s: ", oxs_model_name(model), count,
                    count == 1 ? "" : "s");
    msg_model_input_list(msg, model);
    oxs__msg_printf(msg, "; /predict needs a model with exactly one FP32 input, use "
                         "/v2/models/%s/infer for this one", oxs_model_name(model));
    return NULL;
}

/* Fills shape for flat data from the model input's dims, inferring an unknown leading dim from
 * the value count. */
static oxs_status_t shape_from_model(const oxs_tensor_info_t *info, size_t values,
                                     int64_t *shape, int *rank, oxs__msg_t *msg)
{
    if (info->rank < 0) {
        oxs__msg_printf(msg, "data has %zu values but the model input \"%s\" has an unknown "
                        "rank; send \"shape\" or nested data", values, info->name);
        return OXS_ERR_INVALID_ARGUMENT;
    }

    int unknown[OXS_MAX_DIMS];
    int unknown_count = 0;
    int64_t known_product = 1; /* product of the static dims, saturated at INT64_MAX */
    for (int i = 0; i < info->rank; i++) {
        shape[i] = info->dims[i];
        if (info->dims[i] < 0)
            unknown[unknown_count++] = i;
        else if (info->dims[i] == 0 || known_product <= INT64_MAX / info->dims[i])
            known_product *= info->dims[i];
        else
            known_product = INT64_MAX;
    }
    *rank = info->rank;

    if (unknown_count == 0 && known_product == (int64_t)values)
        return OXS_OK;
    if (unknown_count == 1 && unknown[0] == 0 && known_product > 0 &&
        (int64_t)values % known_product == 0) {
        shape[0] = (int64_t)values / known_product;
        return OXS_OK;
    }

    oxs__msg_printf(msg, "data has %zu values but the model input \"%s\" has dims ", values,
                    info->name);
    oxs__msg_shape(msg, info->dims, info->rank);
    if (unknown_count == 0) {
        oxs__msg_printf(msg, ", which need %" PRId64 " values", known_product);
    } else if (unknown_count == 1 && unknown[0] == 0) {
        if (known_product == 0)
            oxs__msg_printf(msg, ": dim 0 cannot be inferred because the other dims multiply to 0");
        else
            oxs__msg_printf(msg, ": %zu is not a multiple of %" PRId64 ", the product of the other dims",
                            values, known_product);
        oxs__msg_printf(msg, "; send \"shape\" or nested data");
    } else {
        oxs__msg_printf(msg, ": dim%s ", unknown_count > 1 ? "s" : "");
        for (int i = 0; i < unknown_count; i++) {
            const char *separator = ", ";
            if (i == 0)
                separator = "";
            else if (i == unknown_count - 1)
                separator = " and ";
            oxs__msg_printf(msg, "%s%d", separator, unknown[i]);
        }
        oxs__msg_printf(msg, " %s unknown; send \"shape\" or nested data",
                        unknown_count > 1 ? "are" : "is");
    }
    return OXS_ERR_INVALID_ARGUMENT;
}

/* Chooses the tensor shape: the nesting of data, else "shape", else the model's dims. */
static oxs_status_t resolve_shape(const predict_decoder_t *scan, const oxs_tensor_info_t *info,
                                  int64_t *shape, int *rank, oxs__msg_t *msg)
{
    bool has_shape = (scan->keys_seen & (1u << KEY_SHAPE)) != 0;

    if (scan->data_rank >= 2) {
        *rank = scan->data_rank;
        memcpy(shape, &scan->dims[1], (size_t)scan->data_rank * sizeof(int64_t));
        if (has_shape && (scan->shape_rank != *rank ||
                          memcmp(scan->shape, shape, (size_t)*rank * sizeof(int64_t)) != 0)) {
            oxs__msg_printf(msg, "shape ");
            oxs__msg_shape(msg, scan->shape, scan->shape_rank);
            oxs__msg_printf(msg, " does not match data, which is nested as ");
            oxs__msg_shape(msg, shape, *rank);
            return OXS_ERR_INVALID_ARGUMENT;
        }
        return OXS_OK;
    }

    if (!has_shape)
        return shape_from_model(info, scan->value_count, shape, rank, msg);

    int64_t elements = 0;
    bool fits = oxs__json_shape_elements(scan->shape, scan->shape_rank, &elements);
    if (!fits || elements != (int64_t)scan->value_count) {
        oxs__msg_printf(msg, "data has %zu values, but shape ", scan->value_count);
        oxs__msg_shape(msg, scan->shape, scan->shape_rank);
        if (fits)
            oxs__msg_printf(msg, " needs %" PRId64, elements);
        else
            oxs__msg_printf(msg, " needs more than %" PRId64, INT64_MAX);
        return OXS_ERR_INVALID_ARGUMENT;
    }
    *rank = scan->shape_rank;
    memcpy(shape, scan->shape, (size_t)*rank * sizeof(int64_t));
    return OXS_OK;
}

/* Runs one pass over the body with d's state; returns the first error. */
static oxs_status_t run_pass(predict_decoder_t *d, const char *body, size_t len, char *error,
                             size_t error_size)
{
    yajl_handle parser = oxs__json_parser_create(d->request, &predict_callbacks, d);
    if (parser == NULL) {
        oxs__msg_printf(&d->msg, "out of memory decoding the request");
        return OXS_ERR_OUT_OF_MEMORY;
    }
    oxs_status_t status = oxs__json_parse(parser, body, len, error, error_size);
    if (status == OXS_ERR_INTERNAL && d->status != OXS_OK)
        status = d->status;
    yajl_free(parser); /* returns nothing to the system: the arena owns the memory */
    return status;
}

oxs_status_t oxs_json_decode_predict(oxs_request_t *request, const char *body, size_t len,
                                     char *error, size_t error_size)
{
    oxs__msg_t msg;
    oxs__msg_init(&msg, error, error_size);

    const oxs_model_t *model = oxs_request_model(request);
    const oxs_tensor_info_t *info = predict_input(model, &msg);
    if (info == NULL)
        return OXS_ERR_INVALID_ARGUMENT;

    predict_decoder_t *d = oxs_request_scratch(request, sizeof(*d));
    if (d == NULL) {
        oxs__msg_printf(&msg, "out of memory decoding the request");
        return OXS_ERR_OUT_OF_MEMORY;
    }
    memset(d, 0, sizeof(*d));
    d->request = request;
    d->msg = msg;
    oxs_status_t status = run_pass(d, body, len, error, error_size);
    if (status != OXS_OK)
        return status;

    int64_t shape[OXS_MAX_DIMS];
    int rank = 0;
    status = resolve_shape(d, info, shape, &rank, &msg);
    if (status != OXS_OK)
        return status;

    void *buffer = NULL;
    size_t byte_size = 0;
    status = oxs_request_add_input(request, info->name, strlen(info->name), OXS_DT_FP32, shape,
                                   rank, &buffer, &byte_size, error, error_size);
    if (status != OXS_OK)
        return status;
    if (byte_size / sizeof(float) < d->value_count) {
        oxs__msg_printf(&msg, "input \"%s\": the tensor buffer has %zu bytes, too small for %zu values",
                        info->name, byte_size, d->value_count);
        return OXS_ERR_INTERNAL;
    }

    size_t count = d->value_count;
    memset(d, 0, sizeof(*d));
    d->request = request;
    d->msg = msg;
    d->converting = true;
    d->buffer = buffer;
    d->count = count;
    return run_pass(d, body, len, error, error_size);
}
