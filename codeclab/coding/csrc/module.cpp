// pybind11 bindings of the rANS coder (codeclab.entropy_models._native).
//
// Arrays arrive as C-contiguous int32 numpy arrays (native.py converts and range-checks other
// integer dtypes); the coder reads them in place and writes decoded symbols straight into a
// new numpy array. The GIL is released around all coding work. Errors become ValueError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <stdexcept>

#include "int8_gemm.hpp"
#include "quantized_cdf.hpp"
#include "rans.hpp"

namespace py = pybind11;
using namespace codeclab;

namespace {

using IntArray = py::array_t<int32_t, py::array::c_style>;

[[noreturn]] void fail(const std::string& msg) { throw py::value_error(msg); }

TableSet table_set(const IntArray& cdfs, const IntArray& lengths, const IntArray& offsets, const IntArray& indexes,
                   bool decoding) {
  if (cdfs.ndim() != 2) fail("cdfs must be 2-D [n_tables, max_length]");
  if (lengths.ndim() != 1 || offsets.ndim() != 1) fail("lengths and offsets must be 1-D");
  TableSet ts;
  ts.n = cdfs.shape(0);
  ts.stride = cdfs.shape(1);
  if (lengths.shape(0) != ts.n || offsets.shape(0) != ts.n)
    fail("lengths and offsets must have one entry per cdf table (" + std::to_string(ts.n) + ")");
  ts.cdfs = cdfs.data();
  ts.lengths = lengths.data();
  ts.offsets = offsets.data();
  std::string err;
  {
    py::gil_scoped_release release;
    err = ts.prepare(indexes.data(), indexes.size(), decoding);
  }
  if (!err.empty()) fail(err);
  return ts;
}

// Runs part(c, a, b) for the parts [a, b) of a group of n symbols on up to `threads` threads,
// without the GIL; returns the first part's error, "" when all succeed.
template <class Part>
std::string run_parts(int64_t n, int parts, int threads, Part part) {
  std::vector<std::string> errs(static_cast<size_t>(parts));
  {
    py::gil_scoped_release release;
    run_parallel(parts, threads, [&](int c) { errs[c] = part(c, part_begin(n, parts, c), part_begin(n, parts, c + 1)); });
  }
  for (const auto& e : errs)
    if (!e.empty()) return e;
  return "";
}

std::string at(int64_t pos) { return " (symbol " + std::to_string(pos) + ")"; }

struct Categories {
  const int32_t* data;
  int64_t n, k;
};

Categories categories(const IntArray& freqs) {
  if (freqs.ndim() != 2) fail("freqs must be 2-D [n, num_categories]");
  Categories c{freqs.data(), freqs.shape(0), freqs.shape(1)};
  if (c.k < 1 || c.k > kMaxCategories)
    fail("number of categories must be in [1, " + std::to_string(kMaxCategories) + "], got " + std::to_string(c.k));
  return c;
}

class Encoder {
 public:
  explicit Encoder(int threads) {
    if (threads < 1 || threads > kMaxLanes) fail("threads must be in [1, " + std::to_string(kMaxLanes) + "]");
    lanes_.resize(size_t(threads));
  }

  void encode(const IntArray& symbols, const IntArray& indexes, const IntArray& cdfs, const IntArray& lengths,
              const IntArray& offsets) {
    if (symbols.size() != indexes.size()) fail("symbols and indexes must have the same size");
    TableSet ts = table_set(cdfs, lengths, offsets, indexes, false);
    const int32_t* sym = symbols.data();
    const int32_t* idx = indexes.data();
    append(symbols.size(), [&](LaneBuffer& lane, int64_t a, int64_t b) -> std::string {
      uint64_t* rec = lane.records.data() + lane.records.size() - (b - a);
      uint64_t bits = 0;
      for (int64_t i = a; i < b; ++i) {
        int64_t t = idx[i];
        if (uint64_t(t) >= uint64_t(ts.n)) return ts.index_error(t, i);
        const int32_t* row = ts.cdfs + t * ts.stride;
        int64_t max_value = ts.lengths[t] - 2;
        int64_t v = int64_t(sym[i]) - ts.offsets[t];
        bool escape = uint64_t(v) >= uint64_t(max_value);
        int64_t e = escape ? max_value : v;
        if (escape) lane.raws.push_back(escape_raw(v, max_value));
        uint32_t freq = uint32_t(row[e + 1] - row[e]) << kCdfShift;
        bits += record_bits(freq);
        *rec++ = make_record(uint32_t(row[e]) << kCdfShift, freq, escape);
      }
      lane.est_bits += bits;
      return "";
    });
  }

  void encode_categorical(const IntArray& symbols, const IntArray& freqs) {
    Categories c = categories(freqs);
    if (symbols.ndim() != 1 || symbols.shape(0) != c.n) fail("symbols must be 1-D with one entry per row of freqs");
    const int32_t* sym = symbols.data();
    append(c.n, [&](LaneBuffer& lane, int64_t a, int64_t b) -> std::string {
      uint64_t* rec = lane.records.data() + lane.records.size() - (b - a);
      uint64_t bits = 0;
      Categorical cat;
      for (int64_t i = a; i < b; ++i) {
        const int32_t* f = c.data + i * c.k;
        int64_t s = sym[i];
        if (s < 0 || s >= c.k)
          return "categorical symbol " + std::to_string(s) + " out of range [0, " + std::to_string(c.k) + ")" + at(i);
        std::string err = cat.prepare(f, c.k);
        if (!err.empty()) return err + at(i);
        if (f[s] == 0) return "categorical symbol " + std::to_string(s) + " has zero frequency" + at(i);
        uint32_t freq = cat.freq(f, s);
        bits += record_bits(freq);
        *rec++ = make_record(cat.start(f, s), freq, false);
      }
      lane.est_bits += bits;
      return "";
    });
  }

  py::bytes finish() {
    const int L = int(lanes_.size());
    std::vector<PodVector<uint8_t>> buffers(static_cast<size_t>(L));
    std::vector<size_t> begin(static_cast<size_t>(L));
    for (int l = 0; l < L; ++l) buffers[l].resize(lane_capacity(lanes_[l]));
    {
      py::gil_scoped_release release;
      run_parallel(L, L, [&](int l) { begin[l] = encode_lane(lanes_[l], buffers[l].data()); });
    }
    std::vector<uint8_t> header{kMagic, uint8_t(L)};
    size_t total = 0;
    for (int l = 0; l < L; ++l) {
      size_t size = buffers[l].size() - begin[l];
      header.push_back(uint8_t(lane_states(lanes_[l])));
      put_varint(header, size);
      total += size;
    }
    py::bytes out(nullptr, header.size() + total);
    char* o = PyBytes_AsString(out.ptr());
    std::memcpy(o, header.data(), header.size());
    o += header.size();
    for (int l = 0; l < L; ++l) {
      size_t size = buffers[l].size() - begin[l];
      if (size) std::memcpy(o, buffers[l].data() + begin[l], size);
      o += size;
    }
    for (auto& lane : lanes_) lane = LaneBuffer();
    return out;
  }

  int64_t num_symbols() const {
    int64_t n = 0;
    for (const auto& lane : lanes_) n += int64_t(lane.records.size());
    return n;
  }

 private:
  // Splits n symbols into parts, lets fill(lane, a, b) write part [a, b) into the records it
  // appended to its lane, in parallel; on error restores every lane and raises.
  template <class Fill>
  void append(int64_t n, Fill fill) {
    const int L = int(lanes_.size());
    const int parts = num_parts(n, L);
    std::vector<size_t> rec_sizes, raw_sizes;
    std::vector<uint64_t> bits;
    for (const auto& lane : lanes_) {
      rec_sizes.push_back(lane.records.size());
      raw_sizes.push_back(lane.raws.size());
      bits.push_back(lane.est_bits);
    }
    // Grown here, not on the workers (see encode_lane on per-thread arenas).
    for (int c = 0; c < parts; ++c)
      lanes_[c].records.resize(lanes_[c].records.size() + size_t(part_begin(n, parts, c + 1) - part_begin(n, parts, c)));
    std::string err = run_parts(n, parts, L, [&](int c, int64_t a, int64_t b) { return fill(lanes_[c], a, b); });
    if (!err.empty()) {
      for (int l = 0; l < L; ++l) {
        lanes_[l].records.resize(rec_sizes[l]);
        lanes_[l].raws.resize(raw_sizes[l]);
        lanes_[l].est_bits = bits[l];
      }
      fail(err);
    }
  }

  std::vector<LaneBuffer> lanes_;
};

class Decoder {
 public:
  Decoder(py::bytes data, int threads) : data_(data), threads_(threads) {
    if (threads < 1 || threads > kMaxLanes) fail("threads must be in [1, " + std::to_string(kMaxLanes) + "]");
    std::string err = parse_stream(reinterpret_cast<const uint8_t*>(data_.data()), data_.size(), lanes_);
    if (!err.empty()) fail(err);
  }

  py::array_t<int32_t> decode(const IntArray& indexes, const IntArray& cdfs, const IntArray& lengths,
                              const IntArray& offsets) {
    TableSet ts = table_set(cdfs, lengths, offsets, indexes, true);
    std::vector<py::ssize_t> shape(indexes.shape(), indexes.shape() + indexes.ndim());
    py::array_t<int32_t> out(shape);
    const int32_t* idx = indexes.data();
    int32_t* o = out.mutable_data();
    run(indexes.size(), [&](LaneDecoder& lane, int64_t a, int64_t b) {
      return decode_lane(lane, [&](LaneDecoder& d) { return d.tables(ts, idx + a, o + a, b - a, a); });
    });
    return out;
  }

  py::array_t<int32_t> decode_categorical(const IntArray& freqs) {
    Categories c = categories(freqs);
    py::array_t<int32_t> out(std::vector<py::ssize_t>{py::ssize_t(c.n)});
    int32_t* o = out.mutable_data();
    run(c.n, [&](LaneDecoder& lane, int64_t a, int64_t b) {
      return decode_lane(lane, [&](LaneDecoder& d) { return d.categorical(c.data + a * c.k, c.k, o + a, b - a, a); });
    });
    return out;
  }

  // True when every lane's words are consumed and its states are back at the initial value,
  // which a correctly decoded stream always satisfies.
  bool at_end() const {
    for (const auto& lane : lanes_) {
      if (lane.pos != lane.end) return false;
      for (int k = 0; k < lane.K; ++k)
        if (lane.x[k] != kStateLow) return false;
    }
    return true;
  }

 private:
  template <class Part>
  void run(int64_t n, Part part) {
    if (failed_) fail("decoder is unusable after an earlier error");
    const int parts = num_parts(n, int(lanes_.size()));
    std::string err = run_parts(n, parts, threads_, [&](int c, int64_t a, int64_t b) { return part(lanes_[c], a, b); });
    if (!err.empty()) {
      failed_ = true;
      fail(err);
    }
  }

  std::string data_;
  int threads_;
  std::vector<LaneDecoder> lanes_;
  bool failed_ = false;
};

}  // namespace

// float32 pmf [n] -> int32 CDF [n + 1] (see quantized_cdf.hpp); ValueError on a bad pmf.
static py::array_t<int32_t> pmf_to_quantized_cdf(py::array_t<float, py::array::c_style | py::array::forcecast> pmf,
                                                  int precision) {
  if (pmf.ndim() != 1) throw py::value_error("pmf must be 1-D");
  std::vector<float> values(pmf.data(), pmf.data() + pmf.size());
  std::vector<uint32_t> cdf;
  try {
    cdf = codeclab::quantized_cdf(values, precision);
  } catch (const std::invalid_argument& err) {
    throw py::value_error(err.what());
  }
  py::array_t<int32_t> out(static_cast<py::ssize_t>(cdf.size()));
  for (size_t i = 0; i < cdf.size(); ++i) out.mutable_data()[i] = static_cast<int32_t>(cdf[i]);
  return out;
}

// Whether data parses as a complete stream of this coder (header, lanes, lengths, states).
static bool is_codeclab_stream(py::bytes data) {
  std::string bytes = data;
  std::vector<LaneDecoder> lanes;
  return parse_stream(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), lanes).empty();
}

using Int8Array = py::array_t<int8_t, py::array::c_style>;

// An int8 weight matrix B [k, n], packed once, that multiplies int8 rows A [m, k] into int32.
static std::unique_ptr<Int8Matrix> int8_matrix(const Int8Array& b) {
  if (b.ndim() != 2) fail("the int8 matrix must be 2-D [k, n]");
  if (b.shape(0) < 1 || b.shape(1) < 1) fail("the int8 matrix must not be empty");
  return std::make_unique<Int8Matrix>(b.data(), b.shape(0), b.shape(1));
}

static py::array_t<int32_t> int8_multiply(const Int8Matrix& b, const Int8Array& a, int threads, bool vectorise) {
  if (a.ndim() != 2 || a.shape(1) != b.rows())
    fail("the rows must be 2-D [m, " + std::to_string(b.rows()) + "] int8");
  py::array_t<int32_t> c({a.shape(0), static_cast<py::ssize_t>(b.columns())});
  {
    py::gil_scoped_release release;
    b.multiply(a.data(), a.shape(0), c.mutable_data(), std::max(1, threads), vectorise);
  }
  return c;
}

PYBIND11_MODULE(_native, m) {
  m.doc() = "CodecLab rANS entropy coder (see codeclab/coding/native.py)";
  m.def("pmf_to_quantized_cdf", &pmf_to_quantized_cdf, py::arg("pmf"), py::arg("precision") = 16);
  m.def("is_codeclab_stream", &is_codeclab_stream, py::arg("data"));
  m.attr("PRECISION") = kPrecision;
  m.attr("MAX_LANES") = kMaxLanes;
  m.attr("MIN_PART") = kMinPart;
  m.attr("MAX_CATEGORIES") = kMaxCategories;
  py::class_<Encoder>(m, "Encoder")
      .def(py::init<int>(), py::arg("threads") = 1)
      .def("encode", &Encoder::encode, py::arg("symbols"), py::arg("indexes"), py::arg("cdfs"), py::arg("lengths"),
           py::arg("offsets"))
      .def("encode_categorical", &Encoder::encode_categorical, py::arg("symbols"), py::arg("freqs"))
      .def("finish", &Encoder::finish)
      .def_property_readonly("num_symbols", &Encoder::num_symbols);
  py::class_<Decoder>(m, "Decoder")
      .def(py::init<py::bytes, int>(), py::arg("data"), py::arg("threads") = 1)
      .def("decode", &Decoder::decode, py::arg("indexes"), py::arg("cdfs"), py::arg("lengths"), py::arg("offsets"))
      .def("decode_categorical", &Decoder::decode_categorical, py::arg("freqs"))
      .def("at_end", &Decoder::at_end);
  py::class_<Int8Matrix>(m, "Int8Matrix")
      .def(py::init(&int8_matrix), py::arg("b"))
      .def("multiply", &int8_multiply, py::arg("a"), py::arg("threads") = 1, py::arg("vectorise") = true)
      .def_property_readonly("rows", &Int8Matrix::rows)
      .def_property_readonly("columns", &Int8Matrix::columns)
      .def_property_readonly_static("vectorised", [](py::object) { return Int8Matrix::vectorised(); })
      .def_property_readonly_static("vnni", [](py::object) { return Int8Matrix::vnni(); });
}
