/* The sampling generator of both libraries (csrc/cpu/sample.c, csrc/cuda/sample.cu): one copy, so the
 * same (seed, sequence, step) draws the same uniform on every device. */
#ifndef SERL_PHILOX_H
#define SERL_PHILOX_H

#include "common.h"

/* Random123's Philox4x32 with 10 rounds: counter ctr, key (k0, k1), result in ctr. */
static SERL_HD void philox4x32_10(uint32_t ctr[4], uint32_t k0, uint32_t k1) {
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * ctr[0], p1 = (uint64_t)0xCD9E8D57u * ctr[2];
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0, hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t c0 = hi1 ^ ctr[1] ^ k0, c2 = hi0 ^ ctr[3] ^ k1;
        ctr[0] = c0, ctr[1] = lo1, ctr[2] = c2, ctr[3] = lo0;
        k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
    }
}

/* Uniform double in [0,1) with 53 bits: key = seed, counter = (seq_id, step, 0). */
static SERL_HD double philox_uniform(uint64_t seed, uint64_t seq, uint32_t step) {
    uint32_t c[4] = {(uint32_t)seq, (uint32_t)(seq >> 32), step, 0};
    philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
    uint64_t bits = ((uint64_t)c[0] << 32 | c[1]) >> 11;
    return (double)bits * 0x1.0p-53;
}

#endif
