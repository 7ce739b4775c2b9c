/* Per-request bump allocator. */
#include <string.h>

#include "core/internal.h"

struct oxs__arena_chunk {
    oxs__arena_chunk_t *next;
    size_t size; /* usable bytes after the header */
    size_t used;
    _Alignas(16) unsigned char data[];
};

#define ARENA_ALIGN 16

void oxs__arena_init(oxs__arena_t *arena, const oxs_allocator_t *allocator, size_t chunk_size)
{
    arena->allocator = allocator;
    arena->head = NULL;
    arena->chunk_size = chunk_size;
}

void *oxs__arena_alloc(oxs__arena_t *arena, size_t size)
{
    size_t rounded = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (rounded < size)
        return NULL;

    oxs__arena_chunk_t *chunk = arena->head;
    if (chunk == NULL || chunk->size - chunk->used < rounded) {
        /* Chunks grow with demand: at least double the current one, so a large request needs
         * few chunks. */
        size_t want = arena->chunk_size;
        if (chunk != NULL && chunk->size > want / 2)
            want = chunk->size * 2;
        if (want < rounded)
            want = rounded;
        if (want > SIZE_MAX - sizeof(oxs__arena_chunk_t))
            return NULL;
        oxs__arena_chunk_t *fresh = oxs__malloc(arena->allocator, sizeof(*fresh) + want);
        if (fresh == NULL)
            return NULL;
        fresh->next = chunk;
        fresh->size = want;
        fresh->used = 0;
        arena->head = fresh;
        chunk = fresh;
    }

    void *ptr = chunk->data + chunk->used;
    chunk->used += rounded;
    return ptr;
}

/* Largest chunk an arena keeps across resets; a request that needed more allocates again. */
#define ARENA_KEEP_MAX ((size_t)1 << 20)

void oxs__arena_reset(oxs__arena_t *arena)
{
    /* Keep one chunk: the newest, which is the largest because chunks double, when it is at most
     * ARENA_KEEP_MAX, so requests of a steady size stop allocating after a few rounds.
     * Otherwise keep the oldest. */
    oxs__arena_chunk_t *keep = arena->head;
    if (keep != NULL && keep->size > ARENA_KEEP_MAX)
        while (keep->next != NULL)
            keep = keep->next;

    oxs__arena_chunk_t *chunk = arena->head;
    while (chunk != NULL) {
        oxs__arena_chunk_t *next = chunk->next;
        if (chunk != keep)
            oxs__free(arena->allocator, chunk);
        chunk = next;
    }
    if (keep != NULL) {
        keep->next = NULL;
        keep->used = 0;
        if (keep->size > arena->chunk_size)
            arena->chunk_size = keep->size;
    }
    arena->head = keep;
}

void oxs__arena_destroy(oxs__arena_t *arena)
{
    oxs__arena_reset(arena);
    oxs__free(arena->allocator, arena->head);
    arena->head = NULL;
}
