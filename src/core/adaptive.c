/*
 * The adaptive batch delay. The rule, also in docs/ARCHITECTURE.md:
 *   - Every OXS__ADAPTIVE_STEP_EVERY completed requests, take the p99 of the last
 *     OXS__ADAPTIVE_WINDOW latencies.
 *   - Above the target: halve the delay (a delay under 20 us becomes 0), because waiting is
 *     the part of the latency the batcher controls.
 *   - When batches average under 1.25 rows, waiting gathers nothing (a client sending one
 *     request at a time, say): halve the delay, down to 20 us, which keeps probing.
 *   - Otherwise, below 80% of the target: grow the delay by an eighth of the headroom, at
 *     least 20 us, so more requests can join each batch.
 *   - Never wait longer than the target minus twice the average compute time, which leaves a
 *     request that waits the whole delay about two batches' time to finish.
 */
#include "core/adaptive.h"

#include <stdlib.h>
#include <string.h>

#define MIN_STEP_US 20

void oxs__adaptive_init(oxs__adaptive_t *adaptive, int64_t target_us)
{
    memset(adaptive, 0, sizeof(*adaptive));
    adaptive->target_us = target_us;
}

static int compare_latency(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t window_p99(const oxs__adaptive_t *adaptive)
{
    int64_t sorted[OXS__ADAPTIVE_WINDOW];
    memcpy(sorted, adaptive->window, (size_t)adaptive->count * sizeof(int64_t));
    qsort(sorted, (size_t)adaptive->count, sizeof(int64_t), compare_latency);
    int index = (adaptive->count * 99 + 99) / 100 - 1; /* nearest rank */
    return sorted[index < 0 ? 0 : index];
}

void oxs__adaptive_record(oxs__adaptive_t *adaptive, int64_t now_us, int64_t latency_us,
                          int64_t compute_us, int64_t rows)
{
    (void)now_us;
    adaptive->window[adaptive->next] = latency_us;
    adaptive->next = (adaptive->next + 1) % OXS__ADAPTIVE_WINDOW;
    if (adaptive->count < OXS__ADAPTIVE_WINDOW)
        adaptive->count++;
    adaptive->compute_us = adaptive->compute_us == 0
                               ? compute_us
                               : adaptive->compute_us + (compute_us - adaptive->compute_us) / 8;
    adaptive->rows_x16 = adaptive->rows_x16 == 0
                             ? rows * 16
                             : adaptive->rows_x16 + (rows * 16 - adaptive->rows_x16) / 8;
    if (++adaptive->since_step < OXS__ADAPTIVE_STEP_EVERY)
        return;
    adaptive->since_step = 0;

    int64_t p99 = window_p99(adaptive);
    adaptive->last_p99_us = p99;
    if (p99 > adaptive->target_us) {
        adaptive->delay_us /= 2;
        if (adaptive->delay_us < MIN_STEP_US)
            adaptive->delay_us = 0;
    } else if (adaptive->rows_x16 < 20) {
        adaptive->delay_us /= 2;
        if (adaptive->delay_us < MIN_STEP_US)
            adaptive->delay_us = MIN_STEP_US;
    } else if (p99 * 5 < adaptive->target_us * 4) {
        int64_t step = (adaptive->target_us - p99) / 8;
        adaptive->delay_us += step > MIN_STEP_US ? step : MIN_STEP_US;
    }
    int64_t ceiling = adaptive->target_us - 2 * adaptive->compute_us;
    if (adaptive->delay_us > ceiling)
        adaptive->delay_us = ceiling > 0 ? ceiling : 0;
}

int64_t oxs__adaptive_delay_us(const oxs__adaptive_t *adaptive)
{
    return adaptive->delay_us;
}
