/*
 * Unit tests for the FP16 and BF16 number conversions of the JSON codec. Every bit pattern
 * survives format then parse. Decimal texts round to nearest with ties to even from their
 * exact value, also where strtod lands exactly on a midpoint. Values beyond the largest finite
 * value are rejected.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "codec/float16.h"

typedef struct parse_case {
    const char *text;
    uint16_t bits;
} parse_case_t;

static float to_float(bool is_bf16, uint16_t bits)
{
    return is_bf16 ? oxs__bf16_to_float(bits) : oxs__fp16_to_float(bits);
}

/* Formats every one of the 65,536 patterns and parses the text back. */
static void check_every_pattern(bool is_bf16)
{
    const char *name = is_bf16 ? "BF16" : "FP16";
    for (uint32_t pattern = 0; pattern <= 0xFFFF; pattern++) {
        uint16_t bits = (uint16_t)pattern;
        char text[OXS__FLOAT16_TEXT_MAX];
        size_t len = oxs__float16_format(is_bf16, bits, text);
        float value = to_float(is_bf16, bits);

        if (len != strlen(text))
            fail_msg("%s 0x%04X: length %zu, text \"%s\"", name, pattern, len, text);
        if (isnan(value)) {
            if (strcmp(text, "NaN") != 0)
                fail_msg("%s 0x%04X is NaN but formats as \"%s\"", name, pattern, text);
            continue;
        }
        if (isinf(value)) {
            const char *expected = value < 0 ? "-Infinity" : "Infinity";
            if (strcmp(text, expected) != 0)
                fail_msg("%s 0x%04X formats as \"%s\", expected \"%s\"", name, pattern, text,
                         expected);
            continue;
        }
        uint16_t parsed = 0;
        if (!oxs__float16_parse(is_bf16, text, &parsed))
            fail_msg("%s 0x%04X formats as \"%s\", which parses as out of range", name,
                     pattern, text);
        if (parsed != bits)
            fail_msg("%s 0x%04X formats as \"%s\", which parses back as 0x%04X", name, pattern,
                     text, parsed);
    }
}

static void test_fp16_every_pattern_round_trips(void **state)
{
    (void)state;
    check_every_pattern(false);
}

static void test_bf16_every_pattern_round_trips(void **state)
{
    (void)state;
    check_every_pattern(true);
}

/* Checks that one significant digit fewer than the formatted text no longer reads back. */
static void check_text_is_shortest(bool is_bf16)
{
    for (uint32_t pattern = 0; pattern <= 0xFFFF; pattern++) {
        uint16_t bits = (uint16_t)pattern;
        float value = to_float(is_bf16, bits);
        if (!isfinite(value) || value == 0)
            continue;

        char text[OXS__FLOAT16_TEXT_MAX];
        oxs__float16_format(is_bf16, bits, text);
        /* Significant digits: from the first non-zero digit to the last, before any exponent. */
        int digits = 0, counted = 0;
        for (const char *p = text; *p != '\0' && *p != 'e'; p++) {
            if (*p < '0' || *p > '9' || (counted == 0 && *p == '0'))
                continue;
            counted++;
            if (*p != '0')
                digits = counted;
        }
        if (digits <= 1)
            continue;

        char shorter[320]; /* room for any %g text, which the compiler cannot bound here */
        uint16_t parsed = 0;
        snprintf(shorter, sizeof(shorter), "%.*g", digits - 1, (double)value);
        if (oxs__float16_parse(is_bf16, shorter, &parsed) && parsed == bits)
            fail_msg("%s 0x%04X formats as \"%s\" but \"%s\" reads back too",
                     is_bf16 ? "BF16" : "FP16", pattern, text, shorter);
    }
}

static void test_fp16_text_is_shortest(void **state)
{
    (void)state;
    check_text_is_shortest(false);
}

static void test_bf16_text_is_shortest(void **state)
{
    (void)state;
    check_text_is_shortest(true);
}

static void test_format_known_values(void **state)
{
    (void)state;
    static const struct {
        bool is_bf16;
        uint16_t bits;
        const char *text;
    } cases[] = {
        {false, 0x0000, "0"},        {false, 0x8000, "-0"},      {false, 0x3C00, "1"},
        {false, 0x2E66, "0.1"},      {false, 0x7BFF, "65500"},   {false, 0xFBFF, "-65500"},
        {false, 0x0001, "6e-08"},    {false, 0x03FF, "6.1e-05"}, {false, 0x0400, "6.104e-05"},
        {false, 0x3555, "0.3333"},   {false, 0x7C00, "Infinity"}, {false, 0xFC00, "-Infinity"},
        {false, 0x7E00, "NaN"},      {false, 0xFE01, "NaN"},     {true, 0x0000, "0"},
        {true, 0x8000, "-0"},        {true, 0x3F80, "1"},        {true, 0x3DCD, "0.1"},
        {false, 0x4900, "10"},       {false, 0x5640, "100"},     {false, 0x7A1A, "50000"},
        {true, 0x4120, "10"},        {true, 0x47C3, "1e+05"},    {false, 0x7800, "32770"},
        {true, 0x7F7F, "3.39e+38"},  {true, 0x0001, "9e-41"},    {true, 0x7F80, "Infinity"},
        {true, 0xFF80, "-Infinity"}, {true, 0x7FC0, "NaN"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[OXS__FLOAT16_TEXT_MAX];
        oxs__float16_format(cases[i].is_bf16, cases[i].bits, text);
        if (strcmp(text, cases[i].text) != 0)
            fail_msg("%s 0x%04X formats as \"%s\", expected \"%s\"",
                     cases[i].is_bf16 ? "BF16" : "FP16", cases[i].bits, text, cases[i].text);
    }
}

static void check_parse_cases(bool is_bf16, const parse_case_t *cases, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        uint16_t bits = 0xDEAD;
        if (!oxs__float16_parse(is_bf16, cases[i].text, &bits))
            fail_msg("%s \"%s\" parses as out of range, expected 0x%04X",
                     is_bf16 ? "BF16" : "FP16", cases[i].text, cases[i].bits);
        if (bits != cases[i].bits)
            fail_msg("%s \"%s\" parses as 0x%04X, expected 0x%04X", is_bf16 ? "BF16" : "FP16",
                     cases[i].text, bits, cases[i].bits);
    }
}

static void test_fp16_parse_rounds_to_nearest_even(void **state)
{
    (void)state;
    static const parse_case_t cases[] = {
        /* Exact midpoints go to the even neighbor. */
        {"1.00048828125", 0x3C00},        /* 1 + 2^-11, between 0x3C00 and 0x3C01 */
        {"1.00146484375", 0x3C02},        /* 1 + 3 * 2^-11, between 0x3C01 and 0x3C02 */
        {"-1.00146484375", 0xBC02},
        {"2.98023223876953125e-8", 0x0000}, /* 2^-25, half the smallest subnormal */
        {"8.94069671630859375e-8", 0x0002}, /* 3 * 2^-25 */
        /* strtod rounds these to the midpoint itself; the digits beyond decide. */
        {"1.000488281250000000000000000001", 0x3C01},
        {"1.001464843749999999999999999999", 0x3C01},
        {"100146484374999999999999999999e-29", 0x3C01},
        {"0.0000000298023223876953125000000000001", 0x0001},
        {"65519.99999999999999999999", 0x7BFF},
        /* Near, but not at, a midpoint. */
        {"1.0004882812", 0x3C00},
        {"1.0004882813", 0x3C01},
    };
    check_parse_cases(false, cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_bf16_parse_rounds_to_nearest_even(void **state)
{
    (void)state;
    static const parse_case_t cases[] = {
        {"1.00390625", 0x3F80}, /* 1 + 2^-8 */
        {"1.01171875", 0x3F82}, /* 1 + 3 * 2^-8 */
        {"1.00390625000000000000000000001", 0x3F81},
        {"1.01171874999999999999999999999", 0x3F81},
        /* 2^-134, half the smallest subnormal, written out exactly, then just above it. */
        {"4.591774807899560578002877098524397178979162331140966880893561352650067419745028018951416015625e-41",
         0x0000},
        {"4.5917748078995605780028770985243971789791623311409668808935613526500674197450280189514160156251e-41",
         0x0001},
        /* Just below the overflow threshold 2^128 - 2^119. */
        {"339617752923046005526922703901628039167.9999", 0x7F7F},
        {"0.1", 0x3DCD},
    };
    check_parse_cases(true, cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_parse_limits_subnormals_zeros(void **state)
{
    (void)state;
    static const parse_case_t fp16_cases[] = {
        {"65504", 0x7BFF},
        {"-65504", 0xFBFF},
        {"65519", 0x7BFF},
        {"5.9604644775390625e-08", 0x0001}, /* smallest subnormal, 2^-24 */
        {"6e-8", 0x0001},
        {"0.000060975551605224609375", 0x03FF}, /* largest subnormal */
        {"6.103515625e-05", 0x0400},           /* smallest normal */
        {"0", 0x0000},
        {"-0", 0x8000},
        {"-0.0e5", 0x8000},
        {"1e-30", 0x0000},
        {"-1e-30", 0x8000},
        {"-1e-400", 0x8000},
        {"0.0000000000000000000000000000000000000000000000000001e52", 0x3C00},
    };
    check_parse_cases(false, fp16_cases, sizeof(fp16_cases) / sizeof(fp16_cases[0]));

    static const parse_case_t bf16_cases[] = {
        {"3.3895313892515355e38", 0x7F7F},
        {"-3.3895313892515355e38", 0xFF7F},
        {"9.18354961579912115600575419704879435795832466228193376178712270530013483949005603790283203125e-41",
         0x0001},
        {"1.1754943508222875e-38", 0x0080}, /* smallest normal, 2^-126 */
        {"-0", 0x8000},
        {"1e-50", 0x0000},
    };
    check_parse_cases(true, bf16_cases, sizeof(bf16_cases) / sizeof(bf16_cases[0]));
}

static void test_parse_out_of_range(void **state)
{
    (void)state;
    static const struct {
        bool is_bf16;
        const char *text;
    } cases[] = {
        {false, "70000"},
        {false, "65520"}, /* the midpoint above 65504 rounds to even, which is infinity */
        {false, "-65520"},
        {false, "65520.000000000000000000001"},
        {false, "1e400"},
        {true, "1e39"},
        {true, "-1e39"},
        {true, "3.4028235e38"}, /* the largest FP32 value is beyond BF16's range */
        {true, "339617752923046005526922703901628039168"}, /* 2^128 - 2^119, the midpoint */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint16_t bits = 0x1234;
        if (oxs__float16_parse(cases[i].is_bf16, cases[i].text, &bits))
            fail_msg("%s \"%s\" parses as 0x%04X, expected out of range",
                     cases[i].is_bf16 ? "BF16" : "FP16", cases[i].text, bits);
        assert_int_equal(bits, 0x1234);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp16_every_pattern_round_trips),
        cmocka_unit_test(test_bf16_every_pattern_round_trips),
        cmocka_unit_test(test_fp16_text_is_shortest),
        cmocka_unit_test(test_bf16_text_is_shortest),
        cmocka_unit_test(test_format_known_values),
        cmocka_unit_test(test_fp16_parse_rounds_to_nearest_even),
        cmocka_unit_test(test_bf16_parse_rounds_to_nearest_even),
        cmocka_unit_test(test_parse_limits_subnormals_zeros),
        cmocka_unit_test(test_parse_out_of_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
