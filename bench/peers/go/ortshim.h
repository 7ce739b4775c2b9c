/*
 * A thin C layer over the ONNX Runtime C API for the Go peer. cgo cannot call the API's
 * function-pointer table directly, so each call the peer needs has a plain C function here.
 * Every function returns NULL on success, or an error message allocated with malloc that the
 * caller frees, and sets *invalid_argument when ONNX Runtime classed the error as the
 * caller's (ORT_INVALID_ARGUMENT).
 */
#ifndef ORTSHIM_H
#define ORTSHIM_H

#include <stddef.h>
#include <stdint.h>

#include <onnxruntime_c_api.h>

#define ORTSHIM_MAX_DIMS 8

typedef struct ortshim_model {
    OrtEnv *env;
    OrtSession *session;
    OrtMemoryInfo *cpu_memory;
    char *input_name;
    char *output_name;
    ONNXTensorElementDataType input_type;
    size_t input_rank;
    int64_t input_dims[ORTSHIM_MAX_DIMS]; /* -1 for a dynamic dim */
} ortshim_model_t;

/* The output of one run, held by ONNX Runtime until ortshim_release_output. */
typedef struct ortshim_output {
    OrtValue *value;
    const float *data;
    size_t count;
    size_t rank;
    int64_t dims[ORTSHIM_MAX_DIMS];
} ortshim_output_t;

char *ortshim_load(const char *path, int intra_op_threads, ortshim_model_t *model);
void ortshim_unload(ortshim_model_t *model);

/* Runs the model on count floats of the given shape. The input tensor wraps data without
 * copying it and is released before the function returns, so data need only live for the
 * call. On success the caller copies the output and then calls ortshim_release_output. */
char *ortshim_run(const ortshim_model_t *model, float *data, size_t count, const int64_t *dims,
                  size_t rank, ortshim_output_t *output, int *invalid_argument);
void ortshim_release_output(ortshim_output_t *output);

const char *ortshim_version(void);

#endif
