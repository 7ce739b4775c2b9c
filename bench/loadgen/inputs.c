/* Input tensors of onnxserve-bench: shapes from the model's metadata and the command line, values
 * from the seeded generator or from a KServe v2 request body in a file. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadgen.h"

typedef enum { KIND_FLOAT, KIND_SIGNED, KIND_UNSIGNED, KIND_BOOL } element_kind;

typedef struct {
  const char *name;
  size_t size;
  element_kind kind;
} datatype_info;

/* Datatypes with random values and binary encoding. FP16, BF16 and BYTES are not supported. */
static const datatype_info datatypes[] = {
    {"FP32", 4, KIND_FLOAT},    {"FP64", 8, KIND_FLOAT},    {"INT8", 1, KIND_SIGNED},
    {"INT16", 2, KIND_SIGNED},  {"INT32", 4, KIND_SIGNED},  {"INT64", 8, KIND_SIGNED},
    {"UINT8", 1, KIND_UNSIGNED}, {"UINT16", 2, KIND_UNSIGNED}, {"UINT32", 4, KIND_UNSIGNED},
    {"UINT64", 8, KIND_UNSIGNED}, {"BOOL", 1, KIND_BOOL},
};

static const datatype_info *find_datatype(const char *name) {
  for (size_t i = 0; i < sizeof(datatypes) / sizeof(datatypes[0]); i++) {
    if (strcmp(datatypes[i].name, name) == 0) return &datatypes[i];
  }
  return NULL;
}

static int check_datatype(const char *input, const char *datatype) {
  if (find_datatype(datatype) != NULL) return 0;
  fprintf(stderr,
          "onnxserve-bench: input \"%s\" has datatype \"%s\", which onnxserve-bench does not "
          "support; supported: FP32, FP64, INT8 to INT64, UINT8 to UINT64 and BOOL\n",
          input, datatype);
  return -1;
}

/* Stores value (of the tensor's kind) as element index, little-endian. */
static void store_element(bench_tensor *tensor, size_t index, double float_value,
                          int64_t int_value) {
  const datatype_info *info = find_datatype(tensor->datatype);
  unsigned char *target = tensor->data + index * tensor->element_size;
  uint64_t bits = 0;
  if (info->kind == KIND_FLOAT) {
    if (tensor->element_size == 4) {
      float narrow = (float)float_value;
      uint32_t narrow_bits;
      memcpy(&narrow_bits, &narrow, 4);
      bits = narrow_bits;
    } else {
      memcpy(&bits, &float_value, 8);
    }
  } else {
    bits = (uint64_t)int_value;
  }
  for (size_t byte = 0; byte < tensor->element_size; byte++) {
    target[byte] = (unsigned char)(bits >> (8 * byte));
  }
}

static int allocate_tensor(bench_tensor *tensor, const char *name, const char *datatype, int rank,
                           const int64_t *dims) {
  const datatype_info *info = find_datatype(datatype);
  tensor->name = strdup(name);
  snprintf(tensor->datatype, sizeof(tensor->datatype), "%s", datatype);
  tensor->rank = rank;
  tensor->element_size = info->size;
  size_t count = 1;
  for (int i = 0; i < rank; i++) {
    tensor->dims[i] = dims[i];
    if (dims[i] != 0 && count > SIZE_MAX / 16 / (size_t)dims[i]) {
      fprintf(stderr, "onnxserve-bench: input \"%s\" is too large\n", name);
      return -1;
    }
    count *= (size_t)dims[i];
  }
  tensor->element_count = count;
  tensor->data = calloc(count ? count : 1, info->size);
  if (tensor->name == NULL || tensor->data == NULL) {
    fprintf(stderr, "onnxserve-bench: out of memory for input \"%s\"\n", name);
    return -1;
  }
  return 0;
}

/* Fills the tensor with random values: floats in [0, 1), integers in [0, 100) (UINT8 in
 * [0, 255]), booleans 0 or 1. */
static void fill_random(bench_tensor *tensor, bench_rng *rng) {
  const datatype_info *info = find_datatype(tensor->datatype);
  for (size_t i = 0; i < tensor->element_count; i++) {
    uint64_t random = bench_rng_next(rng);
    switch (info->kind) {
    case KIND_FLOAT:
      store_element(tensor, i, (double)(random >> 11) * 0x1.0p-53, 0);
      break;
    case KIND_BOOL:
      store_element(tensor, i, 0, (int64_t)(random & 1));
      break;
    default:
      store_element(tensor, i, 0, info->size == 1 && info->kind == KIND_UNSIGNED
                                      ? (int64_t)(random % 256)
                                      : (int64_t)(random % 100));
      break;
    }
  }
}

static const bench_shape_option *find_shape_option(const bench_options *options,
                                                   const char *name) {
  for (int i = 0; i < options->shape_count; i++) {
    if (strcmp(options->shapes[i].name, name) == 0) return &options->shapes[i];
  }
  return NULL;
}

/* Resolves one input's shape from its metadata shape (NULL without metadata), --shape and
 * --batch. */
static int resolve_shape(const bench_options *options, const char *name, json_t *model_shape,
                         int *rank, int64_t *dims) {
  const bench_shape_option *shape_option = find_shape_option(options, name);
  int first_dynamic = 1;
  if (model_shape != NULL) {
    size_t model_rank = json_array_size(model_shape);
    if (model_rank > BENCH_MAX_RANK) {
      fprintf(stderr, "onnxserve-bench: input \"%s\" has rank %zu, above the limit of %d\n", name,
              model_rank, BENCH_MAX_RANK);
      return -1;
    }
    first_dynamic = model_rank > 0 && json_integer_value(json_array_get(model_shape, 0)) < 0;
    if (shape_option == NULL) {
      *rank = (int)model_rank;
      for (size_t i = 0; i < model_rank; i++) {
        dims[i] = json_integer_value(json_array_get(model_shape, i));
      }
      if (first_dynamic && options->batch == 0) dims[0] = 1;
    }
  }
  if (shape_option != NULL) {
    *rank = shape_option->rank;
    memcpy(dims, shape_option->dims, sizeof(int64_t) * (size_t)shape_option->rank);
  }
  if (options->batch > 0 && first_dynamic && *rank > 0) dims[0] = options->batch;
  for (int i = 0; i < *rank; i++) {
    if (dims[i] < 0) {
      fprintf(stderr,
              "onnxserve-bench: input \"%s\" has a dynamic dim %d: give its full shape with "
              "--shape %s=D0,D1,...\n",
              name, i, name);
      return -1;
    }
  }
  return 0;
}

static int inputs_from_metadata(const bench_options *options, json_t *metadata,
                                bench_inputs *inputs, bench_rng *rng) {
  json_t *model_inputs = json_object_get(metadata, "inputs");
  if (!json_is_array(model_inputs) || json_array_size(model_inputs) == 0) {
    fprintf(stderr, "onnxserve-bench: the model metadata has no \"inputs\" array\n");
    return -1;
  }
  json_t *outputs = json_object_get(metadata, "outputs");
  inputs->output_count = json_is_array(outputs) ? (int)json_array_size(outputs) : 0;
  for (int i = 0; i < options->shape_count; i++) {
    int found = 0;
    size_t index;
    json_t *entry;
    json_array_foreach(model_inputs, index, entry) {
      const char *name = json_string_value(json_object_get(entry, "name"));
      if (name != NULL && strcmp(name, options->shapes[i].name) == 0) found = 1;
    }
    if (!found) {
      fprintf(stderr, "onnxserve-bench: --shape names \"%s\", which is not an input of the "
                      "model (inputs:", options->shapes[i].name);
      json_array_foreach(model_inputs, index, entry) {
        const char *name = json_string_value(json_object_get(entry, "name"));
        fprintf(stderr, " %s", name != NULL ? name : "(unnamed)");
      }
      fputs(")\n", stderr);
      return -1;
    }
  }
  if (options->input_file != NULL) return 0;
  inputs->count = (int)json_array_size(model_inputs);
  inputs->tensors = calloc((size_t)inputs->count, sizeof(bench_tensor));
  if (inputs->tensors == NULL) return -1;
  size_t index;
  json_t *entry;
  json_array_foreach(model_inputs, index, entry) {
    const char *name = json_string_value(json_object_get(entry, "name"));
    const char *datatype = json_string_value(json_object_get(entry, "datatype"));
    json_t *shape = json_object_get(entry, "shape");
    if (name == NULL || datatype == NULL || !json_is_array(shape)) {
      fprintf(stderr, "onnxserve-bench: model metadata input %zu lacks a name, datatype or "
                      "shape\n", index);
      return -1;
    }
    if (check_datatype(name, datatype) != 0) return -1;
    int rank = 0;
    int64_t dims[BENCH_MAX_RANK];
    if (resolve_shape(options, name, shape, &rank, dims) != 0) return -1;
    bench_tensor *tensor = &inputs->tensors[index];
    if (allocate_tensor(tensor, name, datatype, rank, dims) != 0) return -1;
    fill_random(tensor, rng);
  }
  return 0;
}

/* Appends the numbers of data (nested arrays allowed) to tensor from element *next on. */
static int store_json_data(bench_tensor *tensor, json_t *data, size_t *next) {
  if (json_is_array(data)) {
    size_t index;
    json_t *item;
    json_array_foreach(data, index, item) {
      if (store_json_data(tensor, item, next) != 0) return -1;
    }
    return 0;
  }
  if (*next >= tensor->element_count) {
    fprintf(stderr, "onnxserve-bench: input \"%s\" in --input-file has more values than its "
                    "shape holds\n", tensor->name);
    return -1;
  }
  const datatype_info *info = find_datatype(tensor->datatype);
  if (info->kind == KIND_BOOL && json_is_boolean(data)) {
    store_element(tensor, (*next)++, 0, json_is_true(data));
  } else if (info->kind == KIND_FLOAT && json_is_number(data)) {
    store_element(tensor, (*next)++, json_number_value(data), 0);
  } else if (info->kind != KIND_FLOAT && json_is_integer(data)) {
    store_element(tensor, (*next)++, 0, (int64_t)json_integer_value(data));
  } else {
    fprintf(stderr, "onnxserve-bench: input \"%s\" in --input-file has a value of the wrong "
                    "type for %s at element %zu\n", tensor->name, tensor->datatype, *next);
    return -1;
  }
  return 0;
}

static int inputs_from_file(const char *path, bench_inputs *inputs) {
  json_error_t error;
  json_t *document = json_load_file(path, 0, &error);
  if (document == NULL) {
    fprintf(stderr, "onnxserve-bench: cannot read --input-file %s: %s (line %d)\n", path,
            error.text, error.line);
    return -1;
  }
  int rc = -1;
  json_t *list = json_object_get(document, "inputs");
  if (!json_is_array(list) || json_array_size(list) == 0) {
    fprintf(stderr, "onnxserve-bench: --input-file %s has no \"inputs\" array\n", path);
    goto done;
  }
  inputs->count = (int)json_array_size(list);
  inputs->tensors = calloc((size_t)inputs->count, sizeof(bench_tensor));
  if (inputs->tensors == NULL) goto done;
  size_t index;
  json_t *entry;
  json_array_foreach(list, index, entry) {
    const char *name = json_string_value(json_object_get(entry, "name"));
    const char *datatype = json_string_value(json_object_get(entry, "datatype"));
    json_t *shape = json_object_get(entry, "shape");
    json_t *data = json_object_get(entry, "data");

    if (name == NULL || datatype == NULL || !json_is_array(shape) || data == NULL) {
      fprintf(stderr, "onnxserve-bench: input %zu in --input-file %s lacks a name, datatype, "
                      "shape or data\n", index, path);
      goto done;
    }
    if (check_datatype(name, datatype) != 0) goto done;
    if (json_array_size(shape) > BENCH_MAX_RANK) {
      fprintf(stderr, "onnxserve-bench: input \"%s\" has rank above %d\n", name, BENCH_MAX_RANK);
      goto done;
    }
    int64_t dims[BENCH_MAX_RANK];
    for (size_t i = 0; i < json_array_size(shape); i++) {
      json_t *dim = json_array_get(shape, i);
      if (!json_is_integer(dim) || json_integer_value(dim) < 0) {
        fprintf(stderr, "onnxserve-bench: input \"%s\" in --input-file has an invalid shape\n",
                name);
        goto done;
      }
      dims[i] = json_integer_value(dim);
    }

    bench_tensor *tensor = &inputs->tensors[index];
    if (allocate_tensor(tensor, name, datatype, (int)json_array_size(shape), dims) != 0) goto done;
    size_t stored = 0;
    if (store_json_data(tensor, data, &stored) != 0) goto done;
    if (stored != tensor->element_count) {
      fprintf(stderr, "onnxserve-bench: input \"%s\" in --input-file has %zu values, its shape "
                      "holds %zu\n", name, stored, tensor->element_count);
      goto done;
    }
  }
  rc = 0;
done:
  json_decref(document);
  return rc;
}

static int input_without_metadata(const bench_options *options, bench_inputs *inputs,
                                  bench_rng *rng) {
  const bench_shape_option *shape_option = &options->shapes[0];
  if (check_datatype(shape_option->name, options->datatype) != 0) return -1;
  int rank = 0;
  int64_t dims[BENCH_MAX_RANK];
  if (resolve_shape(options, shape_option->name, NULL, &rank, dims) != 0) return -1;
  inputs->count = 1;
  inputs->tensors = calloc(1, sizeof(bench_tensor));
  if (inputs->tensors == NULL) return -1;
  if (allocate_tensor(&inputs->tensors[0], shape_option->name, options->datatype, rank, dims) != 0) {
    return -1;
  }
  fill_random(&inputs->tensors[0], rng);
  return 0;
}

int bench_build_inputs(const bench_options *options, const char *metadata_json,
                       size_t metadata_length, bench_inputs *inputs) {
  memset(inputs, 0, sizeof(*inputs));
  bench_rng rng;
  bench_rng_seed(&rng, options->seed);
  int rc = 0;
  if (metadata_json != NULL) {
    json_error_t error;
    json_t *metadata = json_loadb(metadata_json, metadata_length, 0, &error);
    if (metadata == NULL) {
      fprintf(stderr, "onnxserve-bench: the model metadata is not valid JSON: %s\n", error.text);
      return -1;
    }
    rc = inputs_from_metadata(options, metadata, inputs, &rng);
    json_decref(metadata);
  } else if (options->input_file == NULL) {
    rc = input_without_metadata(options, inputs, &rng);
  }
  if (rc == 0 && options->input_file != NULL) rc = inputs_from_file(options->input_file, inputs);
  if (rc == 0 && options->protocol == BENCH_PROTOCOL_PREDICT && inputs->count != 1) {
    fprintf(stderr, "onnxserve-bench: --protocol predict needs a model with one input; this one "
                    "has %d\n", inputs->count);
    rc = -1;
  }
  if (rc != 0) bench_free_inputs(inputs);
  return rc;
}

void bench_free_inputs(bench_inputs *inputs) {
  for (int i = 0; i < inputs->count; i++) {
    free(inputs->tensors[i].name);
    free(inputs->tensors[i].data);
  }
  free(inputs->tensors);
  memset(inputs, 0, sizeof(*inputs));
}

void bench_write_element(FILE *out, const bench_tensor *tensor, size_t index) {
  const datatype_info *info = find_datatype(tensor->datatype);
  const unsigned char *source = tensor->data + index * tensor->element_size;
  uint64_t bits = 0;
  for (size_t byte = 0; byte < tensor->element_size; byte++) {
    bits |= (uint64_t)source[byte] << (8 * byte);
  }
  switch (info->kind) {
  case KIND_FLOAT:
    if (tensor->element_size == 4) {
      uint32_t narrow_bits = (uint32_t)bits;
      float narrow;
      memcpy(&narrow, &narrow_bits, 4);
      fprintf(out, "%.9g", (double)narrow);
    } else {
      double wide;
      memcpy(&wide, &bits, 8);
      fprintf(out, "%.17g", wide);
    }
    break;
  case KIND_BOOL:
    fputs(bits ? "true" : "false", out);
    break;
  case KIND_SIGNED: {
    /* Sign-extend from the element's width. */
    unsigned shift = (unsigned)(64 - 8 * tensor->element_size);
    int64_t value = (int64_t)(bits << shift) >> shift;
    fprintf(out, "%" PRId64, value);
    break;
  }
  case KIND_UNSIGNED:
    fprintf(out, "%" PRIu64, bits);
    break;
  }
}
