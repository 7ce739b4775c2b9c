#include "ortshim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const OrtApi *ort;

/* Returns the status's message as a new string, prefixed with what failed, and frees it. */
static char *take_error(OrtStatus *status, const char *what, int *invalid_argument)
{
    const char *message = ort->GetErrorMessage(status);
    if (invalid_argument != NULL)
        *invalid_argument = ort->GetErrorCode(status) == ORT_INVALID_ARGUMENT;
    size_t size = strlen(what) + strlen(message) + 3;
    char *text = malloc(size);
    if (text != NULL)
        snprintf(text, size, "%s: %s", what, message);
    ort->ReleaseStatus(status);
    return text;
}

static char *new_error(const char *message)
{
    return strdup(message);
}

const char *ortshim_version(void)
{
    return OrtGetApiBase()->GetVersionString();
}

/* Reads the first input's element type and dims into model. */
static char *read_input_info(ortshim_model_t *model)
{
    OrtTypeInfo *type_info;
    OrtStatus *status = ort->SessionGetInputTypeInfo(model->session, 0, &type_info);
    if (status != NULL)
        return take_error(status, "reading the input type", NULL);
    const OrtTensorTypeAndShapeInfo *tensor_info;
    char *error = NULL;
    size_t rank = 0;
    if ((status = ort->CastTypeInfoToTensorInfo(type_info, &tensor_info)) != NULL ||
        (status = ort->GetTensorElementType(tensor_info, &model->input_type)) != NULL ||
        (status = ort->GetDimensionsCount(tensor_info, &rank)) != NULL) {
        error = take_error(status, "reading the input type", NULL);
    } else if (tensor_info == NULL || rank > ORTSHIM_MAX_DIMS) {
        error = new_error("the model's first input is not a tensor of at most 8 dims");
    } else if ((status = ort->GetDimensions(tensor_info, model->input_dims, rank)) != NULL) {
        error = take_error(status, "reading the input dims", NULL);
    } else {
        model->input_rank = rank;
    }
    ort->ReleaseTypeInfo(type_info);
    return error;
}

char *ortshim_load(const char *path, int intra_op_threads, ortshim_model_t *model)
{
    memset(model, 0, sizeof(*model));
    if (ort == NULL)
        ort = OrtGetApiBase()->GetApi(ORT_API_VERSION);
    if (ort == NULL)
        return new_error("this ONNX Runtime library does not provide the API version of its header");

    OrtStatus *status = ort->CreateEnv(ORT_LOGGING_LEVEL_ERROR, "go-peer", &model->env);
    if (status != NULL)
        return take_error(status, "creating the environment", NULL);
    OrtSessionOptions *options;
    if ((status = ort->CreateSessionOptions(&options)) != NULL)
        return take_error(status, "creating session options", NULL);
    if ((status = ort->SetIntraOpNumThreads(options, intra_op_threads)) != NULL ||
        (status = ort->SetInterOpNumThreads(options, 1)) != NULL ||
        (status = ort->SetSessionExecutionMode(options, ORT_SEQUENTIAL)) != NULL ||
        (status = ort->SetSessionGraphOptimizationLevel(options, ORT_ENABLE_ALL)) != NULL ||
        (status = ort->AddSessionConfigEntry(options, "session.intra_op.allow_spinning", "0")) !=
            NULL ||
        (status = ort->CreateSession(model->env, path, options, &model->session)) != NULL) {
        ort->ReleaseSessionOptions(options);
        return take_error(status, "loading the model", NULL);
    }
    ort->ReleaseSessionOptions(options);

    OrtAllocator *allocator;
    if ((status = ort->GetAllocatorWithDefaultOptions(&allocator)) != NULL ||
        (status = ort->SessionGetInputName(model->session, 0, allocator, &model->input_name)) !=
            NULL ||
        (status = ort->SessionGetOutputName(model->session, 0, allocator, &model->output_name)) !=
            NULL ||
        (status = ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault,
                                           &model->cpu_memory)) != NULL)
        return take_error(status, "reading the model's inputs and outputs", NULL);
    return read_input_info(model);
}

void ortshim_unload(ortshim_model_t *model)
{
    OrtAllocator *allocator;
    OrtStatus *status = ort->GetAllocatorWithDefaultOptions(&allocator);
    if (status == NULL) {
        if (model->input_name != NULL)
            allocator->Free(allocator, model->input_name);
        if (model->output_name != NULL)
            allocator->Free(allocator, model->output_name);
    } else {
        ort->ReleaseStatus(status);
    }
    if (model->cpu_memory != NULL)
        ort->ReleaseMemoryInfo(model->cpu_memory);
    if (model->session != NULL)
        ort->ReleaseSession(model->session);
    if (model->env != NULL)
        ort->ReleaseEnv(model->env);
    memset(model, 0, sizeof(*model));
}

char *ortshim_run(const ortshim_model_t *model, float *data, size_t count, const int64_t *dims,
                  size_t rank, ortshim_output_t *output, int *invalid_argument)
{
    *invalid_argument = 0;
    memset(output, 0, sizeof(*output));
    OrtValue *input = NULL;
    OrtStatus *status = ort->CreateTensorWithDataAsOrtValue(
        model->cpu_memory, data, count * sizeof(float), dims, rank,
        ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &input);
    if (status != NULL)
        return take_error(status, "creating the input tensor", invalid_argument);

    const char *input_names[] = {model->input_name};
    const char *output_names[] = {model->output_name};
    status = ort->Run(model->session, NULL, input_names, (const OrtValue *const *)&input, 1,
                      output_names, 1, &output->value);
    ort->ReleaseValue(input);
    if (status != NULL)
        return take_error(status, "running the model", invalid_argument);

    OrtTensorTypeAndShapeInfo *info = NULL;
    ONNXTensorElementDataType type;
    char *error = NULL;
    if ((status = ort->GetTensorTypeAndShape(output->value, &info)) != NULL ||
        (status = ort->GetTensorElementType(info, &type)) != NULL ||
        (status = ort->GetDimensionsCount(info, &output->rank)) != NULL ||
        (status = ort->GetTensorShapeElementCount(info, &output->count)) != NULL) {
        error = take_error(status, "reading the output", NULL);
    } else if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || output->rank > ORTSHIM_MAX_DIMS) {
        error = new_error("the model's output is not a float tensor of at most 8 dims");
    } else if ((status = ort->GetDimensions(info, output->dims, output->rank)) != NULL ||
               (status = ort->GetTensorMutableData(output->value, (void **)&output->data)) !=
                   NULL) {
        error = take_error(status, "reading the output", NULL);
    }
    if (info != NULL)
        ort->ReleaseTensorTypeAndShapeInfo(info);
    if (error != NULL)
        ortshim_release_output(output);
    return error;
}

void ortshim_release_output(ortshim_output_t *output)
{
    if (output->value != NULL)
        ort->ReleaseValue(output->value);
    memset(output, 0, sizeof(*output));
}
