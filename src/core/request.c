/*
 * Requests and responses: input validation against the model, pooled tensor buffers and the
 * per-request arena. A response is embedded in its request, so one destroy frees both.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/bytes.h"
#include "core/internal.h"

oxs_status_t oxs_request_create(oxs_server_t *server, oxs_model_t *model, oxs_request_t **out)
{
    *out = NULL;
    if (server == NULL || model == NULL)
        return OXS_ERR_INVALID_ARGUMENT;
    if (oxs_model_state(model) != OXS_MODEL_READY)
        return OXS_ERR_UNAVAILABLE;
    return oxs__request_create(server, model, out);
}

oxs_status_t oxs__request_create(oxs_server_t *server, oxs_model_t *model, oxs_request_t **out)
{
    *out = NULL;
    oxs_request_t *request = oxs__request_take(server);
    if (request == NULL)
        return OXS_ERR_OUT_OF_MEMORY;

    oxs__arena_t arena = request->arena;
    memset(request, 0, sizeof(*request));
    request->arena = arena;
    request->server = server;
    atomic_init(&request->canceled, false);
    request->inputs = oxs__arena_alloc(&request->arena,
                                       (model->input_count + 1) * sizeof(*request->inputs));
    if (request->inputs == NULL) {
        oxs__request_give_back(server, request);
        return OXS_ERR_OUT_OF_MEMORY;
    }
    oxs_model_acquire(model);
    request->model = model;
    *out = request;
    return OXS_OK;
}

void oxs_request_destroy(oxs_request_t *request)
{
    if (request == NULL)
        return;
    oxs_server_t *server = request->server;

    for (size_t i = 0; i < request->input_count; i++)
        oxs__pool_put(server->pool, request->inputs[i].data);
    for (size_t i = 0; i < request->response.output_count; i++) {
        oxs__value_release(request->response.outputs[i].value);
        if (request->response.outputs[i].pooled != NULL)
            oxs__pool_put(server->pool, request->response.outputs[i].pooled);
    }
    oxs_model_release(request->model);
    oxs__request_give_back(server, request);
}

oxs_model_t *oxs_request_model(const oxs_request_t *request)
{
    return request->model;
}

oxs_status_t oxs_request_set_id(oxs_request_t *request, const char *id, size_t len)
{
    if (len >= sizeof(request->id))
        return OXS_ERR_INVALID_ARGUMENT;
    memcpy(request->id, id, len);
    request->id[len] = '\0';
    request->id_len = len;
    return OXS_OK;
}

void oxs_request_set_log_id(oxs_request_t *request, const char *id)
{
    snprintf(request->log_id, sizeof(request->log_id), "%s", id != NULL ? id : "");
}

const char *oxs_request_id(const oxs_request_t *request)
{
    return request->id;
}

void *oxs_request_scratch(oxs_request_t *request, size_t len)
{
    return oxs__arena_alloc(&request->arena, len);
}

size_t oxs_request_input_count(const oxs_request_t *request)
{
    return request->input_count;
}

const oxs__input_t *oxs__request_input(const oxs_request_t *request, int index)
{
    for (size_t i = 0; i < request->input_count; i++)
        if (request->inputs[i].index == index)
            return &request->inputs[i];
    return NULL;
}

oxs_status_t oxs_request_set_priority(oxs_request_t *request, int priority, char *error,
                                      size_t error_size)
{
    const oxs_model_config_t *config = &request->model->config.config;
    int levels = config->priority_levels;
    if (priority < 0 || priority > (levels > 0 ? levels : 1))
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "priority: value %d is out of range for model \"%s\", expected 1 to "
                         "%d (1 is the highest), or 0 for the default",
                         priority, request->model->name, levels > 0 ? levels : 1);
    request->priority = priority;
    return OXS_OK;
}

oxs_status_t oxs_request_set_timeout_us(oxs_request_t *request, int64_t timeout_us,
                                        char *error, size_t error_size)
{
    if (timeout_us < 0 || timeout_us > OXS_MAX_TIMEOUT_US)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "timeout: value %lld is out of range, expected microseconds from 0 (the "
                         "model's default) to %lld (one hour)",
                         (long long)timeout_us, (long long)OXS_MAX_TIMEOUT_US);
    request->timeout_us = timeout_us;
    return OXS_OK;
}

void oxs_request_cancel(oxs_request_t *request)
{
    oxs__scheduler_cancel(request);
}

/* Writes dims as "[1,3,-1]" into text. */
static void format_dims(char *text, size_t size, const int64_t *dims, int rank)
{
    size_t used = 0;
    text[0] = '\0';
    for (int i = 0; i <= rank && used < size; i++) {
        int n;
        if (i == rank)
            n = snprintf(text + used, size - used, "]");
        else
            n = snprintf(text + used, size - used, "%s%lld", i ? "," : "[", (long long)dims[i]);
        if (n < 0)
            return;
        used += (size_t)n;
    }
    if (rank == 0)
        snprintf(text, size, "[]");
}

/* Writes the quoted names of ios, comma separated, into text, cut at size. */
static void list_names(char *text, size_t size, const oxs__io_t *ios, size_t count)
{
    size_t used = 0;
    text[0] = '\0';
    for (size_t i = 0; i < count && used < size; i++) {
        int n = snprintf(text + used, size - used, "%s\"%s\"", i ? ", " : "", ios[i].info.name);
        used += n > 0 ? (size_t)n : 0;
    }
}

/* Checks an input's name, datatype and shape against the model. On success *index is the model
 * input and *count its element count. */
static oxs_status_t check_input(oxs_request_t *request, const char *name, size_t name_len,
                                oxs_datatype_t datatype, const int64_t *shape, int rank,
                                int *index_out, size_t *count_out, char *error, size_t error_size)
{
    const oxs_model_t *model = request->model;
    const oxs_limits_t *limits = &request->server->options.limits;
    char got[256], expected[256];

    if (request->input_count >= (size_t)limits->max_inputs)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "request gives too many inputs: the limit set by --max-inputs is %d",
                         limits->max_inputs);
    int index = oxs_model_find_input(model, name, name_len);
    if (index < 0) {
        char names[512];
        list_names(names, sizeof(names), model->inputs, model->input_count);
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "unknown input \"%.*s\": model \"%s\" has inputs %s",
                         (int)(name_len > 128 ? 128 : name_len), name, model->name, names);
    }
    const oxs__io_t *io = &model->inputs[index];
    const char *input_name = io->info.name;

    for (size_t i = 0; i < request->input_count; i++)
        if (request->inputs[i].index == index)
            return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                             "input \"%s\": given more than once", input_name);

    if (io->info.datatype == OXS_DT_INVALID)
        return oxs__fail(OXS_ERR_UNSUPPORTED, error, error_size,
                         "input \"%s\": the model's type %s is not supported", input_name,
                         io->info.onnx_type);
    if (datatype != io->info.datatype)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "input \"%s\": datatype %s, the model expects %s", input_name,
                         oxs_datatype_name(datatype), oxs_datatype_name(io->info.datatype));

    if (rank < 0 || rank > OXS_MAX_DIMS)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "input \"%s\": shape has %d dims, at most %d are supported", input_name,
                         rank, OXS_MAX_DIMS);
    format_dims(got, sizeof(got), shape, rank);
    if (rank > limits->max_tensor_rank)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "input \"%s\": shape %s has %d dims, more than the limit of %d set by "
                         "--max-tensor-rank",
                         input_name, got, rank, limits->max_tensor_rank);
    format_dims(expected, sizeof(expected), io->dims, io->info.rank);
    if (io->info.rank >= 0 && rank != io->info.rank)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "input \"%s\": shape %s has %d dims, the model expects %d (%s)",
                         input_name, got, rank, io->info.rank, expected);

    size_t count = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0)
            return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                             "input \"%s\": shape %s has a negative dim %lld at index %d",
                             input_name, got, (long long)shape[i], i);
        if (io->info.rank >= 0 && io->dims[i] >= 0 && io->dims[i] != shape[i])
            return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                             "input \"%s\": shape %s has %lld at dim %d, the model expects %lld "
                             "(%s)",
                             input_name, got, (long long)shape[i], i, (long long)io->dims[i],
                             expected);
        if (shape[i] != 0 && count > SIZE_MAX / (size_t)shape[i])
            return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                             "input \"%s\": shape %s has too many elements", input_name, got);
        count *= (size_t)shape[i];
    }
    if (count > limits->max_tensor_elements)
        return oxs__fail(OXS_ERR_TOO_LARGE, error, error_size,
                         "input \"%s\": shape %s has %zu elements, more than the limit of %zu "
                         "set by --max-tensor-elements",
                         input_name, got, count, limits->max_tensor_elements);
    *index_out = index;
    *count_out = count;
    return OXS_OK;
}

/* Takes a pooled buffer of bytes for the checked input and records it in the request. */
static oxs_status_t attach_input(oxs_request_t *request, int index, oxs_datatype_t datatype,
                                 const int64_t *shape, int rank, size_t count, size_t bytes,
                                 void **data, size_t *byte_size, char *error, size_t error_size)
{
    void *buffer = oxs__pool_get(request->server->pool, bytes ? bytes : 1);
    if (buffer == NULL)
        return oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size,
                         "input \"%s\": out of memory for %zu bytes",
                         request->model->inputs[index].info.name, bytes);

    oxs__input_t *input = &request->inputs[request->input_count++];
    input->index = index;
    input->datatype = datatype;
    input->rank = rank;
    if (rank > 0)
        memcpy(input->shape, shape, (size_t)rank * sizeof(*shape));
    input->data = buffer;
    input->byte_size = bytes;
    input->element_count = count;
    *data = buffer;
    *byte_size = bytes;
    return OXS_OK;
}

/* Fails with TOO_LARGE, naming the input, its shape and the per-tensor byte limit. */
static oxs_status_t fail_too_large(const oxs_request_t *request, int index, const int64_t *shape,
                                   int rank, char *error, size_t error_size)
{
    char got[256];
    format_dims(got, sizeof(got), shape, rank);
    return oxs__fail(OXS_ERR_TOO_LARGE, error, error_size,
                     "input \"%s\": shape %s needs more than the limit of %zu bytes per tensor "
                     "set by --max-tensor-bytes",
                     request->model->inputs[index].info.name, got,
                     request->server->options.limits.max_tensor_bytes);
}

oxs_status_t oxs_request_add_input(oxs_request_t *request, const char *name, size_t name_len,
                                   oxs_datatype_t datatype, const int64_t *shape, int rank,
                                   void **data, size_t *byte_size, char *error, size_t error_size)
{
    *data = NULL;
    *byte_size = 0;
    int index = -1;
    size_t count = 0;
    oxs_status_t status = check_input(request, name, name_len, datatype, shape, rank, &index,
                                      &count, error, error_size);
    if (status != OXS_OK)
        return status;
    if (datatype == OXS_DT_BYTES)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "input \"%s\": BYTES inputs are added with oxs_request_add_bytes_input",
                         request->model->inputs[index].info.name);

    size_t element_size = oxs_datatype_size(datatype);
    if (count > request->server->options.limits.max_tensor_bytes / element_size)
        return fail_too_large(request, index, shape, rank, error, error_size);
    return attach_input(request, index, datatype, shape, rank, count, count * element_size, data,
                        byte_size, error, error_size);
}

oxs_status_t oxs_request_add_bytes_input(oxs_request_t *request, const char *name,
                                         size_t name_len, const int64_t *shape, int rank,
                                         size_t data_size, void **data, char *error,
                                         size_t error_size)
{
    *data = NULL;
    int index = -1;
    size_t count = 0;
    oxs_status_t status = check_input(request, name, name_len, OXS_DT_BYTES, shape, rank,
                                      &index, &count, error, error_size);
    if (status != OXS_OK)
        return status;
    if (data_size > request->server->options.limits.max_tensor_bytes)
        return fail_too_large(request, index, shape, rank, error, error_size);
    size_t byte_size = 0;
    return attach_input(request, index, OXS_DT_BYTES, shape, rank, count, data_size, data,
                        &byte_size, error, error_size);
}

const oxs_limits_t *oxs_request_limits(const oxs_request_t *request)
{
    return &request->server->options.limits;
}

/* Walks count length-prefixed elements of a BYTES buffer in one pass. A malformed buffer gives
 * OXS_ERR_INVALID_ARGUMENT with *bad_element and *bad_offset where the walk stopped. Otherwise
 * an element longer than max_element gives OXS_ERR_TOO_LARGE with the first such element and the
 * offset of its length. */
static oxs_status_t walk_bytes(const void *data, size_t size, size_t count, size_t max_element,
                               size_t *bad_element, size_t *bad_offset)
{
    const unsigned char *bytes = data;
    size_t at = 0;
    size_t large_element = SIZE_MAX, large_offset = 0;
    for (size_t i = 0; i < count; i++) {
        *bad_element = i;
        *bad_offset = at;
        if (size - at < 4)
            return OXS_ERR_INVALID_ARGUMENT;
        uint32_t len = oxs__load_u32_le(bytes + at);
        if (len > max_element && large_element == SIZE_MAX) {
            large_element = i;
            large_offset = at;
        }
        at += 4;
        if (len > size - at)
            return OXS_ERR_INVALID_ARGUMENT;
        at += len;
    }
    *bad_element = count;
    *bad_offset = at;
    if (at != size)
        return OXS_ERR_INVALID_ARGUMENT;
    if (large_element != SIZE_MAX) {
        *bad_element = large_element;
        *bad_offset = large_offset;
        return OXS_ERR_TOO_LARGE;
    }
    return OXS_OK;
}

oxs_status_t oxs_bytes_check(const void *data, size_t size, size_t count, size_t *bad_element,
                             size_t *bad_offset)
{
    return walk_bytes(data, size, count, SIZE_MAX, bad_element, bad_offset);
}

/* Checks that every element of a BOOL input is 0 or 1. Binary data could carry any byte, and
 * ONNX Runtime defines only these two for bool. */
static oxs_status_t check_bool_input(const oxs_request_t *request, const oxs__input_t *input,
                                     char *error, size_t error_size)
{
    const unsigned char *bytes = input->data;
    for (size_t i = 0; i < input->byte_size; i++) {
        if (bytes[i] > 1)
            return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                             "input \"%s\": BOOL element %zu is the byte %u, expected 0 or 1",
                             request->model->inputs[input->index].info.name, i, bytes[i]);
    }
    return OXS_OK;
}

/* Checks that a BYTES input's buffer contains exactly its element count of length-prefixed
 * elements, each within the --max-bytes-element limit. The frontends check element sizes before
 * they copy them; this check covers every caller. */
static oxs_status_t check_bytes_input(const oxs_request_t *request, const oxs__input_t *input,
                                      char *error, size_t error_size)
{
    const char *name = request->model->inputs[input->index].info.name;
    size_t max_element = request->server->options.limits.max_bytes_element;
    size_t element = 0, offset = 0;
    oxs_status_t status = walk_bytes(input->data, input->byte_size, input->element_count,
                                     max_element, &element, &offset);
    const unsigned char *bytes = input->data;
    if (status == OXS_OK)
        return OXS_OK;
    if (status == OXS_ERR_TOO_LARGE)
        return oxs__fail(OXS_ERR_TOO_LARGE, error, error_size,
                         "input \"%s\": BYTES element %zu has %" PRIu32 " bytes, more than the "
                         "limit of %zu set by --max-bytes-element",
                         name, element, oxs__load_u32_le(bytes + offset), max_element);

    size_t left = input->byte_size - offset;
    if (element == input->element_count)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "input \"%s\": BYTES data has %zu bytes, but its %zu elements end "
                         "after %zu",
                         name, input->byte_size, input->element_count, offset);
    if (left == 0)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "input \"%s\": BYTES data has %zu bytes, which hold %zu elements, but "
                         "the shape needs %zu",
                         name, input->byte_size, element, input->element_count);
    if (left < 4)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "input \"%s\": BYTES data has %zu bytes and ends inside the length of "
                         "element %zu, the shape needs %zu elements",
                         name, input->byte_size, element, input->element_count);
    uint32_t len = oxs__load_u32_le(bytes + offset);
    return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                     "input \"%s\": BYTES element %zu declares %" PRIu32 " bytes, but only %zu "
                     "remain",
                     name, element, len, left - 4);
}

oxs_status_t oxs_request_add_output(oxs_request_t *request, const char *name, size_t name_len,
                                    char *error, size_t error_size)
{
    const oxs_model_t *model = request->model;
    int max_outputs = request->server->options.limits.max_outputs;
    if (request->selected_count >= (size_t)max_outputs)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "request names too many outputs: the limit set by --max-outputs is %d",
                         max_outputs);
    int index = oxs_model_find_output(model, name, name_len);
    if (index < 0) {
        char names[512];
        list_names(names, sizeof(names), model->outputs, model->output_count);
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "unknown output \"%.*s\": model \"%s\" has outputs %s",
                         (int)(name_len > 128 ? 128 : name_len), name, model->name, names);
    }
    if (request->output_selected == NULL) {
        request->output_selected = oxs__arena_alloc(&request->arena, model->output_count + 1);
        if (request->output_selected == NULL)
            return oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
        memset(request->output_selected, 0, model->output_count + 1);
    }
    if (request->output_selected[index])
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "output \"%s\": requested more than once", model->outputs[index].info.name);
    request->output_selected[index] = true;
    request->selected_count++;
    return OXS_OK;
}

static oxs_status_t submit(oxs_request_t *request, oxs_complete_fn callback, void *user,
                           char *error, size_t error_size)
{
    const oxs_model_t *model = request->model;

    if (callback == NULL)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size, "callback is required");
    for (size_t i = 0; i < request->input_count; i++) {
        oxs_status_t status = OXS_OK;
        if (request->inputs[i].datatype == OXS_DT_BYTES)
            status = check_bytes_input(request, &request->inputs[i], error, error_size);
        else if (request->inputs[i].datatype == OXS_DT_BOOL)
            status = check_bool_input(request, &request->inputs[i], error, error_size);
        if (status != OXS_OK)
            return status;
    }
    if (request->input_count != model->input_count) {
        for (size_t i = 0; i < model->input_count; i++) {
            bool present = false;
            for (size_t j = 0; j < request->input_count; j++)
                present = present || request->inputs[j].index == (int)i;
            if (!present) {
                char names[512];
                list_names(names, sizeof(names), model->inputs, model->input_count);
                return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                                 "missing input \"%s\": model \"%s\" has inputs %s",
                                 model->inputs[i].info.name, model->name, names);
            }
        }
    }

    /* Batching needs one dim 0 shared by every input; a request larger than a batch cannot
     * run. */
    const oxs_model_config_t *config = &model->config.config;
    request->rows = request->input_count > 0 && request->inputs[0].rank > 0
                        ? request->inputs[0].shape[0]
                        : -1;
    for (size_t i = 1; i < request->input_count && request->rows >= 0; i++)
        if (request->inputs[i].rank == 0 || request->inputs[i].shape[0] != request->rows)
            request->rows = -1;
    /* A max_batch_size derived from the model only limits batching: a larger request runs
     * alone. One that config.json sets is a limit on every request. */
    if (config->max_batch_size > 0 && request->rows > config->max_batch_size &&
        !model->config.batch_given)
        request->rows = -1;
    if (config->max_batch_size > 0 && request->rows > config->max_batch_size)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "input \"%s\": dim 0 is %lld, larger than model \"%s\"'s "
                         "max_batch_size %d; split the request",
                         model->inputs[request->inputs[0].index].info.name,
                         (long long)request->rows, model->name, config->max_batch_size);
    if (request->priority == 0)
        request->priority = config->priority_levels > 0 ? config->default_priority : 1;

    /* The response lists outputs in model order, all of them unless some were selected. */
    oxs_response_t *response = &request->response;
    size_t count = request->output_selected ? request->selected_count : model->output_count;
    response->outputs = oxs__arena_alloc(&request->arena, (count + 1) * sizeof(oxs__output_t));
    if (response->outputs == NULL)
        return oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
    memset(response->outputs, 0, (count + 1) * sizeof(oxs__output_t));
    size_t at = 0;
    for (size_t i = 0; i < model->output_count; i++)
        if (request->output_selected == NULL || request->output_selected[i])
            response->outputs[at++].index = (int)i;
    response->output_count = at;
    response->status = OXS_ERR_INTERNAL;
    response->error[0] = '\0';
    response->infer_span_us[0] = response->infer_span_us[1] = 0;

    request->callback = callback;
    request->callback_user = user;
    oxs_status_t result = oxs__server_enqueue(request->server, request);
    if (result != OXS_OK) {
        response->output_count = 0;
        if (result == OXS_ERR_QUEUE_FULL)
            return oxs__fail(result, error, error_size,
                             "the queue of model \"%s\" is full: %d requests are waiting, the "
                             "max_queue_size of its config.json or else --queue-size; retry later",
                             model->name, config->max_queue_size);
        return oxs__fail(result, error, error_size, "%s", oxs_status_message(result));
    }
    return OXS_OK;
}

oxs_status_t oxs_request_submit(oxs_request_t *request, oxs_complete_fn callback, void *user,
                                char *error, size_t error_size)
{
    oxs_status_t status = submit(request, callback, user, error, error_size);
    /* From here the library counts every request; the caller counts what it failed before. */
    if (status != OXS_OK && request != NULL)
        oxs_model_count_rejected(request->model, status);
    return status;
}

/* ---- responses ---------------------------------------------------------------------------- */

oxs_status_t oxs_response_status(const oxs_response_t *response)
{
    return response->status;
}

const char *oxs_response_error(const oxs_response_t *response)
{
    return response->status == OXS_OK ? "" : response->error;
}

oxs_request_t *oxs_response_request(const oxs_response_t *response)
{
    return (oxs_request_t *)((const char *)response - offsetof(oxs_request_t, response));
}

size_t oxs_response_output_count(const oxs_response_t *response)
{
    return response->status == OXS_OK ? response->output_count : 0;
}

oxs_status_t oxs_response_output(const oxs_response_t *response, size_t index,
                                 oxs_tensor_view_t *out)
{
    if (response->status != OXS_OK || index >= response->output_count)
        return OXS_ERR_NOT_FOUND;
    *out = response->outputs[index].view;
    return OXS_OK;
}

int64_t oxs_response_queue_us(const oxs_response_t *response)
{
    return response->queue_us;
}

int64_t oxs_response_compute_us(const oxs_response_t *response)
{
    return response->compute_us;
}

void oxs_response_times(const oxs_response_t *response, oxs_response_times_t *out)
{
    const oxs_request_t *request = oxs_response_request(response);
    memset(out, 0, sizeof(*out));
    out->queued_us = request->enqueued_us;
    if (response->batch_size != 0) { /* it ran; rows are -1 for a request that cannot batch */
        out->started_us = request->enqueued_us + response->queue_us;
        out->ended_us = out->started_us + response->compute_us;
    }
    out->compute_started_us = response->infer_span_us[0];
    out->compute_ended_us = response->infer_span_us[1];
}

int oxs_response_batch_size(const oxs_response_t *response)
{
    return response->batch_size;
}

void oxs_response_destroy(oxs_response_t *response)
{
    if (response != NULL)
        oxs_request_destroy(oxs_response_request(response));
}
