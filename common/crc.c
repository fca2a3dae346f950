/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * crc.c: dml_crc32 (see dml_crc.h).
 */
#include "config.h"

#include "dml_crc.h"

#ifdef HAVE_ISAL
#include <isa-l/crc.h>
#else
#include <zlib.h>
#endif

uint32_t dml_crc32(uint32_t crc, const void *buf, size_t n)
{
    if (n == 0)
        return crc;
#ifdef HAVE_ISAL
    /* crc32_gzip_refl takes and returns the same pre- and post-inverted
     * value as zlib: the two chain into each other. */
    return crc32_gzip_refl(crc, buf, (uint64_t)n);
#else
    return (uint32_t)crc32_z(crc, buf, n);
#endif
}
