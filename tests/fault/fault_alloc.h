/*
 * Allocation failure injection for the fault test build. The test executable links with
 * -Wl,--wrap for malloc, calloc, realloc, strdup, strndup and free (see fault.cmake), so the
 * project's own calls land in fault_alloc.c. These functions arm a failure, count the calls and
 * report the live allocations. All of them are thread-safe.
 */
#ifndef OXS_TESTS_FAULT_ALLOC_H
#define OXS_TESTS_FAULT_ALLOC_H

#include <stdbool.h>
#include <stddef.h>

/* Makes the nth allocation call from now on (1 is the next one) return NULL, on any thread.
 * Calls on a thread inside fault_pause are neither counted nor failed. 0 arms nothing. */
void fault_arm(size_t nth);

/* Stops counting. Returns true when the armed failure was injected since fault_arm. */
bool fault_disarm(void);

/* Returns the number of blocks allocated through the wrappers and not yet freed. */
size_t fault_live_count(void);

/* Excludes the calling thread's allocations from counting, for the test's own buffers. Calls
 * nest. */
void fault_pause(void);
void fault_resume(void);

/* Writes to stderr the stack of the last allocation call that was failed, or a line saying that
 * none was failed since the last fault_arm with a nonzero nth. */
void fault_print_site(void);

#endif /* OXS_TESTS_FAULT_ALLOC_H */
