/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml_crc.h: the CRC-32 that every slurm-dml file carries (dataset shards,
 * checkpoints, model files, inference parts).
 *
 * It is zlib's CRC-32 (the gzip polynomial, reflected): dml_crc32 gives the
 * value crc32_z() gives, so zlib's crc32_combine() joins pieces, and files
 * written by a build without ISA-L verify in one with it and back.
 */
#ifndef DML_CRC_H
#define DML_CRC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library exports what this header declares, and nothing else (it is
 * built with -fvisibility=hidden). */
#pragma GCC visibility push(default)

/* The CRC-32 of buf[0..n) continued from crc (0 to start), as
 * crc32_z(crc, buf, n). ISA-L's folding code where the build has it (many
 * times zlib's speed: docs/benchmarks/design-notes.md), zlib's otherwise. */
uint32_t dml_crc32(uint32_t crc, const void *buf, size_t n);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif /* DML_CRC_H */
