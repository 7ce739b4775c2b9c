/* Statistics for onnxserve-bench: latency samples and percentiles, the seeded random generator
 * and Poisson arrival schedule of the open loop, and the rule that decides when two measurement
 * windows agree. No I/O, so the unit test drives it directly. */
#ifndef OXS_BENCH_STATS_H
#define OXS_BENCH_STATS_H

#include <stddef.h>
#include <stdint.h>

/* Latencies of one measurement window in nanoseconds. The array grows by doubling, so recording
 * allocates only when a window has more samples than any window before it. */
typedef struct {
  uint64_t *values;
  size_t count;
  size_t capacity;
  int sorted;
} bench_samples;

/* Summary of one window. Percentiles use the nearest-rank definition: the smallest sample with
 * at least p percent of the samples at or below it. All fields are 0 for an empty window. */
typedef struct {
  size_t count;
  double throughput; /* successful responses per second over the window */
  double p50_ms, p90_ms, p99_ms, p999_ms, max_ms;
} bench_summary;

int bench_samples_init(bench_samples *samples, size_t initial_capacity);
void bench_samples_free(bench_samples *samples);
void bench_samples_clear(bench_samples *samples);
/* Returns 0, or -1 when the array could not grow (the sample is then dropped). */
int bench_samples_add(bench_samples *samples, uint64_t latency_ns);
/* Sorts the samples in place and returns the nearest-rank percentile (0 < percent <= 100) in
 * nanoseconds, or 0 when there are no samples. */
uint64_t bench_samples_percentile(bench_samples *samples, double percent);
/* Sorts the samples and fills summary. elapsed_ns is the window's length, for the throughput. */
void bench_samples_summarize(bench_samples *samples, uint64_t elapsed_ns, bench_summary *summary);

/* splitmix64: a small, fast generator whose whole sequence follows from the seed. */
typedef struct {
  uint64_t state;
} bench_rng;

void bench_rng_seed(bench_rng *rng, uint64_t seed);
uint64_t bench_rng_next(bench_rng *rng);
/* Uniform double in [0, 1) with 53 random bits. */
double bench_rng_uniform(bench_rng *rng);

/* Poisson arrivals: the gaps between arrivals are exponential with mean 1/rate seconds. */
typedef struct {
  bench_rng rng;
  double rate_per_sec;
  uint64_t next_ns; /* scheduled time of the next arrival */
} bench_poisson;

/* Starts the schedule at start_ns, so the first arrival comes one random gap later. rate_per_sec
 * must be positive. */
void bench_poisson_init(bench_poisson *schedule, uint64_t seed, double rate_per_sec,
                        uint64_t start_ns);
/* Returns the scheduled time of the next arrival and advances the schedule by one gap. */
uint64_t bench_poisson_next(bench_poisson *schedule);

/* Returns 1 when a and b differ by at most percent of the larger one (two zeros agree). */
int bench_values_agree(double a, double b, double percent);
/* The stability rule: two consecutive windows agree when both their throughput and their p50
 * agree within percent. */
int bench_windows_agree(const bench_summary *previous, const bench_summary *current,
                        double percent);

#endif
