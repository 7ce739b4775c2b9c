/*
 * JSON codec for the HTTP frontend: request bodies are parsed with yajl's streaming parser so
 * that numbers arrive as text and are converted straight into the request's tensor buffers;
 * responses are written straight into an oxs_buf_t. Nothing here knows about HTTP.
 *
 * Errors: each decoder returns an oxs_status_t and writes a message into error that names the
 * field, the value received and what was expected, such as
 *   input "x": shape [1,3,48] has 3 dims, the model expects 4 ([-1,3,-1,-1])
 */
#ifndef OXS_CODEC_JSON_H
#define OXS_CODEC_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "onnxserve.h"

/* How the reply to an infer request carries each output, decided by the request. Lives in the
 * request's scratch memory, so it stays valid until the response is destroyed. */
typedef struct oxs_json_reply {
    bool binary_all; /* parameters.binary_data_output: every output as binary data */
    int8_t *binary;  /* per model output: outputs[].parameters.binary_data, -1 when not given */
} oxs_json_reply_t;

/* Creates a reply plan in request scratch memory: every output as JSON, or as binary data when
 * binary_all is set. Returns NULL when out of memory. */
oxs_json_reply_t *oxs_json_reply_create(oxs_request_t *request, bool binary_all);

/* Decodes a KServe v2 infer request body ({"id", "inputs": [{name, shape, datatype, data,
 * parameters}], "outputs": [{name, parameters}], "parameters"}) into request: adds every input
 * with oxs_request_add_input (or oxs_request_add_bytes_input) and fills its buffer, adds
 * requested outputs, and sets the request id from "id" unless one was already set. Does not
 * submit. The first json_len bytes of body are the JSON; the rest (len - json_len bytes) is the
 * binary data of the inputs that give parameters.binary_data_size, in their order, which must
 * use it up exactly. On success *reply marks the outputs that go as binary data. */
oxs_status_t oxs_json_decode_infer(oxs_request_t *request, const char *body, size_t len,
                                   size_t json_len, oxs_json_reply_t **reply, char *error,
                                   size_t error_size);

/* Decodes the seed /predict body {"data": [...], "shape": [...]} for a model with one float
 * input. The shape comes from the nesting of data when nested, from "shape" when data is flat,
 * or from the model's static dims with the leading dim inferred from the element count. */
oxs_status_t oxs_json_decode_predict(oxs_request_t *request, const char *body, size_t len,
                                     char *error, size_t error_size);

/* Writes the KServe v2 infer response for a successful response:
 * {"model_name","model_version","id","outputs":[{"name","datatype","shape","data"}]}.
 * Outputs that reply requests as binary data (reply may be NULL: none) carry
 * "parameters":{"binary_data_size":N} instead of "data", and their bytes follow the JSON in
 * output order; *json_len is then the JSON's length (the Inference-Header-Content-Length),
 * else 0. Returns OXS_ERR_UNSUPPORTED with a message when a BYTES output to be written as JSON
 * is not valid UTF-8. */
oxs_status_t oxs_json_encode_infer(oxs_buf_t *out, const oxs_response_t *response,
                                   const oxs_json_reply_t *reply, size_t *json_len, char *error,
                                   size_t error_size);

/* Writes the /predict response {"output": [...], "shape": [...], "model": "...",
 * "request_id": "..."} from the response's first output. */
void oxs_json_encode_predict(oxs_buf_t *out, const oxs_response_t *response);

/* Writes the KServe v2 model metadata {"name","versions","platform","inputs","outputs",
 * "parameters"} (parameters: producer, opset, ONNX metadata, state); versions are the ones
 * being served. */
void oxs_json_encode_model_metadata(oxs_buf_t *out, const oxs_model_t *model,
                                    const int64_t *versions, size_t version_count);

/* Writes the configuration in effect for a READY model, every field present, as config.json
 * spells it, plus "name" and "versions". */
void oxs_json_encode_model_config(oxs_buf_t *out, const oxs_model_t *model);

/* Writes {"error": message}. */
void oxs_json_encode_error(oxs_buf_t *out, const char *message);

/* Writes text as a JSON string literal with quotes, escaping everything a client could send. */
void oxs_json_write_string(oxs_buf_t *out, const char *text, size_t len);

#endif /* OXS_CODEC_JSON_H */
