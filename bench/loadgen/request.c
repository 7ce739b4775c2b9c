/* Prebuilt HTTP requests of onnxserve-bench: the inference request of each protocol, built once
 * and sent unchanged, and the GET requests for metadata and statistics. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadgen.h"

/* Writes text as a JSON string with quotes and escapes. */
static void write_json_string(FILE *out, const char *text) {
  fputc('"', out);
  for (const unsigned char *c = (const unsigned char *)text; *c != '\0'; c++) {
    if (*c == '"' || *c == '\\') {
      fputc('\\', out);
      fputc(*c, out);
    } else if (*c < 0x20) {
      fprintf(out, "\\u%04x", *c);
    } else {
      fputc(*c, out);
    }
  }
  fputc('"', out);
}

static void write_shape(FILE *out, const bench_tensor *tensor) {
  fputc('[', out);
  for (int i = 0; i < tensor->rank; i++) {
    fprintf(out, "%s%lld", i ? "," : "", (long long)tensor->dims[i]);
  }
  fputc(']', out);
}

static void write_flat_data(FILE *out, const bench_tensor *tensor) {
  fputc('[', out);
  for (size_t i = 0; i < tensor->element_count; i++) {
    if (i) fputc(',', out);
    bench_write_element(out, tensor, i);
  }
  fputc(']', out);
}

/* Writes the "name", "shape" and "datatype" members of one request input. */
static void write_input_head(FILE *out, const bench_tensor *tensor) {
  fputs("{\"name\":", out);
  write_json_string(out, tensor->name);
  fputs(",\"shape\":", out);
  write_shape(out, tensor);
  fputs(",\"datatype\":", out);
  write_json_string(out, tensor->datatype);
}

static void write_json_body(FILE *out, const bench_inputs *inputs) {
  fputs("{\"inputs\":[", out);
  for (int i = 0; i < inputs->count; i++) {
    if (i) fputc(',', out);
    write_input_head(out, &inputs->tensors[i]);
    fputs(",\"data\":", out);
    write_flat_data(out, &inputs->tensors[i]);
    fputc('}', out);
  }
  fputs("]}", out);
}

/* Writes the binary extension's JSON header, which the tensor bytes follow in input order. It
 * requests every output as binary data too. */
static void write_binary_header(FILE *out, const bench_inputs *inputs) {
  fputs("{\"inputs\":[", out);
  for (int i = 0; i < inputs->count; i++) {
    const bench_tensor *tensor = &inputs->tensors[i];
    if (i) fputc(',', out);
    write_input_head(out, tensor);
    fprintf(out, ",\"parameters\":{\"binary_data_size\":%zu}}",
            tensor->element_count * tensor->element_size);
  }
  fputs("],\"parameters\":{\"binary_data_output\":true}}", out);
}

static void write_predict_body(FILE *out, const bench_inputs *inputs) {
  fputs("{\"data\":", out);
  write_flat_data(out, &inputs->tensors[0]);
  fputs(",\"shape\":", out);
  write_shape(out, &inputs->tensors[0]);
  fputc('}', out);
}

static int finish_stream(FILE *out, char **buffer) {
  if (fclose(out) != 0 || *buffer == NULL) {
    free(*buffer);
    *buffer = NULL;
    fprintf(stderr, "onnxserve-bench: out of memory while building the request\n");
    return -1;
  }
  return 0;
}

int bench_build_request(const bench_options *options, const char *host, const bench_inputs *inputs,
                        bench_request *request) {
  memset(request, 0, sizeof(*request));
  char *body = NULL;
  size_t body_length = 0;
  FILE *out = open_memstream(&body, &body_length);
  if (out == NULL) return -1;
  size_t header_length = 0;
  switch (options->protocol) {
  case BENCH_PROTOCOL_JSON:
    write_json_body(out, inputs);
    break;
  case BENCH_PROTOCOL_PREDICT:
    write_predict_body(out, inputs);
    break;
  case BENCH_PROTOCOL_BINARY:
    write_binary_header(out, inputs);
    fflush(out);
    header_length = body_length;
    for (int i = 0; i < inputs->count; i++) {
      const bench_tensor *tensor = &inputs->tensors[i];
      fwrite(tensor->data, tensor->element_size, tensor->element_count, out);
    }
    break;
  }
  if (finish_stream(out, &body) != 0) return -1;

  char path[1024];
  if (options->protocol == BENCH_PROTOCOL_PREDICT) {
    snprintf(path, sizeof(path), "/models/%s/predict", options->model);
  } else if (options->model_version != NULL) {
    snprintf(path, sizeof(path), "/v2/models/%s/versions/%s/infer", options->model,
             options->model_version);
  } else {
    snprintf(path, sizeof(path), "/v2/models/%s/infer", options->model);
  }

  char *whole = NULL;
  size_t whole_length = 0;
  out = open_memstream(&whole, &whole_length);
  if (out == NULL) {
    free(body);
    return -1;
  }
  fprintf(out, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n",
          path, host,
          options->protocol == BENCH_PROTOCOL_BINARY ? "application/octet-stream"
                                                     : "application/json",
          body_length);
  if (options->protocol == BENCH_PROTOCOL_BINARY) {
    fprintf(out, "Inference-Header-Content-Length: %zu\r\n", header_length);
  }
  fputs("\r\n", out);
  fwrite(body, 1, body_length, out);
  free(body);
  if (finish_stream(out, &whole) != 0) return -1;
  request->bytes = whole;
  request->length = whole_length;
  return 0;
}

int bench_build_get(const char *host, const char *path, bench_request *request) {
  memset(request, 0, sizeof(*request));
  char *text = NULL;
  size_t length = 0;
  FILE *out = open_memstream(&text, &length);
  if (out == NULL) return -1;
  fprintf(out, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n\r\n", path, host);
  if (finish_stream(out, &text) != 0) return -1;
  request->bytes = text;
  request->length = length;
  return 0;
}

void bench_free_request(bench_request *request) {
  free(request->bytes);
  memset(request, 0, sizeof(*request));
}
