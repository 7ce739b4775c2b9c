/*
 * KServe v2 infer request decoder, a state machine driven by yajl's callbacks. When an input's
 * name, shape and datatype come before its "data", numbers go straight into the tensor buffer
 * from oxs_request_add_input. When "data" comes first, the decoder records where each value's
 * text sits in the body and converts the values when the input object ends. All state lives
 * in request scratch memory.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/json.h"
#include "codec/json_internal.h"

/* Where the parser is in the request body; the names follow the JSON path. */
typedef enum where {
    WHERE_START,        /* before the top-level value */
    WHERE_ROOT,         /* in the top-level object, before a key */
    WHERE_ROOT_VALUE,   /* before the value of a top-level key */
    WHERE_INPUTS,       /* in "inputs", before an input object */
    WHERE_INPUT,        /* in an input object, before a key */
    WHERE_INPUT_VALUE,  /* before the value of an input key */
    WHERE_SHAPE,        /* in an input's "shape" */
    WHERE_DATA,         /* in an input's "data" */
    WHERE_OUTPUTS,      /* in "outputs", before an output object */
    WHERE_OUTPUT,       /* in an output object, before a key */
    WHERE_OUTPUT_VALUE, /* before the value of an output key */
    WHERE_PARAMS,       /* in a "parameters" object, before a key */
    WHERE_PARAM_VALUE,  /* before the value of a parameter */
    WHERE_END,          /* after the top-level object */
} where_t;

typedef enum root_key { ROOT_ID, ROOT_PARAMETERS, ROOT_INPUTS, ROOT_OUTPUTS, ROOT_OTHER } root_key_t;
typedef enum input_key {
    INPUT_NAME,
    INPUT_SHAPE,
    INPUT_DATATYPE,
    INPUT_DATA,
    INPUT_PARAMETERS,
    INPUT_OTHER,
} input_key_t;
typedef enum output_key { OUTPUT_NAME, OUTPUT_PARAMETERS, OUTPUT_OTHER } output_key_t;

/* The object a "parameters" object belongs to. */
typedef enum params_owner { OWNER_ROOT, OWNER_INPUT, OWNER_OUTPUT } params_owner_t;

/* The parameters the decoder reads. Others are ignored, and each owner accepts one of them. */
typedef enum param_key {
    PARAM_BINARY_DATA_OUTPUT, /* root: every output as binary data */
    PARAM_BINARY_DATA_SIZE,   /* input: its data follows the JSON, this many bytes */
    PARAM_BINARY_DATA,        /* output: this output as binary data */
    PARAM_CLASSIFICATION,     /* output: the classification extension, not supported */
    PARAM_TIMEOUT,            /* root: queue deadline in microseconds */
    PARAM_PRIORITY,           /* root: priority level, 1 the highest */
    PARAM_OTHER,
} param_key_t;

static const char *const root_keys[] = {"id", "parameters", "inputs", "outputs"};
static const char *const input_keys[] = {"name", "shape", "datatype", "data", "parameters"};
static const char *const output_keys[] = {"name", "parameters"};
static const char *const param_keys[] = {"binary_data_output", "binary_data_size", "binary_data",
                                         "classification", "timeout", "priority"};
static const char *const owner_names[] = {"", "inputs", "outputs"};

/* The kind of one JSON value or event, also the kind of a recorded data token. */
typedef enum value_kind {
    VALUE_NULL,
    VALUE_TRUE,
    VALUE_FALSE,
    VALUE_NUMBER,
    VALUE_STRING,
    VALUE_OBJECT, /* start of an object */
    VALUE_ARRAY,  /* start of an array */
    VALUE_END,    /* end of an array (only in data) */
} value_kind_t;

static const char *const value_kind_names[] = {"null", "boolean", "boolean", "number",
                                               "string", "object", "array", "end"};

/* A data event recorded while the input's shape or datatype is still unknown. text points
 * into the body (or a scratch copy), which outlives the decode. */
typedef struct data_token {
    const char *text;
    uint32_t len;
    uint32_t kind; /* value_kind_t */
} data_token_t;

/* How an input's data nests: unknown until its first item. */
typedef enum data_layout { LAYOUT_UNKNOWN, LAYOUT_FLAT, LAYOUT_NESTED } data_layout_t;

/* The input object being decoded. */
typedef struct input_state {
    size_t position; /* index in "inputs" */
    unsigned keys_seen; /* bit per input_key_t */
    char *name;      /* scratch copy, NUL-terminated */
    size_t name_len;
    int model_index; /* -1 until the name is known */
    oxs_datatype_t datatype;
    int rank;
    int64_t shape[OXS_MAX_DIMS];
    bool shape_done;

    /* Data converted straight into the tensor buffer once started. */
    bool tensor_started;
    void *buffer;
    size_t count; /* elements the shape needs */
    size_t index; /* elements written */
    int depth;    /* arrays open inside "data", 1 = the outer array */
    data_layout_t layout;
    int64_t items[OXS_MAX_DIMS + 1]; /* items seen so far in the open array at each depth */

    size_t write_at; /* BYTES: bytes of the buffer written */
    int64_t binary_size; /* parameters.binary_data_size, or -1 */

    /* Data recorded while the tensor cannot start yet. */
    data_token_t *tokens;
    size_t token_count;
    size_t token_capacity;
    size_t value_count; /* scalar tokens, for error messages */
} input_state_t;

typedef struct decoder {
    oxs_request_t *request;
    const oxs_model_t *model;
    const char *body;
    size_t body_len;
    yajl_handle parser; /* for the position of the string being read */
    oxs__msg_t msg;
    oxs_status_t status; /* first error raised by a callback */

    where_t where;
    int depth;      /* open objects and arrays */
    int skip_depth; /* > 0 while inside an ignored value */
    bool id_preset; /* the request had an id before decoding */

    root_key_t root_key;
    unsigned root_keys_seen;
    input_key_t input_key;

    size_t input_total;
    bool *input_sent; /* per model input */
    input_state_t in;

    size_t output_total;
    bool *output_requested; /* per model output */
    output_key_t output_key;
    unsigned output_keys_seen;
    bool output_has_name;
    int output_index; /* model output of the current output object, -1 until named */
    int output_binary; /* its parameters.binary_data: -1 unset, 0 or 1 */

    params_owner_t params_owner;
    param_key_t param_key;
    unsigned params_seen;

    const char *binary; /* bytes after the JSON header */
    size_t binary_len;
    size_t binary_used;  /* taken by inputs so far */
    oxs_json_reply_t *reply;
} decoder_t;

/* ---- errors ---------------------------------------------------------------------------------- */

/* Records the first error; returns 0 so a callback can stop yajl with return fail(...). */
__attribute__((format(printf, 3, 4))) static int fail(decoder_t *d, oxs_status_t status,
                                                      const char *format, ...)
{
    if (d->status != OXS_OK)
        return 0;
    d->status = status;
    oxs__msg_init(&d->msg, d->msg.text, d->msg.size);

    va_list args;
    va_start(args, format);
    char line[512];
    vsnprintf(line, sizeof(line), format, args);
    va_end(args);
    oxs__msg_printf(&d->msg, "%s", line);
    return 0;
}

/* Starts an error whose text the caller appends with oxs__msg_*; returns the builder. */
static oxs__msg_t *fail_begin(decoder_t *d, oxs_status_t status)
{
    d->status = status;
    oxs__msg_init(&d->msg, d->msg.text, d->msg.size);
    return &d->msg;
}

/* Writes how messages name the current input: input "x" once the name is known, else its
 * JSON path inputs[N]. */
static void input_label(const decoder_t *d, char *out, size_t size)
{
    oxs__msg_t label;
    oxs__msg_init(&label, out, size);
    if (d->in.name != NULL) {
        oxs__msg_printf(&label, "input ");
        oxs__msg_quote(&label, d->in.name, d->in.name_len);
    } else {
        oxs__msg_printf(&label, "inputs[%zu]", d->in.position);
    }
}

/* Fails with a wrong-type message; text is the scalar received (shown, cut to a short
 * excerpt), or NULL for an array or object. */
static int fail_type_value(decoder_t *d, const char *field, const char *expected,
                           value_kind_t got, const char *text, size_t len)
{
    oxs__msg_t *msg = fail_begin(d, OXS_ERR_INVALID_ARGUMENT);
    oxs__msg_printf(msg, "%s: expected %s, got %s", field, expected, value_kind_names[got]);
    if (text != NULL && (got == VALUE_STRING || got == VALUE_NUMBER)) {
        oxs__msg_printf(msg, " ");
        if (got == VALUE_STRING)
            oxs__msg_quote(msg, text, len);
        else
            oxs__msg_value(msg, text, len);
    }
    return 0;
}

static int fail_type(decoder_t *d, const char *field, const char *expected, value_kind_t got)
{
    return fail_type_value(d, field, expected, got, NULL, 0);
}

/* ---- small helpers --------------------------------------------------------------------------- */

static int find_key(const char *const *keys, int count, const unsigned char *key, size_t len)
{
    for (int i = 0; i < count; i++) {
        if (strlen(keys[i]) == len && memcmp(keys[i], key, len) == 0)
            return i;
    }
    return count; /* the "other" key */
}

/* Moves to the state that follows a finished value. */
static void value_done(decoder_t *d)
{
    switch (d->where) {
    case WHERE_ROOT_VALUE:
    case WHERE_INPUTS:
    case WHERE_OUTPUTS:
        d->where = WHERE_ROOT;
        break;
    case WHERE_INPUT_VALUE:
    case WHERE_SHAPE:
    case WHERE_DATA:
        d->where = WHERE_INPUT;
        break;
    case WHERE_OUTPUT_VALUE:
        d->where = WHERE_OUTPUT;
        break;
    case WHERE_PARAM_VALUE:
        d->where = WHERE_PARAMS;
        break;
    default:
        break;
    }
}

/* ---- id, name, datatype, shape ----------------------------------------------------------------- */

static int on_id(decoder_t *d, const char *text, size_t len)
{
    if (d->id_preset)
        return 1;
    if (len > 128 || oxs_request_set_id(d->request, text, len) != OXS_OK) {
        oxs__msg_t *msg = fail_begin(d, OXS_ERR_INVALID_ARGUMENT);
        oxs__msg_printf(msg, "id: value ");
        oxs__msg_quote(msg, text, len);
        oxs__msg_printf(msg, " has %zu bytes, expected at most 128", len);
        return 0;
    }
    return 1;
}

static int check_datatype_match(decoder_t *d)
{
    const oxs_tensor_info_t *info = oxs_model_input(d->model, (size_t)d->in.model_index);
    if (info->datatype == d->in.datatype)
        return 1;

    char label[128];
    input_label(d, label, sizeof(label));
    if (info->datatype == OXS_DT_INVALID)
        return fail(d, OXS_ERR_UNSUPPORTED,
                    "%s: datatype %s, the model expects ONNX type %s, which onnxserve does not "
                    "support",
                    label, oxs_datatype_name(d->in.datatype), info->onnx_type);
    return fail(d, OXS_ERR_INVALID_ARGUMENT, "%s: datatype %s, the model expects %s", label,
                oxs_datatype_name(d->in.datatype), oxs_datatype_name(info->datatype));
}

static int on_input_name(decoder_t *d, const char *text, size_t len)
{
    int index = oxs_model_find_input(d->model, text, len);
    if (index < 0) {
        oxs__msg_t *msg = fail_begin(d, OXS_ERR_INVALID_ARGUMENT);
        oxs__msg_printf(msg, "inputs[%zu].name: model \"%s\" has no input ", d->in.position,
                        oxs_model_name(d->model));
        oxs__msg_quote(msg, text, len);
        oxs__msg_printf(msg, "; its inputs are ");
        oxs__msg_model_inputs(msg, d->model);
        return 0;
    }
    if (d->input_sent[index])
        return fail(d, OXS_ERR_INVALID_ARGUMENT,
                    "inputs[%zu]: input \"%s\" appears more than once, expected each input once",
                    d->in.position, oxs_model_input(d->model, (size_t)index)->name);

    /* yajl's text may sit in its own buffer, valid only during the callback. */
    char *name = oxs_request_scratch(d->request, len + 1);
    if (name == NULL)
        return fail(d, OXS_ERR_OUT_OF_MEMORY, "out of memory decoding the request");
    memcpy(name, text, len);
    name[len] = '\0';

    d->input_sent[index] = true;
    d->in.name = name;
    d->in.name_len = len;
    d->in.model_index = index;
    if (d->in.datatype != OXS_DT_INVALID)
        return check_datatype_match(d);
    return 1;
}

static int on_datatype(decoder_t *d, const char *text, size_t len)
{
    oxs_datatype_t datatype = oxs_datatype_from_name(text, len);
    if (datatype == OXS_DT_INVALID || !oxs__json_datatype_supported(datatype)) {
        bool known = datatype != OXS_DT_INVALID;
        oxs__msg_t *msg = fail_begin(d, known ? OXS_ERR_UNSUPPORTED : OXS_ERR_INVALID_ARGUMENT);
        oxs__msg_printf(msg, "inputs[%zu].datatype: ", d->in.position);
        if (known) {
            oxs__msg_printf(msg, "%s not supported yet", oxs_datatype_name(datatype));
        } else {
            oxs__msg_printf(msg, "unknown datatype ");
            oxs__msg_quote(msg, text, len);
        }
        oxs__msg_printf(msg, "; supported: ");
        oxs__msg_supported_datatypes(msg);
        return 0;
    }

    d->in.datatype = datatype;
    if (d->in.model_index >= 0)
        return check_datatype_match(d);
    return 1;
}

static int on_dim(decoder_t *d, const char *text, size_t len)
{
    input_state_t *in = &d->in;
    if (in->rank == OXS_MAX_DIMS)
        return fail(d, OXS_ERR_INVALID_ARGUMENT, "inputs[%zu].shape: more than %d dims, at most %d are supported",
                    in->position, OXS_MAX_DIMS, OXS_MAX_DIMS);

    int64_t value = 0;
    const char *problem = oxs__json_parse_dim(text, len, &value);
    if (problem != NULL) {
        oxs__msg_t *msg = fail_begin(d, OXS_ERR_INVALID_ARGUMENT);
        oxs__msg_printf(msg, "inputs[%zu].shape[%d]: value ", in->position, in->rank);
        oxs__msg_value(msg, text, len);
        oxs__msg_printf(msg, " %s, expected an integer in [0, %" PRId64 "]", problem, INT64_MAX);
        return 0;
    }

    in->shape[in->rank++] = value;
    return 1;
}

static int on_shape_end(decoder_t *d)
{
    int64_t elements = 0;
    if (!oxs__json_shape_elements(d->in.shape, d->in.rank, &elements)) {
        oxs__msg_t *msg = fail_begin(d, OXS_ERR_INVALID_ARGUMENT);
        oxs__msg_printf(msg, "inputs[%zu].shape: ", d->in.position);
        oxs__msg_shape(msg, d->in.shape, d->in.rank);
        oxs__msg_printf(msg, " has more than %" PRId64 " elements", INT64_MAX);
        return 0;
    }
    d->in.shape_done = true;
    return 1;
}

/* ---- data ---------------------------------------------------------------------------------------- */

/* Adds the input to the request; its buffer then receives the data. */
static int start_tensor(decoder_t *d)
{
    input_state_t *in = &d->in;
    /* BYTES: the recorded strings give the size, a 4-byte length and the bytes of each. */
    size_t strings_size = 0;
    size_t max_element = oxs_request_limits(d->request)->max_bytes_element;
    size_t element = 0;
    for (size_t i = 0; in->datatype == OXS_DT_BYTES && i < in->token_count; i++) {
        if (in->tokens[i].kind != VALUE_STRING)
            continue;
        if ((size_t)in->tokens[i].len > max_element)
            return fail(d, OXS_ERR_TOO_LARGE,
                        "input \"%s\": BYTES element %zu has %zu bytes, more than the limit of "
                        "%zu set by --max-bytes-element",
                        in->name, element, (size_t)in->tokens[i].len, max_element);
        strings_size += 4 + (size_t)in->tokens[i].len;
        element++;
    }
    size_t byte_size = 0;
    oxs_status_t status = oxs__codec_add_input(d->request, in->name, in->name_len, in->datatype,
                                               in->shape, in->rank, strings_size, &in->buffer,
                                               &byte_size, d->msg.text, d->msg.size);
    if (status != OXS_OK) {
        d->status = status; /* the core wrote the message */
        return 0;
    }

    int64_t count = 0;
    if (!oxs__json_shape_elements(in->shape, in->rank, &count) ||
        (in->datatype != OXS_DT_BYTES &&
         (uint64_t)count > byte_size / oxs_datatype_size(in->datatype)))
        return fail(d, OXS_ERR_INTERNAL, "input \"%s\": the tensor buffer has %zu bytes, too small for its shape",
                    in->name, byte_size);
    in->count = (size_t)count;
    in->tensor_started = true;
    return 1;
}

/* Appends the path of the item at depth (1 = the outer array) that is next to be read, as
 * data[0][2], or of the open array at depth when next is false. */
static void msg_data_path(oxs__msg_t *msg, const input_state_t *in, int depth, bool next)
{
    oxs__msg_printf(msg, "data");
    for (int level = 1; level < depth; level++)
        oxs__msg_printf(msg, "[%" PRId64 "]", in->items[level] - 1);
    if (next)
        oxs__msg_printf(msg, "[%" PRId64 "]", in->items[depth]);
}

static int fail_item_count(decoder_t *d, bool more)
{
    input_state_t *in = &d->in;
    char label[128];
    input_label(d, label, sizeof(label));

    oxs__msg_t *msg = fail_begin(d, OXS_ERR_INVALID_ARGUMENT);
    oxs__msg_printf(msg, "%s: ", label);
    msg_data_path(msg, in, in->depth, false);
    oxs__msg_printf(msg, " has %s%" PRId64 " items, shape ", more ? "more than " : "",
                    more ? in->items[in->depth] - 1 : in->items[in->depth]);
    oxs__msg_shape(msg, in->shape, in->rank);
    oxs__msg_printf(msg, " needs %" PRId64 " in dim %d", in->shape[in->depth - 1], in->depth - 1);
    return 0;
}

static int fail_value_type(decoder_t *d, value_kind_t kind, const char *text, size_t len,
                           size_t index)
{
    input_state_t *in = &d->in;
    char label[128];
    input_label(d, label, sizeof(label));

    oxs__msg_t *msg = fail_begin(d, OXS_ERR_INVALID_ARGUMENT);
    oxs__msg_printf(msg, "%s: value ", label);
    switch (kind) {
    case VALUE_TRUE: oxs__msg_printf(msg, "true"); break;
    case VALUE_FALSE: oxs__msg_printf(msg, "false"); break;
    case VALUE_NULL: oxs__msg_printf(msg, "null"); break;
    case VALUE_STRING: oxs__msg_quote(msg, text, len); break;
    case VALUE_OBJECT: oxs__msg_printf(msg, "{...}"); break;
    default: oxs__msg_value(msg, text, len); break;
    }
    oxs__msg_printf(msg, " at index %zu is not valid", index);
    if (!in->tensor_started && in->datatype == OXS_DT_INVALID)
        oxs__msg_printf(msg, ": expected a number or true/false");
    else if (in->datatype == OXS_DT_BOOL)
        oxs__msg_printf(msg, " for BOOL: expected true or false");
    else if (in->datatype == OXS_DT_BYTES)
        oxs__msg_printf(msg, " for BYTES: expected a string");
    else if (oxs__json_datatype_is_float(in->datatype))
        oxs__msg_printf(msg, " for %s: expected a number or one of the strings \"NaN\", "
                        "\"Infinity\", \"-Infinity\"", oxs_datatype_name(in->datatype));
    else
        oxs__msg_printf(msg, " for %s: expected an integer", oxs_datatype_name(in->datatype));
    return 0;
}

/* Writes one scalar into the tensor buffer at in->index. */
static int store_value(decoder_t *d, value_kind_t kind, const char *text, size_t len)
{
    input_state_t *in = &d->in;
    bool is_bool = kind == VALUE_TRUE || kind == VALUE_FALSE;

    if (in->datatype == OXS_DT_BOOL) {
        if (!is_bool)
            return fail_value_type(d, kind, text, len, in->index);
        ((uint8_t *)in->buffer)[in->index++] = kind == VALUE_TRUE;
        return 1;
    }
    if (in->datatype == OXS_DT_BYTES) {
        if (kind != VALUE_STRING)
            return fail_value_type(d, kind, text, len, in->index);
        /* start_tensor sized the buffer from these same strings. */
        unsigned char *at = (unsigned char *)in->buffer + in->write_at;
        for (int b = 0; b < 4; b++)
            at[b] = (unsigned char)(len >> (8 * b));
        if (len > 0)
            memcpy(at + 4, text, len);
        in->write_at += 4 + len;
        in->index++;
        return 1;
    }
    if (kind == VALUE_STRING &&
        oxs__json_convert_special(in->datatype, text, len, in->buffer, in->index)) {
        in->index++;
        return 1;
    }
    if (kind != VALUE_NUMBER)
        return fail_value_type(d, kind, text, len, in->index);

    oxs__number_result_t result =
        oxs__json_convert_number(d->request, in->datatype, text, len, in->buffer, in->index);
    if (result != OXS__NUMBER_OK) {
        char label[128];
        input_label(d, label, sizeof(label));
        oxs__msg_t *msg = fail_begin(d, result == OXS__NUMBER_OUT_OF_MEMORY
                                            ? OXS_ERR_OUT_OF_MEMORY
                                            : OXS_ERR_INVALID_ARGUMENT);
        oxs__json_number_error(msg, label, result, in->datatype, text, len, in->index);
        return 0;
    }
    in->index++;
    return 1;
}

static int fail_mixed(decoder_t *d)
{
    char label[128];
    input_label(d, label, sizeof(label));
    oxs__msg_t *msg = fail_begin(d, OXS_ERR_INVALID_ARGUMENT);
    oxs__msg_printf(msg, "%s: data mixes values and arrays at index %zu; send flat data or "
                    "nest every dim of shape ", label, d->in.index);
    oxs__msg_shape(msg, d->in.shape, d->in.rank);
    return 0;
}

static int apply_array_start(decoder_t *d)
{
    input_state_t *in = &d->in;
    if (in->depth == 0) {
        in->depth = 1;
        in->items[1] = 0;
        return 1;
    }
    if (in->layout == LAYOUT_FLAT)
        return fail_mixed(d);
    in->layout = LAYOUT_NESTED;

    if (in->depth >= in->rank) {
        char label[128];
        input_label(d, label, sizeof(label));
        oxs__msg_t *msg = fail_begin(d, OXS_ERR_INVALID_ARGUMENT);
        oxs__msg_printf(msg, "%s: ", label);
        msg_data_path(msg, in, in->depth, true);
        oxs__msg_printf(msg, " is an array, but shape ");
        oxs__msg_shape(msg, in->shape, in->rank);
        oxs__msg_printf(msg, " has only %d dims", in->rank);
        return 0;
    }
    if (++in->items[in->depth] > in->shape[in->depth - 1])
        return fail_item_count(d, true);
    in->depth++;
    in->items[in->depth] = 0;
    return 1;
}

static int apply_array_end(decoder_t *d)
{
    input_state_t *in = &d->in;
    if (in->layout == LAYOUT_NESTED) {
        if (in->items[in->depth] != in->shape[in->depth - 1])
            return fail_item_count(d, false);
    } else if (in->index != in->count) {
        char label[128];
        input_label(d, label, sizeof(label));
        oxs__msg_t *msg = fail_begin(d, OXS_ERR_INVALID_ARGUMENT);
        oxs__msg_printf(msg, "%s: data has %zu values, shape ", label, in->index);
        oxs__msg_shape(msg, in->shape, in->rank);
        oxs__msg_printf(msg, " needs %zu", in->count);
        return 0;
    }
    in->depth--;
    return 1;
}

static int apply_scalar(decoder_t *d, value_kind_t kind, const char *text, size_t len)
{
    input_state_t *in = &d->in;
    if (in->layout == LAYOUT_UNKNOWN)
        in->layout = LAYOUT_FLAT;

    if (in->layout == LAYOUT_NESTED) {
        if (in->depth < in->rank) {
            char label[128];
            input_label(d, label, sizeof(label));
            oxs__msg_t *msg = fail_begin(d, OXS_ERR_INVALID_ARGUMENT);
            oxs__msg_printf(msg, "%s: ", label);
            msg_data_path(msg, in, in->depth, true);
            oxs__msg_printf(msg, " is a %s, but shape ", value_kind_names[kind]);
            oxs__msg_shape(msg, in->shape, in->rank);
            oxs__msg_printf(msg, " needs an array of %" PRId64 " items there",
                            in->shape[in->depth]);
            return 0;
        }
        if (++in->items[in->depth] > in->shape[in->depth - 1])
            return fail_item_count(d, true);
    } else if (in->index >= in->count) {
        char label[128];
        input_label(d, label, sizeof(label));
        oxs__msg_t *msg = fail_begin(d, OXS_ERR_INVALID_ARGUMENT);
        oxs__msg_printf(msg, "%s: data has more than %zu values, shape ", label, in->count);
        oxs__msg_shape(msg, in->shape, in->rank);
        oxs__msg_printf(msg, " needs %zu", in->count);
        return 0;
    }
    return store_value(d, kind, text, len);
}

/* Applies one data event to the started tensor. */
static int apply_event(decoder_t *d, value_kind_t kind, const char *text, size_t len)
{
    switch (kind) {
    case VALUE_ARRAY: return apply_array_start(d);
    case VALUE_END: return apply_array_end(d);
    case VALUE_OBJECT: return fail_value_type(d, kind, text, len, d->in.index);
    default: return apply_scalar(d, kind, text, len);
    }
}

/* Records one data event for later; numbers keep a pointer to their text. */
static int record_event(decoder_t *d, value_kind_t kind, const char *text, size_t len)
{
    input_state_t *in = &d->in;
    /* A string may still be "NaN" or "Infinity" for a float datatype that comes later, or an
     * element of BYTES. */
    bool string_possible = in->datatype == OXS_DT_INVALID || in->datatype == OXS_DT_BYTES ||
                           oxs__json_datatype_is_float(in->datatype);
    if ((kind == VALUE_STRING && !string_possible) || kind == VALUE_NULL || kind == VALUE_OBJECT)
        return fail_value_type(d, kind, text, len, in->value_count);
    if (len > UINT32_MAX)
        return fail(d, OXS_ERR_INVALID_ARGUMENT,
                    "inputs[%zu].data: a value of %zu characters is too long", in->position, len);

    uintptr_t start = (uintptr_t)text;
    uintptr_t body_start = (uintptr_t)d->body;
    bool has_text = kind == VALUE_NUMBER || kind == VALUE_STRING;
    if (has_text && (start < body_start || start - body_start > d->body_len ||
                     len > d->body_len - (start - body_start))) {
        /* yajl passed a copy that lives only during the callback. */
        char *copy = oxs_request_scratch(d->request, len);
        if (copy == NULL)
            return fail(d, OXS_ERR_OUT_OF_MEMORY, "out of memory decoding the request");
        memcpy(copy, text, len);
        text = copy;
    }

    if (in->token_count == in->token_capacity) {
        /* Doubling keeps the abandoned arrays smaller than the final one. */
        size_t capacity = in->token_capacity != 0 ? in->token_capacity * 2 : 64;
        if (capacity > SIZE_MAX / sizeof(data_token_t))
            return fail(d, OXS_ERR_OUT_OF_MEMORY, "out of memory decoding the request");
        data_token_t *tokens = oxs_request_scratch(d->request, capacity * sizeof(data_token_t));
        if (tokens == NULL)
            return fail(d, OXS_ERR_OUT_OF_MEMORY, "out of memory decoding the request");
        if (in->token_count > 0)
            memcpy(tokens, in->tokens, in->token_count * sizeof(data_token_t));
        in->tokens = tokens;
        in->token_capacity = capacity;
    }
    in->tokens[in->token_count++] = (data_token_t){text, (uint32_t)len, (uint32_t)kind};

    if (kind == VALUE_ARRAY)
        in->depth++;
    else if (kind == VALUE_END)
        in->depth--;
    else
        in->value_count++;
    return 1;
}

/* Routes one event inside "data"; leaves WHERE_DATA when the outer array closes. */
static int on_data_event(decoder_t *d, value_kind_t kind, const char *text, size_t len)
{
    int ok = d->in.tensor_started ? apply_event(d, kind, text, len)
                                  : record_event(d, kind, text, len);
    if (ok && d->in.depth == 0)
        value_done(d);
    return ok;
}

static int on_data_start(decoder_t *d)
{
    input_state_t *in = &d->in;
    /* BYTES data is recorded first: its buffer size is the sum of the strings' lengths. */
    if (in->name != NULL && in->datatype != OXS_DT_INVALID && in->datatype != OXS_DT_BYTES &&
        in->shape_done && !start_tensor(d))
        return 0;
    d->where = WHERE_DATA;
    return on_data_event(d, VALUE_ARRAY, NULL, 0);
}

static int replay_tokens(decoder_t *d)
{
    input_state_t *in = &d->in;
    in->depth = 0;
    for (size_t i = 0; i < in->token_count; i++) {
        const data_token_t *token = &in->tokens[i];
        if (!apply_event(d, (value_kind_t)token->kind, token->text, token->len))
            return 0;
    }
    return 1;
}

/* Fills a binary input from the bytes after the JSON header, in the order inputs appear. */
static int take_binary_input(decoder_t *d)
{
    input_state_t *in = &d->in;
    size_t size = (size_t)in->binary_size;
    size_t left = d->binary_len - d->binary_used;
    if ((uint64_t)in->binary_size > left)
        return fail(d, OXS_ERR_INVALID_ARGUMENT,
                    "input \"%s\": parameters.binary_data_size is %" PRId64 ", but only %zu "
                    "bytes of binary data remain after the JSON header and earlier inputs%s",
                    in->name, in->binary_size, left,
                    d->binary_len == 0 ? "; binary data follows the JSON header only when the "
                                         "Inference-Header-Content-Length header gives its "
                                         "length"
                                       : "");

    const char *source = d->binary + d->binary_used;
    size_t byte_size = 0;
    oxs_status_t status = oxs__codec_add_input(d->request, in->name, in->name_len, in->datatype,
                                               in->shape, in->rank, size, &in->buffer,
                                               &byte_size, d->msg.text, d->msg.size);
    if (status != OXS_OK) {
        d->status = status; /* the core wrote the message */
        return 0;
    }
    if (byte_size != size) {
        oxs__msg_t *msg = fail_begin(d, OXS_ERR_INVALID_ARGUMENT);
        oxs__msg_printf(msg, "input \"%s\": parameters.binary_data_size is %zu, but shape ",
                        in->name, size);
        oxs__msg_shape(msg, in->shape, in->rank);
        oxs__msg_printf(msg, " of %s needs %zu bytes", oxs_datatype_name(in->datatype),
                        byte_size);
        return 0;
    }
    if (size > 0)
        memcpy(in->buffer, source, size);
    d->binary_used += size;
    return 1;
}

static int on_input_end(decoder_t *d)
{
    input_state_t *in = &d->in;
    static const char *const required[] = {"name", "datatype", "shape", "data"};
    bool has_data = (in->keys_seen & (1u << INPUT_DATA)) != 0;
    if (has_data && in->binary_size >= 0) {
        char label[128];
        input_label(d, label, sizeof(label));
        return fail(d, OXS_ERR_INVALID_ARGUMENT,
                    "%s: has both \"data\" and parameters.binary_data_size, expected one of them",
                    label);
    }
    bool present[] = {in->name != NULL, in->datatype != OXS_DT_INVALID, in->shape_done,
                      has_data || in->binary_size >= 0};
    for (size_t i = 0; i < sizeof(present) / sizeof(present[0]); i++) {
        if (!present[i]) {
            char label[128];
            input_label(d, label, sizeof(label));
            return fail(d, OXS_ERR_INVALID_ARGUMENT, "%s: missing \"%s\"%s", label, required[i],
                        i == 3 ? ", or parameters.binary_data_size with the data after the "
                                 "JSON header"
                               : "");
        }
    }

    if (in->binary_size >= 0) {
        if (!take_binary_input(d))
            return 0;
    } else if (!in->tensor_started && (!start_tensor(d) || !replay_tokens(d))) {
        return 0;
    }
    d->where = WHERE_INPUTS;
    return 1;
}

/* ---- outputs ----------------------------------------------------------------------------------- */

static int on_output_name(decoder_t *d, const char *text, size_t len)
{
    size_t position = d->output_total - 1;
    int index = oxs_model_find_output(d->model, text, len);
    if (index < 0) {
        oxs__msg_t *msg = fail_begin(d, OXS_ERR_INVALID_ARGUMENT);
        oxs__msg_printf(msg, "outputs[%zu].name: model \"%s\" has no output ", position,
                        oxs_model_name(d->model));
        oxs__msg_quote(msg, text, len);
        oxs__msg_printf(msg, "; its outputs are ");
        oxs__msg_model_outputs(msg, d->model);
        return 0;
    }
    if (d->output_requested[index])
        return fail(d, OXS_ERR_INVALID_ARGUMENT,
                    "outputs[%zu]: output \"%s\" is requested more than once, expected each output once",
                    position, oxs_model_output(d->model, (size_t)index)->name);
    d->output_requested[index] = true;
    d->output_has_name = true;
    d->output_index = index;

    oxs_status_t status =
        oxs_request_add_output(d->request, text, len, d->msg.text, d->msg.size);
    if (status != OXS_OK) {
        d->status = status; /* the core wrote the message */
        return 0;
    }
    return 1;
}

/* ---- parameters ------------------------------------------------------------------------------ */

/* Writes the JSON path of the parameter being read, as outputs[2].parameters.binary_data. */
static void param_path(const decoder_t *d, char *out, size_t size)
{
    size_t position = d->params_owner == OWNER_INPUT ? d->in.position : d->output_total - 1;
    int n = d->params_owner == OWNER_ROOT
                ? snprintf(out, size, "parameters")
                : snprintf(out, size, "%s[%zu].parameters", owner_names[d->params_owner],
                           position);
    if (n >= 0 && (size_t)n < size && d->param_key < PARAM_OTHER)
        snprintf(out + n, size - (size_t)n, ".%s", param_keys[d->param_key]);
}

static void enter_params(decoder_t *d, params_owner_t owner)
{
    d->params_owner = owner;
    d->params_seen = 0;
    d->where = WHERE_PARAMS;
}

static void leave_params(decoder_t *d)
{
    static const where_t back[] = {WHERE_ROOT, WHERE_INPUT, WHERE_OUTPUT};
    d->where = back[d->params_owner];
}

static int on_param_key(decoder_t *d, const unsigned char *key, size_t len)
{
    /* Only the owner's own parameters are read; the others are ignored like unknown keys. */
    static const unsigned owned[] = {
        [OWNER_ROOT] = 1u << PARAM_BINARY_DATA_OUTPUT | 1u << PARAM_TIMEOUT | 1u << PARAM_PRIORITY,
        [OWNER_INPUT] = 1u << PARAM_BINARY_DATA_SIZE,
        [OWNER_OUTPUT] = 1u << PARAM_BINARY_DATA | 1u << PARAM_CLASSIFICATION,
    };
    param_key_t found = (param_key_t)find_key(param_keys, PARAM_OTHER, key, len);
    bool read = found != PARAM_OTHER && (owned[d->params_owner] & (1u << found)) != 0;
    d->param_key = read ? found : PARAM_OTHER;
    d->where = WHERE_PARAM_VALUE;
    if (read && (d->params_seen & (1u << found)) != 0) {
        char path[96];
        param_path(d, path, sizeof(path));
        return fail(d, OXS_ERR_INVALID_ARGUMENT, "%s: duplicate key", path);
    }
    if (read)
        d->params_seen |= 1u << found;
    return 1;
}

static int on_param_scalar(decoder_t *d, value_kind_t kind, const char *text, size_t len)
{
    char path[96];
    param_path(d, path, sizeof(path));
    value_done(d);
    bool is_bool = kind == VALUE_TRUE || kind == VALUE_FALSE;
    switch (d->param_key) {
    case PARAM_BINARY_DATA_OUTPUT:
        if (!is_bool)
            return fail_type_value(d, path, "true or false", kind, text, len);
        d->reply->binary_all = kind == VALUE_TRUE;
        return 1;
    case PARAM_BINARY_DATA:
        if (!is_bool)
            return fail_type_value(d, path, "true or false", kind, text, len);
        d->output_binary = kind == VALUE_TRUE;
        return 1;
    case PARAM_BINARY_DATA_SIZE: {
        int64_t size = 0;
        const char *problem = kind == VALUE_NUMBER ? oxs__json_parse_dim(text, len, &size)
                                                   : "is not a number";
        if (problem != NULL) {
            oxs__msg_t *msg = fail_begin(d, OXS_ERR_INVALID_ARGUMENT);
            oxs__msg_printf(msg, "%s: value ", path);
            if (kind == VALUE_STRING)
                oxs__msg_quote(msg, text, len);
            else
                oxs__msg_value(msg, text, len);
            oxs__msg_printf(msg, " %s, expected a byte count in [0, %" PRId64 "]", problem,
                            INT64_MAX);
            return 0;
        }
        d->in.binary_size = size;
        return 1;
    }
    case PARAM_TIMEOUT:
    case PARAM_PRIORITY: {
        int64_t number = 0;
        const char *problem = kind == VALUE_NUMBER ? oxs__json_parse_dim(text, len, &number)
                                                   : "is not a number";
        oxs_status_t status = OXS_OK;
        if (problem == NULL && d->param_key == PARAM_TIMEOUT)
            status = oxs_request_set_timeout_us(d->request, number, d->msg.text, d->msg.size);
        else if (problem == NULL)
            status = oxs_request_set_priority(d->request, number > INT32_MAX ? -1 : (int)number,
                                              d->msg.text, d->msg.size);
        if (problem != NULL) {
            oxs__msg_t *msg = fail_begin(d, OXS_ERR_INVALID_ARGUMENT);
            oxs__msg_printf(msg, "%s: value ", path);
            if (kind == VALUE_STRING)
                oxs__msg_quote(msg, text, len);
            else
                oxs__msg_value(msg, text, len);
            oxs__msg_printf(msg, " %s, expected %s", problem,
                            d->param_key == PARAM_TIMEOUT ? "microseconds, an integer >= 0"
                                                          : "a priority level, an integer >= 0 "
                                                            "(0: the model's default)");
            return 0;
        }
        if (status != OXS_OK) {
            d->status = status; /* the core wrote the message */
            return 0;
        }
        return 1;
    }
    case PARAM_CLASSIFICATION:
        return fail(d, OXS_ERR_UNSUPPORTED,
                    "%s: the classification extension is not supported; request the output "
                    "without it",
                    path);
    default:
        return 1;
    }
}

/* ---- yajl callbacks ------------------------------------------------------------------------------ */

static int on_input_scalar(decoder_t *d, value_kind_t kind, const char *text, size_t len)
{
    char field[64];
    snprintf(field, sizeof(field), "inputs[%zu].%s", d->in.position,
             d->input_key < INPUT_OTHER ? input_keys[d->input_key] : "");
    switch (d->input_key) {
    case INPUT_NAME:
        return kind == VALUE_STRING ? on_input_name(d, text, len)
                                    : fail_type_value(d, field, "a string", kind, text, len);
    case INPUT_DATATYPE:
        return kind == VALUE_STRING ? on_datatype(d, text, len)
                                    : fail_type_value(d, field, "a string", kind, text, len);
    case INPUT_SHAPE: return fail_type_value(d, field, "an array of integers", kind, text, len);
    case INPUT_DATA: return fail_type_value(d, field, "an array", kind, text, len);
    case INPUT_PARAMETERS: return fail_type_value(d, field, "an object", kind, text, len);
    default: return 1;
    }
}

static int on_scalar(decoder_t *d, value_kind_t kind, const char *text, size_t len)
{
    char field[64];
    switch (d->where) {
    case WHERE_START:
        return fail_type_value(d, "request body", "a JSON object", kind, text, len);
    case WHERE_ROOT_VALUE:
        value_done(d);
        switch (d->root_key) {
        case ROOT_ID:
            return kind == VALUE_STRING ? on_id(d, text, len) : fail_type_value(d, "id", "a string", kind, text, len);
        case ROOT_PARAMETERS: return fail_type_value(d, "parameters", "an object", kind, text, len);
        case ROOT_INPUTS: return fail_type_value(d, "inputs", "an array of objects", kind, text, len);
        case ROOT_OUTPUTS: return fail_type_value(d, "outputs", "an array of objects", kind, text, len);
        default: return 1;
        }
    case WHERE_INPUTS:
        snprintf(field, sizeof(field), "inputs[%zu]", d->input_total);
        return fail_type_value(d, field, "an object", kind, text, len);
    case WHERE_INPUT_VALUE:
        value_done(d);
        return on_input_scalar(d, kind, text, len);
    case WHERE_SHAPE:
        if (kind == VALUE_NUMBER)
            return on_dim(d, text, len);
        snprintf(field, sizeof(field), "inputs[%zu].shape[%d]", d->in.position, d->in.rank);
        return fail_type_value(d, field, "a non-negative integer", kind, text, len);
    case WHERE_DATA:
        return on_data_event(d, kind, text, len);
    case WHERE_PARAM_VALUE:
        return on_param_scalar(d, kind, text, len);
    case WHERE_OUTPUTS:
        snprintf(field, sizeof(field), "outputs[%zu]", d->output_total);
        return fail_type(d, field, "an object", kind);
    case WHERE_OUTPUT_VALUE:
        value_done(d);
        snprintf(field, sizeof(field), "outputs[%zu].%s", d->output_total - 1,
                 d->output_key == OUTPUT_NAME ? "name" : "parameters");
        if (d->output_key == OUTPUT_NAME)
            return kind == VALUE_STRING ? on_output_name(d, text, len)
                                        : fail_type(d, field, "a string", kind);
        if (d->output_key == OUTPUT_PARAMETERS)
            return fail_type(d, field, "an object", kind);
        return 1;
    default:
        return 1;
    }
    return 1;
}

static void skip_value(decoder_t *d)
{
    d->skip_depth = 1;
}

static int on_root_start(decoder_t *d, value_kind_t kind)
{
    switch (d->root_key) {
    case ROOT_ID:
        return fail_type(d, "id", "a string", kind);
    case ROOT_PARAMETERS:
        if (kind != VALUE_OBJECT)
            return fail_type(d, "parameters", "an object", kind);
        enter_params(d, OWNER_ROOT);
        return 1;
    case ROOT_INPUTS:
        if (kind != VALUE_ARRAY)
            return fail_type(d, "inputs", "an array of objects", kind);
        d->where = WHERE_INPUTS;
        return 1;
    case ROOT_OUTPUTS:
        if (kind != VALUE_ARRAY)
            return fail_type(d, "outputs", "an array of objects", kind);
        d->where = WHERE_OUTPUTS;
        return 1;
    default:
        skip_value(d);
        return 1;
    }
}

static int on_input_start(decoder_t *d, value_kind_t kind)
{
    char field[64];
    snprintf(field, sizeof(field), "inputs[%zu].%s", d->in.position,
             d->input_key < INPUT_OTHER ? input_keys[d->input_key] : "");
    switch (d->input_key) {
    case INPUT_NAME:
    case INPUT_DATATYPE:
        return fail_type(d, field, "a string", kind);
    case INPUT_SHAPE:
        if (kind != VALUE_ARRAY)
            return fail_type(d, field, "an array of integers", kind);
        d->where = WHERE_SHAPE;
        return 1;
    case INPUT_DATA:
        if (kind != VALUE_ARRAY)
            return fail_type(d, field, "an array", kind);
        return on_data_start(d);
    case INPUT_PARAMETERS:
        if (kind != VALUE_OBJECT)
            return fail_type(d, field, "an object", kind);
        enter_params(d, OWNER_INPUT);
        return 1;
    default:
        skip_value(d);
        return 1;
    }
}

static int on_start(decoder_t *d, value_kind_t kind)
{
    char field[64];
    switch (d->where) {
    case WHERE_START:
        if (kind != VALUE_OBJECT)
            return fail_type(d, "request body", "a JSON object", kind);
        d->where = WHERE_ROOT;
        return 1;
    case WHERE_ROOT_VALUE:
        return on_root_start(d, kind);
    case WHERE_INPUTS:
        if (kind != VALUE_OBJECT) {
            snprintf(field, sizeof(field), "inputs[%zu]", d->input_total);
            return fail_type(d, field, "an object", kind);
        }
        /* Counted here, so the limit is what a long list hears first, before any name check. */
        if (d->input_total >= (size_t)oxs_request_limits(d->request)->max_inputs)
            return fail(d, OXS_ERR_INVALID_ARGUMENT,
                        "request gives too many inputs: the limit set by --max-inputs is %d",
                        oxs_request_limits(d->request)->max_inputs);
        memset(&d->in, 0, sizeof(d->in));
        d->in.position = d->input_total++;
        d->in.model_index = -1;
        d->in.datatype = OXS_DT_INVALID;
        d->in.binary_size = -1;
        d->where = WHERE_INPUT;
        return 1;
    case WHERE_INPUT_VALUE:
        return on_input_start(d, kind);
    case WHERE_SHAPE:
        snprintf(field, sizeof(field), "inputs[%zu].shape[%d]", d->in.position, d->in.rank);
        return fail_type(d, field, "a non-negative integer", kind);
    case WHERE_DATA:
        return on_data_event(d, kind, NULL, 0);
    case WHERE_OUTPUTS:
        if (kind != VALUE_OBJECT) {
            snprintf(field, sizeof(field), "outputs[%zu]", d->output_total);
            return fail_type(d, field, "an object", kind);
        }
        if (d->output_total >= (size_t)oxs_request_limits(d->request)->max_outputs)
            return fail(d, OXS_ERR_INVALID_ARGUMENT,
                        "request names too many outputs: the limit set by --max-outputs is %d",
                        oxs_request_limits(d->request)->max_outputs);
        d->output_total++;
        d->output_keys_seen = 0;
        d->output_has_name = false;
        d->output_index = -1;
        d->output_binary = -1;
        d->where = WHERE_OUTPUT;
        return 1;
    case WHERE_OUTPUT_VALUE:
        snprintf(field, sizeof(field), "outputs[%zu].%s", d->output_total - 1,
                 d->output_key == OUTPUT_NAME ? "name" : "parameters");
        if (d->output_key == OUTPUT_NAME)
            return fail_type(d, field, "a string", kind);
        if (d->output_key == OUTPUT_PARAMETERS) {
            if (kind != VALUE_OBJECT)
                return fail_type(d, field, "an object", kind);
            enter_params(d, OWNER_OUTPUT);
            return 1;
        }
        skip_value(d);
        return 1;
    case WHERE_PARAM_VALUE: {
        char path[96];
        param_path(d, path, sizeof(path));
        if (d->param_key == PARAM_OTHER) {
            skip_value(d);
            return 1;
        }
        return fail_type(d, path,
                         d->param_key == PARAM_BINARY_DATA_SIZE ? "a byte count"
                         : d->param_key == PARAM_TIMEOUT        ? "microseconds"
                         : d->param_key == PARAM_PRIORITY       ? "a priority level"
                                                                : "true or false",
                         kind);
    }
    default:
        return 1;
    }
}

static int on_end(decoder_t *d)
{
    switch (d->where) {
    case WHERE_ROOT:
        d->where = WHERE_END;
        if ((d->root_keys_seen & (1u << ROOT_INPUTS)) == 0)
            return fail(d, OXS_ERR_INVALID_ARGUMENT, "request body: missing \"inputs\"");
        return 1;
    case WHERE_INPUTS:
    case WHERE_OUTPUTS:
        value_done(d);
        return 1;
    case WHERE_INPUT:
        return on_input_end(d);
    case WHERE_SHAPE:
        value_done(d);
        return on_shape_end(d);
    case WHERE_DATA:
        return on_data_event(d, VALUE_END, NULL, 0);
    case WHERE_OUTPUT:
        if (!d->output_has_name)
            return fail(d, OXS_ERR_INVALID_ARGUMENT, "outputs[%zu]: missing \"name\"",
                        d->output_total - 1);
        d->reply->binary[d->output_index] = (int8_t)d->output_binary;
        d->where = WHERE_OUTPUTS;
        return 1;
    case WHERE_PARAMS:
        leave_params(d);
        return 1;
    default:
        return 1;
    }
}

/* Marks key bit in seen; returns false when it was already there. */
static bool mark_key(unsigned *seen, int key, int other)
{
    if (key == other)
        return true;
    if (*seen & (1u << key))
        return false;
    *seen |= 1u << key;
    return true;
}

static int on_key(decoder_t *d, const unsigned char *key, size_t len)
{
    int found;
    switch (d->where) {
    case WHERE_ROOT:
        found = find_key(root_keys, ROOT_OTHER, key, len);
        if (!mark_key(&d->root_keys_seen, found, ROOT_OTHER))
            return fail(d, OXS_ERR_INVALID_ARGUMENT, "request body: duplicate key \"%s\"",
                        root_keys[found]);
        d->root_key = (root_key_t)found;
        d->where = WHERE_ROOT_VALUE;
        return 1;
    case WHERE_INPUT:
        found = find_key(input_keys, INPUT_OTHER, key, len);
        if (!mark_key(&d->in.keys_seen, found, INPUT_OTHER))
            return fail(d, OXS_ERR_INVALID_ARGUMENT, "inputs[%zu]: duplicate key \"%s\"",
                        d->in.position, input_keys[found]);
        d->input_key = (input_key_t)found;
        d->where = WHERE_INPUT_VALUE;
        return 1;
    case WHERE_OUTPUT:
        found = find_key(output_keys, OUTPUT_OTHER, key, len);
        if (!mark_key(&d->output_keys_seen, found, OUTPUT_OTHER))
            return fail(d, OXS_ERR_INVALID_ARGUMENT, "outputs[%zu]: duplicate key \"%s\"",
                        d->output_total - 1, output_keys[found]);
        d->output_key = (output_key_t)found;
        d->where = WHERE_OUTPUT_VALUE;
        return 1;
    case WHERE_PARAMS:
        return on_param_key(d, key, len);
    default:
        return 1;
    }
}

static int cb_null(void *context)
{
    decoder_t *d = context;
    return d->skip_depth > 0 ? 1 : on_scalar(d, VALUE_NULL, "null", 4);
}

static int cb_boolean(void *context, int value)
{
    decoder_t *d = context;
    if (d->skip_depth > 0)
        return 1;
    return value ? on_scalar(d, VALUE_TRUE, "true", 4) : on_scalar(d, VALUE_FALSE, "false", 5);
}

static int cb_number(void *context, const char *text, size_t len)
{
    decoder_t *d = context;
    return d->skip_depth > 0 ? 1 : on_scalar(d, VALUE_NUMBER, text, len);
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
        return (c | 0x20) - 'a' + 10;
    return -1;
}

/* Reads the 4 hex digits of a \u escape at text; returns -1 when they are not hex. */
static long escape_unit(const char *text)
{
    long unit = 0;
    for (int i = 0; i < 4; i++) {
        int digit = hex_digit(text[i]);
        if (digit < 0)
            return -1;
        unit = unit * 16 + digit;
    }
    return unit;
}

/* Finds a \u escape of a high surrogate (D800-DBFF) that no low surrogate (DC00-DFFF) follows
 * in the raw JSON string text[0..len), quotes excluded. yajl writes "?" for one instead of
 * failing, so the decoder checks the raw text itself. Returns the escape's offset, or len. */
static size_t find_lone_surrogate(const char *text, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (text[i] != '\\')
            continue;
        if (text[i + 1] != 'u' || i + 6 > len) {
            i++; /* a two-character escape such as \\ or \" */
            continue;
        }
        long unit = escape_unit(text + i + 2);
        if (unit >= 0xD800 && unit <= 0xDBFF) {
            long next = i + 12 <= len && text[i + 6] == '\\' && text[i + 7] == 'u'
                            ? escape_unit(text + i + 8)
                            : -1;
            if (next < 0xDC00 || next > 0xDFFF)
                return i;
            i += 6; /* the pair's low half */
        }
        i += 5;
    }
    return len;
}

/* Returns the raw text of the string token yajl just read, without its quotes, from the
 * position yajl has reached in the body. */
static bool raw_string(const decoder_t *d, const char **text, size_t *len)
{
    size_t end = yajl_get_bytes_consumed(d->parser);
    if (end < 2 || end > d->body_len || d->body[end - 1] != '"')
        return false;
    /* The opening quote is the first one back that an even number of backslashes precedes. */
    for (size_t at = end - 1; at-- > 0;) {
        if (d->body[at] != '"')
            continue;
        size_t slashes = 0;
        while (slashes < at && d->body[at - 1 - slashes] == '\\')
            slashes++;
        if (slashes % 2 == 0) {
            *text = d->body + at + 1;
            *len = end - 1 - (at + 1);
            return true;
        }
    }
    return false;
}

/* Fails for a string that is not valid UTF-8, naming where it sits. yajl's own check is off,
 * so that an element of BYTES data can be named by its index. */
static int fail_utf8(decoder_t *d, size_t bad_byte, bool surrogate)
{
    char problem[160];
    if (surrogate)
        snprintf(problem, sizeof(problem),
                 "is not valid UTF-8: the \\u escape at byte %zu of its JSON text is a high "
                 "surrogate without a low surrogate after it", bad_byte);
    else
        snprintf(problem, sizeof(problem), "is not valid UTF-8 (byte %zu of the string)",
                 bad_byte);

    char field[128];
    switch (d->where) {
    case WHERE_DATA: {
        input_state_t *in = &d->in;
        input_label(d, field, sizeof(field));
        return fail(d, OXS_ERR_INVALID_ARGUMENT,
                    "%s: data value at index %zu %s; send BYTES that are not text with the "
                    "binary data extension",
                    field, in->tensor_started ? in->index : in->value_count, problem);
    }
    case WHERE_ROOT_VALUE:
        snprintf(field, sizeof(field), "%s", d->root_key < ROOT_OTHER ? root_keys[d->root_key] : "request body");
        break;
    case WHERE_INPUT_VALUE:
        snprintf(field, sizeof(field), "inputs[%zu].%s", d->in.position,
                 d->input_key < INPUT_OTHER ? input_keys[d->input_key] : "");
        break;
    case WHERE_OUTPUT_VALUE:
        snprintf(field, sizeof(field), "outputs[%zu].name", d->output_total - 1);
        break;
    case WHERE_PARAM_VALUE:
        param_path(d, field, sizeof(field));
        break;
    default:
        snprintf(field, sizeof(field), "request body");
        break;
    }
    return fail(d, OXS_ERR_INVALID_ARGUMENT, "%s: a string %s", field, problem);
}

static int cb_string(void *context, const unsigned char *text, size_t len)
{
    decoder_t *d = context;
    if (d->skip_depth > 0)
        return 1;
    size_t bad = oxs__utf8_check((const char *)text, len);
    if (bad < len)
        return fail_utf8(d, bad, false);

    /* A string yajl unescaped lives outside the body: check its escapes in the raw text. */
    const char *raw = NULL;
    size_t raw_len = 0;
    bool in_body = (const char *)text >= d->body && (const char *)text <= d->body + d->body_len;
    if (!in_body && memchr(text, '?', len) != NULL && raw_string(d, &raw, &raw_len)) {
        size_t lone = find_lone_surrogate(raw, raw_len);
        if (lone < raw_len)
            return fail_utf8(d, lone, true);
    }
    return on_scalar(d, VALUE_STRING, (const char *)text, len);
}

static int cb_map_key(void *context, const unsigned char *key, size_t len)
{
    decoder_t *d = context;
    return d->skip_depth > 0 ? 1 : on_key(d, key, len);
}

static int open_container(decoder_t *d, value_kind_t kind)
{
    /* yajl keeps its own nesting on a heap stack without a limit, so the limit is ours. */
    int max_depth = oxs_request_limits(d->request)->max_json_depth;
    if (++d->depth > max_depth)
        return fail(d, OXS_ERR_INVALID_ARGUMENT, OXS__JSON_DEPTH_ERROR, max_depth);
    if (d->skip_depth > 0) {
        d->skip_depth++;
        return 1;
    }
    return on_start(d, kind);
}

static int close_container(decoder_t *d)
{
    d->depth--;
    if (d->skip_depth > 0) {
        if (--d->skip_depth == 0)
            value_done(d);
        return 1;
    }
    return on_end(d);
}

static int cb_start_map(void *context)
{
    return open_container(context, VALUE_OBJECT);
}

static int cb_start_array(void *context)
{
    return open_container(context, VALUE_ARRAY);
}

static int cb_end(void *context)
{
    return close_container(context);
}

static const yajl_callbacks infer_callbacks = {
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

oxs_status_t oxs_json_decode_infer(oxs_request_t *request, const char *body, size_t len,
                                   size_t json_len, oxs_json_reply_t **reply, char *error,
                                   size_t error_size)
{
    oxs__msg_t msg;
    oxs__msg_init(&msg, error, error_size);
    *reply = NULL;

    const oxs_model_t *model = oxs_request_model(request);
    size_t input_count = oxs_model_input_count(model);
    size_t output_count = oxs_model_output_count(model);
    decoder_t *d = oxs_request_scratch(request, sizeof(*d));
    bool *input_sent = oxs_request_scratch(request, input_count + 1);
    bool *output_requested = oxs_request_scratch(request, output_count + 1);
    oxs_json_reply_t *plan = oxs_json_reply_create(request, false);
    if (d == NULL || input_sent == NULL || output_requested == NULL || plan == NULL) {
        oxs__msg_printf(&msg, "out of memory decoding the request");
        return OXS_ERR_OUT_OF_MEMORY;
    }

    memset(d, 0, sizeof(*d));
    memset(input_sent, 0, input_count + 1);
    memset(output_requested, 0, output_count + 1);
    d->request = request;
    d->model = model;
    d->body = body;
    d->body_len = json_len;
    d->binary = body + json_len;
    d->binary_len = len - json_len;
    d->reply = plan;
    d->msg = msg;
    d->input_sent = input_sent;
    d->output_requested = output_requested;
    const char *id = oxs_request_id(request);
    d->id_preset = id != NULL && id[0] != '\0';

    yajl_handle parser = oxs__json_parser_create(request, &infer_callbacks, d);
    if (parser == NULL) {
        oxs__msg_printf(&msg, "out of memory decoding the request");
        return OXS_ERR_OUT_OF_MEMORY;
    }
    yajl_config(parser, yajl_dont_validate_strings, 1); /* fail_utf8 checks instead */
    d->parser = parser;

    oxs_status_t status = oxs__json_parse(parser, body, json_len, error, error_size);
    if (status == OXS_ERR_INTERNAL && d->status != OXS_OK)
        status = d->status;
    else if (status == OXS_ERR_INVALID_ARGUMENT && json_len < len && error_size > 0) {
        size_t used = strnlen(error, error_size - 1);
        snprintf(error + used, error_size - used,
                 " (the JSON header is the first %zu bytes, from Inference-Header-Content-Length)",
                 json_len);
    }
    yajl_free(parser); /* returns nothing to the system: the arena owns the memory */
    if (status == OXS_OK && d->binary_used != d->binary_len) {
        oxs__msg_printf(&msg,
                        "the body has %zu bytes of binary data after the %zu-byte JSON header, "
                        "but the inputs' parameters.binary_data_size add up to %zu",
                        d->binary_len, json_len, d->binary_used);
        status = OXS_ERR_INVALID_ARGUMENT;
    }
    if (status == OXS_OK)
        *reply = plan;
    return status;
}

oxs_json_reply_t *oxs_json_reply_create(oxs_request_t *request, bool binary_all)
{
    size_t count = oxs_model_output_count(oxs_request_model(request));
    oxs_json_reply_t *reply = oxs_request_scratch(request, sizeof(*reply));
    int8_t *binary = oxs_request_scratch(request, count + 1);
    if (reply == NULL || binary == NULL)
        return NULL;
    memset(binary, -1, count + 1);
    reply->binary_all = binary_all;
    reply->binary = binary;
    return reply;
}
