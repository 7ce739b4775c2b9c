/*
 * ONNX Runtime backend: the process-wide environment, one session per model, introspection
 * and Run. The only globals in the library live here: the API table and the environment,
 * created under a mutex by the first server and released with the last one.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <onnxruntime_c_api.h>

#include "core/internal.h"

static pthread_mutex_t ort_lock = PTHREAD_MUTEX_INITIALIZER;
static const OrtApi *ort_api;       /* set once, never cleared */
static OrtEnv *ort_env;             /* guarded by ort_lock */
static int ort_env_refs;            /* guarded by ort_lock */
static OrtMemoryInfo *ort_cpu_info; /* guarded by ort_lock, lives with ort_env */

struct oxs__session {
    OrtSession *session;
};

/* Copies an ONNX Runtime status message (paths removed) into error and releases the status. */
static oxs_status_t take_status(OrtStatus *status, oxs_status_t code, char *error,
                                size_t error_size, const char *context)
{
    const char *message = ort_api->GetErrorMessage(status);
    if (error != NULL && error_size > 0) {
        snprintf(error, error_size, "%s: %s", context, message);
        oxs__redact_paths(error);
    }
    ort_api->ReleaseStatus(status);
    return code;
}

const char *oxs_runtime_version(void)
{
    const OrtApiBase *base = OrtGetApiBase();
    return base->GetVersionString();
}

oxs_status_t oxs__ort_acquire(int intra_op_threads, char *error, size_t error_size)
{
    oxs_status_t result = OXS_OK;
    OrtThreadingOptions *threading = NULL;
    OrtStatus *status = NULL;

    pthread_mutex_lock(&ort_lock);
    if (ort_env != NULL) {
        ort_env_refs++;
        goto done;
    }
    if (ort_api == NULL) {
        ort_api = OrtGetApiBase()->GetApi(ORT_API_VERSION);
        if (ort_api == NULL) {
            result = oxs__fail(OXS_ERR_INTERNAL, error, error_size,
                               "ONNX Runtime %s does not provide API version %d",
                               OrtGetApiBase()->GetVersionString(), ORT_API_VERSION);
            goto done;
        }
    }

    /* One intra-op pool for the whole process, so threads do not grow with the model count.
     * Spinning is off: idle pool threads would otherwise burn cores the workers need. */
    if ((status = ort_api->CreateThreadingOptions(&threading)) != NULL ||
        (status = ort_api->SetGlobalIntraOpNumThreads(threading, intra_op_threads)) != NULL ||
        (status = ort_api->SetGlobalInterOpNumThreads(threading, 1)) != NULL ||
        (status = ort_api->SetGlobalSpinControl(threading, 0)) != NULL ||
        (status = ort_api->CreateEnvWithGlobalThreadPools(ORT_LOGGING_LEVEL_ERROR, "onnxserve",
                                                          threading, &ort_env)) != NULL) {
        result = take_status(status, OXS_ERR_INTERNAL, error, error_size,
                             "creating the ONNX Runtime environment failed");
        ort_env = NULL;
        goto done;
    }
    if ((status = ort_api->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault,
                                               &ort_cpu_info)) != NULL) {
        result = take_status(status, OXS_ERR_INTERNAL, error, error_size,
                             "creating ONNX Runtime memory info failed");
        ort_api->ReleaseEnv(ort_env);
        ort_env = NULL;
        goto done;
    }
    ort_env_refs = 1;

done:
    if (threading != NULL)
        ort_api->ReleaseThreadingOptions(threading);
    pthread_mutex_unlock(&ort_lock);
    return result;
}

void oxs__ort_release(void)
{
    pthread_mutex_lock(&ort_lock);
    if (ort_env_refs > 0 && --ort_env_refs == 0) {
        ort_api->ReleaseMemoryInfo(ort_cpu_info);
        ort_cpu_info = NULL;
        ort_api->ReleaseEnv(ort_env);
        ort_env = NULL;
    }
    pthread_mutex_unlock(&ort_lock);
}

/* Frees memory ONNX Runtime allocated for a returned string or array. */
static void ort_free(OrtAllocator *allocator, void *ptr)
{
    OrtStatus *status = ort_api->AllocatorFree(allocator, ptr);
    if (status != NULL)
        ort_api->ReleaseStatus(status);
}

/* ---- element types ------------------------------------------------------------------------- */

static oxs_datatype_t datatype_from_onnx(ONNXTensorElementDataType type)
{
    switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL:
        return OXS_DT_BOOL;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8:
        return OXS_DT_UINT8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16:
        return OXS_DT_UINT16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32:
        return OXS_DT_UINT32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64:
        return OXS_DT_UINT64;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8:
        return OXS_DT_INT8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16:
        return OXS_DT_INT16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32:
        return OXS_DT_INT32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64:
        return OXS_DT_INT64;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
        return OXS_DT_FP16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
        return OXS_DT_FP32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE:
        return OXS_DT_FP64;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16:
        return OXS_DT_BF16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING:
        return OXS_DT_BYTES;
    default:
        return OXS_DT_INVALID;
    }
}

static const char *onnx_type_name(ONNXTensorElementDataType type)
{
    switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
        return "float";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8:
        return "uint8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8:
        return "int8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16:
        return "uint16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16:
        return "int16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32:
        return "int32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64:
        return "int64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING:
        return "string";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL:
        return "bool";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
        return "float16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE:
        return "double";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32:
        return "uint32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64:
        return "uint64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16:
        return "bfloat16";
    default:
        return "unsupported";
    }
}

static ONNXTensorElementDataType onnx_from_datatype(oxs_datatype_t datatype)
{
    switch (datatype) {
    case OXS_DT_BOOL:
        return ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL;
    case OXS_DT_UINT8:
        return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
    case OXS_DT_UINT16:
        return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16;
    case OXS_DT_UINT32:
        return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32;
    case OXS_DT_UINT64:
        return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64;
    case OXS_DT_INT8:
        return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
    case OXS_DT_INT16:
        return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16;
    case OXS_DT_INT32:
        return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
    case OXS_DT_INT64:
        return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
    case OXS_DT_FP16:
        return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
    case OXS_DT_FP32:
        return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    case OXS_DT_FP64:
        return ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE;
    case OXS_DT_BF16:
        return ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16;
    case OXS_DT_BYTES:
        return ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING;
    default:
        return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    }
}

/* ---- loading -------------------------------------------------------------------------------- */

/* Fills io from a session input or output type. A non-tensor value (sequence, map) keeps
 * rank -1 and datatype INVALID, so requests for it are rejected with a clear message. */
static oxs_status_t describe_io(OrtTypeInfo *type_info, oxs__io_t *io, char *error,
                                size_t error_size)
{
    const OrtTensorTypeAndShapeInfo *tensor = NULL;
    OrtStatus *status = ort_api->CastTypeInfoToTensorInfo(type_info, &tensor);
    if (status != NULL)
        return take_status(status, OXS_ERR_INTERNAL, error, error_size, "reading a type failed");

    io->info.rank = -1;
    io->info.datatype = OXS_DT_INVALID;
    io->info.onnx_type = "non-tensor";
    io->info.dims = io->dims;
    if (tensor == NULL)
        return OXS_OK;

    ONNXTensorElementDataType element = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    size_t rank = 0;
    if ((status = ort_api->GetTensorElementType(tensor, &element)) != NULL ||
        (status = ort_api->GetDimensionsCount(tensor, &rank)) != NULL)
        return take_status(status, OXS_ERR_INTERNAL, error, error_size, "reading a type failed");
    if (rank > OXS_MAX_DIMS)
        return oxs__fail(OXS_ERR_UNSUPPORTED, error, error_size,
                         "\"%s\" has %zu dims, at most %d are supported", io->info.name, rank,
                         OXS_MAX_DIMS);
    if ((status = ort_api->GetDimensions(tensor, io->dims, rank)) != NULL)
        return take_status(status, OXS_ERR_INTERNAL, error, error_size, "reading a shape failed");

    /* ONNX Runtime reports symbolic dims as -1 already; any other negative value is treated
     * the same way. */
    for (size_t i = 0; i < rank; i++)
        if (io->dims[i] < 0)
            io->dims[i] = -1;
    io->onnx_element_type = (int)element;
    io->info.rank = (int)rank;
    io->info.datatype = datatype_from_onnx(element);
    io->info.onnx_type = onnx_type_name(element);
    return OXS_OK;
}

static oxs_status_t load_ios(oxs_model_t *model, OrtAllocator *allocator, bool inputs,
                             char *error, size_t error_size)
{
    const oxs_allocator_t *ours = &model->server->allocator;
    OrtSession *session = model->session->session;
    size_t count = 0;
    OrtStatus *status = inputs ? ort_api->SessionGetInputCount(session, &count)
                               : ort_api->SessionGetOutputCount(session, &count);
    if (status != NULL)
        return take_status(status, OXS_ERR_INTERNAL, error, error_size, "reading the model failed");

    oxs__io_t *ios = oxs__calloc(ours, count ? count : 1, sizeof(*ios));
    const char **names = oxs__calloc(ours, count ? count : 1, sizeof(*names));
    if (inputs) {
        model->inputs = ios;
        model->input_names = names;
    } else {
        model->outputs = ios;
        model->output_names = names;
    }
    if (ios == NULL || names == NULL)
        return oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");

    for (size_t i = 0; i < count; i++) {
        char *name = NULL;
        OrtTypeInfo *type_info = NULL;
        status = inputs ? ort_api->SessionGetInputName(session, i, allocator, &name)
                        : ort_api->SessionGetOutputName(session, i, allocator, &name);
        if (status != NULL)
            return take_status(status, OXS_ERR_INTERNAL, error, error_size,
                               "reading a name failed");
        char *copy = oxs__strdup(ours, name);
        ort_free(allocator, name);
        if (copy == NULL)
            return oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
        ios[i].info.name = copy;
        names[i] = copy;
        if (inputs)
            model->input_count = i + 1;
        else
            model->output_count = i + 1;

        status = inputs ? ort_api->SessionGetInputTypeInfo(session, i, &type_info)
                        : ort_api->SessionGetOutputTypeInfo(session, i, &type_info);
        if (status != NULL)
            return take_status(status, OXS_ERR_INTERNAL, error, error_size,
                               "reading a type failed");
        oxs_status_t result = describe_io(type_info, &ios[i], error, error_size);
        ort_api->ReleaseTypeInfo(type_info);
        if (result != OXS_OK)
            return result;
    }
    return OXS_OK;
}

/* Reads producer, graph, domain, description, version, opset and custom metadata into one
 * block of strings owned by the model. */
static oxs_status_t load_metadata(oxs_model_t *model, OrtAllocator *allocator, char *error,
                                  size_t error_size)
{
    const oxs_allocator_t *ours = &model->server->allocator;
    OrtModelMetadata *metadata = NULL;
    char *producer = NULL, *graph = NULL, *domain = NULL, *description = NULL;
    char **keys = NULL;
    int64_t key_count = 0;
    oxs_status_t result = OXS_OK;
    OrtStatus *status = ort_api->SessionGetModelMetadata(model->session->session, &metadata);
    if (status != NULL)
        return take_status(status, OXS_ERR_INTERNAL, error, error_size,
                           "reading model metadata failed");

    if ((status = ort_api->ModelMetadataGetProducerName(metadata, allocator, &producer)) != NULL ||
        (status = ort_api->ModelMetadataGetGraphName(metadata, allocator, &graph)) != NULL ||
        (status = ort_api->ModelMetadataGetDomain(metadata, allocator, &domain)) != NULL ||
        (status = ort_api->ModelMetadataGetDescription(metadata, allocator, &description)) != NULL ||
        (status = ort_api->ModelMetadataGetVersion(metadata, &model->metadata.model_version)) != NULL ||
        (status = ort_api->ModelMetadataGetCustomMetadataMapKeys(metadata, allocator, &keys,
                                                                  &key_count)) != NULL) {
        result = take_status(status, OXS_ERR_INTERNAL, error, error_size,
                             "reading model metadata failed");
        goto cleanup;
    }

    size_t lengths[4] = {strlen(producer), strlen(graph), strlen(domain), strlen(description)};
    char *block = oxs__malloc(ours, lengths[0] + lengths[1] + lengths[2] + lengths[3] + 4);
    if (block == NULL) {
        result = oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
        goto cleanup;
    }
    model->metadata_strings = block;
    const char *sources[4] = {producer, graph, domain, description};
    const char **targets[4] = {&model->metadata.producer_name, &model->metadata.graph_name,
                               &model->metadata.domain, &model->metadata.description};
    for (int i = 0; i < 4; i++) {
        memcpy(block, sources[i], lengths[i] + 1);
        *targets[i] = block;
        block += lengths[i] + 1;
    }

    if (key_count > 0) {
        model->custom_storage = oxs__calloc(ours, (size_t)key_count * 2, sizeof(char *));
        model->custom_capacity = model->custom_storage ? (size_t)key_count : 0;
        if (model->custom_storage == NULL) {
            result = oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
            goto cleanup;
        }
        for (int64_t i = 0; i < key_count; i++) {
            char *value = NULL;
            status = ort_api->ModelMetadataLookupCustomMetadataMap(metadata, allocator, keys[i],
                                                                    &value);
            if (status != NULL) {
                result = take_status(status, OXS_ERR_INTERNAL, error, error_size,
                                     "reading model metadata failed");
                goto cleanup;
            }
            model->custom_storage[i] = oxs__strdup(ours, keys[i]);
            model->custom_storage[key_count + i] = oxs__strdup(ours, value ? value : "");
            if (value != NULL)
                ort_free(allocator, value);
            if (model->custom_storage[i] == NULL || model->custom_storage[key_count + i] == NULL) {
                result = oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
                goto cleanup;
            }
            model->metadata.custom_count = (size_t)i + 1;
        }
        model->metadata.custom_keys = (const char *const *)model->custom_storage;
        model->metadata.custom_values = (const char *const *)model->custom_storage + key_count;
    }

    /* The default-domain opset is only reachable through the Model Editor API. */
    model->metadata.opset = -1;
    const OrtModelEditorApi *editor = ort_api->GetModelEditorApi();
    int opset = 0;
    if (editor != NULL) {
        status = editor->SessionGetOpsetForDomain(model->session->session, "", &opset);
        if (status == NULL)
            model->metadata.opset = opset;
        else
            ort_api->ReleaseStatus(status);
    }

cleanup:
    if (keys != NULL) {
        for (int64_t i = 0; i < key_count; i++)
            ort_free(allocator, keys[i]);
        ort_free(allocator, keys);
    }
    char *strings[4] = {producer, graph, domain, description};
    for (int i = 0; i < 4; i++)
        if (strings[i] != NULL)
            ort_free(allocator, strings[i]);
    ort_api->ReleaseModelMetadata(metadata);
    return result;
}

static oxs_status_t create_session_options(const oxs_model_t *model, OrtSessionOptions **out,
                                           char *error, size_t error_size)
{
    const oxs_options_t *options = &model->server->options;
    OrtSessionOptions *session_options = NULL;
    OrtStatus *status = ort_api->CreateSessionOptions(&session_options);
    if (status != NULL)
        return take_status(status, OXS_ERR_INTERNAL, error, error_size,
                           "creating session options failed");

    GraphOptimizationLevel level = ORT_ENABLE_ALL;
    switch (options->graph_optimization) {
    case OXS_GRAPH_OPT_DISABLE:
        level = ORT_DISABLE_ALL;
        break;
    case OXS_GRAPH_OPT_BASIC:
        level = ORT_ENABLE_BASIC;
        break;
    case OXS_GRAPH_OPT_EXTENDED:
        level = ORT_ENABLE_EXTENDED;
        break;
    case OXS_GRAPH_OPT_ALL:
        level = ORT_ENABLE_ALL;
        break;
    }

    char optimized_path[4096];
    if ((status = ort_api->DisablePerSessionThreads(session_options)) != NULL ||
        (status = ort_api->SetSessionGraphOptimizationLevel(session_options, level)) != NULL ||
        (status = options->enable_mem_arena ? ort_api->EnableCpuMemArena(session_options)
                                            : ort_api->DisableCpuMemArena(session_options)) != NULL ||
        (status = options->enable_mem_pattern ? ort_api->EnableMemPattern(session_options)
                                              : ort_api->DisableMemPattern(session_options)) != NULL)
        goto failed;

    if (model->server->optimized_model_dir != NULL) {
        int n = snprintf(optimized_path, sizeof(optimized_path), "%s/%s-%lld.optimized.onnx",
                         model->server->optimized_model_dir, model->name,
                         (long long)model->version);
        if (n < 0 || (size_t)n >= sizeof(optimized_path)) {
            ort_api->ReleaseSessionOptions(session_options);
            return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                             "optimized model folder path is too long");
        }
        if ((status = ort_api->SetOptimizedModelFilePath(session_options, optimized_path)) != NULL)
            goto failed;
    }

    *out = session_options;
    return OXS_OK;

failed:
    ort_api->ReleaseSessionOptions(session_options);
    return take_status(status, OXS_ERR_INTERNAL, error, error_size, "setting session options failed");
}

oxs_status_t oxs__session_load(oxs_model_t *model, const char *path, char *error,
                               size_t error_size)
{
    OrtSessionOptions *session_options = NULL;
    OrtAllocator *allocator = NULL;
    oxs_status_t result;
    char context[300];

    model->session = oxs__calloc(&model->server->allocator, 1, sizeof(*model->session));
    if (model->session == NULL)
        return oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");

    result = create_session_options(model, &session_options, error, error_size);
    if (result != OXS_OK)
        return result;

    OrtStatus *status = ort_api->CreateSession(ort_env, path, session_options,
                                               &model->session->session);
    ort_api->ReleaseSessionOptions(session_options);
    if (status != NULL) {
        snprintf(context, sizeof(context), "model \"%s\": loading failed", model->name);
        return take_status(status, OXS_ERR_INVALID_ARGUMENT, error, error_size, context);
    }

    if ((status = ort_api->GetAllocatorWithDefaultOptions(&allocator)) != NULL)
        return take_status(status, OXS_ERR_INTERNAL, error, error_size, "no default allocator");

    if ((result = load_ios(model, allocator, true, error, error_size)) != OXS_OK ||
        (result = load_ios(model, allocator, false, error, error_size)) != OXS_OK ||
        (result = load_metadata(model, allocator, error, error_size)) != OXS_OK)
        return result;
    return OXS_OK;
}

void oxs__session_unload(oxs_model_t *model)
{
    const oxs_allocator_t *ours = &model->server->allocator;
    if (model->session != NULL && model->session->session != NULL)
        ort_api->ReleaseSession(model->session->session);
    oxs__free(ours, model->session);
    model->session = NULL;

    for (size_t i = 0; i < model->input_count; i++)
        oxs__free(ours, (void *)model->inputs[i].info.name);
    for (size_t i = 0; i < model->output_count; i++)
        oxs__free(ours, (void *)model->outputs[i].info.name);
    oxs__free(ours, model->inputs);
    oxs__free(ours, model->outputs);
    oxs__free(ours, model->input_names);
    oxs__free(ours, model->output_names);
    model->inputs = model->outputs = NULL;
    model->input_names = model->output_names = NULL;
    model->input_count = model->output_count = 0;

    if (model->custom_storage != NULL) {
        /* Keys come first, then values; a failed load leaves NULL slots, which free ignores. */
        for (size_t i = 0; i < model->custom_capacity * 2; i++)
            oxs__free(ours, model->custom_storage[i]);
    }
    oxs__free(ours, model->custom_storage);
    oxs__free(ours, model->metadata_strings);
    model->custom_storage = NULL;
    model->custom_capacity = 0;
    model->metadata_strings = NULL;
    model->metadata.producer_name = model->metadata.graph_name = "";
    model->metadata.domain = model->metadata.description = "";
    model->metadata.custom_count = 0;
    model->metadata.custom_keys = model->metadata.custom_values = NULL;
}

/* ---- Run ------------------------------------------------------------------------------------ */

__attribute__((format(printf, 3, 4))) static void fail_response(oxs_request_t *request,
                                                                  oxs_status_t code,
                                                                  const char *format, ...)
{
    oxs_response_t *response = &request->response;
    va_list args;
    va_start(args, format);
    vsnprintf(response->error, sizeof(response->error), format, args);
    va_end(args);
    response->status = code;
    oxs__redact_paths(response->error);
}

/* Maps ONNX Runtime's error codes: what the caller sent is a client error, the rest are not. */
static oxs_status_t status_from_ort(OrtErrorCode code)
{
    switch (code) {
    case ORT_INVALID_ARGUMENT:
    case ORT_INVALID_GRAPH:
        return OXS_ERR_INVALID_ARGUMENT;
    case ORT_NOT_IMPLEMENTED:
        return OXS_ERR_UNSUPPORTED;
    default:
        return OXS_ERR_RUNTIME;
    }
}

/* Creates an ONNX string tensor from a BYTES input's checked length-prefixed elements. */
static OrtStatus *create_string_tensor(const oxs__input_t *input, OrtValue **out)
{
    OrtAllocator *allocator = NULL;
    OrtStatus *status = ort_api->GetAllocatorWithDefaultOptions(&allocator);
    if (status == NULL)
        status = ort_api->CreateTensorAsOrtValue(allocator, input->shape, (size_t)input->rank,
                                                 ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING, out);
    const unsigned char *bytes = input->data;
    size_t at = 0;
    for (size_t i = 0; status == NULL && i < input->element_count; i++) {
        uint32_t len = (uint32_t)bytes[at] | (uint32_t)bytes[at + 1] << 8 |
                       (uint32_t)bytes[at + 2] << 16 | (uint32_t)bytes[at + 3] << 24;
        at += 4;
        char *element = NULL;
        status = ort_api->GetResizedStringTensorElementBuffer(*out, i, len, &element);
        if (status == NULL && len > 0)
            memcpy(element, bytes + at, len);
        at += len;
    }
    return status;
}

/* Writes a string tensor's count elements into request scratch memory as length-prefixed
 * elements, the layout of BYTES views. */
static OrtStatus *read_string_tensor(oxs_request_t *request, const OrtValue *value, size_t count,
                                     oxs_tensor_view_t *view, bool *out_of_memory)
{
    size_t total = 0;
    OrtStatus *status = ort_api->GetStringTensorDataLength(value, &total);
    if (status != NULL)
        return status;
    *out_of_memory = count > (SIZE_MAX - total) / 4;
    unsigned char *data = *out_of_memory ? NULL
                                         : oxs__arena_alloc(&request->arena, total + 4 * count + 1);
    if (data == NULL) {
        *out_of_memory = true;
        return NULL;
    }
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        size_t len = 0;
        if ((status = ort_api->GetStringTensorElementLength(value, i, &len)) != NULL)
            return status;
        if (len > UINT32_MAX || len + 4 > total + 4 * count - at) {
            *out_of_memory = true;
            return NULL;
        }
        for (int b = 0; b < 4; b++)
            data[at + (size_t)b] = (unsigned char)(len >> (8 * b));
        at += 4;
        if (len > 0 && (status = ort_api->GetStringTensorElement(value, len, i, data + at)) != NULL)
            return status;
        at += len;
    }
    view->data = data;
    view->byte_size = at;
    return NULL;
}

void oxs__session_run(oxs_request_t *request)
{
    oxs_model_t *model = request->model;
    oxs_response_t *response = &request->response;
    size_t input_count = request->input_count;
    size_t output_count = response->output_count;
    OrtStatus *status = NULL;

    /* Name and value arrays live in the request's arena, freed with the request. */
    OrtValue **input_values = oxs__arena_alloc(&request->arena, (input_count + 1) * sizeof(void *));
    const char **input_names = oxs__arena_alloc(&request->arena, (input_count + 1) * sizeof(void *));
    OrtValue **output_values = oxs__arena_alloc(&request->arena, (output_count + 1) * sizeof(void *));
    const char **output_names = oxs__arena_alloc(&request->arena, (output_count + 1) * sizeof(void *));
    if (input_values == NULL || input_names == NULL || output_values == NULL || output_names == NULL) {
        fail_response(request, OXS_ERR_OUT_OF_MEMORY, "model \"%s\": out of memory", model->name);
        return;
    }
    for (size_t i = 0; i < input_count; i++)
        input_values[i] = NULL;

    for (size_t i = 0; i < input_count; i++) {
        oxs__input_t *input = &request->inputs[i];
        input_names[i] = model->input_names[input->index];
        if (input->datatype == OXS_DT_BYTES) {
            status = create_string_tensor(input, &input_values[i]);
            if (status != NULL)
                break;
            continue;
        }
        status = ort_api->CreateTensorWithDataAsOrtValue(
            ort_cpu_info, input->data, input->byte_size, input->shape, (size_t)input->rank,
            onnx_from_datatype(input->datatype), &input_values[i]);
        if (status != NULL)
            break;
    }

    for (size_t i = 0; i < output_count; i++) {
        output_names[i] = model->output_names[response->outputs[i].index];
        output_values[i] = NULL;
    }

    if (status == NULL)
        status = ort_api->Run(model->session->session, NULL, input_names,
                              (const OrtValue *const *)input_values, input_count, output_names,
                              output_count, output_values);
    for (size_t i = 0; i < input_count; i++)
        if (input_values[i] != NULL)
            ort_api->ReleaseValue(input_values[i]);

    if (status != NULL) {
        oxs_status_t code = status_from_ort(ort_api->GetErrorCode(status));
        fail_response(request, code, "model \"%s\": inference failed: %s", model->name,
                      ort_api->GetErrorMessage(status));
        ort_api->ReleaseStatus(status);
        return;
    }

    /* The response owns every output value from here; oxs_request_destroy releases them. */
    for (size_t i = 0; i < output_count; i++)
        response->outputs[i].value = output_values[i];

    for (size_t i = 0; i < output_count; i++) {
        oxs__output_t *output = &response->outputs[i];
        OrtValue *value = output_values[i];
        OrtTensorTypeAndShapeInfo *info = NULL;
        int is_tensor = 0;
        ONNXTensorElementDataType element = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
        size_t rank = 0, count = 0;
        void *data = NULL;

        if ((status = ort_api->IsTensor(value, &is_tensor)) != NULL)
            break;
        if (!is_tensor) {
            fail_response(request, OXS_ERR_UNSUPPORTED,
                          "model \"%s\": output \"%s\" is not a tensor, which is not supported",
                          model->name, model->output_names[output->index]);
            return;
        }
        if ((status = ort_api->GetTensorTypeAndShape(value, &info)) != NULL)
            break;
        if ((status = ort_api->GetTensorElementType(info, &element)) == NULL &&
            (status = ort_api->GetDimensionsCount(info, &rank)) == NULL && rank <= OXS_MAX_DIMS &&
            (status = ort_api->GetDimensions(info, output->shape, rank)) == NULL)
            status = ort_api->GetTensorShapeElementCount(info, &count);
        ort_api->ReleaseTensorTypeAndShapeInfo(info);
        if (status != NULL)
            break;
        if (rank > OXS_MAX_DIMS) {
            fail_response(request, OXS_ERR_UNSUPPORTED,
                          "model \"%s\": output \"%s\" has more dims than supported",
                          model->name, model->output_names[output->index]);
            return;
        }
        oxs_datatype_t datatype = datatype_from_onnx(element);
        if (datatype == OXS_DT_INVALID) {
            fail_response(request, OXS_ERR_UNSUPPORTED,
                          "model \"%s\": output \"%s\" has an element type that is not "
                          "supported yet",
                          model->name, model->output_names[output->index]);
            return;
        }
        output->view.name = model->output_names[output->index];
        output->view.datatype = datatype;
        output->view.rank = (int)rank;
        output->view.shape = output->shape;
        output->view.element_count = count;
        if (datatype == OXS_DT_BYTES) {
            bool out_of_memory = false;
            if ((status = read_string_tensor(request, value, count, &output->view,
                                             &out_of_memory)) != NULL)
                break;
            if (out_of_memory) {
                fail_response(request, OXS_ERR_OUT_OF_MEMORY,
                              "model \"%s\": out of memory for output \"%s\"", model->name,
                              output->view.name);
                return;
            }
            continue;
        }
        if (count > 0 && (status = ort_api->GetTensorMutableData(value, &data)) != NULL)
            break;
        output->view.data = data;
        output->view.byte_size = count * oxs_datatype_size(datatype);
    }

    if (status != NULL) {
        fail_response(request, OXS_ERR_RUNTIME, "model \"%s\": reading outputs failed: %s",
                      model->name, ort_api->GetErrorMessage(status));
        ort_api->ReleaseStatus(status);
        return;
    }
    response->status = OXS_OK;
}

void oxs__value_release(void *value)
{
    if (value != NULL)
        ort_api->ReleaseValue((OrtValue *)value);
}
