/*
 * Conversions between JSON number text and the 16-bit float formats FP16 (IEEE 754 binary16)
 * and BF16 (bfloat16, the top half of a binary32). Decoding rounds the decimal value to
 * nearest, ties to even; encoding writes the shortest decimal that decodes to the same bits.
 * Not part of the codec's interface.
 */
#ifndef OXS_CODEC_FLOAT16_H
#define OXS_CODEC_FLOAT16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Maximum length of the text oxs__float16_format writes, the terminating NUL included. */
#define OXS__FLOAT16_TEXT_MAX 32

/* Converts bits of the datatype to float; every FP16 and BF16 value is exact in float. */
float oxs__fp16_to_float(uint16_t bits);
float oxs__bf16_to_float(uint16_t bits);

/* Parses text, a NUL-terminated number in JSON syntax, into *bits, rounded to nearest with
 * ties to even from the exact decimal value. is_bf16 selects BF16, else FP16. Returns false
 * when the value rounds beyond the largest finite value (65504 for FP16, about 3.3895e38 for
 * BF16) and leaves *bits alone. Values below the smallest subnormal round to a signed zero. */
bool oxs__float16_parse(bool is_bf16, const char *text, uint16_t *bits);

/* Writes the shortest decimal that oxs__float16_parse reads back as bits into text (at least
 * OXS__FLOAT16_TEXT_MAX bytes), NUL-terminated, and returns its length. Shortest means the
 * fewest significant digits, in %g form, or written in full for an integer where that is not
 * longer (65500, not 6.55e+04). NaN and infinities are written as NaN, Infinity and -Infinity,
 * without quotes. */
size_t oxs__float16_format(bool is_bf16, uint16_t bits, char *text);

#endif /* OXS_CODEC_FLOAT16_H */
