/* Tensor buffer pool: power-of-two size classes with free lists, shared by all workers. */
#include <pthread.h>
#include <string.h>

#include "core/internal.h"

#define POOL_ALIGN 64
#define POOL_MIN_SHIFT 6  /* smallest class: 64 bytes */
#define POOL_CLASSES 40   /* up to 2^45 bytes, far above any tensor cap */

/* Sits in the POOL_ALIGN bytes just before every buffer handed out. */
typedef struct pool_header {
    void *raw;                /* what the allocator returned */
    struct pool_header *next; /* free list link */
    unsigned size_class;
} pool_header_t;

_Static_assert(sizeof(pool_header_t) <= POOL_ALIGN, "pool header must fit in the alignment pad");

struct oxs__pool {
    const oxs_allocator_t *allocator;
    pthread_mutex_t lock;
    size_t max_cached_bytes;
    size_t cached_bytes;
    pool_header_t *free_lists[POOL_CLASSES];
};

oxs__pool_t *oxs__pool_create(const oxs_allocator_t *allocator, size_t max_cached_bytes)
{
    oxs__pool_t *pool = oxs__calloc(allocator, 1, sizeof(*pool));
    if (pool == NULL)
        return NULL;
    pool->allocator = allocator;
    pool->max_cached_bytes = max_cached_bytes;
    pthread_mutex_init(&pool->lock, NULL);
    return pool;
}

void oxs__pool_destroy(oxs__pool_t *pool)
{
    if (pool == NULL)
        return;
    for (unsigned i = 0; i < POOL_CLASSES; i++) {
        pool_header_t *header = pool->free_lists[i];
        while (header != NULL) {
            pool_header_t *next = header->next;
            oxs__free(pool->allocator, header->raw);
            header = next;
        }
    }
    pthread_mutex_destroy(&pool->lock);
    oxs__free(pool->allocator, pool);
}

static unsigned size_class_of(size_t size)
{
    unsigned shift = POOL_MIN_SHIFT;
    while (shift < POOL_MIN_SHIFT + POOL_CLASSES - 1 && ((size_t)1 << shift) < size)
        shift++;
    return shift - POOL_MIN_SHIFT;
}

void *oxs__pool_get(oxs__pool_t *pool, size_t size)
{
    unsigned size_class = size_class_of(size);
    size_t class_bytes = (size_t)1 << (size_class + POOL_MIN_SHIFT);
    if (class_bytes < size)
        return NULL;

    pthread_mutex_lock(&pool->lock);
    pool_header_t *header = pool->free_lists[size_class];
    if (header != NULL) {
        pool->free_lists[size_class] = header->next;
        pool->cached_bytes -= class_bytes;
    }
    pthread_mutex_unlock(&pool->lock);

    if (header == NULL) {
        if (class_bytes > SIZE_MAX - 2 * POOL_ALIGN)
            return NULL;
        unsigned char *raw = oxs__malloc(pool->allocator, class_bytes + 2 * POOL_ALIGN);
        if (raw == NULL)
            return NULL;
        uintptr_t start = ((uintptr_t)raw + POOL_ALIGN) & ~(uintptr_t)(POOL_ALIGN - 1);
        unsigned char *data = (unsigned char *)start + POOL_ALIGN;
        header = (pool_header_t *)(void *)(data - POOL_ALIGN);
        header->raw = raw;
        header->size_class = size_class;
    }
    header->next = NULL;
    return (unsigned char *)header + POOL_ALIGN;
}

void oxs__pool_put(oxs__pool_t *pool, void *buffer)
{
    if (buffer == NULL)
        return;
    pool_header_t *header = (pool_header_t *)(void *)((unsigned char *)buffer - POOL_ALIGN);
    size_t class_bytes = (size_t)1 << (header->size_class + POOL_MIN_SHIFT);

    pthread_mutex_lock(&pool->lock);
    bool keep = pool->cached_bytes + class_bytes <= pool->max_cached_bytes;
    if (keep) {
        header->next = pool->free_lists[header->size_class];
        pool->free_lists[header->size_class] = header;
        pool->cached_bytes += class_bytes;
    }
    pthread_mutex_unlock(&pool->lock);

    if (!keep)
        oxs__free(pool->allocator, header->raw);
}
