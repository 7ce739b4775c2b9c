#include "codec/float16.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A binary floating-point format with a sign bit, exponent bits and precision - 1 stored
 * significand bits: values are significand * 2^(exponent - precision + 1). */
typedef struct format16 {
    int precision; /* significand bits, the implicit leading bit included */
    int emin;      /* exponent of the smallest normal value */
    int emax;      /* exponent of the largest finite value */
} format16_t;

static const format16_t fp16_format = {11, -14, 15};
static const format16_t bf16_format = {8, -126, 127};

/* A positive decimal value 0.D1D2...Dn * 10^exponent, read digit by digit. */
typedef struct decimal {
    const char *first; /* the first non-zero digit */
    const char *dot;   /* the decimal point after first, or NULL */
    size_t count;      /* significant digits, trailing zeros excluded; 0 for zero */
    int64_t exponent;
} decimal_t;

/* Digits of a midpoint between two 16-bit values: the longest, about 98 digits, belong to
 * BF16 midpoints near the smallest subnormal (odd multiples of 2^-134). */
#define MIDPOINT_DIGITS_MAX 160

float oxs__fp16_to_float(uint16_t bits)
{
    uint32_t exponent = (bits >> 10) & 0x1F;
    uint32_t mantissa = bits & 0x3FF;
    float magnitude;

    if (exponent == 0)
        magnitude = ldexpf((float)mantissa, -24); /* zero and subnormals */
    else if (exponent == 31)
        magnitude = mantissa != 0 ? NAN : INFINITY;
    else
        magnitude = ldexpf((float)(mantissa | 0x400), (int)exponent - 25);
    return (bits & 0x8000) != 0 ? -magnitude : magnitude;
}

float oxs__bf16_to_float(uint16_t bits)
{
    uint32_t wide = (uint32_t)bits << 16;
    float value;
    memcpy(&value, &wide, sizeof(value));
    return value;
}

static int decimal_digit(const decimal_t *decimal, size_t i)
{
    if (i >= decimal->count)
        return 0;
    const char *digit = decimal->first + i;
    if (decimal->dot != NULL && digit >= decimal->dot)
        digit++;
    return *digit - '0';
}

/* Reads the magnitude of text, a number in JSON syntax, without rounding. */
static void decimal_from_text(const char *text, decimal_t *out)
{
    const char *p = text;
    int64_t integer_digits = 0, position = 0, first_position = 0, last_position = 0;
    bool seen_dot = false;

    *out = (decimal_t){NULL, NULL, 0, 0};
    if (*p == '-')
        p++;
    for (; (*p >= '0' && *p <= '9') || *p == '.'; p++) {
        if (*p == '.') {
            if (out->first != NULL)
                out->dot = p;
            integer_digits = position;
            seen_dot = true;
            continue;
        }
        if (*p != '0') {
            if (out->first == NULL) {
                out->first = p;
                first_position = position;
            }
            last_position = position;
        }
        position++;
    }
    if (!seen_dot)
        integer_digits = position;
    if (out->first == NULL)
        return;
    out->count = (size_t)(last_position - first_position + 1);

    /* Saturating keeps absurd exponents ordered: the value is compared, never computed. */
    int64_t exponent = 0;
    int exponent_sign = 1;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+')
            exponent_sign = *p++ == '-' ? -1 : 1;
        for (; *p >= '0' && *p <= '9'; p++)
            if (exponent < INT64_C(1) << 40)
                exponent = exponent * 10 + (*p - '0');
    }
    out->exponent = integer_digits - first_position + exponent_sign * exponent;
}

/* Writes the exact decimal digits of value, a positive double with at most a few significant
 * bits between 2^-134 and 2^128, into digits and describes them in out. */
static void decimal_from_double(double value, char *digits, decimal_t *out)
{
    int binary_exponent = 0;
    double fraction = frexp(value, &binary_exponent);
    uint64_t significand = (uint64_t)ldexp(fraction, 53);
    binary_exponent -= 53;
    while ((significand & 1) == 0) {
        significand >>= 1;
        binary_exponent++;
    }

    /* Little-endian decimal digits of significand * 2^e, or of significand * 5^-e for e < 0,
     * which is value * 10^-e. */
    uint8_t reversed[MIDPOINT_DIGITS_MAX];
    size_t count = 0;
    for (; significand > 0; significand /= 10)
        reversed[count++] = (uint8_t)(significand % 10);
    int factor = binary_exponent > 0 ? 2 : 5;
    for (int step = 0; step < abs(binary_exponent); step++) {
        unsigned carry = 0;
        for (size_t i = 0; i < count; i++) {
            unsigned product = reversed[i] * (unsigned)factor + carry;
            reversed[i] = (uint8_t)(product % 10);
            carry = product / 10;
        }
        if (carry > 0 && count < MIDPOINT_DIGITS_MAX)
            reversed[count++] = (uint8_t)carry;
    }

    size_t trailing_zeros = 0;
    while (trailing_zeros < count && reversed[trailing_zeros] == 0)
        trailing_zeros++;
    for (size_t i = 0; i < count; i++)
        digits[i] = (char)('0' + reversed[count - 1 - i]);
    *out = (decimal_t){digits, NULL, count - trailing_zeros,
                       (int64_t)count + (binary_exponent < 0 ? binary_exponent : 0)};
}

/* Returns <0, 0 or >0 as the magnitude of text is below, equal to or above midpoint. */
static int compare_text_to_midpoint(const char *text, double midpoint)
{
    decimal_t number, reference;
    char digits[MIDPOINT_DIGITS_MAX];
    decimal_from_text(text, &number);
    decimal_from_double(midpoint, digits, &reference);

    if (number.count == 0)
        return -1;
    if (number.exponent != reference.exponent)
        return number.exponent < reference.exponent ? -1 : 1;
    size_t count = number.count > reference.count ? number.count : reference.count;
    for (size_t i = 0; i < count; i++) {
        int difference = decimal_digit(&number, i) - decimal_digit(&reference, i);
        if (difference != 0)
            return difference;
    }
    return 0;
}

bool oxs__float16_parse(bool is_bf16, const char *text, uint16_t *bits)
{
    const format16_t *format = is_bf16 ? &bf16_format : &fp16_format;
    uint16_t sign = text[0] == '-' ? 0x8000 : 0;
    double magnitude = fabs(strtod(text, NULL));

    if (isinf(magnitude))
        return false;
    if (magnitude == 0) {
        *bits = sign;
        return true;
    }

    int exponent = ilogb(magnitude);
    if (exponent > format->emax)
        return false;
    if (exponent < format->emin)
        exponent = format->emin; /* subnormal: the quantum stays at its smallest */
    int quantum_exponent = exponent - format->precision + 1;

    /* Both steps are exact: scaling by a power of two, and the fraction of a double below
     * 2^precision. */
    double scaled = ldexp(magnitude, -quantum_exponent);
    double whole = floor(scaled);
    double fraction = scaled - whole;
    uint32_t significand = (uint32_t)whole;

    /* strtod rounded the decimal to the nearest double. When that double is exactly halfway
     * between two 16-bit values, the decimal itself may lie on either side, or on the
     * midpoint, so the text decides. Any other double lies on the same side of every
     * midpoint as the decimal does, because each midpoint is itself a double. */
    bool round_up = fraction > 0.5;
    if (fraction == 0.5) {
        int order = compare_text_to_midpoint(text, ldexp(whole + 0.5, quantum_exponent));
        round_up = order > 0 || (order == 0 && (significand & 1) != 0);
    }
    if (round_up)
        significand++;
    if (significand == UINT32_C(1) << format->precision) {
        significand >>= 1;
        exponent++;
    }
    if (exponent > format->emax)
        return false;

    uint32_t hidden_bit = UINT32_C(1) << (format->precision - 1);
    uint32_t field = significand;
    if (significand >= hidden_bit)
        field = ((uint32_t)(exponent - format->emin + 1) << (format->precision - 1)) |
                (significand - hidden_bit);
    *bits = (uint16_t)(sign | field);
    return true;
}

size_t oxs__float16_format(bool is_bf16, uint16_t bits, char *text)
{
    float value = is_bf16 ? oxs__bf16_to_float(bits) : oxs__fp16_to_float(bits);
    const char *special = NULL;

    if (isnan(value))
        special = "NaN"; /* NOTE: the sign and payload of a NaN are not kept. */
    else if (isinf(value))
        special = value < 0 ? "-Infinity" : "Infinity";
    if (special != NULL) {
        size_t len = strlen(special);
        memcpy(text, special, len + 1);
        return len;
    }

    /* %.*g rounds correctly, so the first precision that reads back has the fewest significant
     * digits. Nine digits identify every float, and so every FP16 and BF16 value. */
    int len = 0;
    for (int digits = 1; digits <= 9; digits++) {
        uint16_t parsed = 0;
        len = snprintf(text, OXS__FLOAT16_TEXT_MAX, "%.*g", digits, (double)value);
        if (oxs__float16_parse(is_bf16, text, &parsed) && parsed == bits)
            break;
    }

    /* %g writes an integer with more digits than its precision in exponent form, such as 1e+01
     * for 10 and 6.55e+04 for 65504. The same value written out in full (10, 65500) is used
     * when it is not longer. Every integer below 2^53 is exact in a double, so %.0f writes
     * the same value. */
    double shortest = strtod(text, NULL);
    if (strchr(text, 'e') != NULL && fabs(shortest) >= 1 && fabs(shortest) < 0x1p53) {
        char plain[OXS__FLOAT16_TEXT_MAX];
        int plain_len = snprintf(plain, sizeof(plain), "%.0f", shortest);
        if (plain_len > 0 && plain_len <= len) {
            memcpy(text, plain, (size_t)plain_len + 1);
            len = plain_len;
        }
    }
    return len > 0 ? (size_t)len : 0;
}
