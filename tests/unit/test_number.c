/*
 * Unit tests of the number codecs: parsing must give the same bits as strtof/strtod on the
 * same text, and formatting must read back bit-exactly with the fewest significant digits.
 * Random cases come from a fixed seed. OXS_NUMBER_TEST_SCALE (a percentage, default 100)
 * shrinks or grows every random count; sanitizer builds default to 25.
 */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec/number.h"

#if defined(__SANITIZE_ADDRESS__)
#define DEFAULT_SCALE 25
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DEFAULT_SCALE 25
#endif
#endif
#ifndef DEFAULT_SCALE
#define DEFAULT_SCALE 100
#endif

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t random_u64(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static long scaled_count(long count)
{
    const char *text = getenv("OXS_NUMBER_TEST_SCALE");
    long scale = DEFAULT_SCALE;

    if (text != NULL && text[0] != '\0')
        scale = strtol(text, NULL, 10);
    if (scale < 1)
        scale = 1;
    return count * scale / 100 + 1;
}

static float float_from_bits(uint32_t bits)
{
    float value;

    memcpy(&value, &bits, sizeof(value));
    return value;
}

static uint32_t float_bits(float value)
{
    uint32_t bits;

    memcpy(&bits, &value, sizeof(bits));
    return bits;
}

static double double_from_bits(uint64_t bits)
{
    double value;

    memcpy(&value, &bits, sizeof(value));
    return value;
}

static uint64_t double_bits(double value)
{
    uint64_t bits;

    memcpy(&bits, &value, sizeof(bits));
    return bits;
}

/* Prints value with printf's conversion 'g', 'e' or 'f' at the given precision. */
static void print_number(char *text, size_t size, char conversion, int precision, double value)
{
    if (conversion == 'e')
        snprintf(text, size, "%.*e", precision, value);
    else if (conversion == 'f')
        snprintf(text, size, "%.*f", precision, value);
    else
        snprintf(text, size, "%.*g", precision, value);
}

/* Parses text both ways and fails, printing the text, unless the bits match strtof/strtod. */
static void check_parse_matches(const char *text)
{
    float expected_f32 = strtof(text, NULL);
    double expected_f64 = strtod(text, NULL);
    float got_f32 = 0.0f;
    double got_f64 = 0.0;
    oxs__number_status_t status;

    status = oxs__number_parse_f32(text, strlen(text), &got_f32);
    if (status == OXS__NUMBER_INVALID || float_bits(got_f32) != float_bits(expected_f32)) {
        print_error("f32 \"%s\": status %d, got %a, strtof %a\n", text, status, (double)got_f32,
                    (double)expected_f32);
        fail();
    }
    assert_int_equal(status, isinf(expected_f32) ? OXS__NUMBER_OVERFLOW : OXS__NUMBER_PARSED);

    status = oxs__number_parse_f64(text, strlen(text), &got_f64);
    if (status == OXS__NUMBER_INVALID || double_bits(got_f64) != double_bits(expected_f64)) {
        print_error("f64 \"%s\": status %d, got %a, strtod %a\n", text, status, got_f64,
                    expected_f64);
        fail();
    }
    assert_int_equal(status, isinf(expected_f64) ? OXS__NUMBER_OVERFLOW : OXS__NUMBER_PARSED);
}

static void test_parse_edge_cases(void **state)
{
    static const char *const texts[] = {
        "0", "-0", "0.0", "-0.0", "0e999", "-0e-999", "0.000000e+5", "1", "-1", "1.5",
        "0.1", "0.2", "0.3", "1e-400", "-1e-400", "1e400", "-1e400", "1e39", "1e38",
        "3.4028235e38", "3.40282347e+38", "3.4028236e38", "3.40282356779733661637539395458142568448e38",
        "3.40282356779733661637539395458142568447e38", "1.7976931348623157e308",
        "1.7976931348623158e308", "1.7976931348623159e308", "2.2250738585072014e-308",
        "2.2250738585072011e-308", "4.9406564584124654e-324", "2.4703282292062328e-324",
        "2.4703282292062327e-324", "1.17549435e-38", "1.1754942e-38", "1.4e-45", "1e-45",
        "7e-46", "7.1e-46", "7.006492321624085e-46", "7.006492321624086e-46",
        "9007199254740992", "9007199254740993", "9007199254740994", "18446744073709551615",
        "18446744073709551616", "12345678901234567890123", "1e22", "1e23", "1e-22", "1e-23",
        "9007199254740993e22", "123456789012345678901234567890e-30",
        "0.00000000000000000000000000000000000000000000000000000000000000000000000000001",
        "16777217", "16777219", "33554435", "1.00000005960464477539062", "1.000000059604644775390625",
        "1.000000059604644775390626", "0.100000001490116119384765625", "8.589973e9", "8.589974e9",
        "2.0000001192092896", "1E5", "1e+5", "1E-5", "-2.5E+10",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        check_parse_matches(texts[i]);
}

static void test_parse_status(void **state)
{
    float f32 = 0.0f;
    double f64 = 0.0;

    (void)state;
    assert_int_equal(oxs__number_parse_f32("1e39", 4, &f32), OXS__NUMBER_OVERFLOW);
    assert_true(isinf(f32) && f32 > 0);
    assert_int_equal(oxs__number_parse_f32("-3.5e38", 7, &f32), OXS__NUMBER_OVERFLOW);
    assert_true(isinf(f32) && f32 < 0);
    assert_int_equal(oxs__number_parse_f64("1e309", 5, &f64), OXS__NUMBER_OVERFLOW);
    assert_true(isinf(f64) && f64 > 0);
    assert_int_equal(oxs__number_parse_f64("1e-400", 6, &f64), OXS__NUMBER_PARSED);
    assert_true(f64 == 0.0);
    assert_int_equal(oxs__number_parse_f32("-0", 2, &f32), OXS__NUMBER_PARSED);
    assert_true(f32 == 0.0f && signbit(f32));
    /* The length bounds the text: the digits after it are not read. */
    assert_int_equal(oxs__number_parse_f64("12345", 2, &f64), OXS__NUMBER_PARSED);
    assert_true(f64 == 12.0);
}

static void test_parse_rejects_invalid(void **state)
{
    static const char *const texts[] = {
        "", "-", "+1", "01", "-01", "00", "1.", ".5", "-.5", "1e", "1e+", "1e-", "1.e5",
        "0x10", "inf", "-inf", "nan", "Infinity", "NaN", "1 ", " 1", "--1", "1.5.2", "1e5.5",
        "1ee5", "1,5", "١",
    };
    float f32 = 7.0f;
    double f64 = 7.0;

    (void)state;
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        if (oxs__number_parse_f32(texts[i], strlen(texts[i]), &f32) != OXS__NUMBER_INVALID ||
            oxs__number_parse_f64(texts[i], strlen(texts[i]), &f64) != OXS__NUMBER_INVALID) {
            print_error("\"%s\" was accepted\n", texts[i]);
            fail();
        }
    }
    assert_true(f32 == 7.0f);
    assert_true(f64 == 7.0);
}

static void test_parse_random_printed_floats(void **state)
{
    static const char conversions[] = {'g', 'g', 'e', 'e', 'f'};
    static const int precisions[] = {9, 6, 3, 8, 1};
    long count = scaled_count(1000000);
    char text[512];

    (void)state;
    for (long i = 0; i < count; i++) {
        float value = float_from_bits((uint32_t)random_u64());

        if (!isfinite(value))
            continue;
        print_number(text, sizeof(text), conversions[i % 5], precisions[i % 5], (double)value);
        check_parse_matches(text);
    }
}

static void test_parse_random_printed_doubles(void **state)
{
    static const char conversions[] = {'g', 'g', 'g', 'e', 'g'};
    static const int precisions[] = {17, 16, 15, 10, 3};
    long count = scaled_count(1000000);
    char text[512];

    (void)state;
    for (long i = 0; i < count; i++) {
        double value = double_from_bits(random_u64());

        /* Half of the cases between about 1e-34 and 6e17, where short texts take the fast path. */
        if (i % 2 == 0)
            value = ldexp((double)(random_u64() >> 11), (int)(random_u64() % 120) - 113);
        if (!isfinite(value))
            continue;
        print_number(text, sizeof(text), conversions[i % 5], precisions[i % 5], value);
        check_parse_matches(text);
    }
}

/* Texts whose nearest double is exactly a midpoint between two floats, while the decimal
 * itself is not: narrowing that double to float would round the wrong way half of the time.
 * Sixteen digits of a midpoint in [8, 9) always round to that midpoint as a double. */
static void test_parse_float_midpoints(void **state)
{
    long count = scaled_count(200000);
    char text[64];

    (void)state;
    for (long i = 0; i < count; i++) {
        float value = 8.0f + (float)(random_u64() % 0x100000) * 0x1p-20f;
        double midpoint = ((double)value + (double)nextafterf(value, INFINITY)) / 2;

        snprintf(text, sizeof(text), "%.16g", midpoint);
        check_parse_matches(text);
        snprintf(text, sizeof(text), "%.16ge-3", midpoint);
        check_parse_matches(text);
    }
}

/* Random digit strings: 1 to 30 significant digits, a random decimal point and exponent. */
static void test_parse_random_digit_strings(void **state)
{
    long count = scaled_count(1500000);
    char text[128];

    (void)state;
    for (long i = 0; i < count; i++) {
        uint64_t draw = random_u64();
        int digits = 1 + (int)(draw % 30);
        int point = (int)((draw >> 8) % (uint64_t)(digits + 1));
        int exponent_range = (draw >> 16) % 4 == 0 ? 700 : 60;
        int exponent = (int)((draw >> 24) % (uint64_t)exponent_range) - exponent_range / 2;
        size_t len = 0;

        if ((draw >> 40) & 1)
            text[len++] = '-';
        for (int d = 0; d < digits; d++) {
            if (d == point && d > 0)
                text[len++] = '.';
            /* No leading zero, except a lone "0" before the point. */
            if (d == 0)
                text[len++] = (char)('1' + random_u64() % 9);
            else
                text[len++] = (char)('0' + random_u64() % 10);
        }
        if ((draw >> 41) & 1)
            len += (size_t)snprintf(text + len, sizeof(text) - len, "e%d", exponent);
        text[len] = '\0';
        check_parse_matches(text);
    }
}

/* Formats value as f32, fails unless strtof reads it back as the same bits. */
static size_t check_format_f32(float value, char *text)
{
    size_t len = oxs__number_format_f32(value, text);
    float back;

    assert_int_equal(len, strlen(text));
    assert_true(len < OXS__NUMBER_TEXT_MAX);
    back = strtof(text, NULL);
    if (float_bits(back) != float_bits(value)) {
        print_error("f32 %a formatted as \"%s\", read back as %a\n", (double)value, text,
                    (double)back);
        fail();
    }
    return len;
}

static size_t check_format_f64(double value, char *text)
{
    size_t len = oxs__number_format_f64(value, text);
    double back;

    assert_int_equal(len, strlen(text));
    assert_true(len < OXS__NUMBER_TEXT_MAX);
    back = strtod(text, NULL);
    if (double_bits(back) != double_bits(value)) {
        print_error("f64 %a formatted as \"%s\", read back as %a\n", value, text, back);
        fail();
    }
    return len;
}

static void test_format_exact_texts(void **state)
{
    char text[OXS__NUMBER_TEXT_MAX];

    (void)state;
    oxs__number_format_f32(1.5f, text);
    assert_string_equal(text, "1.5");
    oxs__number_format_f32(0.1f, text);
    assert_string_equal(text, "0.1");
    oxs__number_format_f32(FLT_TRUE_MIN, text);
    assert_string_equal(text, "1e-45");
    oxs__number_format_f32(FLT_MAX, text);
    assert_string_equal(text, "3.4028235e+38");
    oxs__number_format_f32(-FLT_MIN, text);
    assert_string_equal(text, "-1.1754944e-38");
    oxs__number_format_f32(0.0f, text);
    assert_string_equal(text, "0");
    oxs__number_format_f32(-0.0f, text);
    assert_string_equal(text, "-0");
    oxs__number_format_f32(100.0f, text);
    assert_string_equal(text, "100");
    oxs__number_format_f32(123456792.0f, text);
    assert_string_equal(text, "123456790");
    oxs__number_format_f32(0.00001f, text);
    assert_string_equal(text, "0.00001");
    oxs__number_format_f32(1e-6f, text);
    assert_string_equal(text, "1e-6");
    oxs__number_format_f32(1e16f, text);
    assert_string_equal(text, "1e+16");
    oxs__number_format_f32(NAN, text);
    assert_string_equal(text, "NaN");
    oxs__number_format_f32(-INFINITY, text);
    assert_string_equal(text, "-Infinity");
    oxs__number_format_f64(INFINITY, text);
    assert_string_equal(text, "Infinity");
    oxs__number_format_f64(0.1, text);
    assert_string_equal(text, "0.1");
    oxs__number_format_f64(0.1 + 0.2, text);
    assert_string_equal(text, "0.30000000000000004");
    oxs__number_format_f64(DBL_MAX, text);
    assert_string_equal(text, "1.7976931348623157e+308");
    oxs__number_format_f64(DBL_TRUE_MIN, text);
    assert_string_equal(text, "5e-324");
    oxs__number_format_f64(-DBL_MIN, text);
    assert_string_equal(text, "-2.2250738585072014e-308");
    oxs__number_format_f64((double)0.1f, text);
    assert_string_equal(text, "0.10000000149011612");
    oxs__number_format_f64(9007199254740993.0, text);
    assert_string_equal(text, "9007199254740992");
}

static void test_format_f32_sweep(void **state)
{
    /* Every 293rd bit pattern, about 14.7 million; every 9973rd under a scale below 100. */
    uint32_t stride = scaled_count(100) > 100 ? 293 : 9973;
    char text[OXS__NUMBER_TEXT_MAX];

    (void)state;
    for (uint64_t bits = 0; bits <= UINT32_MAX; bits += stride) {
        float value = float_from_bits((uint32_t)bits);

        if (isfinite(value))
            check_format_f32(value, text);
    }
    for (int exponent = -149; exponent <= 127; exponent++) {
        check_format_f32(ldexpf(1.0f, exponent), text);
        check_format_f32(nextafterf(ldexpf(1.0f, exponent), 0.0f), text);
        check_format_f32(nextafterf(ldexpf(1.0f, exponent), INFINITY), text);
    }
    check_format_f32(FLT_MAX, text);
    check_format_f32(nextafterf(FLT_MIN, 0.0f), text);
}

static void test_format_f64_random(void **state)
{
    long count = scaled_count(2000000);
    char text[OXS__NUMBER_TEXT_MAX];

    (void)state;
    for (long i = 0; i < count; i++) {
        double value = double_from_bits(random_u64());

        if (i % 2 == 0)
            value = (double)float_from_bits((uint32_t)random_u64());
        if (isfinite(value))
            check_format_f64(value, text);
    }
    for (int exponent = -1074; exponent <= 1023; exponent++) {
        check_format_f64(ldexp(1.0, exponent), text);
        check_format_f64(nextafter(ldexp(1.0, exponent), 0.0), text);
        check_format_f64(nextafter(ldexp(1.0, exponent), INFINITY), text);
    }
    check_format_f64(DBL_MAX, text);
}

/* Counts the significant digits of a number text: digits from the first nonzero one to the
 * last nonzero one of the mantissa. */
static int significant_digits(const char *text)
{
    int first = -1;
    int last = -1;
    int position = 0;

    for (const char *c = text; *c != '\0' && *c != 'e' && *c != 'E'; c++) {
        if (*c < '0' || *c > '9')
            continue;
        if (*c != '0') {
            if (first < 0)
                first = position;
            last = position;
        }
        position++;
    }
    return first < 0 ? 1 : last - first + 1;
}

static void test_format_is_shortest(void **state)
{
    long count = scaled_count(200000);
    char text[OXS__NUMBER_TEXT_MAX];
    char reference[64];

    (void)state;
    for (long i = 0; i < count; i++) {
        float value = float_from_bits((uint32_t)random_u64());
        double wide = double_from_bits(random_u64());
        int precision;

        if (isfinite(value) && value != 0.0f) {
            check_format_f32(value, text);
            for (precision = 1; precision < 9; precision++) {
                snprintf(reference, sizeof(reference), "%.*g", precision, (double)value);
                if (strtof(reference, NULL) == value)
                    break;
            }
            if (significant_digits(text) > precision) {
                print_error("f32 %a: \"%s\" is longer than \"%s\"\n", (double)value, text,
                            reference);
                fail();
            }
        }
        if (isfinite(wide) && wide != 0.0) {
            check_format_f64(wide, text);
            for (precision = 1; precision < 17; precision++) {
                snprintf(reference, sizeof(reference), "%.*g", precision, wide);
                if (strtod(reference, NULL) == wide)
                    break;
            }
            if (significant_digits(text) > precision) {
                print_error("f64 %a: \"%s\" is longer than \"%s\"\n", wide, text, reference);
                fail();
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_edge_cases),
        cmocka_unit_test(test_parse_status),
        cmocka_unit_test(test_parse_rejects_invalid),
        cmocka_unit_test(test_parse_random_printed_floats),
        cmocka_unit_test(test_parse_random_printed_doubles),
        cmocka_unit_test(test_parse_random_digit_strings),
        cmocka_unit_test(test_parse_float_midpoints),
        cmocka_unit_test(test_format_exact_texts),
        cmocka_unit_test(test_format_f32_sweep),
        cmocka_unit_test(test_format_f64_random),
        cmocka_unit_test(test_format_is_shortest),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
