// Integer CDF of a probability mass function, computed exactly as compressai 1.2.8 computes
// the tables of its EntropyBottleneck and GaussianConditional (``pmf_to_quantized_cdf``):
// the same float rounding, integer scaling and "steal from the smallest frequency > 1" fix-up,
// so tables built by CodecLab's own entropy models equal compressai's bit for bit.
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace codeclab {

inline std::vector<uint32_t> quantized_cdf(const std::vector<float>& pmf, int precision) {
  if (precision < 1 || precision > 24) throw std::invalid_argument("precision must be in [1, 24]");
  if (pmf.empty()) throw std::invalid_argument("empty pmf");
  const uint32_t total_target = 1u << precision;
  std::vector<uint32_t> cdf(pmf.size() + 1, 0);
  uint64_t total = 0;
  for (size_t i = 0; i < pmf.size(); ++i) {
    const float p = pmf[i];
    if (!(p >= 0.0f) || !std::isfinite(p)) throw std::invalid_argument("pmf has a negative or non-finite entry");
    // Rounded in float, as compressai (p * 2^precision is exact; std::round on the float).
    cdf[i + 1] = static_cast<uint32_t>(std::round(p * static_cast<float>(total_target)));
    total += cdf[i + 1];
  }
  if (total == 0) throw std::invalid_argument("pmf sums to zero");
  // compressai accumulates the total in a 32-bit int; a pmf of a few hundred thousand
  // entries near 1 would wrap, far beyond any table an entropy model builds.
  if (total > 0xFFFFFFFFull) throw std::invalid_argument("pmf total out of range");
  for (size_t i = 1; i < cdf.size(); ++i) cdf[i] = static_cast<uint32_t>((uint64_t(total_target) * cdf[i]) / total);
  for (size_t i = 1; i < cdf.size(); ++i) cdf[i] += cdf[i - 1];
  cdf.back() = total_target;
  // Every symbol needs a non-zero frequency: take one count from the nearest-to-minimal
  // frequency above 1 (first such in index order) and shift the CDF between the two.
  const int n = static_cast<int>(cdf.size()) - 1;
  for (int i = 0; i < n; ++i) {
    if (cdf[i] != cdf[i + 1]) continue;
    uint32_t best_freq = ~0u;
    int best = -1;
    for (int j = 0; j < n; ++j) {
      const uint32_t freq = cdf[j + 1] - cdf[j];
      if (freq > 1 && freq < best_freq) {
        best_freq = freq;
        best = j;
      }
    }
    if (best < 0) throw std::invalid_argument("pmf has more symbols than the precision can represent");
    if (best < i) {
      for (int j = best + 1; j <= i; ++j) cdf[j]--;
    } else {
      for (int j = i + 1; j <= best; ++j) cdf[j]++;
    }
  }
  return cdf;
}

}  // namespace codeclab
