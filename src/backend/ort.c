/*
 * ONNX Runtime backend: the process-wide environment, one session per model, introspection
 * and Run. The only globals in the library live here: the API table and the environment,
 * created under a mutex by the first server and released with the last one.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <onnxruntime_c_api.h>

#include "common/bytes.h"
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
    const oxs_model_config_t *config = &model->config.config;
    OrtSessionOptions *session_options = NULL;
    OrtStatus *status = ort_api->CreateSessionOptions(&session_options);
    if (status != NULL)
        return take_status(status, OXS_ERR_INTERNAL, error, error_size,
                           "creating session options failed");

    GraphOptimizationLevel level = ORT_ENABLE_ALL;
    switch (config->graph_optimization) {
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
    /* intra_op_threads in config.json gives the model its own pools instead of the global ones. */
    if (config->intra_op_threads > 0) {
        if ((status = ort_api->SetIntraOpNumThreads(session_options,
                                                    config->intra_op_threads)) != NULL ||
            (status = ort_api->SetInterOpNumThreads(session_options,
                                                    config->inter_op_threads)) != NULL)
            goto failed;
    } else if ((status = ort_api->DisablePerSessionThreads(session_options)) != NULL) {
        goto failed;
    }
    if ((status = ort_api->SetSessionGraphOptimizationLevel(session_options, level)) != NULL ||
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

/* Tells whether this ONNX Runtime build has the named execution provider. */
static bool provider_available(const char *name)
{
    char **providers = NULL;
    int count = 0;
    OrtStatus *status = ort_api->GetAvailableProviders(&providers, &count);
    if (status != NULL) {
        ort_api->ReleaseStatus(status);
        return false;
    }
    bool found = false;
    for (int i = 0; i < count && !found; i++)
        found = strcmp(providers[i], name) == 0;
    status = ort_api->ReleaseAvailableProviders(providers, count);
    if (status != NULL)
        ort_api->ReleaseStatus(status);
    return found;
}

/* Checks the configuration's providers and GPU groups against this build of ONNX Runtime:
 * GPU work falls back to the CPU only where the configuration allows it. */
static oxs_status_t check_providers(oxs_model_t *model, char *error, size_t error_size)
{
    oxs_model_config_t *config = &model->config.config;
    bool cuda = provider_available("CUDAExecutionProvider");
    bool usable = false;
    for (int i = 0; i < config->execution_provider_count; i++) {
        oxs_execution_provider_t provider = config->execution_providers[i];
        usable = usable || provider == OXS_EP_CPU;
        if (provider == OXS_EP_CUDA || provider == OXS_EP_TENSORRT) {
            const char *name = provider == OXS_EP_CUDA ? "CUDAExecutionProvider"
                                                       : "TensorrtExecutionProvider";
            /* NOTE: sessions run on the CPU until GPU instances are bound to their devices,
             * so an available GPU provider is not appended yet. */
            oxs_log_field_t fields[] = {{.key = "provider", .str = name},
                                        {.key = "available", .num = provider_available(name)}};
            oxs__log(model->server, OXS_LOG_WARN, model->name,
                     "execution provider not used: this build runs models on the CPU", fields, 2);
        }
    }
    if (!usable)
        return oxs__fail(OXS_ERR_UNSUPPORTED, error, error_size,
                         "%s: execution_providers: none of the listed providers can run here; "
                         "this ONNX Runtime build has cpu only, expected \"cpu\" in the list",
                         model->config.file);
    for (int g = 0; g < config->instance_group_count; g++) {
        oxs_instance_group_t *group = &config->instance_groups[g];
        if (group->kind != OXS_INSTANCE_GPU || cuda)
            continue;
        if (!config->allow_cpu_fallback)
            return oxs__fail(OXS_ERR_UNSUPPORTED, error, error_size,
                             "%s: instance_group[%d].kind: gpu, but no GPU is usable: this ONNX "
                             "Runtime build has no CUDA execution provider; set "
                             "\"allow_cpu_fallback\": true or \"kind\": \"cpu\"",
                             model->config.file, g);
        group->kind = OXS_INSTANCE_CPU;
        group->gpu_count = 0;
        oxs_log_field_t fields[] = {{.key = "instance_group", .num = g}};
        oxs__log(model->server, OXS_LOG_WARN, model->name,
                 "no usable GPU: instance group runs on the CPU (allow_cpu_fallback)", fields, 1);
    }
    return OXS_OK;
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
    if ((result = check_providers(model, error, error_size)) != OXS_OK)
        return result;

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
        uint32_t len = oxs__load_u32_le(bytes + at);
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

/* Runs the model on inputs for the model outputs listed in output_indexes and stores the
 * values, owned by the caller, in values. Name and value arrays come from arena. */
static OrtStatus *run_values(oxs_model_t *model, const oxs__input_t *inputs, size_t input_count,
                             const int *output_indexes, size_t output_count,
                             OrtRunOptions *run_options, oxs__arena_t *arena, OrtValue **values,
                             bool *out_of_memory, int64_t *infer_span)
{
    OrtStatus *status = NULL;
    OrtValue **input_values = oxs__arena_alloc(arena, (input_count + 1) * sizeof(void *));
    const char **input_names = oxs__arena_alloc(arena, (input_count + 1) * sizeof(void *));
    const char **output_names = oxs__arena_alloc(arena, (output_count + 1) * sizeof(void *));
    *out_of_memory = input_values == NULL || input_names == NULL || output_names == NULL;
    if (*out_of_memory)
        return NULL;

    for (size_t i = 0; i < input_count; i++)
        input_values[i] = NULL;
    for (size_t i = 0; i < input_count && status == NULL; i++) {
        const oxs__input_t *input = &inputs[i];
        input_names[i] = model->input_names[input->index];
        if (input->datatype == OXS_DT_BYTES)
            status = create_string_tensor(input, &input_values[i]);
        else
            status = ort_api->CreateTensorWithDataAsOrtValue(
                ort_cpu_info, input->data, input->byte_size, input->shape, (size_t)input->rank,
                onnx_from_datatype(input->datatype), &input_values[i]);
    }
    for (size_t i = 0; i < output_count; i++) {
        output_names[i] = model->output_names[output_indexes[i]];
        values[i] = NULL;
    }

    infer_span[0] = oxs__now_us();
    if (status == NULL)
        status = ort_api->Run(model->session->session, run_options, input_names,
                              (const OrtValue *const *)input_values, input_count, output_names,
                              output_count, values);
    infer_span[1] = oxs__now_us();
    for (size_t i = 0; i < input_count; i++)
        if (input_values[i] != NULL)
            ort_api->ReleaseValue(input_values[i]);
    return status;
}

/* Fills a view's type and shape from a tensor value. Returns an unsupported-output message in
 * problem (NULL when fine). */
static OrtStatus *describe_value(OrtValue *value, oxs_tensor_view_t *view, int64_t *shape,
                                 const char **problem)
{
    OrtTensorTypeAndShapeInfo *info = NULL;
    int is_tensor = 0;
    ONNXTensorElementDataType element = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    size_t rank = 0, count = 0;
    OrtStatus *status;

    *problem = NULL;
    if ((status = ort_api->IsTensor(value, &is_tensor)) != NULL)
        return status;
    if (!is_tensor) {
        *problem = "is not a tensor, which is not supported";
        return NULL;
    }
    if ((status = ort_api->GetTensorTypeAndShape(value, &info)) != NULL)
        return status;
    if ((status = ort_api->GetTensorElementType(info, &element)) == NULL &&
        (status = ort_api->GetDimensionsCount(info, &rank)) == NULL && rank <= OXS_MAX_DIMS &&
        (status = ort_api->GetDimensions(info, shape, rank)) == NULL)
        status = ort_api->GetTensorShapeElementCount(info, &count);
    ort_api->ReleaseTensorTypeAndShapeInfo(info);
    if (status != NULL)
        return status;
    if (rank > OXS_MAX_DIMS) {
        *problem = "has more dims than supported";
        return NULL;
    }
    view->datatype = datatype_from_onnx(element);
    if (view->datatype == OXS_DT_INVALID) {
        *problem = "has an element type that is not supported";
        return NULL;
    }
    view->rank = (int)rank;
    view->shape = shape;
    view->element_count = count;
    view->byte_size = count * oxs_datatype_size(view->datatype);
    return NULL;
}

void oxs__session_run(oxs_request_t *request, void *run_options)
{
    oxs_model_t *model = request->model;
    oxs_response_t *response = &request->response;
    size_t output_count = response->output_count;
    bool out_of_memory = false;

    OrtValue **values = oxs__arena_alloc(&request->arena, (output_count + 1) * sizeof(void *));
    int *indexes = oxs__arena_alloc(&request->arena, (output_count + 1) * sizeof(int));
    if (values == NULL || indexes == NULL) {
        fail_response(request, OXS_ERR_OUT_OF_MEMORY, "model \"%s\": out of memory", model->name);
        return;
    }
    for (size_t i = 0; i < output_count; i++)
        indexes[i] = response->outputs[i].index;

    OrtStatus *status = run_values(model, request->inputs, request->input_count, indexes,
                                   output_count, run_options, &request->arena, values,
                                   &out_of_memory, response->infer_span_us);
    if (out_of_memory) {
        fail_response(request, OXS_ERR_OUT_OF_MEMORY, "model \"%s\": out of memory", model->name);
        return;
    }
    if (status != NULL) {
        oxs_status_t code = status_from_ort(ort_api->GetErrorCode(status));
        if (request->canceled)
            code = OXS_ERR_CANCELED;
        fail_response(request, code, "model \"%s\": inference failed: %s", model->name,
                      ort_api->GetErrorMessage(status));
        ort_api->ReleaseStatus(status);
        return;
    }

    /* The response owns every output value from here; oxs_request_destroy releases them. */
    for (size_t i = 0; i < output_count; i++)
        response->outputs[i].value = values[i];

    for (size_t i = 0; i < output_count; i++) {
        oxs__output_t *output = &response->outputs[i];
        const char *problem = NULL;
        void *data = NULL;
        output->view.name = model->output_names[output->index];
        if ((status = describe_value(values[i], &output->view, output->shape, &problem)) != NULL)
            break;
        if (problem != NULL) {
            fail_response(request, OXS_ERR_UNSUPPORTED, "model \"%s\": output \"%s\" %s",
                          model->name, output->view.name, problem);
            return;
        }
        if (output->view.datatype == OXS_DT_BYTES) {
            if ((status = read_string_tensor(request, values[i], output->view.element_count,
                                             &output->view, &out_of_memory)) != NULL)
                break;
            if (out_of_memory) {
                fail_response(request, OXS_ERR_OUT_OF_MEMORY,
                              "model \"%s\": out of memory for output \"%s\"", model->name,
                              output->view.name);
                return;
            }
            continue;
        }
        if (output->view.element_count > 0 &&
            (status = ort_api->GetTensorMutableData(values[i], &data)) != NULL)
            break;
        output->view.data = data;
    }

    if (status != NULL) {
        fail_response(request, OXS_ERR_RUNTIME, "model \"%s\": reading outputs failed: %s",
                      model->name, ort_api->GetErrorMessage(status));
        ort_api->ReleaseStatus(status);
        return;
    }
    response->status = OXS_OK;
}

/* Fails every request of a batch with the same message. */
__attribute__((format(printf, 4, 5))) static void fail_batch(oxs_request_t **requests,
                                                             size_t count, oxs_status_t code,
                                                             const char *format, ...)
{
    char message[512];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof(message), format, args);
    va_end(args);
    for (size_t i = 0; i < count; i++)
        fail_response(requests[i], code, "%s", message);
}

/* Copies each request's rows of a batch output into its response: fixed-size elements into a
 * pooled buffer, BYTES into its arena. rows[r] is the number of rows of request r. */
static bool split_output(oxs_request_t **requests, size_t count, size_t slot, OrtValue *value,
                         const oxs_tensor_view_t *whole, const int64_t *rows)
{
    oxs__pool_t *pool = requests[0]->server->pool;
    size_t total_rows = (size_t)whole->shape[0];
    size_t row_elements = total_rows > 0 ? whole->element_count / total_rows : 0;
    const unsigned char *data = NULL;
    void *raw = NULL;
    if (whole->element_count > 0 && whole->datatype != OXS_DT_BYTES) {
        OrtStatus *status = ort_api->GetTensorMutableData(value, &raw);
        if (status != NULL) {
            ort_api->ReleaseStatus(status);
            return false;
        }
        data = raw;
    }

    size_t row = 0;
    for (size_t r = 0; r < count; r++) {
        oxs__output_t *output = &requests[r]->response.outputs[slot];
        output->view = *whole;
        memcpy(output->shape, whole->shape, (size_t)whole->rank * sizeof(int64_t));
        output->shape[0] = rows[r];
        output->view.shape = output->shape;
        output->view.element_count = (size_t)rows[r] * row_elements;
        if (whole->datatype == OXS_DT_BYTES) {
            /* Serialize this request's elements straight from the batch tensor. */
            size_t first = row * row_elements;
            size_t n = output->view.element_count;
            size_t bytes = 0;
            for (size_t e = 0; e < n; e++) {
                size_t len = 0;
                OrtStatus *status = ort_api->GetStringTensorElementLength(value, first + e, &len);
                if (status != NULL) {
                    ort_api->ReleaseStatus(status);
                    return false;
                }
                bytes += 4 + len;
            }
            unsigned char *out = oxs__arena_alloc(&requests[r]->arena, bytes + 1);
            if (out == NULL)
                return false;
            size_t at = 0;
            for (size_t e = 0; e < n; e++) {
                size_t len = 0;
                OrtStatus *status = ort_api->GetStringTensorElementLength(value, first + e, &len);
                if (status == NULL && len > 0)
                    status = ort_api->GetStringTensorElement(value, len, first + e, out + at + 4);
                if (status != NULL) {
                    ort_api->ReleaseStatus(status);
                    return false;
                }
                for (int b = 0; b < 4; b++)
                    out[at + (size_t)b] = (unsigned char)(len >> (8 * b));
                at += 4 + len;
            }
            output->view.data = out;
            output->view.byte_size = at;
        } else {
            size_t element_size = oxs_datatype_size(whole->datatype);
            size_t bytes = output->view.element_count * element_size;
            void *copy = oxs__pool_get(pool, bytes ? bytes : 1);
            if (copy == NULL)
                return false;
            if (bytes > 0)
                memcpy(copy, data + row * row_elements * element_size, bytes);
            output->pooled = copy;
            output->view.data = copy;
            output->view.byte_size = bytes;
        }
        row += (size_t)rows[r];
    }
    return true;
}

void oxs__session_run_batch(oxs_request_t **requests, size_t count, void *run_options)
{
    oxs_request_t *first = requests[0];
    oxs_model_t *model = first->model;
    oxs__pool_t *pool = first->server->pool;
    size_t input_count = first->input_count;
    size_t output_count = first->response.output_count;
    int64_t rows[OXS__MAX_BATCH_REQUESTS];
    bool out_of_memory = false;

    /* The batch's own arrays live in the first request's arena. */
    oxs__input_t *merged = oxs__arena_alloc(&first->arena, (input_count + 1) * sizeof(*merged));
    OrtValue **values = oxs__arena_alloc(&first->arena, (output_count + 1) * sizeof(*values));
    int *indexes = oxs__arena_alloc(&first->arena, (output_count + 1) * sizeof(*indexes));
    if (merged == NULL || values == NULL || indexes == NULL || count > OXS__MAX_BATCH_REQUESTS) {
        fail_batch(requests, count, OXS_ERR_OUT_OF_MEMORY, "model \"%s\": out of memory",
                   model->name);
        return;
    }

    /* Concatenate each input along dim 0, in the order of the first request's inputs. */
    int64_t total_rows = 0;
    for (size_t r = 0; r < count; r++) {
        rows[r] = requests[r]->inputs[0].shape[0];
        total_rows += rows[r];
    }
    size_t merged_count = 0;
    for (size_t i = 0; i < input_count; i++) {
        const oxs__input_t *model_input = &first->inputs[i];
        size_t bytes = 0;
        size_t elements = 0;
        for (size_t r = 0; r < count; r++) {
            const oxs__input_t *part = oxs__request_input(requests[r], model_input->index);
            bytes += part->byte_size;
            elements += part->element_count;
        }
        unsigned char *data = oxs__pool_get(pool, bytes ? bytes : 1);
        if (data == NULL) {
            out_of_memory = true;
            break;
        }
        merged[merged_count] = *model_input;
        merged[merged_count].data = data;
        merged[merged_count].byte_size = bytes;
        merged[merged_count].element_count = elements;
        merged[merged_count].shape[0] = total_rows;
        merged_count++;
        size_t at = 0;
        for (size_t r = 0; r < count; r++) {
            const oxs__input_t *part = oxs__request_input(requests[r], model_input->index);
            if (part->byte_size > 0)
                memcpy(data + at, part->data, part->byte_size);
            at += part->byte_size;
        }
    }
    for (size_t i = 0; i < output_count; i++)
        indexes[i] = first->response.outputs[i].index;

    OrtStatus *status = NULL;
    if (!out_of_memory)
        status = run_values(model, merged, merged_count, indexes, output_count, run_options,
                            &first->arena, values, &out_of_memory, first->response.infer_span_us);
    for (size_t r = 1; r < count; r++)
        memcpy(requests[r]->response.infer_span_us, first->response.infer_span_us,
               sizeof(first->response.infer_span_us));
    for (size_t i = 0; i < merged_count; i++)
        oxs__pool_put(pool, merged[i].data);
    if (out_of_memory) {
        fail_batch(requests, count, OXS_ERR_OUT_OF_MEMORY, "model \"%s\": out of memory",
                   model->name);
        return;
    }
    if (status != NULL) {
        fail_batch(requests, count, status_from_ort(ort_api->GetErrorCode(status)),
                   "model \"%s\": inference failed: %s", model->name,
                   ort_api->GetErrorMessage(status));
        ort_api->ReleaseStatus(status);
        return;
    }

    /* Split every output back along dim 0; the batch's values are released here. */
    bool ok = true;
    for (size_t i = 0; i < output_count; i++) {
        oxs_tensor_view_t whole = {.name = model->output_names[indexes[i]]};
        int64_t shape[OXS_MAX_DIMS];
        const char *problem = NULL;
        if (ok && (status = describe_value(values[i], &whole, shape, &problem)) != NULL) {
            fail_batch(requests, count, OXS_ERR_RUNTIME, "model \"%s\": reading outputs failed: %s",
                       model->name, ort_api->GetErrorMessage(status));
            ort_api->ReleaseStatus(status);
            ok = false;
        }
        if (ok && problem != NULL) {
            fail_batch(requests, count, OXS_ERR_UNSUPPORTED, "model \"%s\": output \"%s\" %s",
                       model->name, whole.name, problem);
            ok = false;
        }
        if (ok && (whole.rank < 1 || shape[0] != total_rows)) {
            fail_batch(requests, count, OXS_ERR_RUNTIME,
                       "model \"%s\": output \"%s\" has %lld rows for a batch of %lld; set "
                       "max_batch_size to 0 in config.json if dim 0 is not a batch dim",
                       model->name, whole.name, whole.rank < 1 ? 0LL : (long long)shape[0],
                       (long long)total_rows);
            ok = false;
        }
        if (ok && !split_output(requests, count, i, values[i], &whole, rows)) {
            fail_batch(requests, count, OXS_ERR_OUT_OF_MEMORY,
                       "model \"%s\": out of memory splitting output \"%s\"", model->name,
                       whole.name);
            ok = false;
        }
        ort_api->ReleaseValue(values[i]);
    }
    for (size_t r = 0; r < count && ok; r++)
        requests[r]->response.status = OXS_OK;
}

void *oxs__run_options_create(void)
{
    OrtRunOptions *options = NULL;
    OrtStatus *status = ort_api->CreateRunOptions(&options);
    if (status != NULL) {
        ort_api->ReleaseStatus(status);
        return NULL;
    }
    return options;
}

void oxs__run_options_destroy(void *options)
{
    if (options != NULL)
        ort_api->ReleaseRunOptions(options);
}

void oxs__run_options_terminate(void *options, bool terminate)
{
    OrtStatus *status = terminate ? ort_api->RunOptionsSetTerminate(options)
                                  : ort_api->RunOptionsUnsetTerminate(options);
    if (status != NULL)
        ort_api->ReleaseStatus(status);
}

void oxs__value_release(void *value)
{
    if (value != NULL)
        ort_api->ReleaseValue((OrtValue *)value);
}
