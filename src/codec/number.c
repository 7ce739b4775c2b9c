/*
 * Number codecs between JSON text and float or double.
 *
 * Parsing: a mantissa of at most 19 significant digits (below 2^64) with a decimal exponent
 * in [-27, 27] is multiplied or divided by an exact power of ten in long double. That is one
 * IEEE operation on exact operands, so the long double is correctly rounded. Narrowing it to
 * double or float rounds a second time, which differs from one rounding only when the long
 * double lies exactly on a midpoint between two values of the narrower type. That case, and
 * everything outside the fast range, goes to strtof/strtod.
 *
 * Formatting: every decimal strictly between the midpoints to the neighboring values reads
 * back as the value. For a candidate exponent k, the integers around value / 10^k are tested
 * against those midpoints (in double for float, in long double for double); a test whose
 * rounding error could change the result is settled by strtof/strtod on the candidate text.
 * An exponent that works also works one lower (append a zero), so a binary search finds the
 * shortest text.
 */
#include "codec/number.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The exactness arguments below assume the x87 80-bit format: a 64-bit significand with an
 * explicit integer bit in the low 8 bytes, and float and double arithmetic done in their own
 * precision. */
#if LDBL_MANT_DIG == 64 && LDBL_MAX_10_EXP >= 400 && FLT_EVAL_METHOD == 0

/* Maximum size of the NUL-terminated copy of a number text handed to strtof/strtod. */
#define PARSE_COPY_MAX 1024

/* Powers of ten exact in long double: 5^27 is the largest power of five below 2^64. */
static const long double exact_pow10[28] = {
    1e0L,  1e1L,  1e2L,  1e3L,  1e4L,  1e5L,  1e6L,  1e7L,  1e8L,  1e9L,
    1e10L, 1e11L, 1e12L, 1e13L, 1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L,
    1e20L, 1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L,
};

/* 10^i for i in [-60, 60], each literal correctly rounded to double by the compiler. The
 * range covers value / 10^k for every float, down to 1.4e-45 with 9 digits. */
#define DPOW10_MIN (-60)
#define DPOW10_MAX 60
static const double d_pow10[DPOW10_MAX - DPOW10_MIN + 1] = {
    1e-60, 1e-59, 1e-58, 1e-57, 1e-56, 1e-55, 1e-54, 1e-53, 1e-52, 1e-51,
    1e-50, 1e-49, 1e-48, 1e-47, 1e-46, 1e-45, 1e-44, 1e-43, 1e-42, 1e-41,
    1e-40, 1e-39, 1e-38, 1e-37, 1e-36, 1e-35, 1e-34, 1e-33, 1e-32, 1e-31,
    1e-30, 1e-29, 1e-28, 1e-27, 1e-26, 1e-25, 1e-24, 1e-23, 1e-22, 1e-21,
    1e-20, 1e-19, 1e-18, 1e-17, 1e-16, 1e-15, 1e-14, 1e-13, 1e-12, 1e-11,
    1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1,
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9,
    1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
    1e20, 1e21, 1e22, 1e23, 1e24, 1e25, 1e26, 1e27, 1e28, 1e29,
    1e30, 1e31, 1e32, 1e33, 1e34, 1e35, 1e36, 1e37, 1e38, 1e39,
    1e40, 1e41, 1e42, 1e43, 1e44, 1e45, 1e46, 1e47, 1e48, 1e49,
    1e50, 1e51, 1e52, 1e53, 1e54, 1e55, 1e56, 1e57, 1e58, 1e59,
    1e60,
};

/* 10^i for i in [-360, 360], each literal correctly rounded to long double by the compiler.
 * The range covers value / 10^k for every double, down to 4.9e-324 with 17 digits. */
#define LDPOW10_MIN (-360)
#define LDPOW10_MAX 360
static const long double ld_pow10[LDPOW10_MAX - LDPOW10_MIN + 1] = {
    1e-360L, 1e-359L, 1e-358L, 1e-357L, 1e-356L, 1e-355L, 1e-354L, 1e-353L,
    1e-352L, 1e-351L, 1e-350L, 1e-349L, 1e-348L, 1e-347L, 1e-346L, 1e-345L,
    1e-344L, 1e-343L, 1e-342L, 1e-341L, 1e-340L, 1e-339L, 1e-338L, 1e-337L,
    1e-336L, 1e-335L, 1e-334L, 1e-333L, 1e-332L, 1e-331L, 1e-330L, 1e-329L,
    1e-328L, 1e-327L, 1e-326L, 1e-325L, 1e-324L, 1e-323L, 1e-322L, 1e-321L,
    1e-320L, 1e-319L, 1e-318L, 1e-317L, 1e-316L, 1e-315L, 1e-314L, 1e-313L,
    1e-312L, 1e-311L, 1e-310L, 1e-309L, 1e-308L, 1e-307L, 1e-306L, 1e-305L,
    1e-304L, 1e-303L, 1e-302L, 1e-301L, 1e-300L, 1e-299L, 1e-298L, 1e-297L,
    1e-296L, 1e-295L, 1e-294L, 1e-293L, 1e-292L, 1e-291L, 1e-290L, 1e-289L,
    1e-288L, 1e-287L, 1e-286L, 1e-285L, 1e-284L, 1e-283L, 1e-282L, 1e-281L,
    1e-280L, 1e-279L, 1e-278L, 1e-277L, 1e-276L, 1e-275L, 1e-274L, 1e-273L,
    1e-272L, 1e-271L, 1e-270L, 1e-269L, 1e-268L, 1e-267L, 1e-266L, 1e-265L,
    1e-264L, 1e-263L, 1e-262L, 1e-261L, 1e-260L, 1e-259L, 1e-258L, 1e-257L,
    1e-256L, 1e-255L, 1e-254L, 1e-253L, 1e-252L, 1e-251L, 1e-250L, 1e-249L,
    1e-248L, 1e-247L, 1e-246L, 1e-245L, 1e-244L, 1e-243L, 1e-242L, 1e-241L,
    1e-240L, 1e-239L, 1e-238L, 1e-237L, 1e-236L, 1e-235L, 1e-234L, 1e-233L,
    1e-232L, 1e-231L, 1e-230L, 1e-229L, 1e-228L, 1e-227L, 1e-226L, 1e-225L,
    1e-224L, 1e-223L, 1e-222L, 1e-221L, 1e-220L, 1e-219L, 1e-218L, 1e-217L,
    1e-216L, 1e-215L, 1e-214L, 1e-213L, 1e-212L, 1e-211L, 1e-210L, 1e-209L,
    1e-208L, 1e-207L, 1e-206L, 1e-205L, 1e-204L, 1e-203L, 1e-202L, 1e-201L,
    1e-200L, 1e-199L, 1e-198L, 1e-197L, 1e-196L, 1e-195L, 1e-194L, 1e-193L,
    1e-192L, 1e-191L, 1e-190L, 1e-189L, 1e-188L, 1e-187L, 1e-186L, 1e-185L,
    1e-184L, 1e-183L, 1e-182L, 1e-181L, 1e-180L, 1e-179L, 1e-178L, 1e-177L,
    1e-176L, 1e-175L, 1e-174L, 1e-173L, 1e-172L, 1e-171L, 1e-170L, 1e-169L,
    1e-168L, 1e-167L, 1e-166L, 1e-165L, 1e-164L, 1e-163L, 1e-162L, 1e-161L,
    1e-160L, 1e-159L, 1e-158L, 1e-157L, 1e-156L, 1e-155L, 1e-154L, 1e-153L,
    1e-152L, 1e-151L, 1e-150L, 1e-149L, 1e-148L, 1e-147L, 1e-146L, 1e-145L,
    1e-144L, 1e-143L, 1e-142L, 1e-141L, 1e-140L, 1e-139L, 1e-138L, 1e-137L,
    1e-136L, 1e-135L, 1e-134L, 1e-133L, 1e-132L, 1e-131L, 1e-130L, 1e-129L,
    1e-128L, 1e-127L, 1e-126L, 1e-125L, 1e-124L, 1e-123L, 1e-122L, 1e-121L,
    1e-120L, 1e-119L, 1e-118L, 1e-117L, 1e-116L, 1e-115L, 1e-114L, 1e-113L,
    1e-112L, 1e-111L, 1e-110L, 1e-109L, 1e-108L, 1e-107L, 1e-106L, 1e-105L,
    1e-104L, 1e-103L, 1e-102L, 1e-101L, 1e-100L, 1e-99L, 1e-98L, 1e-97L,
    1e-96L, 1e-95L, 1e-94L, 1e-93L, 1e-92L, 1e-91L, 1e-90L, 1e-89L,
    1e-88L, 1e-87L, 1e-86L, 1e-85L, 1e-84L, 1e-83L, 1e-82L, 1e-81L,
    1e-80L, 1e-79L, 1e-78L, 1e-77L, 1e-76L, 1e-75L, 1e-74L, 1e-73L,
    1e-72L, 1e-71L, 1e-70L, 1e-69L, 1e-68L, 1e-67L, 1e-66L, 1e-65L,
    1e-64L, 1e-63L, 1e-62L, 1e-61L, 1e-60L, 1e-59L, 1e-58L, 1e-57L,
    1e-56L, 1e-55L, 1e-54L, 1e-53L, 1e-52L, 1e-51L, 1e-50L, 1e-49L,
    1e-48L, 1e-47L, 1e-46L, 1e-45L, 1e-44L, 1e-43L, 1e-42L, 1e-41L,
    1e-40L, 1e-39L, 1e-38L, 1e-37L, 1e-36L, 1e-35L, 1e-34L, 1e-33L,
    1e-32L, 1e-31L, 1e-30L, 1e-29L, 1e-28L, 1e-27L, 1e-26L, 1e-25L,
    1e-24L, 1e-23L, 1e-22L, 1e-21L, 1e-20L, 1e-19L, 1e-18L, 1e-17L,
    1e-16L, 1e-15L, 1e-14L, 1e-13L, 1e-12L, 1e-11L, 1e-10L, 1e-9L,
    1e-8L, 1e-7L, 1e-6L, 1e-5L, 1e-4L, 1e-3L, 1e-2L, 1e-1L,
    1e0L, 1e1L, 1e2L, 1e3L, 1e4L, 1e5L, 1e6L, 1e7L,
    1e8L, 1e9L, 1e10L, 1e11L, 1e12L, 1e13L, 1e14L, 1e15L,
    1e16L, 1e17L, 1e18L, 1e19L, 1e20L, 1e21L, 1e22L, 1e23L,
    1e24L, 1e25L, 1e26L, 1e27L, 1e28L, 1e29L, 1e30L, 1e31L,
    1e32L, 1e33L, 1e34L, 1e35L, 1e36L, 1e37L, 1e38L, 1e39L,
    1e40L, 1e41L, 1e42L, 1e43L, 1e44L, 1e45L, 1e46L, 1e47L,
    1e48L, 1e49L, 1e50L, 1e51L, 1e52L, 1e53L, 1e54L, 1e55L,
    1e56L, 1e57L, 1e58L, 1e59L, 1e60L, 1e61L, 1e62L, 1e63L,
    1e64L, 1e65L, 1e66L, 1e67L, 1e68L, 1e69L, 1e70L, 1e71L,
    1e72L, 1e73L, 1e74L, 1e75L, 1e76L, 1e77L, 1e78L, 1e79L,
    1e80L, 1e81L, 1e82L, 1e83L, 1e84L, 1e85L, 1e86L, 1e87L,
    1e88L, 1e89L, 1e90L, 1e91L, 1e92L, 1e93L, 1e94L, 1e95L,
    1e96L, 1e97L, 1e98L, 1e99L, 1e100L, 1e101L, 1e102L, 1e103L,
    1e104L, 1e105L, 1e106L, 1e107L, 1e108L, 1e109L, 1e110L, 1e111L,
    1e112L, 1e113L, 1e114L, 1e115L, 1e116L, 1e117L, 1e118L, 1e119L,
    1e120L, 1e121L, 1e122L, 1e123L, 1e124L, 1e125L, 1e126L, 1e127L,
    1e128L, 1e129L, 1e130L, 1e131L, 1e132L, 1e133L, 1e134L, 1e135L,
    1e136L, 1e137L, 1e138L, 1e139L, 1e140L, 1e141L, 1e142L, 1e143L,
    1e144L, 1e145L, 1e146L, 1e147L, 1e148L, 1e149L, 1e150L, 1e151L,
    1e152L, 1e153L, 1e154L, 1e155L, 1e156L, 1e157L, 1e158L, 1e159L,
    1e160L, 1e161L, 1e162L, 1e163L, 1e164L, 1e165L, 1e166L, 1e167L,
    1e168L, 1e169L, 1e170L, 1e171L, 1e172L, 1e173L, 1e174L, 1e175L,
    1e176L, 1e177L, 1e178L, 1e179L, 1e180L, 1e181L, 1e182L, 1e183L,
    1e184L, 1e185L, 1e186L, 1e187L, 1e188L, 1e189L, 1e190L, 1e191L,
    1e192L, 1e193L, 1e194L, 1e195L, 1e196L, 1e197L, 1e198L, 1e199L,
    1e200L, 1e201L, 1e202L, 1e203L, 1e204L, 1e205L, 1e206L, 1e207L,
    1e208L, 1e209L, 1e210L, 1e211L, 1e212L, 1e213L, 1e214L, 1e215L,
    1e216L, 1e217L, 1e218L, 1e219L, 1e220L, 1e221L, 1e222L, 1e223L,
    1e224L, 1e225L, 1e226L, 1e227L, 1e228L, 1e229L, 1e230L, 1e231L,
    1e232L, 1e233L, 1e234L, 1e235L, 1e236L, 1e237L, 1e238L, 1e239L,
    1e240L, 1e241L, 1e242L, 1e243L, 1e244L, 1e245L, 1e246L, 1e247L,
    1e248L, 1e249L, 1e250L, 1e251L, 1e252L, 1e253L, 1e254L, 1e255L,
    1e256L, 1e257L, 1e258L, 1e259L, 1e260L, 1e261L, 1e262L, 1e263L,
    1e264L, 1e265L, 1e266L, 1e267L, 1e268L, 1e269L, 1e270L, 1e271L,
    1e272L, 1e273L, 1e274L, 1e275L, 1e276L, 1e277L, 1e278L, 1e279L,
    1e280L, 1e281L, 1e282L, 1e283L, 1e284L, 1e285L, 1e286L, 1e287L,
    1e288L, 1e289L, 1e290L, 1e291L, 1e292L, 1e293L, 1e294L, 1e295L,
    1e296L, 1e297L, 1e298L, 1e299L, 1e300L, 1e301L, 1e302L, 1e303L,
    1e304L, 1e305L, 1e306L, 1e307L, 1e308L, 1e309L, 1e310L, 1e311L,
    1e312L, 1e313L, 1e314L, 1e315L, 1e316L, 1e317L, 1e318L, 1e319L,
    1e320L, 1e321L, 1e322L, 1e323L, 1e324L, 1e325L, 1e326L, 1e327L,
    1e328L, 1e329L, 1e330L, 1e331L, 1e332L, 1e333L, 1e334L, 1e335L,
    1e336L, 1e337L, 1e338L, 1e339L, 1e340L, 1e341L, 1e342L, 1e343L,
    1e344L, 1e345L, 1e346L, 1e347L, 1e348L, 1e349L, 1e350L, 1e351L,
    1e352L, 1e353L, 1e354L, 1e355L, 1e356L, 1e357L, 1e358L, 1e359L,
    1e360L,
};

/* ---- parsing ----------------------------------------------------------------------------- */

/* Maximum significant digits a uint64_t mantissa keeps without overflow. */
#define SCAN_DIGITS_MAX 19

/* Exponent digits stop counting here, far beyond any finite or nonzero double. */
#define SCAN_EXPONENT_CAP 100000

typedef struct number_scan {
    bool negative;
    bool truncated;    /* a nonzero digit beyond SCAN_DIGITS_MAX was dropped */
    uint64_t mantissa; /* the first SCAN_DIGITS_MAX significant digits */
    long exponent;     /* value = mantissa * 10^exponent, unless truncated */
} number_scan_t;

static void scan_digit(number_scan_t *scan, int *digits, char c, bool in_fraction)
{
    if (*digits < SCAN_DIGITS_MAX) {
        scan->mantissa = scan->mantissa * 10 + (uint64_t)(c - '0');
        if (scan->mantissa != 0)
            (*digits)++;
        if (in_fraction)
            scan->exponent--;
        return;
    }
    if (c != '0')
        scan->truncated = true;
    if (!in_fraction)
        scan->exponent++;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Checks the JSON number grammar over text[0..len) and fills *scan. Returns false when the
 * text is not a JSON number. */
static bool number_scan(const char *text, size_t len, number_scan_t *scan)
{
    size_t i = 0;
    int digits = 0;
    long exponent = 0;
    bool exponent_negative = false;

    memset(scan, 0, sizeof(*scan));
    if (i < len && text[i] == '-') {
        scan->negative = true;
        i++;
    }
    if (i >= len || !is_digit(text[i]))
        return false;
    if (text[i] == '0') {
        i++;
    } else {
        while (i < len && is_digit(text[i]))
            scan_digit(scan, &digits, text[i++], false);
    }

    if (i < len && text[i] == '.') {
        i++;
        if (i >= len || !is_digit(text[i]))
            return false;
        while (i < len && is_digit(text[i]))
            scan_digit(scan, &digits, text[i++], true);
    }

    if (i < len && (text[i] == 'e' || text[i] == 'E')) {
        i++;
        if (i < len && (text[i] == '+' || text[i] == '-')) {
            exponent_negative = text[i] == '-';
            i++;
        }
        if (i >= len || !is_digit(text[i]))
            return false;
        while (i < len && is_digit(text[i])) {
            if (exponent < SCAN_EXPONENT_CAP)
                exponent = exponent * 10 + (text[i] - '0');
            i++;
        }
        scan->exponent += exponent_negative ? -exponent : exponent;
    }
    return i == len;
}

/* Computes the scanned magnitude rounded once to double, with SSE arithmetic, which is much
 * faster than x87 long double: a mantissa below 2^53 and 10^|exponent| up to 10^22 are both
 * exact doubles, so the one product or quotient is the correctly rounded value. Returns false
 * outside that range. */
static bool fast_double(const number_scan_t *scan, double *out)
{
    if (scan->truncated || scan->mantissa > (UINT64_C(1) << 53) || scan->exponent < -22 ||
        scan->exponent > 22)
        return false;

    double value = (double)scan->mantissa;
    if (scan->exponent < 0)
        value /= d_pow10[-scan->exponent - DPOW10_MIN];
    else
        value *= d_pow10[scan->exponent - DPOW10_MIN];
    *out = value;
    return true;
}

/* Tells whether narrowing value, a normal double or zero, to float rounds as the exact decimal
 * would. Every float midpoint is a double, and rounding to double is monotonic, so a double
 * that is not itself a midpoint lies on the same side of each midpoint as the exact value. */
static bool double_narrows_once(double value)
{
    uint64_t bits;
    memcpy(&bits, &value, sizeof(bits));
    return (bits & ((UINT64_C(1) << 29) - 1)) != (UINT64_C(1) << 28);
}

/* Computes the scanned magnitude rounded once to long double. Returns false outside the range
 * where both operands are exact. */
static bool fast_long_double(const number_scan_t *scan, long double *out)
{
    long double value;

    if (scan->truncated || scan->exponent < -27 || scan->exponent > 27)
        return false;

    value = (long double)scan->mantissa;
    if (scan->exponent < 0)
        value /= exact_pow10[-scan->exponent];
    else
        value *= exact_pow10[scan->exponent];
    *out = value;
    return true;
}

/* Tells whether narrowing value, zero or a normal long double, to a type with
 * 64 - dropped_bits significand bits rounds as the exact decimal would: the dropped bits
 * must not be exactly one half. */
static bool narrows_once(long double value, int dropped_bits)
{
    uint64_t significand;
    uint64_t mask = (UINT64_C(1) << dropped_bits) - 1;

    memcpy(&significand, &value, sizeof(significand));
    return (significand & mask) != (UINT64_C(1) << (dropped_bits - 1));
}

/* Copies text into a NUL-terminated buffer for strtof/strtod. Returns false when it does not fit. */
static bool copy_text(const char *text, size_t len, char *copy)
{
    if (len >= PARSE_COPY_MAX)
        return false;
    memcpy(copy, text, len);
    copy[len] = '\0';
    return true;
}

oxs__number_status_t oxs__number_parse_f64(const char *text, size_t len, double *out)
{
    number_scan_t scan;
    char copy[PARSE_COPY_MAX];
    long double wide;
    double value;

    if (len >= PARSE_COPY_MAX || !number_scan(text, len, &scan))
        return OXS__NUMBER_INVALID;

    if (fast_double(&scan, &value)) {
        *out = scan.negative ? -value : value;
        return OXS__NUMBER_PARSED;
    }
    /* The fast range, 1e-27 to 1.9e46, is inside the normal doubles. */
    if (fast_long_double(&scan, &wide) && narrows_once(wide, 11)) {
        value = (double)wide;
        *out = scan.negative ? -value : value;
        return OXS__NUMBER_PARSED;
    }
    if (scan.mantissa == 0) {
        *out = scan.negative ? -0.0 : 0.0;
        return OXS__NUMBER_PARSED;
    }

    if (!copy_text(text, len, copy))
        return OXS__NUMBER_INVALID;
    value = strtod(copy, NULL);
    *out = value;
    return isinf(value) ? OXS__NUMBER_OVERFLOW : OXS__NUMBER_PARSED;
}

oxs__number_status_t oxs__number_parse_f32(const char *text, size_t len, float *out)
{
    number_scan_t scan;
    char copy[PARSE_COPY_MAX];
    long double wide;
    double narrow;
    float value;

    if (len >= PARSE_COPY_MAX || !number_scan(text, len, &scan))
        return OXS__NUMBER_INVALID;

    if (fast_double(&scan, &narrow) &&
        (narrow == 0 || (narrow >= FLT_MIN && narrow <= FLT_MAX)) &&
        double_narrows_once(narrow)) {
        value = (float)narrow;
        *out = scan.negative ? -value : value;
        return OXS__NUMBER_PARSED;
    }

    /* Subnormal floats keep fewer bits, and values past FLT_MAX may overflow: strtof decides. */
    if (fast_long_double(&scan, &wide) && (wide == 0 || (wide >= FLT_MIN && wide <= FLT_MAX)) &&
        narrows_once(wide, 40)) {
        value = (float)wide;
        *out = scan.negative ? -value : value;
        return OXS__NUMBER_PARSED;
    }
    if (scan.mantissa == 0) {
        *out = scan.negative ? -0.0f : 0.0f;
        return OXS__NUMBER_PARSED;
    }

    if (!copy_text(text, len, copy))
        return OXS__NUMBER_INVALID;
    value = strtof(copy, NULL);
    *out = value;
    return isinf(value) ? OXS__NUMBER_OVERFLOW : OXS__NUMBER_PARSED;
}

/* ---- formatting -------------------------------------------------------------------------- */

/* Writes digits * 10^exponent (digits > 0) as JSON number text, fixed notation for decimal
 * exponents in [-5, 15], else scientific. Returns the length, at most 25 bytes with the NUL. */
static size_t write_decimal(uint64_t digits, int exponent, char *out)
{
    char reversed[20];
    int count = 0;
    int leading;
    size_t len = 0;

    while (digits % 10 == 0) {
        digits /= 10;
        exponent++;
    }
    while (digits != 0) {
        reversed[count++] = (char)('0' + digits % 10);
        digits /= 10;
    }
    leading = exponent + count - 1;

    if (leading >= -5 && leading <= 15) {
        if (leading < 0) {
            out[len++] = '0';
            out[len++] = '.';
            for (int i = -1; i > leading; i--)
                out[len++] = '0';
        }
        for (int i = count - 1; i >= 0; i--) {
            out[len++] = reversed[i];
            if (i > 0 && leading >= 0 && count - 1 - i == leading)
                out[len++] = '.';
        }
        for (int i = count - 1; i < leading; i++)
            out[len++] = '0';
        out[len] = '\0';
        return len;
    }

    out[len++] = reversed[count - 1];
    if (count > 1) {
        out[len++] = '.';
        for (int i = count - 2; i >= 0; i--)
            out[len++] = reversed[i];
    }
    out[len++] = 'e';
    out[len++] = leading < 0 ? '-' : '+';
    if (leading < 0)
        leading = -leading;
    if (leading >= 100)
        out[len++] = (char)('0' + leading / 100);
    if (leading >= 10)
        out[len++] = (char)('0' + leading / 10 % 10);
    out[len++] = (char)('0' + leading % 10);
    out[len] = '\0';
    return len;
}

/* Reads text back with strtof or strtod and compares it with value. */
static bool text_reads_back(const char *text, bool is_f32, double value)
{
    if (is_f32)
        return (double)strtof(text, NULL) == value;
    return strtod(text, NULL) == value;
}

/* A positive finite float and the midpoints to its neighbors, all exact in double. A decimal
 * strictly between low and high reads back as value; one strictly outside reads back as
 * another float. */
typedef struct target_f32 {
    double value;
    double low;
    double high;
} target_f32_t;

/* Tells whether digits * 10^exponent reads back as the target. The double product has a
 * relative error below 2^-52 (two roundings of 2^-53), so a decision more than 2^-48 away
 * from both midpoints is exact. Closer ones are settled by strtof. */
static bool reads_back_f32(const target_f32_t *target, uint64_t digits, int exponent)
{
    double candidate = (double)digits * d_pow10[exponent - DPOW10_MIN];
    double margin = candidate * 0x1p-48;
    char text[OXS__NUMBER_TEXT_MAX];

    if (candidate - target->low > margin && target->high - candidate > margin)
        return true;
    if (target->low - candidate > margin || candidate - target->high > margin)
        return false;
    write_decimal(digits, exponent, text);
    return text_reads_back(text, true, target->value);
}

/* Finds the integer nearest to value / 10^exponent that reads back as the target, trying the
 * rounded quotient first and then its neighbors, nearer one first. Returns false when none
 * does. scaled is below 10^9 with a tiny error, so the true floor and ceiling are among those
 * three. */
static bool find_digits_f32(const target_f32_t *target, int exponent, uint64_t *digits)
{
    double scaled = target->value * d_pow10[-exponent - DPOW10_MIN];
    uint64_t nearest = (uint64_t)(scaled + 0.5);
    uint64_t nearer = (double)nearest > scaled ? nearest - 1 : nearest + 1;
    uint64_t farther = (double)nearest > scaled ? nearest + 1 : nearest - 1;

    if (nearest != 0 && reads_back_f32(target, nearest, exponent)) {
        *digits = nearest;
        return true;
    }
    if (nearer != 0 && nearest != 0 && reads_back_f32(target, nearer, exponent)) {
        *digits = nearer;
        return true;
    }
    if (nearest == 0)
        farther = 1;
    if (farther != 0 && reads_back_f32(target, farther, exponent)) {
        *digits = farther;
        return true;
    }
    return false;
}

/* A positive finite double and the midpoints to its neighbors, all exact in long double. */
typedef struct target_f64 {
    long double value;
    long double low;
    long double high;
} target_f64_t;

/* Tells whether digits * 10^exponent reads back as the target. The long double product has a
 * relative error below 2^-63 (two roundings of 2^-64), so a decision more than 2^-59 away
 * from both midpoints is exact. Closer ones are settled by strtod. */
static bool reads_back_f64(const target_f64_t *target, uint64_t digits, int exponent)
{
    long double candidate = (long double)digits * ld_pow10[exponent - LDPOW10_MIN];
    long double margin = candidate * 0x1p-59L;
    char text[OXS__NUMBER_TEXT_MAX];

    if (candidate - target->low > margin && target->high - candidate > margin)
        return true;
    if (target->low - candidate > margin || candidate - target->high > margin)
        return false;
    write_decimal(digits, exponent, text);
    return text_reads_back(text, false, (double)target->value);
}

/* As find_digits_f32. scaled is below 10^17 with an error below 2^-63 * 2^57, far below 1/2. */
static bool find_digits_f64(const target_f64_t *target, int exponent, uint64_t *digits)
{
    long double scaled = target->value * ld_pow10[-exponent - LDPOW10_MIN];
    uint64_t nearest = (uint64_t)(scaled + 0.5L);
    uint64_t nearer = (long double)nearest > scaled ? nearest - 1 : nearest + 1;
    uint64_t farther = (long double)nearest > scaled ? nearest + 1 : nearest - 1;

    if (nearest != 0 && reads_back_f64(target, nearest, exponent)) {
        *digits = nearest;
        return true;
    }
    if (nearer != 0 && nearest != 0 && reads_back_f64(target, nearer, exponent)) {
        *digits = nearer;
        return true;
    }
    if (nearest == 0)
        farther = 1;
    if (farther != 0 && reads_back_f64(target, farther, exponent)) {
        *digits = farther;
        return true;
    }
    return false;
}

/* Searches the exponent: step j tries decimal_exponent + 1 - j, so at most j + 1 significant
 * digits, where decimal_exponent is floor(log10(value)) or near it. If step j finds digits,
 * step j + 1 does too (append a zero), so a binary search finds the first step that does.
 * max_digits (9 for float, 17 for double) always identify the value, so the last step is
 * checked first. Returns the length, or 0 when even the last step failed. */
static size_t search_shortest(const void *target, bool is_f32, int decimal_exponent,
                              int max_digits, char *out)
{
    int low = 0;
    int high = max_digits - 1;
    uint64_t digits = 0;
    uint64_t best_digits = 0;
    int best_exponent = decimal_exponent + 1 - high;
    bool found;

    found = is_f32 ? find_digits_f32(target, best_exponent, &best_digits)
                   : find_digits_f64(target, best_exponent, &best_digits);
    if (!found)
        return 0;

    /* Most computed values need all max_digits or one or two fewer: step down twice before
     * bisecting the rest. */
    for (int step = 0; step < 2; step++) {
        found = is_f32 ? find_digits_f32(target, best_exponent + 1, &digits)
                       : find_digits_f64(target, best_exponent + 1, &digits);
        if (!found)
            return write_decimal(best_digits, best_exponent, out);
        high--;
        best_digits = digits;
        best_exponent++;
    }

    while (low < high) {
        int middle = low + (high - low) / 2;
        int exponent = decimal_exponent + 1 - middle;

        found = is_f32 ? find_digits_f32(target, exponent, &digits)
                       : find_digits_f64(target, exponent, &digits);
        if (found) {
            high = middle;
            best_digits = digits;
            best_exponent = exponent;
        } else {
            low = middle + 1;
        }
    }
    return write_decimal(best_digits, best_exponent, out);
}

/* Writes zero, NaN and infinities; returns 0 for other values. */
static size_t format_special(double value, char *out)
{
    const char *text;

    if (isnan(value))
        text = "NaN";
    else if (isinf(value))
        text = value < 0 ? "-Infinity" : "Infinity";
    else if (value == 0.0)
        text = signbit(value) ? "-0" : "0";
    else
        return 0;
    memcpy(out, text, strlen(text) + 1);
    return strlen(text);
}

/* Writes value with snprintf at the precision that always round-trips. Used only when the
 * search fails, for example if the table comparisons put floor(log10(value)) one too high.
 * The tests have not reached it. */
static size_t format_with_libc(double value, bool is_f32, char *out)
{
    int len = is_f32 ? snprintf(out, OXS__NUMBER_TEXT_MAX, "%.9g", value)
                     : snprintf(out, OXS__NUMBER_TEXT_MAX, "%.17g", value);

    return len > 0 ? (size_t)len : 0;
}

size_t oxs__number_format_f32(float value, char *out)
{
    target_f32_t target;
    uint32_t bits;
    float below;
    float above;
    int binary_exponent;
    int decimal_exponent;
    size_t sign;
    size_t len;

    len = format_special(value, out);
    if (len != 0)
        return len;

    sign = signbit(value) ? 1 : 0;
    out[0] = '-';
    value = fabsf(value);
    memcpy(&bits, &value, sizeof(bits));
    bits--;
    memcpy(&below, &bits, sizeof(below));
    bits += 2;
    memcpy(&above, &bits, sizeof(above));
    target.value = value;
    target.low = ((double)value + below) / 2;
    if (isinf(above))
        target.high = value + ((double)value - below) / 2;
    else
        target.high = ((double)value + above) / 2;

    /* floor(log10(value)), estimated from the binary exponent (subnormals start low), then fixed. */
    binary_exponent = (int)(bits >> 23) - 127;
    decimal_exponent = (int)((binary_exponent + 200) * 0.30102999566398120) - 61;
    while (target.value >= d_pow10[decimal_exponent + 1 - DPOW10_MIN])
        decimal_exponent++;
    while (target.value < d_pow10[decimal_exponent - DPOW10_MIN])
        decimal_exponent--;

    len = search_shortest(&target, true, decimal_exponent, 9, out + sign);
    if (len == 0)
        len = format_with_libc(target.value, true, out + sign);
    return sign + len;
}

size_t oxs__number_format_f64(double value, char *out)
{
    target_f64_t target;
    uint64_t bits;
    double below;
    double above;
    int binary_exponent;
    int decimal_exponent;
    size_t sign;
    size_t len;

    len = format_special(value, out);
    if (len != 0)
        return len;

    sign = signbit(value) ? 1 : 0;
    out[0] = '-';
    value = fabs(value);
    memcpy(&bits, &value, sizeof(bits));
    bits--;
    memcpy(&below, &bits, sizeof(below));
    bits += 2;
    memcpy(&above, &bits, sizeof(above));
    target.value = value;
    target.low = ((long double)value + below) / 2;
    if (isinf(above))
        target.high = value + ((long double)value - below) / 2;
    else
        target.high = ((long double)value + above) / 2;

    binary_exponent = (int)(bits >> 52) - 1023;
    decimal_exponent = (int)((binary_exponent + 2000) * 0.30102999566398120) - 603;
    while (target.value >= ld_pow10[decimal_exponent + 1 - LDPOW10_MIN])
        decimal_exponent++;
    while (target.value < ld_pow10[decimal_exponent - LDPOW10_MIN])
        decimal_exponent--;

    len = search_shortest(&target, false, decimal_exponent, 17, out + sign);
    if (len == 0)
        len = format_with_libc(value, false, out + sign);
    return sign + len;
}

#else /* no x87 long double: exact but slower C library paths */

/* NOTE: these portable paths are exact but not fast; only x86-64 gets the fast ones above. */
static oxs__number_status_t parse_with_libc(const char *text, size_t len, double *wide,
                                            float *narrow)
{
    char copy[1024];
    char *end = NULL;

    if (len == 0 || len >= sizeof(copy) || (text[0] != '-' && (text[0] < '0' || text[0] > '9')))
        return OXS__NUMBER_INVALID;
    memcpy(copy, text, len);
    copy[len] = '\0';
    if (wide != NULL) {
        *wide = strtod(copy, &end);
        if (end != copy + len)
            return OXS__NUMBER_INVALID;
        return isinf(*wide) ? OXS__NUMBER_OVERFLOW : OXS__NUMBER_PARSED;
    }
    *narrow = strtof(copy, &end);
    if (end != copy + len)
        return OXS__NUMBER_INVALID;
    return isinf(*narrow) ? OXS__NUMBER_OVERFLOW : OXS__NUMBER_PARSED;
}

oxs__number_status_t oxs__number_parse_f64(const char *text, size_t len, double *out)
{
    return parse_with_libc(text, len, out, NULL);
}

oxs__number_status_t oxs__number_parse_f32(const char *text, size_t len, float *out)
{
    return parse_with_libc(text, len, NULL, out);
}

/* Tries each precision in turn and keeps the first text that reads back to the same value. */
size_t oxs__number_format_f32(float value, char *out)
{
    if (isnan(value))
        return (size_t)snprintf(out, OXS__NUMBER_TEXT_MAX, "NaN");
    if (isinf(value))
        return (size_t)snprintf(out, OXS__NUMBER_TEXT_MAX, value > 0 ? "Infinity" : "-Infinity");
    int len = 0;
    for (int precision = 1; precision <= 9; precision++) {
        len = snprintf(out, OXS__NUMBER_TEXT_MAX, "%.*g", precision, (double)value);
        if (strtof(out, NULL) == value && signbit(strtof(out, NULL)) == signbit(value))
            break;
    }
    return len > 0 ? (size_t)len : 0;
}

size_t oxs__number_format_f64(double value, char *out)
{
    if (isnan(value))
        return (size_t)snprintf(out, OXS__NUMBER_TEXT_MAX, "NaN");
    if (isinf(value))
        return (size_t)snprintf(out, OXS__NUMBER_TEXT_MAX, value > 0 ? "Infinity" : "-Infinity");
    int len = 0;
    for (int precision = 1; precision <= 17; precision++) {
        len = snprintf(out, OXS__NUMBER_TEXT_MAX, "%.*g", precision, value);
        if (strtod(out, NULL) == value && signbit(strtod(out, NULL)) == signbit(value))
            break;
    }
    return len > 0 ? (size_t)len : 0;
}

#endif
