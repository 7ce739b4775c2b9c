/*
 * The allocator wrappers behind fault_alloc.h. The linker sends the project's calls to malloc,
 * calloc, realloc, strdup, strndup and free here (--wrap), and __real_NAME reaches the C
 * library's function, or the sanitizer's when one is linked in.
 *
 * Every block allocated here is recorded in an open-addressing hash table, so that free can
 * tell blocks of the project's code from blocks that a shared library allocated (realpath,
 * jansson) and the project frees. Only recorded blocks count as live.
 */
#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault_alloc.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FAULT_SYMBOLIZE 1
#include <sanitizer/common_interface_defs.h>
#endif
#endif

void *__real_malloc(size_t size);
void *__real_calloc(size_t count, size_t size);
void *__real_realloc(void *ptr, size_t size);
void __real_free(void *ptr);

void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t count, size_t size);
void *__wrap_realloc(void *ptr, size_t size);
char *__wrap_strdup(const char *text);
char *__wrap_strndup(const char *text, size_t max_len);
void __wrap_free(void *ptr);

/* 2^20 slots of 8 bytes: the test keeps far fewer blocks alive, and the table aborts when it
 * is half full rather than slow down. */
#define TABLE_BITS 20
#define TABLE_SIZE ((size_t)1 << TABLE_BITS)
#define SITE_FRAMES 32

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void *table[TABLE_SIZE];
static size_t live;

static bool armed;
static bool injected;
static size_t target;
static size_t counted;
static void *site[SITE_FRAMES];
static int site_depth;

static _Thread_local int pause_depth;

static size_t slot_of(const void *ptr)
{
    uint64_t key = (uint64_t)(uintptr_t)ptr >> 4;
    return (size_t)((key * UINT64_C(0x9e3779b97f4a7c15)) >> (64 - TABLE_BITS));
}

/* Lock held. */
static void record(void *ptr)
{
    if (live >= TABLE_SIZE / 2) {
        static const char message[] = "fault_alloc: more than 2^19 live blocks\n";
        (void)!write(STDERR_FILENO, message, sizeof(message) - 1);
        abort();
    }
    size_t i = slot_of(ptr);
    while (table[i] != NULL)
        i = (i + 1) & (TABLE_SIZE - 1);
    table[i] = ptr;
    live++;
}

/* Removes ptr and returns true when it was recorded. Linear probing with backward-shift
 * deletion, so the table needs no tombstones. Lock held. */
static bool forget(void *ptr)
{
    size_t i = slot_of(ptr);
    while (table[i] != ptr) {
        if (table[i] == NULL)
            return false;
        i = (i + 1) & (TABLE_SIZE - 1);
    }
    table[i] = NULL;
    live--;

    size_t hole = i;
    for (size_t j = (i + 1) & (TABLE_SIZE - 1); table[j] != NULL; j = (j + 1) & (TABLE_SIZE - 1)) {
        size_t home = slot_of(table[j]);
        /* The entry at j may move into the hole unless its home slot lies cyclically in
         * (hole, j]. */
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            table[hole] = table[j];
            table[j] = NULL;
            hole = j;
        }
    }
    return true;
}

/* Counts one allocation call and returns true when it must fail. */
static bool count_call(void)
{
    if (pause_depth > 0)
        return false;
    pthread_mutex_lock(&lock);
    bool fail = false;
    if (armed) {
        counted++;
        if (counted == target) {
            fail = true;
            armed = false;
            injected = true;
            site_depth = backtrace(site, SITE_FRAMES);
        }
    }
    pthread_mutex_unlock(&lock);
    if (fail)
        errno = ENOMEM;
    return fail;
}

static void record_locked(void *ptr)
{
    pthread_mutex_lock(&lock);
    record(ptr);
    pthread_mutex_unlock(&lock);
}

void *__wrap_malloc(size_t size)
{
    if (count_call())
        return NULL;
    void *ptr = __real_malloc(size);
    if (ptr != NULL)
        record_locked(ptr);
    return ptr;
}

void *__wrap_calloc(size_t count, size_t size)
{
    if (count_call())
        return NULL;
    void *ptr = __real_calloc(count, size);
    if (ptr != NULL)
        record_locked(ptr);
    return ptr;
}

void *__wrap_realloc(void *ptr, size_t size)
{
    if (count_call())
        return NULL; /* like a real failure: ptr stays valid */
    void *fresh = __real_realloc(ptr, size);
    if (fresh == NULL && size != 0)
        return NULL;

    pthread_mutex_lock(&lock);
    bool ours = ptr == NULL || forget(ptr);
    /* A block that a shared library allocated stays unrecorded after it moves. */
    if (fresh != NULL && ours)
        record(fresh);
    pthread_mutex_unlock(&lock);
    return fresh;
}

char *__wrap_strdup(const char *text)
{
    size_t len = strlen(text);
    char *copy = __wrap_malloc(len + 1);
    if (copy != NULL)
        memcpy(copy, text, len + 1);
    return copy;
}

char *__wrap_strndup(const char *text, size_t max_len)
{
    size_t len = strnlen(text, max_len);
    char *copy = __wrap_malloc(len + 1);
    if (copy != NULL) {
        memcpy(copy, text, len);
        copy[len] = '\0';
    }
    return copy;
}

void __wrap_free(void *ptr)
{
    if (ptr == NULL)
        return;
    pthread_mutex_lock(&lock);
    forget(ptr);
    pthread_mutex_unlock(&lock);
    __real_free(ptr);
}

void fault_arm(size_t nth)
{
    pthread_mutex_lock(&lock);
    armed = nth > 0;
    injected = false;
    target = nth;
    counted = 0;
    /* A run with nothing armed keeps the previous site: a failure in that run most likely
     * follows from the previous injection. */
    if (nth > 0)
        site_depth = 0;
    pthread_mutex_unlock(&lock);
}

bool fault_disarm(void)
{
    pthread_mutex_lock(&lock);
    armed = false;
    bool result = injected;
    pthread_mutex_unlock(&lock);
    return result;
}

size_t fault_live_count(void)
{
    pthread_mutex_lock(&lock);
    size_t result = live;
    pthread_mutex_unlock(&lock);
    return result;
}

void fault_pause(void)
{
    pause_depth++;
}

void fault_resume(void)
{
    pause_depth--;
}

void fault_print_site(void)
{
    void *frames[SITE_FRAMES];
    int depth;

    pthread_mutex_lock(&lock);
    depth = site_depth;
    memcpy(frames, site, sizeof(frames));
    pthread_mutex_unlock(&lock);

    if (depth == 0) {
        fprintf(stderr, "no allocation failure was injected\n");
        return;
    }
    fprintf(stderr, "stack of the allocation call that was failed last:\n");
#ifdef FAULT_SYMBOLIZE
    for (int i = 0; i < depth; i++) {
        char line[512];
        /* Return addresses point after the call, so look up the byte before. */
        __sanitizer_symbolize_pc((char *)frames[i] - 1, "%F %L", line, sizeof(line));
        fprintf(stderr, "  #%d %s\n", i, line);
    }
#else
    backtrace_symbols_fd(frames, depth, STDERR_FILENO);
#endif
}

/* backtrace loads libgcc on its first call. Doing that here keeps the first call inside
 * count_call from loading a library while the lock is held. */
__attribute__((constructor)) static void load_unwinder(void)
{
    void *frame;
    backtrace(&frame, 1);
}
