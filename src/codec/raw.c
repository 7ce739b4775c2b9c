/*
 * Raw request bodies: one input's bytes with the shape derived from the model.
 */
#include "codec/raw.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "codec/json_internal.h"
#include "common/bytes.h"

/* Counts the length-prefixed BYTES elements that fill data exactly; returns false when the
 * last one does not fit. */
static bool count_bytes_elements(const unsigned char *data, size_t len, size_t *count,
                                 size_t *largest)
{
    size_t at = 0, n = 0;
    *largest = 0;
    while (at < len) {
        if (len - at < 4)
            return false;
        uint32_t size = oxs__load_u32_le(data + at);
        at += 4;
        if (size > len - at)
            return false;
        if (size > *largest)
            *largest = size;
        at += size;
        n++;
    }
    *count = n;
    return true;
}

oxs_status_t oxs_raw_decode_infer(oxs_request_t *request, const char *body, size_t len,
                                  char *error, size_t error_size)
{
    oxs__msg_t msg;
    oxs__msg_init(&msg, error, error_size);
    const oxs_model_t *model = oxs_request_model(request);

    if (oxs_model_input_count(model) != 1) {
        oxs__msg_printf(&msg, "Inference-Header-Content-Length is 0, so the body is the data "
                        "of one input, but model \"%s\" has %zu inputs (",
                        oxs_model_name(model), oxs_model_input_count(model));
        oxs__msg_model_inputs(&msg, model);
        oxs__msg_printf(&msg, "); send a JSON header");
        return OXS_ERR_INVALID_ARGUMENT;
    }
    const oxs_tensor_info_t *info = oxs_model_input(model, 0);
    if (info->rank < 0) {
        oxs__msg_printf(&msg, "input \"%s\": the model does not give its rank, so a raw body "
                        "cannot be shaped; send a JSON header", info->name);
        return OXS_ERR_INVALID_ARGUMENT;
    }

    int64_t shape[OXS_MAX_DIMS];
    uint64_t rest = 1; /* elements per item of the first dim */
    bool unknown = false;
    for (int i = 0; i < info->rank; i++) {
        shape[i] = info->dims[i];
        if (i > 0 && info->dims[i] < 0)
            unknown = true;
        else if (i > 0 && rest != 0 && (uint64_t)info->dims[i] > UINT64_MAX / rest)
            rest = UINT64_MAX;
        else if (i > 0)
            rest *= (uint64_t)info->dims[i];
    }
    if (unknown) {
        oxs__msg_printf(&msg, "input \"%s\": shape ", info->name);
        oxs__msg_shape(&msg, info->dims, info->rank);
        oxs__msg_printf(&msg, " has unknown dims");
        for (int i = 1; i < info->rank; i++)
            if (info->dims[i] < 0)
                oxs__msg_printf(&msg, " %d", i);
        oxs__msg_printf(&msg, " besides the first, so a raw body cannot be shaped; send a JSON "
                        "header that gives the shape");
        return OXS_ERR_INVALID_ARGUMENT;
    }

    size_t count = 0;
    size_t element_size = oxs_datatype_size(info->datatype);
    if (info->datatype == OXS_DT_BYTES) {
        size_t largest = 0;
        size_t max_element = oxs_request_limits(request)->max_bytes_element;
        if (!count_bytes_elements((const unsigned char *)body, len, &count, &largest)) {
            oxs__msg_printf(&msg, "input \"%s\": the %zu-byte body does not end with a whole "
                            "BYTES element (a 4-byte little-endian length, then its bytes)",
                            info->name, len);
            return OXS_ERR_INVALID_ARGUMENT;
        }
        if (largest > max_element) {
            oxs__msg_printf(&msg, "input \"%s\": a BYTES element has %zu bytes, more than the "
                            "limit of %zu set by --max-bytes-element",
                            info->name, largest, max_element);
            return OXS_ERR_TOO_LARGE;
        }
    } else if (element_size == 0) {
        oxs__msg_printf(&msg, "input \"%s\": the model's type %s is not supported", info->name,
                        info->onnx_type);
        return OXS_ERR_UNSUPPORTED;
    } else if (len % element_size != 0) {
        oxs__msg_printf(&msg, "input \"%s\": the body has %zu bytes, not a whole number of %s "
                        "elements of %zu bytes",
                        info->name, len, oxs_datatype_name(info->datatype), element_size);
        return OXS_ERR_INVALID_ARGUMENT;
    } else {
        count = len / element_size;
    }

    if (info->rank == 0 || info->dims[0] >= 0) {
        /* Fully static: oxs_request_add_input compares the sizes below. */
    } else if (rest == 0 || count % rest != 0) {
        oxs__msg_printf(&msg, "input \"%s\": the body holds %zu elements, which shape ",
                        info->name, count);
        oxs__msg_shape(&msg, info->dims, info->rank);
        oxs__msg_printf(&msg, " cannot take: the first dim needs a multiple of %" PRIu64,
                        rest);
        return OXS_ERR_INVALID_ARGUMENT;
    } else {
        shape[0] = (int64_t)(count / rest);
    }

    void *data = NULL;
    size_t byte_size = 0;
    oxs_status_t status = oxs__codec_add_input(request, info->name, strlen(info->name),
                                               info->datatype, shape, info->rank, len, &data,
                                               &byte_size, error, error_size);
    if (status != OXS_OK)
        return status;
    if (byte_size != len) {
        oxs__msg_printf(&msg, "input \"%s\": the body has %zu bytes, shape ", info->name, len);
        oxs__msg_shape(&msg, shape, info->rank);
        oxs__msg_printf(&msg, " of %s needs %zu", oxs_datatype_name(info->datatype), byte_size);
        return OXS_ERR_INVALID_ARGUMENT;
    }
    if (len > 0)
        memcpy(data, body, len);
    return OXS_OK;
}
