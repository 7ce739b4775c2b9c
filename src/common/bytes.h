/*
 * Reading the 4-byte little-endian length that starts each BYTES element in the KServe v2
 * binary layout, shared by the library and the codec.
 */
#ifndef OXS_COMMON_BYTES_H
#define OXS_COMMON_BYTES_H

#include <stdint.h>

/* Returns the little-endian uint32 at bytes[0..3]. */
static inline uint32_t oxs__load_u32_le(const unsigned char *bytes)
{
    return (uint32_t)bytes[0] | (uint32_t)bytes[1] << 8 | (uint32_t)bytes[2] << 16 |
           (uint32_t)bytes[3] << 24;
}

#endif /* OXS_COMMON_BYTES_H */
