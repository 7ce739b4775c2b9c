/*
 * ort_reference: runs one ONNX model with the ONNX Runtime C API in-process, without
 * libonnxserve, so end-to-end tests can compare the server's outputs with it.
 *
 * Usage: ort_reference [--graph-opt N] [--intra-op-threads N] MODEL.onnx OUTDIR INPUT...
 * where each INPUT is NAME:DATATYPE:DIMS:FILE. DATATYPE is a KServe v2 name (FP32, INT64, ...),
 * DIMS is like 1x3x48x192 (empty for a scalar) and FILE contains the raw little-endian elements.
 * NAME may contain ':' because the other fields are split off from the right, but FILE may not.
 *
 * Writes OUTDIR/OUTPUT.bin (raw elements, '/' in the output name replaced by '_') for every
 * model output and OUTDIR/outputs.json:
 *   {"outputs": [{"name": ..., "datatype": ..., "shape": [...], "file": ...}, ...]}
 * Exits 0 on success, 1 on any error with a message on stderr.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <onnxruntime_c_api.h>

#define MAX_DIMS 16

typedef struct datatype_entry {
    const char *name;
    ONNXTensorElementDataType onnx_type;
    size_t size;
} datatype_entry_t;

static const datatype_entry_t DATATYPES[] = {
    {"BOOL", ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL, 1},
    {"UINT8", ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8, 1},
    {"UINT16", ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16, 2},
    {"UINT32", ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32, 4},
    {"UINT64", ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64, 8},
    {"INT8", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8, 1},
    {"INT16", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16, 2},
    {"INT32", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32, 4},
    {"INT64", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, 8},
    {"FP16", ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, 2},
    {"FP32", ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, 4},
    {"FP64", ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE, 8},
    {"BF16", ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16, 2},
};

#define DATATYPE_COUNT (sizeof(DATATYPES) / sizeof(DATATYPES[0]))

/* One input from the command line, with its data read from FILE. */
typedef struct input_spec {
    char *name; /* points into a copy of the argument */
    const datatype_entry_t *datatype;
    int64_t dims[MAX_DIMS];
    size_t rank;
    void *data;
    size_t byte_size;
} input_spec_t;

static const OrtApi *g_ort;

static const datatype_entry_t *datatype_by_name(const char *name)
{
    for (size_t i = 0; i < DATATYPE_COUNT; i++) {
        if (strcmp(DATATYPES[i].name, name) == 0) {
            return &DATATYPES[i];
        }
    }
    return NULL;
}

static const datatype_entry_t *datatype_by_onnx_type(ONNXTensorElementDataType onnx_type)
{
    for (size_t i = 0; i < DATATYPE_COUNT; i++) {
        if (DATATYPES[i].onnx_type == onnx_type) {
            return &DATATYPES[i];
        }
    }
    return NULL;
}

/* Prints the message of an ONNX Runtime status and frees it. Returns 0 for a NULL status. */
static int check_ort(OrtStatus *status, const char *operation)
{
    if (status == NULL) {
        return 0;
    }
    fprintf(stderr, "ort_reference: %s failed: %s\n", operation, g_ort->GetErrorMessage(status));
    g_ort->ReleaseStatus(status);
    return -1;
}

static int parse_int_option(const char *text, int *out)
{
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < 0 || value > INT_MAX) {
        return -1;
    }
    *out = (int)value;
    return 0;
}

/* Parses DIMS ("1x3x48x192", or "" for a scalar) into dims and rank. */
static int parse_dims(const char *text, int64_t *dims, size_t *rank)
{
    *rank = 0;
    if (*text == '\0') {
        return 0;
    }
    const char *cursor = text;
    for (;;) {
        char *end = NULL;
        errno = 0;
        long long value = strtoll(cursor, &end, 10);
        if (errno != 0 || end == cursor || value < 0 || *rank == MAX_DIMS) {
            return -1;
        }
        dims[(*rank)++] = (int64_t)value;
        if (*end == '\0') {
            return 0;
        }
        if (*end != 'x') {
            return -1;
        }
        cursor = end + 1;
    }
}

/* Reads a whole file into a new buffer (at least one byte is allocated). */
static int read_file(const char *path, void **data, size_t *size)
{
    int result = -1;
    char *buffer = NULL;
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        fprintf(stderr, "ort_reference: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fseek(file, 0, SEEK_END) != 0) {
        goto cleanup;
    }
    long length = ftell(file);
    if (length < 0 || fseek(file, 0, SEEK_SET) != 0) {
        goto cleanup;
    }
    buffer = malloc((size_t)length + 1);
    if (buffer == NULL) {
        fprintf(stderr, "ort_reference: out of memory reading %s\n", path);
        goto cleanup;
    }
    if (fread(buffer, 1, (size_t)length, file) != (size_t)length) {
        fprintf(stderr, "ort_reference: cannot read %s\n", path);
        goto cleanup;
    }
    *data = buffer;
    *size = (size_t)length;
    buffer = NULL;
    result = 0;

cleanup:
    free(buffer);
    fclose(file);
    return result;
}

/* Parses NAME:DATATYPE:DIMS:FILE, splitting from the right, and reads FILE. */
static int parse_input(const char *argument, input_spec_t *spec)
{
    char *copy = strdup(argument);
    if (copy == NULL) {
        fprintf(stderr, "ort_reference: out of memory\n");
        return -1;
    }
    char *fields[3];
    for (int i = 2; i >= 0; i--) {
        char *colon = strrchr(copy, ':');
        if (colon == NULL) {
            fprintf(stderr,
                    "ort_reference: invalid input \"%s\": expected NAME:DATATYPE:DIMS:FILE\n",
                    argument);
            free(copy);
            return -1;
        }
        *colon = '\0';
        fields[i] = colon + 1;
    }
    spec->name = copy;
    spec->datatype = datatype_by_name(fields[0]);
    if (spec->datatype == NULL) {
        fprintf(stderr, "ort_reference: input \"%s\": unknown datatype \"%s\"\n", copy, fields[0]);
        return -1;
    }
    if (parse_dims(fields[1], spec->dims, &spec->rank) != 0) {
        fprintf(stderr,
                "ort_reference: input \"%s\": invalid dims \"%s\", expected like 1x3x48x192\n",
                copy, fields[1]);
        return -1;
    }
    size_t elements = 1;
    for (size_t i = 0; i < spec->rank; i++) {
        elements *= (size_t)spec->dims[i];
    }
    if (read_file(fields[2], &spec->data, &spec->byte_size) != 0) {
        return -1;
    }
    if (spec->byte_size != elements * spec->datatype->size) {
        fprintf(stderr,
                "ort_reference: input \"%s\": file %s has %zu bytes, shape %s of %s needs %zu\n",
                copy, fields[2], spec->byte_size, fields[1], spec->datatype->name,
                elements * spec->datatype->size);
        return -1;
    }
    return 0;
}

/* Writes s as a JSON string. */
static void write_json_string(FILE *file, const char *s)
{
    fputc('"', file);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            fputc('\\', file);
            fputc(*p, file);
        } else if (*p < 0x20) {
            fprintf(file, "\\u%04x", *p);
        } else {
            fputc(*p, file);
        }
    }
    fputc('"', file);
}

/* Writes the data file name NAME.bin into file_name, with each '/' of the name replaced by '_'. */
static int output_file_name(const char *name, char *file_name, size_t size)
{
    int written = snprintf(file_name, size, "%s.bin", name);
    if (written < 0 || (size_t)written >= size) {
        return -1;
    }
    for (char *p = file_name; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '_';
        }
    }
    return 0;
}

/* Writes one output tensor's data file and its outputs.json entry. */
static int write_output(const char *outdir, const char *name, const OrtValue *value, FILE *index,
                        int first)
{
    int result = -1;
    OrtTensorTypeAndShapeInfo *info = NULL;
    FILE *file = NULL;
    int is_tensor = 0;
    if (check_ort(g_ort->IsTensor(value, &is_tensor), "IsTensor") != 0) {
        return -1;
    }
    if (!is_tensor) {
        fprintf(stderr, "ort_reference: output \"%s\" is not a tensor\n", name);
        return -1;
    }
    if (check_ort(g_ort->GetTensorTypeAndShape(value, &info), "GetTensorTypeAndShape") != 0) {
        return -1;
    }

    ONNXTensorElementDataType onnx_type;
    size_t rank = 0;
    size_t elements = 0;
    int64_t dims[MAX_DIMS];
    void *data = NULL;
    if (check_ort(g_ort->GetTensorElementType(info, &onnx_type), "GetTensorElementType") != 0 ||
        check_ort(g_ort->GetDimensionsCount(info, &rank), "GetDimensionsCount") != 0) {
        goto cleanup;
    }
    if (rank > MAX_DIMS) {
        fprintf(stderr, "ort_reference: output \"%s\" has rank %zu, at most %d supported\n", name,
                rank, MAX_DIMS);
        goto cleanup;
    }
    if (check_ort(g_ort->GetDimensions(info, dims, rank), "GetDimensions") != 0 ||
        check_ort(g_ort->GetTensorShapeElementCount(info, &elements),
                  "GetTensorShapeElementCount") != 0 ||
        check_ort(g_ort->GetTensorMutableData((OrtValue *)value, &data), "GetTensorMutableData") !=
            0) {
        goto cleanup;
    }
    const datatype_entry_t *datatype = datatype_by_onnx_type(onnx_type);
    if (datatype == NULL) {
        fprintf(stderr,
                "ort_reference: output \"%s\" has ONNX element type %d with no KServe name\n",
                name, (int)onnx_type);
        goto cleanup;
    }

    char file_name[1024];
    char path[4096];
    if (output_file_name(name, file_name, sizeof(file_name)) != 0) {
        fprintf(stderr, "ort_reference: output name \"%s\" is too long\n", name);
        goto cleanup;
    }
    int written = snprintf(path, sizeof(path), "%s/%s", outdir, file_name);
    if (written < 0 || (size_t)written >= sizeof(path)) {
        fprintf(stderr, "ort_reference: output path for \"%s\" is too long\n", name);
        goto cleanup;
    }
    file = fopen(path, "wb");
    if (file == NULL) {
        fprintf(stderr, "ort_reference: cannot create %s: %s\n", path, strerror(errno));
        goto cleanup;
    }
    size_t byte_size = elements * datatype->size;
    if (byte_size > 0 && fwrite(data, 1, byte_size, file) != byte_size) {
        fprintf(stderr, "ort_reference: cannot write %s\n", path);
        goto cleanup;
    }

    fputs(first ? "\n  " : ",\n  ", index);
    fputs("{\"name\": ", index);
    write_json_string(index, name);
    fprintf(index, ", \"datatype\": \"%s\", \"shape\": [", datatype->name);
    for (size_t i = 0; i < rank; i++) {
        fprintf(index, "%s%lld", i == 0 ? "" : ", ", (long long)dims[i]);
    }
    fputs("], \"file\": ", index);
    write_json_string(index, file_name);
    fputc('}', index);
    result = 0;

cleanup:
    if (file != NULL && fclose(file) != 0 && result == 0) {
        fprintf(stderr, "ort_reference: cannot write %s\n", path);
        result = -1;
    }
    g_ort->ReleaseTensorTypeAndShapeInfo(info);
    return result;
}

static void print_usage(void)
{
    fputs("usage: ort_reference [--graph-opt 0|1|2|99] [--intra-op-threads N] MODEL.onnx OUTDIR "
          "NAME:DATATYPE:DIMS:FILE...\n"
          "  DATATYPE  KServe v2 name: BOOL UINT8 UINT16 UINT32 UINT64 INT8 INT16 INT32 INT64 FP16 "
          "FP32 FP64 BF16\n"
          "  DIMS      dimensions joined by 'x' (1x3x48x192), empty for a scalar\n"
          "  FILE      raw little-endian elements\n"
          "  --graph-opt          graph optimization level (default 99, all)\n"
          "  --intra-op-threads   intra-op thread count (default 1)\n",
          stderr);
}

int main(int argc, char **argv)
{
    int exit_code = 1;
    int graph_opt = 99;
    int intra_op_threads = 1;
    int arg = 1;
    OrtEnv *env = NULL;
    OrtSessionOptions *options = NULL;
    OrtSession *session = NULL;
    OrtMemoryInfo *memory_info = NULL;
    OrtAllocator *allocator = NULL;
    input_spec_t *specs = NULL;
    OrtValue **input_values = NULL;
    const char **input_names = NULL;
    char **output_names = NULL;
    OrtValue **output_values = NULL;
    size_t input_count = 0;
    size_t output_count = 0;
    FILE *index = NULL;
    char index_path[4096];

    while (arg + 1 < argc && strncmp(argv[arg], "--", 2) == 0) {
        int *target = NULL;
        if (strcmp(argv[arg], "--graph-opt") == 0) {
            target = &graph_opt;
        } else if (strcmp(argv[arg], "--intra-op-threads") == 0) {
            target = &intra_op_threads;
        }
        if (target == NULL || parse_int_option(argv[arg + 1], target) != 0) {
            print_usage();
            return 2;
        }
        arg += 2;
    }
    if (argc - arg < 2) {
        print_usage();
        return 2;
    }
    const char *model_path = argv[arg];
    const char *outdir = argv[arg + 1];
    input_count = (size_t)(argc - arg - 2);

    g_ort = OrtGetApiBase()->GetApi(ORT_API_VERSION);
    if (g_ort == NULL) {
        fprintf(stderr, "ort_reference: ONNX Runtime does not provide API version %d\n",
                ORT_API_VERSION);
        return 1;
    }

    specs = calloc(input_count + 1, sizeof(*specs));
    input_values = calloc(input_count + 1, sizeof(*input_values));
    input_names = calloc(input_count + 1, sizeof(*input_names));
    if (specs == NULL || input_values == NULL || input_names == NULL) {
        fprintf(stderr, "ort_reference: out of memory\n");
        goto cleanup;
    }
    for (size_t i = 0; i < input_count; i++) {
        if (parse_input(argv[arg + 2 + (int)i], &specs[i]) != 0) {
            goto cleanup;
        }
        input_names[i] = specs[i].name;
    }

    GraphOptimizationLevel level = (GraphOptimizationLevel)graph_opt;
    if (check_ort(g_ort->CreateEnv(ORT_LOGGING_LEVEL_WARNING, "ort_reference", &env),
                  "CreateEnv") != 0 ||
        check_ort(g_ort->CreateSessionOptions(&options), "CreateSessionOptions") != 0 ||
        check_ort(g_ort->SetSessionGraphOptimizationLevel(options, level),
                  "SetSessionGraphOptimizationLevel") != 0 ||
        check_ort(g_ort->SetIntraOpNumThreads(options, intra_op_threads), "SetIntraOpNumThreads") !=
            0 ||
        check_ort(g_ort->CreateSession(env, model_path, options, &session), "CreateSession") != 0 ||
        check_ort(g_ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &memory_info),
                  "CreateCpuMemoryInfo") != 0 ||
        check_ort(g_ort->GetAllocatorWithDefaultOptions(&allocator),
                  "GetAllocatorWithDefaultOptions") != 0 ||
        check_ort(g_ort->SessionGetOutputCount(session, &output_count), "SessionGetOutputCount") !=
            0) {
        goto cleanup;
    }

    for (size_t i = 0; i < input_count; i++) {
        input_spec_t *spec = &specs[i];
        if (check_ort(g_ort->CreateTensorWithDataAsOrtValue(
                          memory_info, spec->data, spec->byte_size, spec->dims, spec->rank,
                          spec->datatype->onnx_type, &input_values[i]),
                      "CreateTensorWithDataAsOrtValue") != 0) {
            fprintf(stderr, "ort_reference: for input \"%s\"\n", spec->name);
            goto cleanup;
        }
    }

    output_names = calloc(output_count + 1, sizeof(*output_names));
    output_values = calloc(output_count + 1, sizeof(*output_values));
    if (output_names == NULL || output_values == NULL) {
        fprintf(stderr, "ort_reference: out of memory\n");
        goto cleanup;
    }
    for (size_t i = 0; i < output_count; i++) {
        if (check_ort(g_ort->SessionGetOutputName(session, i, allocator, &output_names[i]),
                      "SessionGetOutputName") != 0) {
            goto cleanup;
        }
    }

    if (check_ort(g_ort->Run(session, NULL, input_names, (const OrtValue *const *)input_values,
                             input_count, (const char *const *)output_names, output_count,
                             output_values),
                  "Run") != 0) {
        goto cleanup;
    }

    int written = snprintf(index_path, sizeof(index_path), "%s/outputs.json", outdir);
    if (written < 0 || (size_t)written >= sizeof(index_path)) {
        fprintf(stderr, "ort_reference: output folder path is too long\n");
        goto cleanup;
    }
    index = fopen(index_path, "w");
    if (index == NULL) {
        fprintf(stderr, "ort_reference: cannot create %s: %s\n", index_path, strerror(errno));
        goto cleanup;
    }
    fputs("{\"outputs\": [", index);
    for (size_t i = 0; i < output_count; i++) {
        if (write_output(outdir, output_names[i], output_values[i], index, i == 0) != 0) {
            goto cleanup;
        }
    }
    fputs("\n]}\n", index);
    exit_code = 0;

cleanup:
    if (index != NULL && fclose(index) != 0 && exit_code == 0) {
        fprintf(stderr, "ort_reference: cannot write %s\n", index_path);
        exit_code = 1;
    }
    for (size_t i = 0; output_values != NULL && i < output_count; i++) {
        g_ort->ReleaseValue(output_values[i]);
    }
    for (size_t i = 0; output_names != NULL && i < output_count; i++) {
        if (output_names[i] != NULL) {
            check_ort(g_ort->AllocatorFree(allocator, output_names[i]), "AllocatorFree");
        }
    }
    free(output_values);
    free(output_names);
    for (size_t i = 0; input_values != NULL && i < input_count; i++) {
        g_ort->ReleaseValue(input_values[i]);
    }
    for (size_t i = 0; specs != NULL && i < input_count; i++) {
        free(specs[i].name);
        free(specs[i].data);
    }
    free(input_values);
    free(input_names);
    free(specs);
    if (g_ort != NULL) {
        g_ort->ReleaseMemoryInfo(memory_info);
        g_ort->ReleaseSession(session);
        g_ort->ReleaseSessionOptions(options);
        g_ort->ReleaseEnv(env);
    }
    return exit_code;
}
