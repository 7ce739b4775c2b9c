/* Response checks of onnxserve-bench and the parser of the server's statistics. */
#include <jansson.h>
#include <string.h>

#include "loadgen.h"

const char *const bench_error_kind_names[BENCH_ERROR_KINDS] = {"connect", "timeout",
                                                               "bad_response"};

uint64_t bench_errors_total(const bench_errors *errors) {
  uint64_t total = 0;
  for (int i = 0; i < 600; i++) total += errors->by_status[i];
  for (int i = 0; i < BENCH_ERROR_KINDS; i++) total += errors->by_kind[i];
  return total;
}

static size_t skip_space(const char *text, size_t length, size_t at) {
  while (at < length && (text[at] == ' ' || text[at] == '\t' || text[at] == '\n' ||
                         text[at] == '\r')) {
    at++;
  }
  return at;
}

/* Returns the index just past the JSON string that starts at text[at] (a quote), or length when
 * it is not closed. */
static size_t skip_string(const char *text, size_t length, size_t at) {
  for (at++; at < length; at++) {
    if (text[at] == '\\') {
      at++;
    } else if (text[at] == '"') {
      return at + 1;
    }
  }
  return length;
}

/* Returns 1 when text[at] starts an array of zero or more non-negative integers. */
static int is_shape_array(const char *text, size_t length, size_t at) {
  if (at >= length || text[at] != '[') return 0;
  at = skip_space(text, length, at + 1);
  if (at < length && text[at] == ']') return 1;
  while (at < length) {
    size_t digits = 0;
    while (at < length && text[at] >= '0' && text[at] <= '9') {
      at++;
      digits++;
    }
    if (digits == 0) return 0;
    at = skip_space(text, length, at);
    if (at >= length) return 0;
    if (text[at] == ']') return 1;
    if (text[at] != ',') return 0;
    at = skip_space(text, length, at + 1);
  }
  return 0;
}

/* Counts the well-formed "shape" members in a JSON body without building a document, so that a
 * large output costs one pass. With outputs_list set it counts those of the objects in the
 * top-level "outputs" array ({"outputs": [{"shape": [...]}, ...]}), else the top-level one
 * ({"shape": [...]}). Returns -1 when a "shape" member in that place is not an array of
 * non-negative integers or the body is not a JSON object. */
static int count_shapes(const char *text, size_t length, int outputs_list) {
  size_t at = skip_space(text, length, 0);
  if (at >= length || text[at] != '{') return -1;
  int depth = 0;
  int in_outputs = 0; /* inside the value of the top-level "outputs" member */
  int shapes = 0;
  while (at < length) {
    char c = text[at];
    if (c == '{' || c == '[') {
      depth++;
      at++;
    } else if (c == '}' || c == ']') {
      depth--;
      if (depth == 1) in_outputs = 0;
      at++;
    } else if (c == '"') {
      size_t start = at + 1;
      size_t end = skip_string(text, length, at);
      size_t after = skip_space(text, length, end);
      if (after < length && text[after] == ':') {
        size_t key_length = end - start - 1;
        if (depth == 1 && outputs_list) {
          in_outputs = key_length == 7 && memcmp(text + start, "outputs", 7) == 0;
        }
        int wanted_depth = outputs_list ? 3 : 1;
        int in_place = outputs_list ? in_outputs : 1;
        if (depth == wanted_depth && in_place && key_length == 5 &&
            memcmp(text + start, "shape", 5) == 0) {
          if (!is_shape_array(text, length, skip_space(text, length, after + 1))) return -1;
          shapes++;
        }
        at = after + 1;
      } else {
        at = end;
      }
    } else {
      at++;
    }
  }
  return depth == 0 ? shapes : -1;
}

/* Checks the JSON header of a binary response: every output has a shape of non-negative
 * integers, and the binary_data_size values add up to the bytes after the header. */
static int check_binary_header(const char *body, size_t length, size_t header_length,
                               int expected_outputs) {
  json_t *header = json_loadb(body, header_length, 0, NULL);
  if (header == NULL) return 0;
  int ok = 1;
  json_t *outputs = json_object_get(header, "outputs");
  size_t binary_bytes = 0;
  if (!json_is_array(outputs) || json_array_size(outputs) == 0) ok = 0;
  if (expected_outputs > 0 && json_array_size(outputs) != (size_t)expected_outputs) ok = 0;
  size_t index;
  json_t *output;
  json_array_foreach(outputs, index, output) {
    json_t *shape = json_object_get(output, "shape");
    if (!json_is_array(shape)) ok = 0;
    size_t dim_index;
    json_t *dim;
    json_array_foreach(shape, dim_index, dim) {
      if (!json_is_integer(dim) || json_integer_value(dim) < 0) ok = 0;
    }
    json_t *size = json_object_get(json_object_get(output, "parameters"), "binary_data_size");
    if (json_is_integer(size) && json_integer_value(size) >= 0) {
      binary_bytes += (size_t)json_integer_value(size);
    }
  }
  if (header_length + binary_bytes != length) ok = 0;
  json_decref(header);
  return ok;
}

int bench_check_response(bench_protocol protocol, const char *body, size_t length,
                         long long binary_header_length, int expected_outputs) {
  if (protocol == BENCH_PROTOCOL_PREDICT) return count_shapes(body, length, 0) == 1;
  if (binary_header_length >= 0) {
    if ((unsigned long long)binary_header_length > length) return 0;
    return check_binary_header(body, length, (size_t)binary_header_length, expected_outputs);
  }
  int shapes = count_shapes(body, length, 1);
  if (shapes <= 0) return 0;
  return expected_outputs <= 0 || shapes == expected_outputs;
}

static void add_counter(json_t *stats, const char *name, uint64_t *count, uint64_t *ns) {
  json_t *counter = json_object_get(stats, name);
  *count += (uint64_t)json_integer_value(json_object_get(counter, "count"));
  *ns += (uint64_t)json_integer_value(json_object_get(counter, "ns"));
}

int bench_parse_server_stats(const char *json, size_t length, bench_server_stats *stats) {
  memset(stats, 0, sizeof(*stats));
  json_t *document = json_loadb(json, length, 0, NULL);
  if (document == NULL) return -1;
  json_t *versions = json_object_get(document, "model_stats");
  if (!json_is_array(versions)) {
    json_decref(document);
    return -1;
  }
  size_t index;
  json_t *version;
  json_array_foreach(versions, index, version) {
    json_t *inference = json_object_get(version, "inference_stats");
    add_counter(inference, "queue", &stats->queue_count, &stats->queue_ns);
    add_counter(inference, "compute_infer", &stats->compute_count, &stats->compute_ns);
  }
  stats->valid = 1;
  json_decref(document);
  return 0;
}
