/*
 * The raw request body of the KServe v2 binary extension: with Inference-Header-Content-Length
 * set to 0, the whole body is the data of the model's only input, with no JSON header.
 */
#ifndef OXS_CODEC_RAW_H
#define OXS_CODEC_RAW_H

#include <stddef.h>

#include "onnxserve.h"

/* Adds the model's only input to request, with the shape taken from the model. Every dim but
 * the first must be known. A dynamic first dim is the batch size that the body's length gives
 * (for BYTES, the number of length-prefixed elements). Errors name the input, the unknown dims
 * or the sizes that do not fit. Does not submit. */
oxs_status_t oxs_raw_decode_infer(oxs_request_t *request, const char *body, size_t len,
                                  char *error, size_t error_size);

#endif /* OXS_CODEC_RAW_H */
