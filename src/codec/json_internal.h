/*
 * Helpers shared by the JSON decoders (json_decode.c, json_predict.c): the yajl handle on
 * request scratch memory, error messages, and the conversion of one number text into a tensor
 * element. Not part of the codec's interface.
 */
#ifndef OXS_CODEC_JSON_INTERNAL_H
#define OXS_CODEC_JSON_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <yajl/yajl_parse.h>

#include "onnxserve.h"

/* Maximum bytes of a value quoted in an error message; longer values are cut and end in "...". */
#define OXS__JSON_QUOTE_MAX 40

/* Error for a body nested deeper than the --max-json-depth limit; takes the limit as an int. */
#define OXS__JSON_DEPTH_ERROR                                                                   \
    "request body: objects and arrays nest deeper than the limit of %d levels set by "         \
    "--max-json-depth"

/* A bounded text builder over the caller's error buffer: appends that do not fit are cut. */
typedef struct oxs__msg {
    char *text;
    size_t size;
    size_t len;
} oxs__msg_t;

void oxs__msg_init(oxs__msg_t *msg, char *text, size_t size);
void oxs__msg_printf(oxs__msg_t *msg, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends text (length len) as a quoted value, cut at OXS__JSON_QUOTE_MAX bytes, with
 * non-printable bytes written as \xNN. */
void oxs__msg_quote(oxs__msg_t *msg, const char *text, size_t len);
/* Appends text unquoted, cut at OXS__JSON_QUOTE_MAX bytes, non-printable bytes as \xNN. */
void oxs__msg_value(oxs__msg_t *msg, const char *text, size_t len);
/* Appends a shape as [1,-1,3]. */
void oxs__msg_shape(oxs__msg_t *msg, const int64_t *dims, int rank);
/* Appends the datatypes the JSON codec converts, as "BOOL, UINT8, ..., FP64". */
void oxs__msg_supported_datatypes(oxs__msg_t *msg);
/* Appends the names of the model's inputs (or outputs) as x, y, z. */
void oxs__msg_model_inputs(oxs__msg_t *msg, const oxs_model_t *model);
void oxs__msg_model_outputs(oxs__msg_t *msg, const oxs_model_t *model);

/* Returns true when the JSON codec converts datatype: every protocol datatype. */
bool oxs__json_datatype_supported(oxs_datatype_t datatype);

/* Returns true for FP16, BF16, FP32 and FP64. */
bool oxs__json_datatype_is_float(oxs_datatype_t datatype);

/* Stores the JSON string text (length len, without quotes) into element index of buffer, an
 * array of a float datatype, when it is exactly "NaN", "Infinity" or "-Infinity", the texts
 * that stand for the values JSON numbers cannot write. Returns false for any other text or
 * datatype and leaves buffer alone. */
bool oxs__json_convert_special(oxs_datatype_t datatype, const char *text, size_t len,
                               void *buffer, size_t index);

/* Returns the length of the valid UTF-8 sequence at text (at most len bytes), or 0 when the
 * bytes are not valid UTF-8: overlong forms, surrogates and code points past U+10FFFF are
 * invalid too. */
size_t oxs__utf8_sequence_length(const unsigned char *text, size_t len);

/* Returns the offset of the first byte of text that is not valid UTF-8, or len when all are. */
size_t oxs__utf8_check(const char *text, size_t len);

/* Creates a yajl parser whose memory comes from the request's scratch arena, so decoding does
 * not call malloc itself. Numbers arrive through callbacks->yajl_number as text. Returns NULL
 * when the arena is out of memory. */
yajl_handle oxs__json_parser_create(oxs_request_t *request, const yajl_callbacks *callbacks,
                                    void *context);

/* Feeds the whole body to parser and completes the parse. When yajl rejects the text,
 * writes "invalid JSON at byte N: REASON" into error and returns OXS_ERR_INVALID_ARGUMENT;
 * N counts from 1 and is the byte where yajl stopped, or the body length when it ended early.
 * When a callback stopped the parse, returns OXS_ERR_INTERNAL and leaves error alone: the
 * callback's own status and message stand. */
oxs_status_t oxs__json_parse(yajl_handle parser, const char *body, size_t len, char *error,
                             size_t error_size);

/* Adds an input of any datatype to request: a BYTES input gets a buffer of bytes_size bytes
 * (its length-prefixed elements), any other the size its shape needs. *byte_size is the size
 * of *data either way. On error the core's message is in error. */
oxs_status_t oxs__codec_add_input(oxs_request_t *request, const char *name, size_t name_len,
                                  oxs_datatype_t datatype, const int64_t *shape, int rank,
                                  size_t bytes_size, void **data, size_t *byte_size,
                                  char *error, size_t error_size);

/* Multiplies the dims of shape into *out; returns false when the product overflows int64. */
bool oxs__json_shape_elements(const int64_t *shape, int rank, int64_t *out);

/* Parses a dim of a "shape" array from its number text. Returns NULL on success, else the
 * problem ("is negative", "is not an integer", "is too large") for the caller's message. */
const char *oxs__json_parse_dim(const char *text, size_t len, int64_t *out);

/* Outcome of converting one number text into a tensor element. */
typedef enum oxs__number_result {
    OXS__NUMBER_OK = 0,
    OXS__NUMBER_NOT_INTEGER,  /* a fraction or exponent where an integer type needs an integer */
    OXS__NUMBER_OUT_OF_RANGE, /* beyond the datatype's range */
    OXS__NUMBER_OUT_OF_MEMORY,
} oxs__number_result_t;

/* Converts the JSON number text (length len, as yajl's number callback passes it) into
 * element index of buffer, an array of datatype elements (an integer or float type).
 * Integers are parsed exactly with strtoll/strtoull, FP32 with strtof, FP64 with strtod, and
 * FP16 and BF16 are rounded to nearest, ties to even, from the decimal value.
 * request supplies scratch memory for texts too long for the stack buffer. */
oxs__number_result_t oxs__json_convert_number(oxs_request_t *request, oxs_datatype_t datatype,
                                              const char *text, size_t len, void *buffer,
                                              size_t index);

/* Writes the message for a failed conversion: LABEL: value TEXT at index I is out of range
 * for UINT8 [0, 255], or is not valid for INT32: expected an integer. */
void oxs__json_number_error(oxs__msg_t *msg, const char *label, oxs__number_result_t result,
                            oxs_datatype_t datatype, const char *text, size_t len,
                            size_t index);

#endif /* OXS_CODEC_JSON_INTERNAL_H */
