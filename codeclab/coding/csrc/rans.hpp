// CodecLab's rANS entropy coder: core algorithm, free of Python.
//
// Coder: rANS with a 64-bit state kept in [2^31, 2^63) and 32-bit renormalisation words
// (one word at most per coding step). Every probability is coded at 24-bit precision: a
// 16-bit compressai CDF entry is shifted left by 8 (the same distribution, exactly), a
// categorical row is normalised to 2^24, and escape payloads are uniform 1..16-bit values.
// 24 bits keep the state/precision ratio at 2^7, which costs ~1e-5 bit/symbol, and leave
// room for small probabilities in 1024-way categoricals.
//
// Layout: symbols go to "lanes", independent rANS streams. A group of n symbols is cut into
// parts(n, lanes) contiguous parts, part c going to lane c, so every group can be coded and
// decoded in parallel and one thread can still decode everything lane after lane. Inside a
// lane, symbol number c (counted over all groups) uses interleaved state c % K (K = 1 or 4)
// so that independent dependency chains overlap in the CPU.
//
// Everything here bounds-checks the stream and reports errors as strings; nothing throws
// inside coding loops (they run without the GIL, possibly on worker threads).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace codeclab {

// States and words are stored with memcpy, i.e. in host byte order; the format is little-endian.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the stream format assumes a little-endian host");

constexpr int kPrecision = 24;
constexpr uint32_t kTotal = 1u << kPrecision;
constexpr int kCdfPrecision = 16;  // compressai's tables
constexpr int kCdfShift = kPrecision - kCdfPrecision;
constexpr int32_t kCdfTotal = 1 << kCdfPrecision;
constexpr uint64_t kStateLow = 1ull << 31;
constexpr uint64_t kStateHigh = 1ull << 63;
constexpr int kMaxStates = 4;
// Lanes whose estimated size is below this many bits use one state: 4 states cost 24 more
// bytes of final states, which would be a visible share of a small stream.
constexpr uint64_t kInterleaveMinBits = 1 << 18;
constexpr int kMaxLanes = 64;
constexpr int64_t kMinPart = 16384;  // a group is split only into parts at least this long
constexpr int kBucketBits = 10;     // decoder lookup: 2^10 buckets of 64 CDF slots per table
constexpr int kEscapeLenBits = 6;
constexpr int kMaxRawBits = 34;
constexpr int kPieceBits = 16;
constexpr int64_t kMaxCategories = 1 << 20;
constexpr uint8_t kMagic = 0xC1;

// Encoder record: 24-bit start, freq (<= 2^24) and an escape flag.
inline uint64_t make_record(uint32_t start, uint32_t freq, bool escape) {
  return uint64_t(start) | (uint64_t(freq) << 32) | (uint64_t(escape) << 63);
}

// Number of parts a group of n symbols is cut into; both sides compute it from n and lanes.
inline int num_parts(int64_t n, int lanes) {
  int64_t p = n / kMinPart;
  return int(std::max<int64_t>(1, std::min<int64_t>(p, lanes)));
}

inline int64_t part_begin(int64_t n, int parts, int c) { return n * c / parts; }

// Runs fn(0..tasks-1) on up to `threads` threads (the calling thread included).
inline void run_parallel(int tasks, int threads, const std::function<void(int)>& fn) {
  int workers = std::max(1, std::min(tasks, threads));
  if (workers == 1) {
    for (int i = 0; i < tasks; ++i) fn(i);
    return;
  }
  std::vector<std::thread> pool;
  for (int w = 1; w < workers; ++w)
    pool.emplace_back([&, w] {
      for (int i = w; i < tasks; i += workers) fn(i);
    });
  for (int i = 0; i < tasks; i += workers) fn(i);
  for (auto& t : pool) t.join();
}

// ---------------------------------------------------------------------------------------------
// Tables

struct TableSet {
  const int32_t* cdfs = nullptr;
  int64_t stride = 0;
  const int32_t* lengths = nullptr;
  const int32_t* offsets = nullptr;
  int64_t n = 0;
  std::vector<uint16_t> buckets;  // decoder only: [n << kBucketBits]

  // Validates what a call reads and, for decoding, sets up symbol search; "" on success.
  // A small group checks its indexes here and validates only the tables it uses, so that a
  // codec decoding many small groups does not pay for the whole table set each time, and
  // searches symbols by bisection; a large group validates every table, checks indexes in the
  // (parallel) coding loops and builds bucket lookups.
  std::string prepare(const int32_t* idx, int64_t count, bool decoding) {
    std::vector<uint8_t> used;
    if (count < kMinPart) {
      used.assign(size_t(n), 0);
      for (int64_t i = 0; i < count; ++i) {
        if (uint64_t(idx[i]) >= uint64_t(n)) return index_error(idx[i], i);
        used[idx[i]] = 1;
      }
    }
    for (int64_t t = 0; t < n; ++t) {
      if (used.empty() || used[t]) {
        std::string err = validate(t);
        if (!err.empty()) return err;
      }
    }
    if (decoding && count >= kMinPart) build_buckets();
    return "";
  }

  std::string index_error(int64_t t, int64_t pos) const {
    return "table index " + std::to_string(t) + " out of range [0, " + std::to_string(n) + ") (symbol " +
           std::to_string(pos) + ")";
  }

  // Symbol of table t whose interval holds the 16-bit slot s16.
  inline int32_t find(int64_t t, const int32_t* row, int32_t s16) const {
    if (buckets.empty()) {
      int32_t lo = 0, hi = lengths[t] - 1;  // row[lo] <= s16 < row[hi]
      while (hi - lo > 1) {
        int32_t mid = (lo + hi) >> 1;
        (row[mid] <= s16 ? lo : hi) = mid;
      }
      return lo;
    }
    int32_t sym = buckets[(t << kBucketBits) + (s16 >> (kCdfPrecision - kBucketBits))];
    while (row[sym + 1] <= s16) ++sym;
    return sym;
  }

 private:
  // A valid table is a 16-bit CDF with no zero-frequency symbol.
  std::string validate(int64_t t) const {
    int64_t len = lengths[t];
    if (len < 2 || len > stride)
      return "cdf table " + std::to_string(t) + " has length " + std::to_string(len) + " outside [2, " +
             std::to_string(stride) + "]";
    const int32_t* row = cdfs + t * stride;
    if (row[0] != 0 || row[len - 1] != kCdfTotal)
      return "cdf table " + std::to_string(t) + " must start at 0 and end at 65536";
    for (int64_t j = 0; j + 1 < len; ++j)
      if (row[j + 1] <= row[j])
        return "cdf table " + std::to_string(t) + " is not strictly increasing at entry " + std::to_string(j + 1) +
               " (non-monotone or zero-frequency symbol)";
    return "";
  }

  // buckets[t][b] = symbol whose CDF interval holds slot b * 64; the decoder scans forward
  // from there, which is short because a bucket spans 64 of 65536 slots.
  void build_buckets() {
    constexpr int shift = kCdfPrecision - kBucketBits;
    buckets.assign(size_t(n) << kBucketBits, 0);
    for (int64_t t = 0; t < n; ++t) {
      const int32_t* row = cdfs + t * stride;
      uint16_t* b = buckets.data() + (t << kBucketBits);
      int32_t s = 0;
      for (int32_t k = 0; k < (1 << kBucketBits); ++k) {
        while (row[s + 1] <= (k << shift)) ++s;
        b[k] = uint16_t(s);
      }
    }
  }
};

inline int bit_length(uint64_t v) { return v ? 64 - __builtin_clzll(v) : 0; }

// Categorical rows: integer frequencies normalised to 2^24. A power-of-two total is scaled
// exactly; otherwise each non-zero count becomes max(1, ~f * 2^24 / total), the deficit goes
// to the first non-zero entry and a surplus is taken from entries in order, never below 1.
struct Categorical {
  std::vector<uint32_t> norm;
  int shift = -1;  // >= 0: power-of-two fast path, norm unused

  // Empty string on success.
  std::string prepare(const int32_t* f, int64_t k) {
    uint64_t total = 0;
    int32_t sign = 0;
    for (int64_t j = 0; j < k; ++j) {
      sign |= f[j];
      total += uint64_t(uint32_t(f[j]));
    }
    if (sign < 0) return "negative frequency";
    if (total == 0) return "frequencies sum to zero";
    if ((total & (total - 1)) == 0 && total <= kTotal) {
      shift = kPrecision - __builtin_ctzll(total);
      return "";
    }
    shift = -1;
    norm.resize(size_t(k));
    // f * m >> b approximates f * 2^24 / total with one multiply (m <= 2^25, f < 2^31). Any
    // deterministic rule would do: encoder and decoder run this same code.
    const int b = bit_length(total);
    const uint64_t m = uint64_t(((unsigned __int128)1 << (kPrecision + b)) / total);
    uint64_t sum = 0;
    for (int64_t j = 0; j < k; ++j) {
      uint32_t v = uint32_t((uint64_t(uint32_t(f[j])) * m) >> b);
      v += uint32_t(v == 0) & uint32_t(f[j] != 0);
      norm[j] = v;
      sum += v;
    }
    if (sum < kTotal) {
      // The deficit (< k + 2 counts of 2^24) goes to the first symbol that can be coded.
      int64_t j = 0;
      while (f[j] == 0) ++j;
      norm[j] += uint32_t(kTotal - sum);
    } else {
      uint64_t excess = sum - kTotal;
      for (int64_t j = 0; j < k && excess; ++j) {
        if (norm[j] <= 1) continue;
        uint64_t take = std::min<uint64_t>(norm[j] - 1, excess);
        norm[j] -= uint32_t(take);
        excess -= take;
      }
    }
    return "";
  }

  uint32_t freq(const int32_t* f, int64_t s) const {
    return shift >= 0 ? uint32_t(f[s]) << shift : norm[s];
  }

  uint32_t start(const int32_t* f, int64_t s) const {
    uint64_t c = 0;
    if (shift >= 0) {
      for (int64_t j = 0; j < s; ++j) c += uint32_t(f[j]);
      return uint32_t(c << shift);
    }
    for (int64_t j = 0; j < s; ++j) c += norm[j];
    return uint32_t(c);
  }

  // Symbol whose interval holds `slot`, with its start; the row sums to 2^24 so it exists.
  int64_t find(const int32_t* f, int64_t k, uint32_t slot, uint32_t* start) const {
    return shift >= 0 ? scan(f, k, slot, shift, start) : scan(norm.data(), k, slot, 0, start);
  }

 private:
  template <class T>
  static int64_t scan(const T* freq, int64_t k, uint32_t slot, int sh, uint32_t* start) {
    uint32_t c = 0;
    int64_t j = 0;
    for (; j < k - 1; ++j) {
      uint32_t next = c + (uint32_t(freq[j]) << sh);
      if (slot < next) break;
      c = next;
    }
    *start = c;
    return j;
  }
};

// ---------------------------------------------------------------------------------------------
// Escape payload: raw = -2v-1 for v < 0 and 2(v - max) for v >= max (v = symbol - offset),
// coded as its bit length (uniform over 2^6) then its bits below the leading one, in
// 16-bit pieces from the least significant.

inline uint64_t escape_raw(int64_t v, int64_t max_value) {
  return v < 0 ? uint64_t(-2 * v - 1) : uint64_t(2 * (v - max_value));
}


// ---------------------------------------------------------------------------------------------
// Lane encoder

// A growable array of trivially copyable values whose new elements are left uninitialised:
// the coder overwrites them at once, and zero-filling megabytes would cost ~10% of encoding.
template <class T>
class PodVector {
 public:
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  void resize(size_t n) {
    if (n > capacity_) {
      size_t cap = std::max(n, capacity_ * 2);
      std::unique_ptr<T[]> grown(new T[cap]);
      if (size_) std::memcpy(grown.get(), data_.get(), size_ * sizeof(T));
      data_ = std::move(grown);
      capacity_ = cap;
    }
    size_ = n;
  }

 private:
  std::unique_ptr<T[]> data_;
  size_t size_ = 0, capacity_ = 0;
};

struct LaneBuffer {
  PodVector<uint64_t> records;
  std::vector<uint64_t> raws;  // escape payloads, in record order
  uint64_t est_bits = 0;       // sum of floor(-log2 p) + 1 over records (escapes excluded)
};

// Adds a record's estimated cost: clz(freq) - 7 = 24 - floor(log2 freq) for freq <= 2^24.
inline uint64_t record_bits(uint32_t freq) { return uint64_t(__builtin_clz(freq) - 7); }

// Writes renormalisation words backwards from the end of a buffer, so that they end up in
// the order the decoder reads them.
class WordSink {
 public:
  explicit WordSink(uint8_t* end) : pos_(end) {}
  inline void put(uint64_t& x, uint32_t start, uint32_t freq) {
    uint64_t x_max = uint64_t(freq) << (63 - kPrecision);  // ((low >> prec) << 32) * freq
    if (x >= x_max) {
      pos_ -= 4;
      uint32_t w = uint32_t(x);
      std::memcpy(pos_, &w, 4);
      x >>= 32;
    }
    uint64_t q = x / freq;
    x = (q << kPrecision) + (x - q * freq) + start;
  }
  inline void put_uniform(uint64_t& x, uint32_t value, int bits) {
    put(x, value << (kPrecision - bits), 1u << (kPrecision - bits));
  }
  inline void put_state(uint64_t x) {
    pos_ -= 8;
    std::memcpy(pos_, &x, 8);
  }
  uint8_t* pos() const { return pos_; }

 private:
  uint8_t* pos_;
};

inline void put_escape(WordSink& sink, uint64_t& x, uint64_t raw) {
  int nbits = bit_length(raw);
  int rest = nbits > 0 ? nbits - 1 : 0;
  int pieces = (rest + kPieceBits - 1) / kPieceBits;
  for (int p = pieces - 1; p >= 0; --p) {
    int lo = p * kPieceBits;
    int bits = std::min(kPieceBits, rest - lo);
    sink.put_uniform(x, uint32_t((raw >> lo) & ((1ull << bits) - 1)), bits);
  }
  sink.put_uniform(x, uint32_t(nbits), kEscapeLenBits);
}

inline int lane_states(const LaneBuffer& lane) {
  if (lane.records.empty()) return 0;
  return lane.est_bits >= kInterleaveMinBits ? kMaxStates : 1;
}

// Bytes encode_lane may write: the states, and one word per coding step at most (a record
// takes one step, an escape four more).
inline size_t lane_capacity(const LaneBuffer& lane) {
  return lane.records.empty() ? 0 : 8 * kMaxStates + 4 * (lane.records.size() + 4 * lane.raws.size());
}

// Codes a lane's records in reverse into the end of buf[0, lane_capacity) and returns where
// its bytes start: K 64-bit states, then words, in the order the decoder reads them. The
// caller allocates buf: blocks allocated on short-lived worker threads come from fresh
// per-thread arenas and cost page faults that erase the gain of a second thread.
inline size_t encode_lane(const LaneBuffer& lane, uint8_t* buf) {
  const int64_t n = int64_t(lane.records.size());
  if (n == 0) return 0;
  const size_t capacity = lane_capacity(lane);
  const int K = lane_states(lane);
  WordSink sink(buf + capacity);
  uint64_t x[kMaxStates];
  for (int k = 0; k < K; ++k) x[k] = kStateLow;
  size_t raw = lane.raws.size();
  const uint64_t* rec = lane.records.data();
  int64_t c = n - 1;
  auto one = [&](int64_t i, uint64_t& s) {
    uint64_t r = rec[i];
    if (r >> 63) put_escape(sink, s, lane.raws[--raw]);
    sink.put(s, uint32_t(r), uint32_t(r >> 32) & 0x7fffffffu);
  };
  if (K == kMaxStates) {
    for (; c >= 0 && (c & (kMaxStates - 1)) != kMaxStates - 1; --c) one(c, x[c & (kMaxStates - 1)]);
    for (; c >= 3; c -= 4) {
      one(c, x[3]);
      one(c - 1, x[2]);
      one(c - 2, x[1]);
      one(c - 3, x[0]);
    }
  } else {
    for (; c >= 0; --c) one(c, x[0]);
  }
  for (int k = K - 1; k >= 0; --k) sink.put_state(x[k]);
  return size_t(sink.pos() - buf);
}

// ---------------------------------------------------------------------------------------------
// Lane decoder

// Decoding runs on a stack copy of the lane (see decode_lane), so that lanes decoded on
// different threads never write to one cache line.
struct alignas(64) LaneDecoder {
  const uint8_t* pos = nullptr;
  const uint8_t* end = nullptr;
  uint64_t x[kMaxStates] = {0, 0, 0, 0};
  int K = 0;  // 0: the lane is empty
  int64_t count = 0;

  inline bool renorm(uint64_t& s) {
    if (s < kStateLow) {
      if (pos == end) return false;
      uint32_t w;
      std::memcpy(&w, pos, 4);
      pos += 4;
      s = (s << 32) | w;
    }
    return true;
  }
  inline bool get_uniform(uint64_t& s, int bits, uint32_t* value) {
    uint32_t slot = uint32_t(s) & (kTotal - 1);
    int shift = kPrecision - bits;
    *value = slot >> shift;
    s = (uint64_t(1) << shift) * (s >> kPrecision) + (slot & ((1u << shift) - 1));
    return renorm(s);
  }
  // Empty string on success; *symbol is the decoded value.
  std::string get_escape(uint64_t& s, int64_t offset, int64_t max_value, int32_t* symbol) {
    uint32_t nbits;
    if (!get_uniform(s, kEscapeLenBits, &nbits)) return "truncated stream";
    if (nbits > kMaxRawBits) return "corrupt stream (escape length " + std::to_string(nbits) + ")";
    uint64_t raw = nbits ? 1ull << (nbits - 1) : 0;
    int rest = nbits ? int(nbits) - 1 : 0;
    for (int lo = 0; lo < rest; lo += kPieceBits) {
      int bits = std::min(kPieceBits, rest - lo);
      uint32_t piece;
      if (!get_uniform(s, bits, &piece)) return "truncated stream";
      raw |= uint64_t(piece) << lo;
    }
    int64_t v = (raw & 1) ? -int64_t((raw + 1) >> 1) : max_value + int64_t(raw >> 1);
    int64_t value = v + offset;
    if (value < INT32_MIN || value > INT32_MAX) return "corrupt stream (escaped value out of int32 range)";
    *symbol = int32_t(value);
    return "";
  }

  inline uint64_t& state() { return x[K == kMaxStates ? (count & (kMaxStates - 1)) : 0]; }

  // Decodes out[0..n) with table indexes idx (group positions base..); "" on success.
  std::string tables(const TableSet& ts, const int32_t* idx, int32_t* out, int64_t n, int64_t base) {
    if (n > 0 && K == 0) return "truncated stream (empty lane)";
    for (int64_t i = 0; i < n; ++i, ++count) {
      uint64_t& s = state();
      int64_t t = idx[i];
      if (uint64_t(t) >= uint64_t(ts.n)) return ts.index_error(t, base + i);
      const int32_t* row = ts.cdfs + t * ts.stride;
      uint32_t slot = uint32_t(s) & (kTotal - 1);
      int32_t s16 = int32_t(slot >> kCdfShift);
      int32_t sym = ts.find(t, row, s16);
      uint32_t start = uint32_t(row[sym]) << kCdfShift;
      uint32_t freq = uint32_t(row[sym + 1] - row[sym]) << kCdfShift;
      s = uint64_t(freq) * (s >> kPrecision) + (slot - start);
      if (!renorm(s)) return "truncated stream";
      int64_t max_value = ts.lengths[t] - 2;
      if (sym == max_value) {
        std::string err = get_escape(s, ts.offsets[t], max_value, &out[i]);
        if (!err.empty()) return err;
      } else {
        int64_t value = int64_t(sym) + ts.offsets[t];
        if (value < INT32_MIN || value > INT32_MAX) return "corrupt stream (value out of int32 range)";
        out[i] = int32_t(value);
      }
    }
    return "";
  }

  std::string categorical(const int32_t* freqs, int64_t k, int32_t* out, int64_t n, int64_t base) {
    if (n > 0 && K == 0) return "truncated stream (empty lane)";
    Categorical cat;
    for (int64_t i = 0; i < n; ++i, ++count) {
      const int32_t* f = freqs + i * k;
      std::string err = cat.prepare(f, k);
      if (!err.empty()) return err + " (row " + std::to_string(base + i) + ")";
      uint64_t& s = state();
      uint32_t slot = uint32_t(s) & (kTotal - 1), start;
      int64_t sym = cat.find(f, k, slot, &start);
      s = uint64_t(cat.freq(f, sym)) * (s >> kPrecision) + (slot - start);
      if (!renorm(s)) return "truncated stream";
      out[i] = int32_t(sym);
    }
    return "";
  }
};

// Runs member `step` on a local copy of the lane and stores the copy back on success.
template <class Step>
std::string decode_lane(LaneDecoder& lane, Step step) {
  LaneDecoder local = lane;
  std::string err = step(local);
  if (err.empty()) lane = local;
  return err;
}

// ---------------------------------------------------------------------------------------------
// Stream container:
//   byte  0xC1 (format magic/version)
//   byte  number of lanes L (1..64)
//   L x { byte K (0, 1 or 4 interleaved states); varint byte length of the lane }
//   lane bytes, concatenated (each: K 8-byte states, then 4-byte words)

inline void put_varint(std::vector<uint8_t>& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(uint8_t(v) | 0x80);
    v >>= 7;
  }
  out.push_back(uint8_t(v));
}

// Parses the container into lane decoders; returns "" on success. data must outlive lanes.
inline std::string parse_stream(const uint8_t* data, size_t size, std::vector<LaneDecoder>& lanes) {
  const uint8_t* p = data;
  const uint8_t* end = data + size;
  if (size < 2 || p[0] != kMagic) return "not a codeclab stream (bad header)";
  int L = p[1];
  p += 2;
  if (L < 1 || L > kMaxLanes) return "corrupt stream (lane count " + std::to_string(L) + ")";
  lanes.assign(size_t(L), LaneDecoder());
  std::vector<uint64_t> lens(static_cast<size_t>(L));
  for (int l = 0; l < L; ++l) {
    if (p == end) return "truncated stream header";
    int K = *p++;
    uint64_t len = 0;
    for (int shift = 0;; shift += 7) {
      if (p == end) return "truncated stream header";
      if (shift > 56) return "corrupt stream (lane length overflows)";
      uint8_t b = *p++;
      len |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) break;
    }
    if (!(K == 0 || K == 1 || K == kMaxStates)) return "corrupt stream (state count " + std::to_string(K) + ")";
    if ((K == 0) != (len == 0) || len < uint64_t(K) * 8 || (len - uint64_t(K) * 8) % 4 != 0)
      return "corrupt stream (lane " + std::to_string(l) + " length " + std::to_string(len) + ")";
    lanes[l].K = K;
    lens[l] = len;
  }
  for (int l = 0; l < L; ++l) {
    if (lens[l] > uint64_t(end - p)) return "truncated stream (lane " + std::to_string(l) + ")";
    LaneDecoder& d = lanes[l];
    for (int k = 0; k < d.K; ++k) {
      std::memcpy(&d.x[k], p + 8 * k, 8);
      if (d.x[k] < kStateLow || d.x[k] >= kStateHigh) return "corrupt stream (invalid coder state)";
    }
    d.pos = p + 8 * d.K;
    d.end = p + lens[l];
    p += lens[l];
  }
  if (p != end) return "corrupt stream (" + std::to_string(end - p) + " trailing bytes)";
  return "";
}

}  // namespace codeclab
