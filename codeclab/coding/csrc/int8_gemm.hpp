// Exact int8 x int8 -> int32 matrix products for the 8-bit integer layers
// (codeclab/entropy_models/integer.py, Int8ConvMixin).
//
// Why our own: torch._int_mm runs oneDNN's kernel only on CPUs with AVX-512 VNNI; elsewhere it
// falls back to a scalar loop about 48x slower than a float32 GEMM (measured on an AVX2 EPYC),
// which made the "fast" 8-bit STEM file 16x slower than the 15-bit one (reports/int8_product).
//
// Arithmetic: C = A B with A [m, k] and B [k, n] int8, every product and sum in int32. The
// callers guarantee |sum| < 2^31 (Int8ConvMixin checks the fan-in), so every summation order
// gives the same integers: the AVX2 kernel, the portable loop and torch._int_mm agree bit for bit.
//
// AVX2 kernel: B is packed once into int16 pairs along k, in strips of 16 columns
// ([strip][pair][column][2]); A is widened to int16 per block of 96 rows. vpmaddwd multiplies a
// broadcast pair (a[i][2p], a[i][2p+1]) with the pairs of 16 columns and adds each pair's two
// products (|2 * 127 * 128| fits int16 x int16 -> int32), a 6 x 16 tile of int32 accumulators
// in registers. Blocks of 256 pairs along k keep a B strip in L1 and a row block in L2.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define CODECLAB_X86 1
#endif

#include "rans.hpp"  // run_parallel

namespace codeclab {

class Int8Matrix {
 public:
  static constexpr int64_t kStrip = 16;      // columns per packed strip (two 8-lane int32 vectors)
  static constexpr int kTileRows = 6;        // rows of a register tile
  static constexpr int64_t kPairBlock = 256; // pairs along k per block
  static constexpr int64_t kRowBlock = 96;   // rows widened to int16 at a time

  // b: row-major [k, n] int8.
  Int8Matrix(const int8_t* b, int64_t k, int64_t n)
      : k_(k), n_(n), pairs_((k + 1) / 2), strips_((n + kStrip - 1) / kStrip), b_(b, b + k * n) {
    packed_.assign(static_cast<size_t>(strips_ * pairs_ * kStrip * 2), 0);
    for (int64_t s = 0; s < strips_; ++s)
      for (int64_t p = 0; p < pairs_; ++p)
        for (int64_t c = 0; c < kStrip && s * kStrip + c < n; ++c)
          for (int64_t e = 0; e < 2 && 2 * p + e < k; ++e)
            packed_[((s * pairs_ + p) * kStrip + c) * 2 + e] = b[(2 * p + e) * n + s * kStrip + c];
  }

  int64_t rows() const { return k_; }
  int64_t columns() const { return n_; }

  static bool vectorised() {
#ifdef CODECLAB_X86
    return __builtin_cpu_supports("avx2");
#else
    return false;
#endif
  }

  // Whether the CPU has AVX-512 VNNI, where torch._int_mm runs oneDNN's kernel (the caller's choice).
  static bool vnni() {
#ifdef CODECLAB_X86
    return __builtin_cpu_supports("avx512vnni");
#else
    return false;
#endif
  }

  // c = a b for a: row-major [m, k] int8, c: row-major [m, n] int32; row blocks on `threads` threads.
  void multiply(const int8_t* a, int64_t m, int32_t* c, int threads, bool vectorise = true) const {
    const int64_t blocks = (m + kRowBlock - 1) / kRowBlock;
    const bool fast = vectorise && vectorised();
    run_parallel(static_cast<int>(blocks), threads, [&](int block) {
      const int64_t r0 = block * kRowBlock, r1 = std::min(m, r0 + kRowBlock);
#ifdef CODECLAB_X86
      if (fast) return multiply_avx2(a, r0, r1, c);
#endif
      multiply_portable(a, r0, r1, c);
    });
  }

 private:
  int64_t k_, n_, pairs_, strips_;
  std::vector<int8_t> b_;         // [k, n], for the portable loop
  std::vector<int16_t> packed_;   // [strip][pair][column][2]

  void multiply_portable(const int8_t* a, int64_t r0, int64_t r1, int32_t* c) const {
    for (int64_t i = r0; i < r1; ++i) {
      int32_t* row = c + i * n_;
      std::fill(row, row + n_, 0);
      for (int64_t kk = 0; kk < k_; ++kk) {
        const int32_t x = a[i * k_ + kk];
        const int8_t* brow = b_.data() + kk * n_;
        for (int64_t j = 0; j < n_; ++j) row[j] += x * brow[j];
      }
    }
  }

#ifdef CODECLAB_X86
  __attribute__((target("avx2"))) void multiply_avx2(const int8_t* a, int64_t r0, int64_t r1, int32_t* c) const {
    const int64_t rows = r1 - r0;
    // Rows widened to int16, two per pair (a zero pads an odd k).
    std::vector<int16_t> wide(static_cast<size_t>(rows * pairs_ * 2));
    for (int64_t i = 0; i < rows; ++i) {
      const int8_t* src = a + (r0 + i) * k_;
      int16_t* dst = wide.data() + i * pairs_ * 2;
      int64_t kk = 0;
      for (; kk + 16 <= k_; kk += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + kk),
                            _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + kk))));
      for (; kk < k_; ++kk) dst[kk] = src[kk];
      if (k_ % 2) dst[k_] = 0;
    }
    for (int64_t p0 = 0; p0 < pairs_; p0 += kPairBlock) {
      const int64_t p1 = std::min(pairs_, p0 + kPairBlock);
      for (int64_t s = 0; s < strips_; ++s) {
        const int16_t* strip = packed_.data() + (s * pairs_ + p0) * kStrip * 2;
        const int64_t cols = std::min(kStrip, n_ - s * kStrip);
        for (int64_t i = 0; i < rows; i += kTileRows) {
          const int tile = static_cast<int>(std::min<int64_t>(kTileRows, rows - i));
          int32_t out[kTileRows][kStrip];
          tile_avx2(wide.data() + (i * pairs_ + p0) * 2, pairs_ * 2, strip, p1 - p0, tile, out);
          for (int r = 0; r < tile; ++r) {
            int32_t* dst = c + (r0 + i + r) * n_ + s * kStrip;
            if (p0 == 0) {
              std::memcpy(dst, out[r], static_cast<size_t>(cols) * sizeof(int32_t));
            } else {
              for (int64_t j = 0; j < cols; ++j) dst[j] += out[r][j];
            }
          }
        }
      }
    }
  }

  template <int R>
  __attribute__((target("avx2"))) static void tile_avx2(const int16_t* rows, int64_t row_stride, const int16_t* strip,
                                                         int64_t count, int32_t (*out)[kStrip]) {
    __m256i acc[R][2];
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int64_t p = 0; p < count; ++p) {
      const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(strip + p * kStrip * 2));
      const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(strip + p * kStrip * 2 + kStrip));
      for (int r = 0; r < R; ++r) {
        int32_t pair;  // (a[2p], a[2p+1]) as one 32-bit lane, read without breaking aliasing rules
        std::memcpy(&pair, rows + r * row_stride + 2 * p, sizeof(pair));
        const __m256i x = _mm256_set1_epi32(pair);
        acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(x, b0));
        acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(x, b1));
      }
    }
    for (int r = 0; r < R; ++r) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[r]), acc[r][0]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[r] + 8), acc[r][1]);
    }
  }

  // out[r][0..15] = sum over `count` pairs of rows[r] . strip, for `tile` <= 6 rows.
  __attribute__((target("avx2"))) static void tile_avx2(const int16_t* rows, int64_t row_stride, const int16_t* strip,
                                                         int64_t count, int tile, int32_t (*out)[kStrip]) {
    switch (tile) {
      case 6: return tile_avx2<6>(rows, row_stride, strip, count, out);
      case 5: return tile_avx2<5>(rows, row_stride, strip, count, out);
      case 4: return tile_avx2<4>(rows, row_stride, strip, count, out);
      case 3: return tile_avx2<3>(rows, row_stride, strip, count, out);
      case 2: return tile_avx2<2>(rows, row_stride, strip, count, out);
      default: return tile_avx2<1>(rows, row_stride, strip, count, out);
    }
  }
#endif
};

}  // namespace codeclab
