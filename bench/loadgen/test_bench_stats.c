/* Unit tests of onnxserve-bench's statistics (percentiles, Poisson schedule, stability rule) and
 * of its response checks. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "loadgen.h"
#include "stats.h"

static void fill_samples(bench_samples *samples, const uint64_t *values, size_t count) {
  assert_int_equal(bench_samples_init(samples, 4), 0);
  for (size_t i = 0; i < count; i++) assert_int_equal(bench_samples_add(samples, values[i]), 0);
}

static void test_percentile_nearest_rank(void **state) {
  (void)state;
  uint64_t values[100];
  /* 100, 99, ..., 1: reversed, so the percentile has to sort. */
  for (int i = 0; i < 100; i++) values[i] = (uint64_t)(100 - i);
  bench_samples samples;
  fill_samples(&samples, values, 100);
  assert_int_equal(bench_samples_percentile(&samples, 50), 50);
  assert_int_equal(bench_samples_percentile(&samples, 90), 90);
  assert_int_equal(bench_samples_percentile(&samples, 99), 99);
  assert_int_equal(bench_samples_percentile(&samples, 99.9), 100);
  assert_int_equal(bench_samples_percentile(&samples, 100), 100);
  assert_int_equal(bench_samples_percentile(&samples, 0.5), 1);
  bench_samples_free(&samples);
}

static void test_percentile_small_counts(void **state) {
  (void)state;
  uint64_t ten[10] = {10, 20, 30, 40, 50, 60, 70, 80, 90, 100};
  bench_samples samples;
  fill_samples(&samples, ten, 10);
  /* Rank ceil(0.5 * 10) = 5, not 6. */
  assert_int_equal(bench_samples_percentile(&samples, 50), 50);
  assert_int_equal(bench_samples_percentile(&samples, 90), 90);
  assert_int_equal(bench_samples_percentile(&samples, 99), 100);
  bench_samples_free(&samples);

  /* 99.9 / 100 * 1000 is 999.0000000000001 in binary floating point, yet the rank is 999. */
  uint64_t thousand[1000];
  for (int i = 0; i < 1000; i++) thousand[i] = (uint64_t)(i + 1);
  fill_samples(&samples, thousand, 1000);
  assert_int_equal(bench_samples_percentile(&samples, 99.9), 999);
  bench_samples_free(&samples);

  uint64_t one = 7;
  fill_samples(&samples, &one, 1);
  assert_int_equal(bench_samples_percentile(&samples, 50), 7);
  assert_int_equal(bench_samples_percentile(&samples, 99.9), 7);
  bench_samples_free(&samples);

  assert_int_equal(bench_samples_init(&samples, 1), 0);
  assert_int_equal(bench_samples_percentile(&samples, 50), 0);
  bench_samples_free(&samples);
}

static void test_samples_grow_and_clear(void **state) {
  (void)state;
  bench_samples samples;
  assert_int_equal(bench_samples_init(&samples, 2), 0);
  for (uint64_t i = 1; i <= 1000; i++) assert_int_equal(bench_samples_add(&samples, i), 0);
  assert_int_equal(samples.count, 1000);
  assert_true(samples.capacity >= 1000);
  assert_int_equal(bench_samples_percentile(&samples, 50), 500);
  bench_samples_clear(&samples);
  assert_int_equal(samples.count, 0);
  assert_int_equal(bench_samples_add(&samples, 3), 0);
  assert_int_equal(bench_samples_percentile(&samples, 99), 3);
  bench_samples_free(&samples);
}

static void test_summary_fields(void **state) {
  (void)state;
  bench_samples samples;
  assert_int_equal(bench_samples_init(&samples, 8), 0);
  /* 1 ms to 1000 ms, in nanoseconds. */
  for (uint64_t i = 1; i <= 1000; i++) assert_int_equal(bench_samples_add(&samples, i * 1000000), 0);
  bench_summary summary;
  bench_samples_summarize(&samples, 2000000000ull, &summary);
  assert_int_equal(summary.count, 1000);
  assert_true(fabs(summary.throughput - 500.0) < 1e-9);
  assert_true(fabs(summary.p50_ms - 500.0) < 1e-9);
  assert_true(fabs(summary.p90_ms - 900.0) < 1e-9);
  assert_true(fabs(summary.p99_ms - 990.0) < 1e-9);
  assert_true(fabs(summary.p999_ms - 999.0) < 1e-9);
  assert_true(fabs(summary.max_ms - 1000.0) < 1e-9);

  bench_samples_clear(&samples);
  bench_samples_summarize(&samples, 1000000000ull, &summary);
  assert_int_equal(summary.count, 0);
  assert_true(summary.throughput == 0.0);
  assert_true(summary.p99_ms == 0.0);
  bench_samples_free(&samples);
}

static void test_rng_follows_seed(void **state) {
  (void)state;
  bench_rng a, b, c;
  bench_rng_seed(&a, 42);
  bench_rng_seed(&b, 42);
  bench_rng_seed(&c, 43);
  int differs = 0;
  for (int i = 0; i < 1000; i++) {
    uint64_t x = bench_rng_next(&a);
    assert_true(x == bench_rng_next(&b));
    differs |= x != bench_rng_next(&c);
  }
  assert_true(differs);
  for (int i = 0; i < 10000; i++) {
    double u = bench_rng_uniform(&a);
    assert_true(u >= 0.0);
    assert_true(u < 1.0);
  }
}

static void test_poisson_mean_and_spread(void **state) {
  (void)state;
  const double rate = 200.0;
  const int count = 200000;
  bench_poisson schedule;
  bench_poisson_init(&schedule, 7, rate, 1000);
  uint64_t previous = 1000;
  double sum = 0, sum_squares = 0;
  for (int i = 0; i < count; i++) {
    uint64_t arrival = bench_poisson_next(&schedule);
    assert_true(arrival >= previous);
    double gap = (double)(arrival - previous) / 1e9;
    sum += gap;
    sum_squares += gap * gap;
    previous = arrival;
  }
  double mean = sum / count;
  double deviation = sqrt(sum_squares / count - mean * mean);
  /* An exponential gap has mean 1/rate and standard deviation 1/rate. The sequence is fixed by
   * the seed, so these bounds hold on every run. */
  assert_true(fabs(mean * rate - 1.0) < 0.02);
  assert_true(fabs(deviation * rate - 1.0) < 0.03);
}

static void test_poisson_follows_seed(void **state) {
  (void)state;
  bench_poisson a, b, c;
  bench_poisson_init(&a, 5, 1000, 0);
  bench_poisson_init(&b, 5, 1000, 0);
  bench_poisson_init(&c, 6, 1000, 0);
  int differs = 0;
  uint64_t first = 0;
  for (int i = 0; i < 100; i++) {
    uint64_t x = bench_poisson_next(&a);
    if (i == 0) first = x;
    assert_true(x == bench_poisson_next(&b));
    differs |= x != bench_poisson_next(&c);
  }
  assert_true(differs);
  /* The first arrival comes one gap after the start, not at it. */
  assert_true(first > 0);
}

static void test_values_agree(void **state) {
  (void)state;
  assert_true(bench_values_agree(100, 110, 10));
  assert_true(bench_values_agree(110, 100, 10));
  assert_false(bench_values_agree(100, 112, 10));
  assert_true(bench_values_agree(0, 0, 10));
  assert_false(bench_values_agree(0, 1, 10));
  assert_true(bench_values_agree(5, 5, 0));
  assert_false(bench_values_agree(5, 5.01, 0));
}

static void test_windows_agree(void **state) {
  (void)state;
  bench_summary previous = {.throughput = 1000, .p50_ms = 2.0};
  bench_summary close_both = {.throughput = 1050, .p50_ms = 2.1};
  bench_summary throughput_off = {.throughput = 1300, .p50_ms = 2.0};
  bench_summary latency_off = {.throughput = 1000, .p50_ms = 3.0};
  assert_true(bench_windows_agree(&previous, &close_both, 10));
  assert_false(bench_windows_agree(&previous, &throughput_off, 10));
  assert_false(bench_windows_agree(&previous, &latency_off, 10));
  assert_true(bench_windows_agree(&previous, &latency_off, 50));
  /* p99 is not part of the rule. */
  bench_summary tail_off = close_both;
  tail_off.p99_ms = 100;
  assert_true(bench_windows_agree(&previous, &tail_off, 10));
}

static int check(bench_protocol protocol, const char *body, long long header, int outputs) {
  return bench_check_response(protocol, body, strlen(body), header, outputs);
}

static void test_check_json_outputs(void **state) {
  (void)state;
  const char *two = "{\"model_name\":\"m\",\"outputs\":[{\"name\":\"a\",\"shape\":[1,2],"
                    "\"data\":[1,2]},{\"name\":\"b\",\"shape\":[ ],\"data\":[3]}]}";
  assert_true(check(BENCH_PROTOCOL_JSON, two, -1, 2));
  assert_true(check(BENCH_PROTOCOL_JSON, two, -1, 0));
  assert_false(check(BENCH_PROTOCOL_JSON, two, -1, 3));
  assert_false(check(BENCH_PROTOCOL_JSON, "{\"outputs\":[{\"name\":\"a\",\"data\":[1]}]}", -1, 0));
  assert_false(check(BENCH_PROTOCOL_JSON, "{\"outputs\":[{\"shape\":[1,-2]}]}", -1, 0));
  assert_false(check(BENCH_PROTOCOL_JSON, "{\"outputs\":[{\"shape\":\"[1]\"}]}", -1, 0));
  assert_false(check(BENCH_PROTOCOL_JSON, "{\"outputs\":[{\"shape\":[1]}", -1, 0));
  assert_false(check(BENCH_PROTOCOL_JSON, "[1,2]", -1, 0));
  /* A top-level "shape" or one in a string value is not an output's shape. */
  assert_false(check(BENCH_PROTOCOL_JSON, "{\"shape\":[1],\"outputs\":[]}", -1, 0));
  assert_false(check(BENCH_PROTOCOL_JSON,
                     "{\"outputs\":[{\"name\":\"\\\"shape\\\":[1]\",\"data\":[1]}]}", -1, 0));
  assert_false(check(BENCH_PROTOCOL_JSON, "{\"error\":\"input x: bad shape\"}", -1, 0));
}

static void test_check_predict_shape(void **state) {
  (void)state;
  assert_true(check(BENCH_PROTOCOL_PREDICT,
                    "{\"output\":[0.5,0.5],\"shape\":[1,2],\"model\":\"m\"}", -1, 0));
  assert_false(check(BENCH_PROTOCOL_PREDICT, "{\"output\":[0.5,0.5],\"model\":\"m\"}", -1, 0));
  assert_false(check(BENCH_PROTOCOL_PREDICT, "{\"output\":{\"shape\":[2]}}", -1, 0));
}

static void test_check_binary_header(void **state) {
  (void)state;
  const char header[] = "{\"outputs\":[{\"name\":\"y\",\"shape\":[1,2],"
                        "\"parameters\":{\"binary_data_size\":8}}]}";
  char body[sizeof(header) + 8];
  size_t header_length = strlen(header);
  memcpy(body, header, header_length);
  memset(body + header_length, 0, 8);
  assert_true(bench_check_response(BENCH_PROTOCOL_BINARY, body, header_length + 8,
                                   (long long)header_length, 1));
  /* Bytes missing or left over after the header. */
  assert_false(bench_check_response(BENCH_PROTOCOL_BINARY, body, header_length + 4,
                                    (long long)header_length, 1));
  assert_false(bench_check_response(BENCH_PROTOCOL_BINARY, body, header_length + 8,
                                    (long long)header_length - 1, 1));
  assert_false(bench_check_response(BENCH_PROTOCOL_BINARY, body, header_length + 8,
                                    (long long)header_length + 100, 1));
  assert_false(bench_check_response(BENCH_PROTOCOL_BINARY, body, header_length + 8,
                                    (long long)header_length, 2));
  /* A binary request that gets a JSON response is checked as JSON. */
  assert_true(check(BENCH_PROTOCOL_BINARY, "{\"outputs\":[{\"shape\":[2],\"data\":[1,2]}]}", -1,
                    1));
}

static void test_parse_server_stats(void **state) {
  (void)state;
  const char *document =
      "{\"model_stats\":[{\"name\":\"m\",\"version\":\"1\",\"inference_stats\":{"
      "\"queue\":{\"count\":2,\"ns\":3000},\"compute_infer\":{\"count\":1,\"ns\":9000}}},"
      "{\"name\":\"m\",\"version\":\"2\",\"inference_stats\":{"
      "\"queue\":{\"count\":3,\"ns\":1000},\"compute_infer\":{\"count\":3,\"ns\":1000}}}]}";
  bench_server_stats stats;
  assert_int_equal(bench_parse_server_stats(document, strlen(document), &stats), 0);
  assert_true(stats.valid);
  assert_int_equal(stats.queue_count, 5);
  assert_int_equal(stats.queue_ns, 4000);
  assert_int_equal(stats.compute_count, 4);
  assert_int_equal(stats.compute_ns, 10000);
  assert_int_equal(bench_parse_server_stats("{\"error\":\"x\"}", 13, &stats), -1);
  assert_false(stats.valid);
  assert_int_equal(bench_parse_server_stats("not json", 8, &stats), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_percentile_nearest_rank),
      cmocka_unit_test(test_percentile_small_counts),
      cmocka_unit_test(test_samples_grow_and_clear),
      cmocka_unit_test(test_summary_fields),
      cmocka_unit_test(test_rng_follows_seed),
      cmocka_unit_test(test_poisson_mean_and_spread),
      cmocka_unit_test(test_poisson_follows_seed),
      cmocka_unit_test(test_values_agree),
      cmocka_unit_test(test_windows_agree),
      cmocka_unit_test(test_check_json_outputs),
      cmocka_unit_test(test_check_predict_shape),
      cmocka_unit_test(test_check_binary_header),
      cmocka_unit_test(test_parse_server_stats),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
