/*
 * Benchmark of the number codecs against the C library: parsing against strtof/strtod and
 * formatting against snprintf "%.9g"/"%.17g", on one million values from two sets: random
 * finite bit patterns and uniform values in [-1, 1). Prints nanoseconds per value, the median
 * of five runs. Pin it to one core for stable numbers: taskset -c 1 ./bench_number
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/number.h"

#define VALUE_COUNT 1000000
#define RUN_COUNT 5
#define TEXT_STRIDE 32

static uint64_t rng_state = 0x2545F4914F6CDD1Du;

static uint64_t random_u64(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static double now_seconds(void)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return (x > y) - (x < y);
}

typedef enum bench_case {
    PARSE_F32_OURS,
    PARSE_F32_LIBC,
    PARSE_F64_OURS,
    PARSE_F64_LIBC,
    FORMAT_F32_OURS,
    FORMAT_F32_LIBC,
    FORMAT_F64_OURS,
    FORMAT_F64_LIBC,
} bench_case_t;

typedef struct bench_data {
    float *floats;
    double *doubles;
    char *float_texts;  /* "%.9g" of floats, TEXT_STRIDE bytes each */
    char *double_texts; /* "%.17g" of doubles */
    size_t *float_lengths;
    size_t *double_lengths;
} bench_data_t;

/* Runs one case over all values and returns seconds. The checksum keeps the work alive. */
static double run_case(const bench_data_t *data, bench_case_t bench_case, double *checksum)
{
    char text[OXS__NUMBER_TEXT_MAX];
    double start = now_seconds();
    double sum = 0.0;

    for (size_t i = 0; i < VALUE_COUNT; i++) {
        const char *float_text = data->float_texts + i * TEXT_STRIDE;
        const char *double_text = data->double_texts + i * TEXT_STRIDE;
        float f32 = 0.0f;
        double f64 = 0.0;

        switch (bench_case) {
        case PARSE_F32_OURS:
            oxs__number_parse_f32(float_text, data->float_lengths[i], &f32);
            sum += f32;
            break;
        case PARSE_F32_LIBC:
            sum += strtof(float_text, NULL);
            break;
        case PARSE_F64_OURS:
            oxs__number_parse_f64(double_text, data->double_lengths[i], &f64);
            sum += f64;
            break;
        case PARSE_F64_LIBC:
            sum += strtod(double_text, NULL);
            break;
        case FORMAT_F32_OURS:
            sum += (double)oxs__number_format_f32(data->floats[i], text);
            break;
        case FORMAT_F32_LIBC:
            sum += snprintf(text, sizeof(text), "%.9g", (double)data->floats[i]);
            break;
        case FORMAT_F64_OURS:
            sum += (double)oxs__number_format_f64(data->doubles[i], text);
            break;
        case FORMAT_F64_LIBC:
            sum += snprintf(text, sizeof(text), "%.17g", data->doubles[i]);
            break;
        }
    }
    *checksum += sum;
    return now_seconds() - start;
}

static double median_ns(const bench_data_t *data, bench_case_t bench_case, double *checksum)
{
    double runs[RUN_COUNT];

    for (int r = 0; r < RUN_COUNT; r++)
        runs[r] = run_case(data, bench_case, checksum) * 1e9 / VALUE_COUNT;
    qsort(runs, RUN_COUNT, sizeof(runs[0]), compare_doubles);
    return runs[RUN_COUNT / 2];
}

static void fill(bench_data_t *data, int uniform)
{
    for (size_t i = 0; i < VALUE_COUNT; i++) {
        float f32;
        double f64;
        uint32_t bits32;
        uint64_t bits64;

        do {
            bits32 = (uint32_t)random_u64();
            memcpy(&f32, &bits32, sizeof(f32));
        } while (!isfinite(f32));
        do {
            bits64 = random_u64();
            memcpy(&f64, &bits64, sizeof(f64));
        } while (!isfinite(f64));
        if (uniform) {
            f64 = (double)(random_u64() >> 11) * 0x1p-52 - 1.0;
            f32 = (float)f64;
        }
        data->floats[i] = f32;
        data->doubles[i] = f64;
        data->float_lengths[i] = (size_t)snprintf(data->float_texts + i * TEXT_STRIDE,
                                                  TEXT_STRIDE, "%.9g", (double)f32);
        data->double_lengths[i] = (size_t)snprintf(data->double_texts + i * TEXT_STRIDE,
                                                   TEXT_STRIDE, "%.17g", f64);
    }
}

int main(void)
{
    static const char *const set_names[] = {"random finite bit patterns", "uniform in [-1, 1)"};
    bench_data_t data;
    double checksum = 0.0;
    int status = 1;

    data.floats = malloc(VALUE_COUNT * sizeof(float));
    data.doubles = malloc(VALUE_COUNT * sizeof(double));
    data.float_texts = malloc((size_t)VALUE_COUNT * TEXT_STRIDE);
    data.double_texts = malloc((size_t)VALUE_COUNT * TEXT_STRIDE);
    data.float_lengths = malloc(VALUE_COUNT * sizeof(size_t));
    data.double_lengths = malloc(VALUE_COUNT * sizeof(size_t));
    if (!data.floats || !data.doubles || !data.float_texts || !data.double_texts ||
        !data.float_lengths || !data.double_lengths) {
        fprintf(stderr, "bench_number: out of memory\n");
        goto cleanup;
    }

    printf("ns per value, median of %d runs over %d values\n", RUN_COUNT, VALUE_COUNT);
    for (int set = 0; set < 2; set++) {
        fill(&data, set);
        printf("%s:\n", set_names[set]);
        printf("  parse  f32: %6.1f  strtof: %6.1f\n", median_ns(&data, PARSE_F32_OURS, &checksum),
               median_ns(&data, PARSE_F32_LIBC, &checksum));
        printf("  parse  f64: %6.1f  strtod: %6.1f\n", median_ns(&data, PARSE_F64_OURS, &checksum),
               median_ns(&data, PARSE_F64_LIBC, &checksum));
        printf("  format f32: %6.1f  %%.9g:   %6.1f\n", median_ns(&data, FORMAT_F32_OURS, &checksum),
               median_ns(&data, FORMAT_F32_LIBC, &checksum));
        printf("  format f64: %6.1f  %%.17g:  %6.1f\n", median_ns(&data, FORMAT_F64_OURS, &checksum),
               median_ns(&data, FORMAT_F64_LIBC, &checksum));
    }
    printf("(checksum %g)\n", checksum);
    status = 0;

cleanup:
    free(data.floats);
    free(data.doubles);
    free(data.float_texts);
    free(data.double_texts);
    free(data.float_lengths);
    free(data.double_lengths);
    return status;
}
