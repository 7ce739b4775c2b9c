/* Helpers shared by the JSON decoders: yajl on scratch memory, messages, number conversion. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/float16.h"
#include "codec/number.h"
#include "codec/json_internal.h"

/* ---- messages ------------------------------------------------------------------------------ */

void oxs__msg_init(oxs__msg_t *msg, char *text, size_t size)
{
    msg->text = text;
    msg->size = text != NULL ? size : 0;
    msg->len = 0;
    if (msg->size > 0)
        msg->text[0] = '\0';
}

void oxs__msg_printf(oxs__msg_t *msg, const char *format, ...)
{
    if (msg->size == 0 || msg->len + 1 >= msg->size)
        return;

    va_list args;
    va_start(args, format);
    int n = vsnprintf(msg->text + msg->len, msg->size - msg->len, format, args);
    va_end(args);

    if (n < 0)
        return;
    msg->len += (size_t)n;
    if (msg->len >= msg->size)
        msg->len = msg->size - 1;
}

/* Appends text with control bytes as \xNN, cut at OXS__JSON_QUOTE_MAX bytes on a UTF-8
 * character boundary. */
static void msg_escaped(oxs__msg_t *msg, const char *text, size_t len)
{
    size_t kept = len;
    if (kept > OXS__JSON_QUOTE_MAX) {
        kept = OXS__JSON_QUOTE_MAX;
        while (kept > 0 && ((unsigned char)text[kept] & 0xC0) == 0x80)
            kept--;
    }

    for (size_t i = 0; i < kept; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c == 0x7F)
            oxs__msg_printf(msg, "\\x%02x", c);
        else
            oxs__msg_printf(msg, "%c", c);
    }
    if (kept < len)
        oxs__msg_printf(msg, "...");
}

void oxs__msg_quote(oxs__msg_t *msg, const char *text, size_t len)
{
    oxs__msg_printf(msg, "\"");
    msg_escaped(msg, text, len);
    oxs__msg_printf(msg, "\"");
}

void oxs__msg_value(oxs__msg_t *msg, const char *text, size_t len)
{
    msg_escaped(msg, text, len);
}

void oxs__msg_shape(oxs__msg_t *msg, const int64_t *dims, int rank)
{
    oxs__msg_printf(msg, "[");
    for (int i = 0; i < rank; i++)
        oxs__msg_printf(msg, "%s%" PRId64, i > 0 ? "," : "", dims[i]);
    oxs__msg_printf(msg, "]");
}

bool oxs__json_datatype_supported(oxs_datatype_t datatype)
{
    switch (datatype) {
    case OXS_DT_BOOL:
    case OXS_DT_UINT8:
    case OXS_DT_UINT16:
    case OXS_DT_UINT32:
    case OXS_DT_UINT64:
    case OXS_DT_INT8:
    case OXS_DT_INT16:
    case OXS_DT_INT32:
    case OXS_DT_INT64:
    case OXS_DT_FP16:
    case OXS_DT_FP32:
    case OXS_DT_FP64:
    case OXS_DT_BF16:
    case OXS_DT_BYTES:
        return true;
    default:
        return false;
    }
}

bool oxs__json_datatype_is_float(oxs_datatype_t datatype)
{
    return datatype == OXS_DT_FP16 || datatype == OXS_DT_BF16 || datatype == OXS_DT_FP32 ||
           datatype == OXS_DT_FP64;
}

void oxs__msg_supported_datatypes(oxs__msg_t *msg)
{
    bool first = true;
    for (int dt = 0; dt < OXS_DT_COUNT; dt++) {
        if (!oxs__json_datatype_supported((oxs_datatype_t)dt))
            continue;
        oxs__msg_printf(msg, "%s%s", first ? "" : ", ", oxs_datatype_name((oxs_datatype_t)dt));
        first = false;
    }
}

void oxs__msg_model_inputs(oxs__msg_t *msg, const oxs_model_t *model)
{
    size_t count = oxs_model_input_count(model);
    for (size_t i = 0; i < count; i++)
        oxs__msg_printf(msg, "%s%s", i > 0 ? ", " : "", oxs_model_input(model, i)->name);
}

void oxs__msg_model_outputs(oxs__msg_t *msg, const oxs_model_t *model)
{
    size_t count = oxs_model_output_count(model);
    for (size_t i = 0; i < count; i++)
        oxs__msg_printf(msg, "%s%s", i > 0 ? ", " : "", oxs_model_output(model, i)->name);
}

/* ---- yajl on request scratch memory --------------------------------------------------------- */

/* Each block starts with a header that records its usable size, because yajl's realloc must
 * copy the old contents and the arena does not know block sizes. The header keeps the arena's
 * 16-byte alignment. */
typedef union scratch_header {
    size_t size;
    max_align_t align;
} scratch_header_t;

/* yajl 2.1.0 (Debian's libyajl2) writes through a buffer pointer from its allocator without
 * checking it for NULL: tests/fault crashed in yajl's string buffer when the arena could not
 * grow. So scratch_malloc never returns NULL into yajl. It jumps instead to the yajl call in
 * progress on this thread, which reports that memory ran out. yajl holds no lock and no memory
 * outside the arena, so leaving its frames loses nothing, and yajl_free afterwards is safe. */
static _Thread_local jmp_buf *scratch_escape;

static void *scratch_fail(void)
{
    if (scratch_escape != NULL)
        longjmp(*scratch_escape, 1);
    return NULL;
}

static void *scratch_malloc(void *context, size_t size)
{
    if (size > SIZE_MAX - sizeof(scratch_header_t))
        return scratch_fail();
    scratch_header_t *header = oxs_request_scratch(context, sizeof(*header) + size);
    if (header == NULL)
        return scratch_fail();
    header->size = size;
    return header + 1;
}

static void *scratch_realloc(void *context, void *ptr, size_t size)
{
    if (ptr == NULL)
        return scratch_malloc(context, size);

    scratch_header_t *header = (scratch_header_t *)ptr - 1;
    if (size <= header->size)
        return ptr;

    /* The old block stays in the arena until the request is freed. yajl grows its buffers by
     * doubling, so the abandoned blocks add up to less than the final one. */
    void *fresh = scratch_malloc(context, size);
    if (fresh == NULL)
        return NULL;
    memcpy(fresh, ptr, header->size);
    return fresh;
}

static void scratch_free(void *context, void *ptr)
{
    /* The arena frees everything with the request. */
    (void)context;
    (void)ptr;
}

yajl_handle oxs__json_parser_create(oxs_request_t *request, const yajl_callbacks *callbacks,
                                    void *context)
{
    /* yajl copies the function table into the handle, so it may live on the stack. */
    yajl_alloc_funcs funcs = {
        .malloc = scratch_malloc,
        .realloc = scratch_realloc,
        .free = scratch_free,
        .ctx = request,
    };
    jmp_buf escape;
    yajl_handle volatile parser = NULL;

    if (setjmp(escape) == 0) {
        scratch_escape = &escape;
        parser = yajl_alloc(callbacks, &funcs, context);
    }
    scratch_escape = NULL;
    return parser;
}

static bool text_is_blank(const char *body, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (body[i] != ' ' && body[i] != '\t' && body[i] != '\r' && body[i] != '\n')
            return false;
    }
    return true;
}

oxs_status_t oxs__json_parse(yajl_handle parser, const char *body, size_t len, char *error,
                             size_t error_size)
{
    oxs__msg_t msg;
    oxs__msg_init(&msg, error, error_size);

    if (text_is_blank(body, len)) {
        oxs__msg_printf(&msg, "request body is empty: expected a JSON object");
        return OXS_ERR_INVALID_ARGUMENT;
    }

    size_t volatile offset = 0;
    volatile yajl_status status = yajl_status_error;
    jmp_buf escape;

    if (setjmp(escape) != 0) {
        scratch_escape = NULL;
        oxs__msg_printf(&msg, "out of memory while parsing the request body");
        return OXS_ERR_OUT_OF_MEMORY;
    }
    scratch_escape = &escape;
    status = yajl_parse(parser, (const unsigned char *)body, len);
    if (status == yajl_status_ok) {
        status = yajl_complete_parse(parser);
        /* After a successful yajl_parse, completion fails when the body ended before the
         * document did (or a callback canceled), so the error is reported at the end. */
        offset = len;
    } else {
        offset = yajl_get_bytes_consumed(parser);
    }
    /* yajl_get_error allocates the message, so the jump stays armed for it. */
    unsigned char *reason = NULL;
    if (status != yajl_status_ok && status != yajl_status_client_canceled)
        reason = yajl_get_error(parser, 0, (const unsigned char *)body, len);
    scratch_escape = NULL;

    if (status == yajl_status_ok)
        return OXS_OK;
    if (status == yajl_status_client_canceled)
        return OXS_ERR_INTERNAL;

    const char *text = reason != NULL ? (const char *)reason : "unknown error";
    size_t text_len = strlen(text);
    while (text_len > 0 && (text[text_len - 1] == '\n' || text[text_len - 1] == ' '))
        text_len--;
    oxs__msg_printf(&msg, "invalid JSON at byte %zu: %.*s", offset, (int)text_len, text);
    if (reason != NULL)
        yajl_free_error(parser, reason);
    return OXS_ERR_INVALID_ARGUMENT;
}

/* ---- number conversion ------------------------------------------------------------------------ */

bool oxs__json_shape_elements(const int64_t *shape, int rank, int64_t *out)
{
    /* A zero dim makes the product zero even when the other dims would overflow. */
    *out = 0;
    for (int i = 0; i < rank; i++) {
        if (shape[i] == 0)
            return true;
    }

    int64_t product = 1;
    for (int i = 0; i < rank; i++) {
        if (product > INT64_MAX / shape[i])
            return false;
        product *= shape[i];
    }
    *out = product;
    return true;
}

const char *oxs__json_parse_dim(const char *text, size_t len, int64_t *out)
{
    if (memchr(text, '.', len) != NULL || memchr(text, 'e', len) != NULL ||
        memchr(text, 'E', len) != NULL)
        return "is not an integer";
    if (text[0] == '-' && !(len == 2 && text[1] == '0'))
        return "is negative";

    char copy[32];
    if (len >= sizeof(copy))
        return "is too large";
    memcpy(copy, text, len);
    copy[len] = '\0';
    errno = 0;
    long long value = strtoll(copy, NULL, 10);
    if (errno == ERANGE)
        return "is too large";
    *out = value;
    return NULL;
}

typedef struct integer_range {
    int64_t min;
    uint64_t max;
} integer_range_t;

static bool integer_range(oxs_datatype_t datatype, integer_range_t *out)
{
    switch (datatype) {
    case OXS_DT_UINT8: *out = (integer_range_t){0, UINT8_MAX}; return true;
    case OXS_DT_UINT16: *out = (integer_range_t){0, UINT16_MAX}; return true;
    case OXS_DT_UINT32: *out = (integer_range_t){0, UINT32_MAX}; return true;
    case OXS_DT_UINT64: *out = (integer_range_t){0, UINT64_MAX}; return true;
    case OXS_DT_INT8: *out = (integer_range_t){INT8_MIN, INT8_MAX}; return true;
    case OXS_DT_INT16: *out = (integer_range_t){INT16_MIN, INT16_MAX}; return true;
    case OXS_DT_INT32: *out = (integer_range_t){INT32_MIN, INT32_MAX}; return true;
    case OXS_DT_INT64: *out = (integer_range_t){INT64_MIN, INT64_MAX}; return true;
    default: return false;
    }
}

static bool text_has_fraction_or_exponent(const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '.' || text[i] == 'e' || text[i] == 'E')
            return true;
    }
    return false;
}

/* Parses an integer text (NUL-terminated, in JSON's integer syntax) for an integer datatype. */
static oxs__number_result_t convert_integer(oxs_datatype_t datatype, const char *text,
                                            void *buffer, size_t index)
{
    integer_range_t range;
    if (!integer_range(datatype, &range))
        return OXS__NUMBER_NOT_INTEGER;

    char *end = NULL;
    int64_t signed_value = 0;
    uint64_t unsigned_value = 0;
    errno = 0;
    if (range.min == 0) {
        /* strtoull accepts "-5" and wraps it, so a sign is handled by strtoll: only -0 fits. */
        if (text[0] == '-') {
            if (strtoll(text, &end, 10) != 0 || errno == ERANGE)
                return OXS__NUMBER_OUT_OF_RANGE;
        } else {
            unsigned long long parsed = strtoull(text, &end, 10);
            if (errno == ERANGE || parsed > range.max)
                return OXS__NUMBER_OUT_OF_RANGE;
            unsigned_value = parsed;
        }
    } else {
        long long parsed = strtoll(text, &end, 10);
        if (errno == ERANGE || parsed < range.min || parsed > (int64_t)range.max)
            return OXS__NUMBER_OUT_OF_RANGE;
        signed_value = parsed;
    }
    if (end == text || *end != '\0')
        return OXS__NUMBER_NOT_INTEGER;

    switch (datatype) {
    case OXS_DT_UINT8: ((uint8_t *)buffer)[index] = (uint8_t)unsigned_value; break;
    case OXS_DT_UINT16: ((uint16_t *)buffer)[index] = (uint16_t)unsigned_value; break;
    case OXS_DT_UINT32: ((uint32_t *)buffer)[index] = (uint32_t)unsigned_value; break;
    case OXS_DT_UINT64: ((uint64_t *)buffer)[index] = unsigned_value; break;
    case OXS_DT_INT8: ((int8_t *)buffer)[index] = (int8_t)signed_value; break;
    case OXS_DT_INT16: ((int16_t *)buffer)[index] = (int16_t)signed_value; break;
    case OXS_DT_INT32: ((int32_t *)buffer)[index] = (int32_t)signed_value; break;
    default: ((int64_t *)buffer)[index] = signed_value; break;
    }
    return OXS__NUMBER_OK;
}

/* Converts an FP16 or BF16 number text (NUL-terminated), rounded from its decimal value. */
static oxs__number_result_t convert_float16(oxs_datatype_t datatype, const char *text,
                                            void *buffer, size_t index)
{
    uint16_t bits = 0;
    if (!oxs__float16_parse(datatype == OXS_DT_BF16, text, &bits))
        return OXS__NUMBER_OUT_OF_RANGE;
    ((uint16_t *)buffer)[index] = bits;
    return OXS__NUMBER_OK;
}

/* Converts an FP32 or FP64 number text straight from yajl's buffer with number.c, which gives
 * strtof's and strtod's bits. Underflow keeps a zero or a subnormal. Overflow, the only way a
 * JSON number becomes infinite, is out of range. */
static oxs__number_result_t convert_float(oxs_datatype_t datatype, const char *text, size_t len,
                                          void *buffer, size_t index)
{
    oxs__number_status_t status;
    if (datatype == OXS_DT_FP32) {
        float value = 0;
        status = oxs__number_parse_f32(text, len, &value);
        if (status == OXS__NUMBER_PARSED)
            ((float *)buffer)[index] = value;
    } else {
        double value = 0;
        status = oxs__number_parse_f64(text, len, &value);
        if (status == OXS__NUMBER_PARSED)
            ((double *)buffer)[index] = value;
    }
    switch (status) {
    case OXS__NUMBER_PARSED: return OXS__NUMBER_OK;
    case OXS__NUMBER_OVERFLOW: return OXS__NUMBER_OUT_OF_RANGE;
    default: return OXS__NUMBER_NOT_INTEGER; /* unreachable: yajl checked the number syntax */
    }
}

size_t oxs__utf8_sequence_length(const unsigned char *text, size_t len)
{
    unsigned char lead = text[0];
    size_t need;
    unsigned char low = 0x80;
    unsigned char high = 0xBF;

    if (lead >= 0xC2 && lead <= 0xDF) {
        need = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        need = 3;
        if (lead == 0xE0)
            low = 0xA0;
        else if (lead == 0xED)
            high = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        need = 4;
        if (lead == 0xF0)
            low = 0x90;
        else if (lead == 0xF4)
            high = 0x8F;
    } else {
        return 0;
    }

    if (len < need || text[1] < low || text[1] > high)
        return 0;
    for (size_t i = 2; i < need; i++) {
        if ((text[i] & 0xC0) != 0x80)
            return 0;
    }
    return need;
}

size_t oxs__utf8_check(const char *text, size_t len)
{
    const unsigned char *bytes = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        if (bytes[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = oxs__utf8_sequence_length(bytes + i, len - i);
        if (n == 0)
            return i;
        i += n;
    }
    return len;
}

oxs_status_t oxs__codec_add_input(oxs_request_t *request, const char *name, size_t name_len,
                                  oxs_datatype_t datatype, const int64_t *shape, int rank,
                                  size_t bytes_size, void **data, size_t *byte_size,
                                  char *error, size_t error_size)
{
    if (datatype != OXS_DT_BYTES)
        return oxs_request_add_input(request, name, name_len, datatype, shape, rank, data,
                                     byte_size, error, error_size);
    *byte_size = bytes_size;
    return oxs_request_add_bytes_input(request, name, name_len, shape, rank, bytes_size, data,
                                       error, error_size);
}

bool oxs__json_convert_special(oxs_datatype_t datatype, const char *text, size_t len,
                               void *buffer, size_t index)
{
    static const struct {
        const char *text;
        uint16_t fp16, bf16;
        double value;
    } specials[] = {
        {"NaN", 0x7E00, 0x7FC0, NAN},
        {"Infinity", 0x7C00, 0x7F80, INFINITY},
        {"-Infinity", 0xFC00, 0xFF80, -INFINITY},
    };

    for (size_t i = 0; i < sizeof(specials) / sizeof(specials[0]); i++) {
        if (len != strlen(specials[i].text) || memcmp(text, specials[i].text, len) != 0)
            continue;
        switch (datatype) {
        case OXS_DT_FP16: ((uint16_t *)buffer)[index] = specials[i].fp16; return true;
        case OXS_DT_BF16: ((uint16_t *)buffer)[index] = specials[i].bf16; return true;
        case OXS_DT_FP32: ((float *)buffer)[index] = (float)specials[i].value; return true;
        case OXS_DT_FP64: ((double *)buffer)[index] = specials[i].value; return true;
        default: return false;
        }
    }
    return false;
}

oxs__number_result_t oxs__json_convert_number(oxs_request_t *request, oxs_datatype_t datatype,
                                              const char *text, size_t len, void *buffer,
                                              size_t index)
{
    if (datatype == OXS_DT_FP32 || datatype == OXS_DT_FP64)
        return convert_float(datatype, text, len, buffer, index);
    bool is_float = oxs__json_datatype_is_float(datatype);
    if (!is_float && text_has_fraction_or_exponent(text, len))
        return OXS__NUMBER_NOT_INTEGER;

    /* strtoll and friends need a terminated string, and yajl's text is not terminated. */
    char small[64];
    char *copy = small;
    if (len >= sizeof(small)) {
        /* An integer of 64 digits is out of every integer range. An FP16 or BF16 value may
         * legitimately be written with that many digits, so it gets a scratch copy. */
        if (!is_float)
            return OXS__NUMBER_OUT_OF_RANGE;
        copy = oxs_request_scratch(request, len + 1);
        if (copy == NULL)
            return OXS__NUMBER_OUT_OF_MEMORY;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    if (is_float)
        return convert_float16(datatype, copy, buffer, index);
    return convert_integer(datatype, copy, buffer, index);
}

/* Returns the largest finite value of a float datatype as text that reads back exactly. */
static const char *float_max_text(oxs_datatype_t datatype)
{
    switch (datatype) {
    case OXS_DT_FP16: return "65504";
    case OXS_DT_BF16: return "3.3895314e+38";
    case OXS_DT_FP32: return "3.40282347e+38";
    default: return "1.7976931348623157e+308";
    }
}

void oxs__json_number_error(oxs__msg_t *msg, const char *label, oxs__number_result_t result,
                            oxs_datatype_t datatype, const char *text, size_t len,
                            size_t index)
{
    const char *name = oxs_datatype_name(datatype);

    oxs__msg_printf(msg, "%s: value ", label);
    oxs__msg_value(msg, text, len);
    oxs__msg_printf(msg, " at index %zu ", index);

    integer_range_t range;
    switch (result) {
    case OXS__NUMBER_NOT_INTEGER:
        oxs__msg_printf(msg, "is not valid for %s: expected an integer", name);
        break;
    case OXS__NUMBER_OUT_OF_RANGE:
        if (integer_range(datatype, &range))
            oxs__msg_printf(msg, "is out of range for %s [%" PRId64 ", %" PRIu64 "]", name,
                            range.min, range.max);
        else
            oxs__msg_printf(msg, "is out of range for %s (largest finite magnitude %s)", name,
                            float_max_text(datatype));
        break;
    default:
        oxs__msg_printf(msg, "could not be converted: out of memory");
        break;
    }
}
