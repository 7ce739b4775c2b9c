/*
 * The adaptive batch delay: how long a forming batch waits for more requests when a model sets
 * dynamic_batching.target_p99_ms. Pure arithmetic on the times it is given, so a test drives it
 * with a simulated clock.
 */
#ifndef OXS_CORE_ADAPTIVE_H
#define OXS_CORE_ADAPTIVE_H

#include <stdint.h>

/* Latencies kept to estimate the p99, and how many new ones trigger an adjustment. */
#define OXS__ADAPTIVE_WINDOW 256
#define OXS__ADAPTIVE_STEP_EVERY 32

typedef struct oxs__adaptive {
    int64_t target_us;
    int64_t delay_us;   /* the delay in effect */
    int64_t compute_us; /* moving average of batch compute times */
    int64_t rows_x16;   /* moving average of batch rows, times 16 */
    int64_t window[OXS__ADAPTIVE_WINDOW];
    int count;          /* latencies in window, up to OXS__ADAPTIVE_WINDOW */
    int next;           /* where the next latency goes */
    int since_step;     /* latencies recorded since the last adjustment */
    int64_t last_p99_us;
} oxs__adaptive_t;

/* Starts with no delay, aiming at a p99 latency of target_us. */
void oxs__adaptive_init(oxs__adaptive_t *adaptive, int64_t target_us);

/* Records one request's latency (enqueue to completion), its batch's compute time, both in
 * microseconds, and its batch's rows, and adjusts the delay every OXS__ADAPTIVE_STEP_EVERY
 * records. now_us is unused by the rule today and kept for callers that replay traces. */
void oxs__adaptive_record(oxs__adaptive_t *adaptive, int64_t now_us, int64_t latency_us,
                          int64_t compute_us, int64_t rows);

/* Returns the delay to wait for a batch to fill, in microseconds. */
int64_t oxs__adaptive_delay_us(const oxs__adaptive_t *adaptive);

#endif /* OXS_CORE_ADAPTIVE_H */
