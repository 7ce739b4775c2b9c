/*
 * ort_reference: runs ONNX models with the ONNX Runtime C API in-process, without
 * libonnxserve, so end-to-end tests can compare the server's outputs with it.
 *
 * Usage: ort_reference [--graph-opt N] [--intra-op-threads N] MODEL.onnx OUTDIR INPUT...
 *        ort_reference [--graph-opt N] [--intra-op-threads N] --batch JOBFILE
 * where each INPUT is NAME:DATATYPE:DIMS:FILE. DATATYPE is a KServe v2 name (FP32, INT64, ...),
 * DIMS is like 1x3x48x192 (empty for a scalar) and FILE contains the raw little-endian elements.
 * A BYTES file contains, per element, a 4-byte little-endian length and then that many bytes.
 * NAME may contain ':' because the other fields are split off from the right, but FILE may not.
 *
 * Writes OUTDIR/OUTPUT.bin (raw elements as above, '/' in the output name replaced by '_') for
 * every model output and OUTDIR/outputs.json:
 *   {"outputs": [{"name": ..., "datatype": ..., "shape": [...], "file": ...}, ...]}
 * Exits 0 on success, 1 on any error with a message on stderr.
 *
 * With --batch, JOBFILE has one model run per line: MODEL.onnx, OUTDIR and the INPUTs, separated
 * by tabs. The runs share one ONNX Runtime environment, so hundreds of small models take seconds,
 * not one process start each. The first line on stdout is "ONNX Runtime VERSION". A run that
 * fails writes its messages to OUTDIR/error.txt (a message names the failed call, such as
 * "CreateSession failed" or "Run failed") and the batch goes on with the next line. Exits 0 when
 * every line was attempted, 1 when JOBFILE cannot be read or an OUTDIR/error.txt cannot be
 * created.
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
    {"BYTES", ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING, 0}, /* size 0: elements vary in length */
};

#define DATATYPE_COUNT (sizeof(DATATYPES) / sizeof(DATATYPES[0]))

/* One input from the command line, with its data read from FILE. */
typedef struct input_spec {
    char *name; /* points into a copy of the argument */
    const datatype_entry_t *datatype;
    int64_t dims[MAX_DIMS];
    size_t rank;
    size_t elements;
    void *data;
    size_t byte_size;
} input_spec_t;

static const OrtApi *g_ort;

/* Destination of error messages: stderr, or in batch mode the current run's OUTDIR/error.txt. */
static FILE *g_errors;

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
    fprintf(g_errors, "ort_reference: %s failed: %s\n", operation, g_ort->GetErrorMessage(status));
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
        fprintf(g_errors, "ort_reference: cannot open %s: %s\n", path, strerror(errno));
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
        fprintf(g_errors, "ort_reference: out of memory reading %s\n", path);
        goto cleanup;
    }
    if (fread(buffer, 1, (size_t)length, file) != (size_t)length) {
        fprintf(g_errors, "ort_reference: cannot read %s\n", path);
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

static uint32_t read_u32_le(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Checks that a BYTES input's data contains exactly spec->elements length-prefixed elements. */
static int check_string_elements(const input_spec_t *spec, const char *path)
{
    const unsigned char *data = spec->data;
    size_t offset = 0;
    for (size_t i = 0; i < spec->elements; i++) {
        if (spec->byte_size - offset < 4) {
            fprintf(g_errors,
                    "ort_reference: input \"%s\": file %s ends inside the length of element %zu\n",
                    spec->name, path, i);
            return -1;
        }
        uint32_t length = read_u32_le(data + offset);
        offset += 4;
        if (spec->byte_size - offset < length) {
            fprintf(g_errors,
                    "ort_reference: input \"%s\": element %zu of file %s has length %u, only %zu "
                    "bytes follow\n",
                    spec->name, i, path, (unsigned)length, spec->byte_size - offset);
            return -1;
        }
        offset += length;
    }
    if (offset != spec->byte_size) {
        fprintf(g_errors,
                "ort_reference: input \"%s\": file %s has %zu bytes after its %zu elements\n",
                spec->name, path, spec->byte_size - offset, spec->elements);
        return -1;
    }
    return 0;
}

/* Parses NAME:DATATYPE:DIMS:FILE, splitting from the right, and reads FILE. */
static int parse_input(const char *argument, input_spec_t *spec)
{
    char *copy = strdup(argument);
    if (copy == NULL) {
        fprintf(g_errors, "ort_reference: out of memory\n");
        return -1;
    }
    char *fields[3];
    for (int i = 2; i >= 0; i--) {
        char *colon = strrchr(copy, ':');
        if (colon == NULL) {
            fprintf(g_errors,
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
        fprintf(g_errors, "ort_reference: input \"%s\": unknown datatype \"%s\"\n", copy,
                fields[0]);
        return -1;
    }
    if (parse_dims(fields[1], spec->dims, &spec->rank) != 0) {
        fprintf(g_errors,
                "ort_reference: input \"%s\": invalid dims \"%s\", expected like 1x3x48x192\n",
                copy, fields[1]);
        return -1;
    }
    size_t elements = 1;
    for (size_t i = 0; i < spec->rank; i++) {
        elements *= (size_t)spec->dims[i];
    }
    spec->elements = elements;
    if (read_file(fields[2], &spec->data, &spec->byte_size) != 0) {
        return -1;
    }
    if (spec->datatype->onnx_type == ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING) {
        return check_string_elements(spec, fields[2]);
    }
    if (spec->byte_size != elements * spec->datatype->size) {
        fprintf(g_errors,
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

/* Writes the elements of a string tensor to file, each as a 4-byte little-endian length and then
 * its bytes, the BYTES layout of the input files. */
static int write_string_elements(const OrtValue *value, size_t elements, FILE *file,
                                 const char *path)
{
    int result = -1;
    char *buffer = NULL;
    for (size_t i = 0; i < elements; i++) {
        size_t length = 0;
        if (check_ort(g_ort->GetStringTensorElementLength(value, i, &length),
                      "GetStringTensorElementLength") != 0) {
            goto cleanup;
        }
        if (length > UINT32_MAX) {
            fprintf(g_errors, "ort_reference: string element %zu has %zu bytes, at most %u fit\n",
                    i, length, (unsigned)UINT32_MAX);
            goto cleanup;
        }
        char *grown = realloc(buffer, length + 1);
        if (grown == NULL) {
            fprintf(g_errors, "ort_reference: out of memory\n");
            goto cleanup;
        }
        buffer = grown;
        if (check_ort(g_ort->GetStringTensorElement(value, length, i, buffer),
                      "GetStringTensorElement") != 0) {
            goto cleanup;
        }
        unsigned char prefix[4] = {(unsigned char)length, (unsigned char)(length >> 8),
                                   (unsigned char)(length >> 16), (unsigned char)(length >> 24)};
        if (fwrite(prefix, 1, sizeof(prefix), file) != sizeof(prefix) ||
            (length > 0 && fwrite(buffer, 1, length, file) != length)) {
            fprintf(g_errors, "ort_reference: cannot write %s\n", path);
            goto cleanup;
        }
    }
    result = 0;

cleanup:
    free(buffer);
    return result;
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
        fprintf(g_errors, "ort_reference: output \"%s\" is not a tensor\n", name);
        return -1;
    }
    if (check_ort(g_ort->GetTensorTypeAndShape(value, &info), "GetTensorTypeAndShape") != 0) {
        return -1;
    }

    ONNXTensorElementDataType onnx_type;
    size_t rank = 0;
    size_t elements = 0;
    int64_t dims[MAX_DIMS];
    if (check_ort(g_ort->GetTensorElementType(info, &onnx_type), "GetTensorElementType") != 0 ||
        check_ort(g_ort->GetDimensionsCount(info, &rank), "GetDimensionsCount") != 0) {
        goto cleanup;
    }
    if (rank > MAX_DIMS) {
        fprintf(g_errors, "ort_reference: output \"%s\" has rank %zu, at most %d supported\n", name,
                rank, MAX_DIMS);
        goto cleanup;
    }
    if (check_ort(g_ort->GetDimensions(info, dims, rank), "GetDimensions") != 0 ||
        check_ort(g_ort->GetTensorShapeElementCount(info, &elements),
                  "GetTensorShapeElementCount") != 0) {
        goto cleanup;
    }
    const datatype_entry_t *datatype = datatype_by_onnx_type(onnx_type);
    if (datatype == NULL) {
        fprintf(g_errors,
                "ort_reference: output \"%s\" has ONNX element type %d with no KServe name\n",
                name, (int)onnx_type);
        goto cleanup;
    }

    char file_name[1024];
    char path[4096];
    if (output_file_name(name, file_name, sizeof(file_name)) != 0) {
        fprintf(g_errors, "ort_reference: output name \"%s\" is too long\n", name);
        goto cleanup;
    }
    int written = snprintf(path, sizeof(path), "%s/%s", outdir, file_name);
    if (written < 0 || (size_t)written >= sizeof(path)) {
        fprintf(g_errors, "ort_reference: output path for \"%s\" is too long\n", name);
        goto cleanup;
    }
    file = fopen(path, "wb");
    if (file == NULL) {
        fprintf(g_errors, "ort_reference: cannot create %s: %s\n", path, strerror(errno));
        goto cleanup;
    }
    if (onnx_type == ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING) {
        if (write_string_elements(value, elements, file, path) != 0) {
            goto cleanup;
        }
    } else {
        void *data = NULL;
        if (check_ort(g_ort->GetTensorMutableData((OrtValue *)value, &data),
                      "GetTensorMutableData") != 0) {
            goto cleanup;
        }
        size_t byte_size = elements * datatype->size;
        if (byte_size > 0 && fwrite(data, 1, byte_size, file) != byte_size) {
            fprintf(g_errors, "ort_reference: cannot write %s\n", path);
            goto cleanup;
        }
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
        fprintf(g_errors, "ort_reference: cannot write %s\n", path);
        result = -1;
    }
    g_ort->ReleaseTensorTypeAndShapeInfo(info);
    return result;
}

/* Creates the OrtValue of one input. Numeric data is used in place, so spec must outlive the value.
 * String elements are copied into a tensor that ONNX Runtime allocates. */
static int create_input_value(const input_spec_t *spec, OrtMemoryInfo *memory_info,
                              OrtAllocator *allocator, OrtValue **value)
{
    if (spec->datatype->onnx_type != ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING) {
        return check_ort(g_ort->CreateTensorWithDataAsOrtValue(
                             memory_info, spec->data, spec->byte_size, spec->dims, spec->rank,
                             spec->datatype->onnx_type, value),
                         "CreateTensorWithDataAsOrtValue");
    }
    if (check_ort(g_ort->CreateTensorAsOrtValue(allocator, spec->dims, spec->rank,
                                                ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING, value),
                  "CreateTensorAsOrtValue") != 0) {
        return -1;
    }
    /* check_string_elements has checked every length against the data, so the loop stays in
     * bounds. GetResizedStringTensorElementBuffer keeps embedded NUL bytes, which
     * FillStringTensorElement would cut at. */
    const unsigned char *cursor = spec->data;
    for (size_t i = 0; i < spec->elements; i++) {
        uint32_t length = read_u32_le(cursor);
        cursor += 4;
        char *buffer = NULL;
        if (check_ort(g_ort->GetResizedStringTensorElementBuffer(*value, i, length, &buffer),
                      "GetResizedStringTensorElementBuffer") != 0) {
            return -1;
        }
        if (length > 0) {
            memcpy(buffer, cursor, length);
        }
        cursor += length;
    }
    return 0;
}

/* ONNX Runtime objects shared by every model run of the process. */
typedef struct reference_context {
    OrtEnv *env;
    OrtSessionOptions *options;
    OrtMemoryInfo *memory_info;
    OrtAllocator *allocator;
} reference_context_t;

/* Runs one model on the inputs given as NAME:DATATYPE:DIMS:FILE arguments and writes its outputs
 * to outdir. Errors go to g_errors. */
static int run_model(const reference_context_t *context, const char *model_path,
                     const char *outdir, size_t input_count, char *const *input_args)
{
    int result = -1;
    OrtSession *session = NULL;
    input_spec_t *specs = NULL;
    OrtValue **input_values = NULL;
    const char **input_names = NULL;
    char **output_names = NULL;
    OrtValue **output_values = NULL;
    size_t output_count = 0;
    FILE *index = NULL;
    char index_path[4096];

    specs = calloc(input_count + 1, sizeof(*specs));
    input_values = calloc(input_count + 1, sizeof(*input_values));
    input_names = calloc(input_count + 1, sizeof(*input_names));
    if (specs == NULL || input_values == NULL || input_names == NULL) {
        fprintf(g_errors, "ort_reference: out of memory\n");
        goto cleanup;
    }
    for (size_t i = 0; i < input_count; i++) {
        if (parse_input(input_args[i], &specs[i]) != 0) {
            goto cleanup;
        }
        input_names[i] = specs[i].name;
    }

    if (check_ort(g_ort->CreateSession(context->env, model_path, context->options, &session),
                  "CreateSession") != 0 ||
        check_ort(g_ort->SessionGetOutputCount(session, &output_count), "SessionGetOutputCount") !=
            0) {
        goto cleanup;
    }

    for (size_t i = 0; i < input_count; i++) {
        if (create_input_value(&specs[i], context->memory_info, context->allocator,
                               &input_values[i]) != 0) {
            fprintf(g_errors, "ort_reference: for input \"%s\"\n", specs[i].name);
            goto cleanup;
        }
    }

    output_names = calloc(output_count + 1, sizeof(*output_names));
    output_values = calloc(output_count + 1, sizeof(*output_values));
    if (output_names == NULL || output_values == NULL) {
        fprintf(g_errors, "ort_reference: out of memory\n");
        goto cleanup;
    }
    for (size_t i = 0; i < output_count; i++) {
        if (check_ort(g_ort->SessionGetOutputName(session, i, context->allocator, &output_names[i]),
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
        fprintf(g_errors, "ort_reference: output folder path is too long\n");
        goto cleanup;
    }
    index = fopen(index_path, "w");
    if (index == NULL) {
        fprintf(g_errors, "ort_reference: cannot create %s: %s\n", index_path, strerror(errno));
        goto cleanup;
    }
    fputs("{\"outputs\": [", index);
    for (size_t i = 0; i < output_count; i++) {
        if (write_output(outdir, output_names[i], output_values[i], index, i == 0) != 0) {
            goto cleanup;
        }
    }
    fputs("\n]}\n", index);
    result = 0;

cleanup:
    if (index != NULL && fclose(index) != 0 && result == 0) {
        fprintf(g_errors, "ort_reference: cannot write %s\n", index_path);
        result = -1;
    }
    for (size_t i = 0; output_values != NULL && i < output_count; i++) {
        g_ort->ReleaseValue(output_values[i]);
    }
    for (size_t i = 0; output_names != NULL && i < output_count; i++) {
        if (output_names[i] != NULL) {
            check_ort(g_ort->AllocatorFree(context->allocator, output_names[i]), "AllocatorFree");
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
    g_ort->ReleaseSession(session);
    return result;
}

/* Splits line in place at each tab into at most max_fields fields. Returns the field count, or
 * -1 when the line has more fields. */
static int split_tabs(char *line, char **fields, int max_fields)
{
    int count = 0;
    char *cursor = line;
    for (;;) {
        if (count == max_fields) {
            return -1;
        }
        fields[count++] = cursor;
        char *tab = strchr(cursor, '\t');
        if (tab == NULL) {
            return count;
        }
        *tab = '\0';
        cursor = tab + 1;
    }
}

#define MAX_BATCH_FIELDS 258 /* MODEL, OUTDIR and up to 256 inputs */

/* Runs every line of a job file (MODEL, OUTDIR, INPUT... separated by tabs). A failed run leaves
 * its messages in OUTDIR/error.txt and does not stop the batch. */
static int run_batch(const reference_context_t *context, const char *job_path)
{
    int result = -1;
    char *line = NULL;
    size_t capacity = 0;
    FILE *jobs = fopen(job_path, "r");
    if (jobs == NULL) {
        fprintf(stderr, "ort_reference: cannot open %s: %s\n", job_path, strerror(errno));
        return -1;
    }
    printf("ONNX Runtime %s\n", OrtGetApiBase()->GetVersionString());
    fflush(stdout);
    for (size_t line_number = 1;; line_number++) {
        errno = 0;
        ssize_t length = getline(&line, &capacity, jobs);
        if (length < 0) {
            if (errno != 0) {
                fprintf(stderr, "ort_reference: cannot read %s: %s\n", job_path, strerror(errno));
                goto cleanup;
            }
            break;
        }
        if (length > 0 && line[length - 1] == '\n') {
            line[--length] = '\0';
        }
        if (length == 0) {
            continue;
        }
        char *fields[MAX_BATCH_FIELDS];
        int field_count = split_tabs(line, fields, MAX_BATCH_FIELDS);
        if (field_count < 2) {
            fprintf(stderr, "ort_reference: %s:%zu: expected MODEL, OUTDIR and %s\n", job_path,
                    line_number,
                    field_count < 0 ? "at most 256 inputs" : "the inputs, separated by tabs");
            goto cleanup;
        }

        char error_path[4096];
        int written = snprintf(error_path, sizeof(error_path), "%s/error.txt", fields[1]);
        if (written < 0 || (size_t)written >= sizeof(error_path)) {
            fprintf(stderr, "ort_reference: %s:%zu: output folder path is too long\n", job_path,
                    line_number);
            goto cleanup;
        }
        g_errors = fopen(error_path, "w");
        if (g_errors == NULL) {
            fprintf(stderr, "ort_reference: cannot create %s: %s\n", error_path, strerror(errno));
            g_errors = stderr;
            goto cleanup;
        }
        int run_result = run_model(context, fields[0], fields[1], (size_t)(field_count - 2),
                                   fields + 2);
        int close_result = fclose(g_errors);
        g_errors = stderr;
        if (close_result != 0) {
            fprintf(stderr, "ort_reference: cannot write %s\n", error_path);
            goto cleanup;
        }
        if (run_result == 0 && remove(error_path) != 0) {
            fprintf(stderr, "ort_reference: cannot remove %s: %s\n", error_path, strerror(errno));
            goto cleanup;
        }
    }
    result = 0;

cleanup:
    free(line);
    fclose(jobs);
    return result;
}

static void print_usage(void)
{
    fputs("usage: ort_reference [--graph-opt 0|1|2|99] [--intra-op-threads N] MODEL.onnx OUTDIR "
          "NAME:DATATYPE:DIMS:FILE...\n"
          "       ort_reference [--graph-opt 0|1|2|99] [--intra-op-threads N] --batch JOBFILE\n"
          "  DATATYPE  KServe v2 name: BOOL UINT8 UINT16 UINT32 UINT64 INT8 INT16 INT32 INT64 FP16 "
          "FP32 FP64 BF16 BYTES\n"
          "  DIMS      dimensions joined by 'x' (1x3x48x192), empty for a scalar\n"
          "  FILE      raw little-endian elements; for BYTES, per element a 4-byte little-endian\n"
          "            length and then its bytes\n"
          "  --graph-opt          graph optimization level (default 99, all)\n"
          "  --intra-op-threads   intra-op thread count (default 1)\n"
          "  --batch JOBFILE      run each line of JOBFILE: MODEL.onnx, OUTDIR and the INPUTs,\n"
          "                       separated by tabs; a failed run writes OUTDIR/error.txt\n",
          stderr);
}

int main(int argc, char **argv)
{
    int exit_code = 1;
    int graph_opt = 99;
    int intra_op_threads = 1;
    const char *job_path = NULL;
    int arg = 1;
    reference_context_t context = {0};

    g_errors = stderr;
    while (arg + 1 < argc && strncmp(argv[arg], "--", 2) == 0) {
        int *target = NULL;
        if (strcmp(argv[arg], "--batch") == 0) {
            job_path = argv[arg + 1];
            arg += 2;
            continue;
        }
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
    if (job_path != NULL ? arg != argc : argc - arg < 2) {
        print_usage();
        return 2;
    }

    g_ort = OrtGetApiBase()->GetApi(ORT_API_VERSION);
    if (g_ort == NULL) {
        fprintf(stderr, "ort_reference: ONNX Runtime does not provide API version %d\n",
                ORT_API_VERSION);
        return 1;
    }

    GraphOptimizationLevel level = (GraphOptimizationLevel)graph_opt;
    if (check_ort(g_ort->CreateEnv(ORT_LOGGING_LEVEL_WARNING, "ort_reference", &context.env),
                  "CreateEnv") != 0 ||
        check_ort(g_ort->CreateSessionOptions(&context.options), "CreateSessionOptions") != 0 ||
        check_ort(g_ort->SetSessionGraphOptimizationLevel(context.options, level),
                  "SetSessionGraphOptimizationLevel") != 0 ||
        check_ort(g_ort->SetIntraOpNumThreads(context.options, intra_op_threads),
                  "SetIntraOpNumThreads") != 0 ||
        check_ort(g_ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault,
                                             &context.memory_info),
                  "CreateCpuMemoryInfo") != 0 ||
        check_ort(g_ort->GetAllocatorWithDefaultOptions(&context.allocator),
                  "GetAllocatorWithDefaultOptions") != 0) {
        goto cleanup;
    }

    if (job_path != NULL) {
        exit_code = run_batch(&context, job_path) == 0 ? 0 : 1;
    } else {
        exit_code = run_model(&context, argv[arg], argv[arg + 1], (size_t)(argc - arg - 2),
                              argv + arg + 2) == 0
                        ? 0
                        : 1;
    }

cleanup:
    g_ort->ReleaseMemoryInfo(context.memory_info);
    g_ort->ReleaseSessionOptions(context.options);
    g_ort->ReleaseEnv(context.env);
    return exit_code;
}
