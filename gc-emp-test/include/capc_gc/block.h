// block.h — the 128-bit block: wire labels, AES states, OT messages (kappa = 128).
#pragma once
#include <emmintrin.h>  // SSE2 is part of the x86-64 baseline, so this needs no -m flag.
#include <cstdint>
#include <cstring>

namespace capc_gc {

using block = __m128i;

inline block make_block(uint64_t high, uint64_t low) {
  return _mm_set_epi64x(static_cast<long long>(high), static_cast<long long>(low));
}
inline block zero_block() { return _mm_setzero_si128(); }
inline block xor_block(block a, block b) { return _mm_xor_si128(a, b); }
inline block and_block(block a, block b) { return _mm_and_si128(a, b); }
inline bool block_eq(block a, block b) {
  return _mm_movemask_epi8(_mm_cmpeq_epi8(a, b)) == 0xFFFF;
}
// Point-and-permute uses the least significant bit of a label as its colour bit.
inline bool lsb(block a) { return (_mm_cvtsi128_si64(a) & 1) != 0; }
// All-ones block if b, else zero: lets b·X be computed without a branch.
inline block bool_mask(bool b) { return _mm_set1_epi64x(-static_cast<long long>(b)); }
inline uint64_t low64(block a) { return static_cast<uint64_t>(_mm_cvtsi128_si64(a)); }
inline uint64_t high64(block a) {
  return static_cast<uint64_t>(_mm_cvtsi128_si64(_mm_unpackhi_epi64(a, a)));
}
inline block load_block(const void* p) { return _mm_loadu_si128(static_cast<const block*>(p)); }
inline void store_block(void* p, block a) { _mm_storeu_si128(static_cast<block*>(p), a); }

}  // namespace capc_gc
