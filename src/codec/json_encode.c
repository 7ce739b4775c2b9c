/* JSON encoders: infer and /predict responses, model metadata, errors and string escaping. */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/float16.h"
#include "common/bytes.h"
#include "codec/number.h"
#include "codec/json.h"
#include "codec/json_internal.h"

/* ---- strings -------------------------------------------------------------------------------- */

void oxs_json_write_string(oxs_buf_t *out, const char *text, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *bytes = (const unsigned char *)text;
    size_t run = 0; /* start of the bytes that need no escaping */
    size_t i = 0;

    oxs_buf_putc(out, '"');
    while (i < len) {
        unsigned char c = bytes[i];
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
            i++;
            continue;
        }

        oxs_buf_append(out, text + run, i - run);
        if (c == '"' || c == '\\') {
            oxs_buf_putc(out, '\\');
            oxs_buf_putc(out, (char)c);
            i++;
        } else if (c < 0x80) {
            /* Control characters, DEL included, as \u00XX. */
            char escape[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xF]};
            oxs_buf_append(out, escape, sizeof(escape));
            i++;
        } else {
            size_t n = oxs__utf8_sequence_length(bytes + i, len - i);
            if (n == 0) {
                oxs_buf_puts(out, "\\ufffd"); /* one replacement per invalid byte */
                i++;
            } else if (n == 3 && c == 0xE2 && bytes[i + 1] == 0x80 &&
                       (bytes[i + 2] == 0xA8 || bytes[i + 2] == 0xA9)) {
                /* U+2028 and U+2029 are valid JSON but end a line in JavaScript source. */
                oxs_buf_puts(out, bytes[i + 2] == 0xA8 ? "\\u2028" : "\\u2029");
                i += n;
            } else {
                oxs_buf_append(out, text + i, n);
                i += n;
            }
        }
        run = i;
    }
    oxs_buf_append(out, text + run, len - run);
    oxs_buf_putc(out, '"');
}

static void write_cstring(oxs_buf_t *out, const char *text)
{
    oxs_json_write_string(out, text != NULL ? text : "", text != NULL ? strlen(text) : 0);
}

/* ---- numbers --------------------------------------------------------------------------------- */

/* Writes an integer in decimal without snprintf, whose format parsing costs more than the
 * digits. */
static void write_u64(oxs_buf_t *out, uint64_t value)
{
    char digits[20];
    size_t n = 0;
    do {
        digits[sizeof(digits) - 1 - n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    oxs_buf_append(out, digits + sizeof(digits) - n, n);
}

static void write_i64(oxs_buf_t *out, int64_t value)
{
    if (value < 0) {
        oxs_buf_putc(out, '-');
        write_u64(out, 0 - (uint64_t)value);
    } else {
        write_u64(out, (uint64_t)value);
    }
}

/* Writes NaN and infinities as the JSON strings "NaN", "Infinity" and "-Infinity", which the
 * decoder accepts for them, and negative zero as -0.0, because JSON parsers that read -0 as an
 * integer (Python's json does) drop its sign. Returns false, writing nothing, for any other
 * value. */
static bool write_special(oxs_buf_t *out, double value)
{
    if (isnan(value))
        oxs_buf_puts(out, "\"NaN\"");
    else if (isinf(value))
        oxs_buf_puts(out, value < 0 ? "\"-Infinity\"" : "\"Infinity\"");
    else if (value == 0 && signbit(value))
        oxs_buf_puts(out, "-0.0");
    else
        return false;
    return true;
}

/* Writes a float or double as the shortest decimal that reads back as the same bits. */
static void write_fp32(oxs_buf_t *out, float value)
{
    if (write_special(out, value) || !oxs_buf_reserve(out, OXS__NUMBER_TEXT_MAX))
        return;
    out->len += oxs__number_format_f32(value, out->data + out->len);
}

static void write_fp64(oxs_buf_t *out, double value)
{
    if (write_special(out, value) || !oxs_buf_reserve(out, OXS__NUMBER_TEXT_MAX))
        return;
    out->len += oxs__number_format_f64(value, out->data + out->len);
}

/* Writes an FP16 or BF16 value as the shortest decimal that reads back as the same bits. */
static void write_float16(oxs_buf_t *out, bool is_bf16, uint16_t bits)
{
    float value = is_bf16 ? oxs__bf16_to_float(bits) : oxs__fp16_to_float(bits);
    if (write_special(out, value))
        return;
    char text[OXS__FLOAT16_TEXT_MAX];
    size_t len = oxs__float16_format(is_bf16, bits, text);
    oxs_buf_append(out, text, len);
}

/* Writes count length-prefixed BYTES elements as JSON strings, without the brackets. */
static void write_bytes_elements(oxs_buf_t *out, const unsigned char *data, size_t count)
{
    size_t at = 0;
    for (size_t i = 0; i < count && !out->failed; i++) {
        uint32_t len = oxs__load_u32_le(data + at);
        if (i > 0)
            oxs_buf_putc(out, ',');
        oxs_json_write_string(out, (const char *)data + at + 4, len);
        at += 4 + (size_t)len;
    }
}

/* Returns the index of the first BYTES element that is not valid UTF-8, or count. */
static size_t find_invalid_utf8(const unsigned char *data, size_t count)
{
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        uint32_t len = oxs__load_u32_le(data + at);
        if (oxs__utf8_check((const char *)data + at + 4, len) < len)
            return i;
        at += 4 + (size_t)len;
    }
    return count;
}

/* Writes the elements of a tensor as a flat JSON array. */
static void write_tensor_data(oxs_buf_t *out, oxs_datatype_t datatype, const void *data,
                              size_t count)
{
    oxs_buf_putc(out, '[');
    if (datatype == OXS_DT_BYTES) {
        write_bytes_elements(out, data, count);
        count = 0;
    }
    for (size_t i = 0; i < count && !out->failed; i++) {
        if (i > 0)
            oxs_buf_putc(out, ',');
        switch (datatype) {
        case OXS_DT_BOOL: oxs_buf_puts(out, ((const uint8_t *)data)[i] ? "true" : "false"); break;
        case OXS_DT_UINT8: write_u64(out, ((const uint8_t *)data)[i]); break;
        case OXS_DT_UINT16: write_u64(out, ((const uint16_t *)data)[i]); break;
        case OXS_DT_UINT32: write_u64(out, ((const uint32_t *)data)[i]); break;
        case OXS_DT_UINT64: write_u64(out, ((const uint64_t *)data)[i]); break;
        case OXS_DT_INT8: write_i64(out, ((const int8_t *)data)[i]); break;
        case OXS_DT_INT16: write_i64(out, ((const int16_t *)data)[i]); break;
        case OXS_DT_INT32: write_i64(out, ((const int32_t *)data)[i]); break;
        case OXS_DT_INT64: write_i64(out, ((const int64_t *)data)[i]); break;
        case OXS_DT_FP16: write_float16(out, false, ((const uint16_t *)data)[i]); break;
        case OXS_DT_FP32: write_fp32(out, ((const float *)data)[i]); break;
        case OXS_DT_FP64: write_fp64(out, ((const double *)data)[i]); break;
        case OXS_DT_BF16: write_float16(out, true, ((const uint16_t *)data)[i]); break;
        default:
            oxs_buf_puts(out, "null"); /* unreachable: every other datatype is handled */
            break;
        }
    }
    oxs_buf_putc(out, ']');
}

static void write_shape(oxs_buf_t *out, const int64_t *dims, int rank)
{
    oxs_buf_putc(out, '[');
    for (int i = 0; i < rank; i++) {
        if (i > 0)
            oxs_buf_putc(out, ',');
        write_i64(out, dims[i]);
    }
    oxs_buf_putc(out, ']');
}

/* ---- responses ----------------------------------------------------------------------------- */

/* Returns true when reply requests the output at model index as binary data. */
static bool wants_binary(const oxs_json_reply_t *reply, int index)
{
    if (reply == NULL)
        return false;
    return reply->binary[index] == 1 || (reply->binary[index] == -1 && reply->binary_all);
}

oxs_status_t oxs_json_encode_infer(oxs_buf_t *out, const oxs_response_t *response,
                                   const oxs_json_reply_t *reply, size_t *json_len, char *error,
                                   size_t error_size)
{
    const oxs_request_t *request = oxs_response_request(response);
    const oxs_model_t *model = oxs_request_model(request);
    const char *id = oxs_request_id(request);
    size_t count = oxs_response_output_count(response);
    bool any_binary = false;
    *json_len = 0;

    /* JSON strings carry text only: find a BYTES output that cannot go as JSON first. */
    for (size_t i = 0; i < count; i++) {
        oxs_tensor_view_t view;
        if (oxs_response_output(response, i, &view) != OXS_OK)
            continue;
        int index = oxs_model_find_output(model, view.name, strlen(view.name));
        bool binary = wants_binary(reply, index);
        any_binary = any_binary || binary;
        if (view.datatype != OXS_DT_BYTES || binary)
            continue;
        size_t bad = find_invalid_utf8(view.data, view.element_count);
        if (bad < view.element_count) {
            snprintf(error, error_size,
                     "output \"%s\": BYTES element %zu is not valid UTF-8, which a JSON string "
                     "cannot carry; request the output with \"parameters\": "
                     "{\"binary_data\": true}",
                     view.name, bad);
            return OXS_ERR_UNSUPPORTED;
        }
    }

    oxs_buf_puts(out, "{\"model_name\":");
    write_cstring(out, oxs_model_name(model));
    oxs_buf_puts(out, ",\"model_version\":\"");
    write_i64(out, oxs_model_version(model));
    oxs_buf_putc(out, '"');
    if (id != NULL && id[0] != '\0') {
        oxs_buf_puts(out, ",\"id\":");
        write_cstring(out, id);
    }

    oxs_buf_puts(out, ",\"outputs\":[");
    for (size_t i = 0; i < count; i++) {
        oxs_tensor_view_t view;
        if (oxs_response_output(response, i, &view) != OXS_OK)
            continue;
        if (i > 0)
            oxs_buf_putc(out, ',');
        oxs_buf_puts(out, "{\"name\":");
        write_cstring(out, view.name);
        oxs_buf_puts(out, ",\"datatype\":");
        write_cstring(out, oxs_datatype_name(view.datatype));
        oxs_buf_puts(out, ",\"shape\":");
        write_shape(out, view.shape, view.rank);
        if (wants_binary(reply, oxs_model_find_output(model, view.name, strlen(view.name)))) {
            oxs_buf_puts(out, ",\"parameters\":{\"binary_data_size\":");
            write_u64(out, view.byte_size);
            oxs_buf_puts(out, "}}");
            continue;
        }
        oxs_buf_puts(out, ",\"data\":");
        write_tensor_data(out, view.datatype, view.data, view.element_count);
        oxs_buf_putc(out, '}');
    }
    oxs_buf_puts(out, "]}");
    if (!any_binary)
        return OXS_OK;

    *json_len = out->len;
    for (size_t i = 0; i < count; i++) {
        oxs_tensor_view_t view;
        if (oxs_response_output(response, i, &view) == OXS_OK &&
            wants_binary(reply, oxs_model_find_output(model, view.name, strlen(view.name))))
            oxs_buf_append(out, view.data, view.byte_size);
    }
    return OXS_OK;
}

void oxs_json_encode_predict(oxs_buf_t *out, const oxs_response_t *response)
{
    const oxs_request_t *request = oxs_response_request(response);
    const char *id = oxs_request_id(request);
    oxs_tensor_view_t view;
    bool has_output =
        oxs_response_output_count(response) > 0 && oxs_response_output(response, 0, &view) == OXS_OK;

    oxs_buf_puts(out, "{\"output\":");
    if (has_output)
        write_tensor_data(out, view.datatype, view.data, view.element_count);
    else
        oxs_buf_puts(out, "[]");
    oxs_buf_puts(out, ",\"shape\":");
    if (has_output)
        write_shape(out, view.shape, view.rank);
    else
        oxs_buf_puts(out, "[]");
    oxs_buf_puts(out, ",\"model\":");
    write_cstring(out, oxs_model_name(oxs_request_model(request)));
    oxs_buf_puts(out, ",\"request_id\":");
    if (id != NULL && id[0] != '\0')
        write_cstring(out, id);
    else
        oxs_buf_puts(out, "null");
    oxs_buf_putc(out, '}');
}

/* ---- model metadata ----------------------------------------------------------------------- */

static void write_tensor_infos(oxs_buf_t *out, const oxs_model_t *model, bool inputs)
{
    size_t count = inputs ? oxs_model_input_count(model) : oxs_model_output_count(model);
    oxs_buf_putc(out, '[');
    for (size_t i = 0; i < count; i++) {
        const oxs_tensor_info_t *info = inputs ? oxs_model_input(model, i)
                                               : oxs_model_output(model, i);
        if (i > 0)
            oxs_buf_putc(out, ',');
        oxs_buf_puts(out, "{\"name\":");
        write_cstring(out, info->name);
        /* A type without a protocol name is reported by its ONNX name, such as "string". */
        oxs_buf_puts(out, ",\"datatype\":");
        write_cstring(out, info->datatype != OXS_DT_INVALID ? oxs_datatype_name(info->datatype)
                                                            : info->onnx_type);
        oxs_buf_puts(out, ",\"shape\":");
        if (info->rank >= 0)
            write_shape(out, info->dims, info->rank);
        else
            oxs_buf_puts(out, "null"); /* no array can stand for an unknown rank */
        oxs_buf_putc(out, '}');
    }
    oxs_buf_putc(out, ']');
}

static void write_metadata_parameters(oxs_buf_t *out, const oxs_model_t *model)
{
    const oxs_model_metadata_t *metadata = oxs_model_metadata(model);

    oxs_buf_putc(out, '{');
    if (metadata != NULL) {
        oxs_buf_puts(out, "\"producer_name\":");
        write_cstring(out, metadata->producer_name);
        oxs_buf_puts(out, ",\"opset\":");
        if (metadata->opset >= 0)
            write_i64(out, metadata->opset);
        else
            oxs_buf_puts(out, "null");
        oxs_buf_puts(out, ",\"graph_name\":");
        write_cstring(out, metadata->graph_name);
        oxs_buf_puts(out, ",\"domain\":");
        write_cstring(out, metadata->domain);
        oxs_buf_puts(out, ",\"description\":");
        write_cstring(out, metadata->description);
        oxs_buf_puts(out, ",\"model_version\":");
        write_i64(out, metadata->model_version);
        oxs_buf_puts(out, ",\"metadata\":{");
        for (size_t i = 0; i < metadata->custom_count; i++) {
            if (i > 0)
                oxs_buf_putc(out, ',');
            write_cstring(out, metadata->custom_keys[i]);
            oxs_buf_putc(out, ':');
            write_cstring(out, metadata->custom_values[i]);
        }
        oxs_buf_puts(out, "},");
    }
    oxs_buf_puts(out, "\"state\":");
    write_cstring(out, oxs_model_state_name(oxs_model_state(model)));
    oxs_buf_puts(out, ",\"state_reason\":");
    write_cstring(out, oxs_model_state_reason(model));
    oxs_buf_putc(out, '}');
}

void oxs_json_encode_model_metadata(oxs_buf_t *out, const oxs_model_t *model,
                                    const int64_t *versions, size_t version_count)
{
    oxs_buf_puts(out, "{\"name\":");
    write_cstring(out, oxs_model_name(model));
    oxs_buf_puts(out, ",\"versions\":[");
    for (size_t i = 0; i < version_count; i++) {
        oxs_buf_puts(out, i > 0 ? ",\"" : "\"");
        write_i64(out, versions[i]);
        oxs_buf_putc(out, '"');
    }
    oxs_buf_puts(out, "],\"platform\":\"onnxruntime_onnx\",\"inputs\":");
    write_tensor_infos(out, model, true);
    oxs_buf_puts(out, ",\"outputs\":");
    write_tensor_infos(out, model, false);
    oxs_buf_puts(out, ",\"parameters\":");
    write_metadata_parameters(out, model);
    oxs_buf_putc(out, '}');
}

static void write_key(oxs_buf_t *out, const char *key, bool first)
{
    if (!first)
        oxs_buf_putc(out, ',');
    write_cstring(out, key);
    oxs_buf_putc(out, ':');
}

static void write_int_array(oxs_buf_t *out, const int *values, int count)
{
    oxs_buf_putc(out, '[');
    for (int i = 0; i < count; i++) {
        if (i > 0)
            oxs_buf_putc(out, ',');
        write_i64(out, values[i]);
    }
    oxs_buf_putc(out, ']');
}

void oxs_json_encode_model_config(oxs_buf_t *out, const oxs_model_t *model)
{
    const oxs_model_config_t *config = oxs_model_config(model);
    if (config == NULL) {
        oxs_buf_puts(out, "{}");
        return;
    }
    oxs_buf_putc(out, '{');
    write_key(out, "name", true);
    write_cstring(out, oxs_model_name(model));
    write_key(out, "versions", false);
    oxs_buf_puts(out, "[\"");
    write_i64(out, oxs_model_version(model));
    oxs_buf_puts(out, "\"]");
    write_key(out, "from_file", false);
    oxs_buf_puts(out, config->from_file ? "true" : "false");
    write_key(out, "max_batch_size", false);
    write_i64(out, config->max_batch_size);

    write_key(out, "dynamic_batching", false);
    if (!config->dynamic_batching) {
        oxs_buf_puts(out, "null");
    } else {
        oxs_buf_putc(out, '{');
        if (config->target_p99_ms > 0) {
            write_key(out, "target_p99_ms", true);
            write_fp64(out, config->target_p99_ms);
        } else {
            write_key(out, "max_queue_delay_us", true);
            write_i64(out, config->max_queue_delay_us);
        }
        write_key(out, "preferred_batch_sizes", false);
        write_int_array(out, config->preferred_batch_sizes, config->preferred_batch_size_count);
        write_key(out, "max_queue_size", false);
        write_i64(out, config->max_queue_size);
        write_key(out, "default_timeout_us", false);
        write_i64(out, config->default_timeout_us);
        write_key(out, "priority_levels", false);
        write_i64(out, config->priority_levels);
        write_key(out, "default_priority", false);
        write_i64(out, config->default_priority);
        oxs_buf_putc(out, '}');
    }
    if (!config->dynamic_batching) {
        /* The queue bound applies without batching too. */
        write_key(out, "max_queue_size", false);
        write_i64(out, config->max_queue_size);
    }

    write_key(out, "instance_group", false);
    oxs_buf_putc(out, '[');
    for (int g = 0; g < config->instance_group_count; g++) {
        const oxs_instance_group_t *group = &config->instance_groups[g];
        if (g > 0)
            oxs_buf_putc(out, ',');
        oxs_buf_putc(out, '{');
        write_key(out, "count", true);
        write_i64(out, group->count);
        write_key(out, "kind", false);
        write_cstring(out, oxs_instance_kind_name(group->kind));
        write_key(out, "gpus", false);
        write_int_array(out, group->gpus, group->gpu_count);
        oxs_buf_putc(out, '}');
    }
    oxs_buf_putc(out, ']');
    write_key(out, "allow_cpu_fallback", false);
    oxs_buf_puts(out, config->allow_cpu_fallback ? "true" : "false");

    write_key(out, "version_policy", false);
    oxs_buf_putc(out, '{');
    write_cstring(out, oxs_version_policy_name(config->version_policy));
    oxs_buf_puts(out, ":{");
    if (config->version_policy == OXS_VERSION_LATEST) {
        write_key(out, "num_versions", true);
        write_i64(out, config->num_versions);
    } else if (config->version_policy == OXS_VERSION_SPECIFIC) {
        write_key(out, "versions", true);
        oxs_buf_putc(out, '[');
        for (int i = 0; i < config->version_count; i++) {
            if (i > 0)
                oxs_buf_putc(out, ',');
            write_i64(out, config->versions[i]);
        }
        oxs_buf_putc(out, ']');
    }
    oxs_buf_puts(out, "}}");

    write_key(out, "intra_op_threads", false);
    write_i64(out, config->intra_op_threads);
    write_key(out, "inter_op_threads", false);
    write_i64(out, config->inter_op_threads);
    write_key(out, "graph_optimization_level", false);
    write_cstring(out, oxs_graph_opt_name(config->graph_optimization));
    write_key(out, "execution_providers", false);
    oxs_buf_putc(out, '[');
    for (int i = 0; i < config->execution_provider_count; i++) {
        if (i > 0)
            oxs_buf_putc(out, ',');
        write_cstring(out, oxs_execution_provider_name(config->execution_providers[i]));
    }
    oxs_buf_putc(out, ']');
    write_key(out, "warmup", false);
    if (config->warmup_random) {
        oxs_buf_puts(out, "\"random\"");
    } else {
        oxs_buf_putc(out, '[');
        for (size_t i = 0; i < config->warmup_count; i++) {
            if (i > 0)
                oxs_buf_putc(out, ',');
            oxs_buf_puts(out, config->warmup_bodies[i]); /* compact JSON from jansson */
        }
        oxs_buf_putc(out, ']');
    }
    oxs_buf_putc(out, '}');
}

void oxs_json_encode_error(oxs_buf_t *out, const char *message)
{
    oxs_buf_puts(out, "{\"error\":");
    write_cstring(out, message);
    oxs_buf_putc(out, '}');
}
