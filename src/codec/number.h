/*
 * Conversions between JSON number text and float or double. Parsing returns the same bits as
 * strtof/strtod on the same text; formatting writes the shortest decimal that strtof/strtod
 * read back as the same bits. All functions are pure: no allocation, no global state, safe
 * from any thread. Not part of the codec's interface.
 */
#ifndef OXS_CODEC_NUMBER_H
#define OXS_CODEC_NUMBER_H

#include <stdbool.h>
#include <stddef.h>

/* Minimum size of the buffer that oxs__number_format_f32/f64 write into. */
#define OXS__NUMBER_TEXT_MAX 32

typedef enum oxs__number_status {
    OXS__NUMBER_PARSED = 0,
    /* The text is not a JSON number. *out is left alone. */
    OXS__NUMBER_INVALID,
    /* The value rounds beyond the largest finite value: *out is a signed infinity, as from
     * strtof/strtod with ERANGE. Values that round below the smallest subnormal become a signed
     * zero and return OXS__NUMBER_PARSED. */
    OXS__NUMBER_OVERFLOW,
} oxs__number_status_t;

/* Parses text[0..len), one JSON number (an optional '-', digits without leading zeros, an
 * optional fraction and an optional exponent), into *out, rounded to nearest with ties to
 * even. text needs no terminating NUL. A short mantissa with a small exponent is computed
 * directly, and anything else goes through strtof/strtod. Those read '.' as the decimal point
 * only in the "C" locale, the default unless the program calls setlocale.
 * NOTE: texts longer than 1,023 characters return OXS__NUMBER_INVALID, because the copy handed
 * to strtof/strtod lives on the stack. */
oxs__number_status_t oxs__number_parse_f32(const char *text, size_t len, float *out);
oxs__number_status_t oxs__number_parse_f64(const char *text, size_t len, double *out);

/* Writes the shortest decimal that strtof (or strtod) reads back as value, NUL-terminated, into
 * out (at least OXS__NUMBER_TEXT_MAX bytes) and returns its length without the NUL. Among the
 * shortest texts it picks the one nearest to value. The text is valid JSON: "1.5", "-0",
 * "1e-45", "3.4028235e+38". NaN and infinities are written as NaN, Infinity and -Infinity,
 * without quotes, which JSON does not allow: the caller quotes them or rejects them. */
size_t oxs__number_format_f32(float value, char *out);
size_t oxs__number_format_f64(double value, char *out);

#endif
