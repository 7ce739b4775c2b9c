#include "stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int bench_samples_init(bench_samples *samples, size_t initial_capacity) {
  memset(samples, 0, sizeof(*samples));
  if (initial_capacity == 0) initial_capacity = 1;
  samples->values = malloc(initial_capacity * sizeof(*samples->values));
  if (samples->values == NULL) return -1;
  samples->capacity = initial_capacity;
  return 0;
}

void bench_samples_free(bench_samples *samples) {
  free(samples->values);
  memset(samples, 0, sizeof(*samples));
}

void bench_samples_clear(bench_samples *samples) {
  samples->count = 0;
  samples->sorted = 0;
}

int bench_samples_add(bench_samples *samples, uint64_t latency_ns) {
  if (samples->count == samples->capacity) {
    size_t capacity = samples->capacity * 2;
    uint64_t *values = realloc(samples->values, capacity * sizeof(*values));
    if (values == NULL) return -1;
    samples->values = values;
    samples->capacity = capacity;
  }
  samples->values[samples->count++] = latency_ns;
  samples->sorted = 0;
  return 0;
}

static int compare_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a;
  uint64_t y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

static void sort_samples(bench_samples *samples) {
  if (!samples->sorted) {
    qsort(samples->values, samples->count, sizeof(*samples->values), compare_u64);
    samples->sorted = 1;
  }
}

uint64_t bench_samples_percentile(bench_samples *samples, double percent) {
  if (samples->count == 0) return 0;
  sort_samples(samples);
  /* Nearest rank: ceil(p/100 * n), 1-based. The small epsilon keeps 99.9 / 100 * 1000, which
   * binary floating point computes as 999.0000000000001, at rank 999. */
  double exact = percent / 100.0 * (double)samples->count;
  size_t rank = (size_t)ceil(exact - 1e-9);
  if (rank < 1) rank = 1;
  if (rank > samples->count) rank = samples->count;
  return samples->values[rank - 1];
}

void bench_samples_summarize(bench_samples *samples, uint64_t elapsed_ns, bench_summary *summary) {
  memset(summary, 0, sizeof(*summary));
  summary->count = samples->count;
  if (elapsed_ns > 0) summary->throughput = (double)samples->count * 1e9 / (double)elapsed_ns;
  if (samples->count == 0) return;
  summary->p50_ms = (double)bench_samples_percentile(samples, 50.0) / 1e6;
  summary->p90_ms = (double)bench_samples_percentile(samples, 90.0) / 1e6;
  summary->p99_ms = (double)bench_samples_percentile(samples, 99.0) / 1e6;
  summary->p999_ms = (double)bench_samples_percentile(samples, 99.9) / 1e6;
  summary->max_ms = (double)samples->values[samples->count - 1] / 1e6;
}

void bench_rng_seed(bench_rng *rng, uint64_t seed) {
  rng->state = seed;
}

uint64_t bench_rng_next(bench_rng *rng) {
  /* splitmix64: a Weyl sequence step followed by two xor-shift-multiply mixing rounds. */
  uint64_t z = (rng->state += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

double bench_rng_uniform(bench_rng *rng) {
  return (double)(bench_rng_next(rng) >> 11) * 0x1.0p-53;
}

void bench_poisson_init(bench_poisson *schedule, uint64_t seed, double rate_per_sec,
                        uint64_t start_ns) {
  bench_rng_seed(&schedule->rng, seed);
  schedule->rate_per_sec = rate_per_sec;
  schedule->next_ns = start_ns;
  bench_poisson_next(schedule);
}

uint64_t bench_poisson_next(bench_poisson *schedule) {
  uint64_t current = schedule->next_ns;
  /* Inverse transform sampling: -ln(1 - u) / rate is exponential, and 1 - u is in (0, 1]. */
  double gap_sec = -log(1.0 - bench_rng_uniform(&schedule->rng)) / schedule->rate_per_sec;
  schedule->next_ns += (uint64_t)llround(gap_sec * 1e9);
  return current;
}

int bench_values_agree(double a, double b, double percent) {
  double larger = fmax(fabs(a), fabs(b));
  return fabs(a - b) <= percent / 100.0 * larger;
}

int bench_windows_agree(const bench_summary *previous, const bench_summary *current,
                        double percent) {
  return bench_values_agree(previous->throughput, current->throughput, percent) &&
         bench_values_agree(previous->p50_ms, current->p50_ms, percent);
}
