// Tensors and .npy I/O: round trips, numpy's exact header layout, hand-made malformed files, real numpy.
#include "runtime/npy.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "runtime/tensor.h"
#include "test/unit/expect_error.h"

namespace tessera::runtime {
namespace {

namespace fs = std::filesystem;

using test::expect_error;

// Most errors here are TensorErrors.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  test::expect_error<TensorError>(fn, parts);
}

// A .npy byte string built by hand: `dict` is the header text before padding.
std::string make_npy(const std::string& dict, const std::string& data, int major = 1, int minor = 0) {
  std::string header = dict;
  const size_t preamble = major == 1 ? 10 : 12;
  while ((preamble + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += static_cast<char>(minor);
  const size_t length_bytes = major == 1 ? 2 : 4;
  for (size_t b = 0; b < length_bytes; ++b) out += static_cast<char>((header.size() >> (8 * b)) & 0xff);
  return out + header + data;
}

template <typename T>
std::string bytes_of(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

class NpyFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("tessera_npy_" + std::to_string(::getpid()) + "_" + info->test_suite_name() + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  void write_bytes(const std::string& name, const std::string& bytes) const {
    std::ofstream out(path(name), std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  std::string read_bytes(const std::string& name) const {
    std::ifstream in(path(name), std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  fs::path dir_;
};

// ----------------------------------------------------------------------------------------------------------
// Tensor

TEST(Tensor, ZeroInitialisedAlignedAndShaped) {
  Tensor t(DType::Float32, {2, 4, 3, 5});
  EXPECT_EQ(t.dtype(), DType::Float32);
  EXPECT_EQ(t.rank(), 4);
  EXPECT_EQ(t.numel(), 120);
  EXPECT_EQ(t.size_bytes(), 480u);
  EXPECT_EQ(t.dim(2), 3);
  EXPECT_EQ(t.shape_string(), "[2, 4, 3, 5]");
  EXPECT_EQ(t.type_string(), "float32[2, 4, 3, 5]");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw_data()) % 64, 0u);
  const float* data = t.data<float>();
  for (int64_t e = 0; e < t.numel(); ++e) ASSERT_EQ(data[e], 0.0f) << e;

  Tensor i64(DType::Int64, {3});
  EXPECT_EQ(i64.size_bytes(), 24u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(i64.raw_data()) % 64, 0u);
}

TEST(Tensor, ScalarAndEmptyShapes) {
  Tensor scalar(DType::Int32, {});
  EXPECT_EQ(scalar.rank(), 0);
  EXPECT_EQ(scalar.numel(), 1);
  EXPECT_EQ(scalar.shape_string(), "[]");
  Tensor empty(DType::Int64, {3, 0, 5});
  EXPECT_EQ(empty.numel(), 0);
  EXPECT_EQ(empty.size_bytes(), 0u);
  EXPECT_NE(empty.data<int64_t>(), nullptr);
  Tensor def;
  EXPECT_EQ(def.numel(), 0);
  EXPECT_EQ(def.shape_string(), "[0]");
}

TEST(Tensor, DtypeCheckedAccess) {
  Tensor t(DType::Int32, {2});
  EXPECT_NO_THROW(t.data<int32_t>());
  expect_error([&] { t.data<float>(); }, {"int32[2]", "float32"});
  expect_error([&] { (void)std::as_const(t).data<int64_t>(); }, {"int32[2]", "int64"});
  EXPECT_STREQ(dtype_name(DType::Int64), "int64");
  EXPECT_EQ(dtype_of<float>(), DType::Float32);
}

TEST(Tensor, BadShapesAndDims) {
  expect_error([] { Tensor(DType::Float32, {2, -1}); }, {"negative", "[2, -1]"});
  const int64_t big = int64_t{1} << 40;
  expect_error([&] { Tensor(DType::Float32, {big, big}); }, {"too large"});
  Tensor t(DType::Float32, {2, 3});
  expect_error([&] { (void)t.dim(2); }, {"dimension 2", "rank 2"});
  expect_error([&] { (void)t.dim(-1); }, {"dimension -1"});
}

TEST(Tensor, CloneIsDeepAndMoveEmptiesTheSource) {
  Tensor a(DType::Float32, {4});
  for (int e = 0; e < 4; ++e) a.data<float>()[e] = static_cast<float>(e) + 0.5f;
  Tensor b = a.clone();
  b.data<float>()[0] = 42;
  EXPECT_EQ(a.data<float>()[0], 0.5f);
  EXPECT_EQ(b.data<float>()[3], 3.5f);
  EXPECT_NE(a.raw_data(), b.raw_data());

  const void* storage = a.raw_data();
  Tensor c = std::move(a);
  EXPECT_EQ(c.raw_data(), storage);
  EXPECT_EQ(c.numel(), 4);
  EXPECT_EQ(a.numel(), 0);  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  EXPECT_EQ(a.size_bytes(), 0u);
  Tensor d(DType::Int32, {1});
  d = std::move(c);
  EXPECT_EQ(d.dtype(), DType::Float32);
  EXPECT_EQ(d.data<float>()[2], 2.5f);
}

TEST(Tensor, NarrowingToInt32ChecksTheRange) {
  Tensor wide(DType::Int64, {2, 2});
  int64_t* w = wide.data<int64_t>();
  w[0] = 0;
  w[1] = -7;
  w[2] = std::numeric_limits<int32_t>::max();
  w[3] = std::numeric_limits<int32_t>::min();
  Tensor narrow = to_int32(wide, "segments.npy");
  EXPECT_EQ(narrow.dtype(), DType::Int32);
  EXPECT_EQ(narrow.shape(), wide.shape());
  for (int e = 0; e < 4; ++e) EXPECT_EQ(narrow.data<int32_t>()[e], w[e]);

  w[2] = int64_t{3000000000};
  expect_error([&] { to_int32(wide, "segments.npy"); }, {"segments.npy", "3000000000", "int32"});
  w[2] = -int64_t{3000000000};
  expect_error([&] { to_int32(wide, "segments.npy"); }, {"-3000000000"});
  expect_error([&] { to_int32(Tensor(DType::Float32, {1}), "x.npy"); }, {"x.npy", "float32[1]"});
  Tensor already(DType::Int32, {1});
  already.data<int32_t>()[0] = 9;
  EXPECT_EQ(to_int32(already, "y").data<int32_t>()[0], 9);
}

// ----------------------------------------------------------------------------------------------------------
// Writing: numpy's layout exactly.

TEST(NpyWrite, HeaderLayoutMatchesNumpy) {
  Tensor t(DType::Float32, {2, 3});
  std::string bytes = encode_npy(t);
  ASSERT_GE(bytes.size(), 10u);
  EXPECT_EQ(bytes.substr(0, 6), "\x93NUMPY");
  EXPECT_EQ(bytes[6], 1);
  EXPECT_EQ(bytes[7], 0);
  const size_t header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
  EXPECT_EQ((10 + header_len) % 64, 0u);
  EXPECT_EQ(bytes.size(), 10 + header_len + 24);
  const std::string header = bytes.substr(10, header_len);
  EXPECT_EQ(header.back(), '\n');
  EXPECT_EQ(header.rfind("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 0), 0u) << header;
  for (size_t c = 60; c + 1 < header.size(); ++c) EXPECT_EQ(header[c], ' ');

  EXPECT_NE(encode_npy(Tensor(DType::Int32, {5})).find("'descr': '<i4', 'fortran_order': False, 'shape': (5,), }"),
            std::string::npos);
  EXPECT_NE(encode_npy(Tensor(DType::Int64, {})).find("'descr': '<i8', 'fortran_order': False, 'shape': (), }"),
            std::string::npos);
}

TEST(NpyWrite, DataFollowsTheHeaderLittleEndian) {
  Tensor t(DType::Int32, {2});
  t.data<int32_t>()[0] = 0x01020304;
  t.data<int32_t>()[1] = -2;
  std::string bytes = encode_npy(t);
  // The header dict is 58 characters, so with the 10-byte preamble and the newline it pads to 128 bytes.
  ASSERT_EQ(bytes.size(), 128u + 8u);
  EXPECT_EQ(bytes.substr(128), std::string("\x04\x03\x02\x01\xfe\xff\xff\xff", 8));
}

TEST(NpyWrite, HugeRankFallsBackToVersion2) {
  // A header longer than 65535 bytes needs format 2.0: 30000 dimensions of size 1.
  Tensor t(DType::Float32, std::vector<int64_t>(30000, 1));
  t.data<float>()[0] = 7;
  std::string bytes = encode_npy(t);
  EXPECT_EQ(bytes[6], 2);
  const size_t header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8) |
                            (static_cast<unsigned char>(bytes[10]) << 16);
  EXPECT_EQ((12 + header_len) % 64, 0u);
  Tensor back = decode_npy(bytes, "big_rank.npy");
  EXPECT_EQ(back.rank(), 30000);
  EXPECT_EQ(back.data<float>()[0], 7.0f);
}

// ----------------------------------------------------------------------------------------------------------
// Round trips

template <typename T>
void fill_pattern(Tensor& t) {
  T* data = t.data<T>();
  for (int64_t e = 0; e < t.numel(); ++e) {
    if constexpr (std::is_same_v<T, float>) {
      data[e] = static_cast<float>(e) * 0.37f - 11.0f;
    } else {
      data[e] = static_cast<T>((e * 2654435761LL) % 2000003) - 1000000;
    }
  }
  if constexpr (std::is_same_v<T, int64_t>) {
    if (t.numel() > 0) data[0] = std::numeric_limits<int64_t>::min();
  }
}

void expect_same(const Tensor& a, const Tensor& b) {
  ASSERT_EQ(a.dtype(), b.dtype());
  ASSERT_EQ(a.shape(), b.shape());
  ASSERT_EQ(a.size_bytes(), b.size_bytes());
  EXPECT_EQ(std::memcmp(a.raw_data(), b.raw_data(), a.size_bytes()), 0);
}

TEST_F(NpyFiles, RoundTripsEveryDtypeAndShape) {
  const std::vector<std::vector<int64_t>> shapes = {{},     {1},       {7},           {0},
                                                    {2, 3}, {3, 0, 2}, {2, 4, 8, 16}, {1, 1, 1, 1, 5}};
  int file = 0;
  for (DType dtype : {DType::Float32, DType::Int32, DType::Int64}) {
    for (const auto& shape : shapes) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + shape_string(shape));
      Tensor t(dtype, shape);
      if (dtype == DType::Float32) fill_pattern<float>(t);
      if (dtype == DType::Int32) fill_pattern<int32_t>(t);
      if (dtype == DType::Int64) fill_pattern<int64_t>(t);
      const std::string name = "t" + std::to_string(file++) + ".npy";
      write_npy(path(name), t);
      Tensor back = read_npy(path(name));
      expect_same(t, back);
      EXPECT_EQ(read_bytes(name), encode_npy(t));
      expect_same(t, decode_npy(encode_npy(t), "memory"));
    }
  }
}

TEST_F(NpyFiles, RoundTripKeepsSpecialFloats) {
  Tensor t(DType::Float32, {5});
  float* d = t.data<float>();
  d[0] = std::numeric_limits<float>::quiet_NaN();
  d[1] = std::numeric_limits<float>::infinity();
  d[2] = -0.0f;
  d[3] = std::numeric_limits<float>::denorm_min();
  d[4] = std::numeric_limits<float>::max();
  write_npy(path("special.npy"), t);
  expect_same(t, read_npy(path("special.npy")));
}

// ----------------------------------------------------------------------------------------------------------
// Reading what other writers produce

TEST(NpyRead, AcceptsHeaderVariants) {
  const std::string data = bytes_of(std::vector<float>{1, 2, 3, 4, 5, 6});
  const std::vector<std::string> dicts = {
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
      "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}",
      "{\"fortran_order\":False,\"descr\":\"<f4\",\"shape\":(2,3,)}",
      "  {  'descr' :  '<f4' ,  'fortran_order' :  False ,  'shape' :  ( 2 , 3 , ) ,  }  ",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }",
      "{'descr': 'f4', 'fortran_order': False, 'shape': (2, 3), }",
      "{'descr': '=f4', 'fortran_order': False, 'shape': (2, 3), }",
      "{'descr': '|f4', 'fortran_order': False, 'shape': (2, 3), }",
  };
  for (const auto& dict : dicts) {
    SCOPED_TRACE(dict);
    Tensor t = decode_npy(make_npy(dict, data), "variant.npy");
    ASSERT_EQ(t.dtype(), DType::Float32);
    ASSERT_EQ(t.shape(), (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(t.data<float>()[5], 6.0f);
  }
}

TEST(NpyRead, AcceptsVersions2And3) {
  const std::string data = bytes_of(std::vector<int64_t>{-5, 1LL << 40});
  for (int major : {2, 3}) {
    Tensor t = decode_npy(make_npy("{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", data, major), "v.npy");
    ASSERT_EQ(t.dtype(), DType::Int64);
    EXPECT_EQ(t.data<int64_t>()[0], -5);
    EXPECT_EQ(t.data<int64_t>()[1], 1LL << 40);
  }
}

TEST(NpyRead, Int32AndScalars) {
  Tensor t = decode_npy(
      make_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (), }", bytes_of(std::vector<int32_t>{-123})),
      "s.npy");
  EXPECT_EQ(t.rank(), 0);
  EXPECT_EQ(t.data<int32_t>()[0], -123);
}

// ----------------------------------------------------------------------------------------------------------
// Errors: each names the file and what is wrong.

TEST(NpyErrors, NotAnNpyFile) {
  expect_error([] { decode_npy("PK\x03\x04 this is a zip file", "Q.npy"); }, {"Q.npy", "not an .npy file"});
  expect_error([] { decode_npy("", "empty.npy"); }, {"empty.npy", "not an .npy file"});
  expect_error([] { decode_npy("\x93NUM", "short.npy"); }, {"short.npy", "not an .npy file"});
}

TEST(NpyErrors, UnsupportedVersion) {
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }";
  const std::string data(4, '\0');
  expect_error([&] { decode_npy(make_npy(dict, data, 4, 0), "K.npy"); }, {"K.npy", "version 4.0", "1.0, 2.0"});
  expect_error([&] { decode_npy(make_npy(dict, data, 1, 1), "K.npy"); }, {"K.npy", "version 1.1"});
  expect_error([&] { decode_npy(make_npy(dict, data, 0, 0), "K.npy"); }, {"version 0.0"});
}

TEST(NpyErrors, TruncatedPreambleAndHeader) {
  const std::string full = make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", std::string(4, '\0'));
  expect_error([&] { decode_npy(full.substr(0, 7), "V.npy"); }, {"V.npy", "truncated"});
  expect_error([&] { decode_npy(full.substr(0, 9), "V.npy"); }, {"V.npy", "truncated", "header length"});
  expect_error([&] { decode_npy(full.substr(0, 40), "V.npy"); }, {"V.npy", "truncated", "118 bytes", "30 follow"});
  // Version 2.0 needs 4 bytes of header length.
  std::string v2 = make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", "", 2);
  expect_error([&] { decode_npy(v2.substr(0, 11), "V.npy"); }, {"V.npy", "truncated"});
}

TEST(NpyErrors, MalformedHeaderDicts) {
  const std::string data(4, '\0');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"'descr': '<f4', 'fortran_order': False, 'shape': (1,)", "expected '{'"},
      {"{'descr': '<f4', 'fortran_order': False}", "missing key 'shape'"},
      {"{'fortran_order': False, 'shape': (1,)}", "missing key 'descr'"},
      {"{'descr': '<f4', 'shape': (1,)}", "missing key 'fortran_order'"},
      {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", "duplicate key 'descr'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}", "unexpected key 'extra'"},
      {"{'descr': '<f4, 'fortran_order': False, 'shape': (1,)}", "expected ',' or '}'"},
      {"{'descr': '<f4', 'fortran_order': false, 'shape': (1,)}", "True or False"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': [1]}", "expected '('"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1; 2)}", "expected ',' or ')'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (x,)}", "integer dimension"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} junk", "after the closing"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), ", "expected a quoted key"},
      {"{descr: '<f4'}", "expected a quoted key"},
      {"{'descr", "unterminated string"},
      {"", "expected '{'"},
      {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}", "structured"},
  };
  for (const auto& [dict, what] : cases) {
    SCOPED_TRACE(dict);
    expect_error([&] { decode_npy(make_npy(dict, data), "segments.npy"); }, {"segments.npy", "bad .npy header", what});
  }
}

TEST(NpyErrors, UnsupportedDtypes) {
  const std::string data(8, '\0');
  auto header = [](const std::string& descr) {
    return "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (1,), }";
  };
  expect_error([&] { decode_npy(make_npy(header("<f8"), data), "Q.npy"); },
               {"Q.npy", "unsupported dtype '<f8'", "float64", "'<f4' (float32)", "'<i4' (int32)", "'<i8' (int64)"});
  expect_error([&] { decode_npy(make_npy(header("|b1"), data), "Q.npy"); }, {"'|b1'", "bool", "supported"});
  expect_error([&] { decode_npy(make_npy(header("<f2"), data), "Q.npy"); }, {"'<f2'", "float16"});
  expect_error([&] { decode_npy(make_npy(header("<U5"), data), "Q.npy"); }, {"'<U5'", "supported"});
  expect_error([&] { decode_npy(make_npy(header(">f4"), data), "K.npy"); }, {"K.npy", "big-endian", "'>f4'", "'<f4'"});
  expect_error([&] { decode_npy(make_npy(header(">i8"), data), "K.npy"); }, {"big-endian", "'>i8'"});
}

TEST(NpyErrors, FortranOrder) {
  expect_error(
      [] {
        decode_npy(make_npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", std::string(16, '\0')),
                   "V.npy");
      },
      {"V.npy", "Fortran", "C-ordered"});
}

TEST(NpyErrors, BadDimensions) {
  expect_error(
      [] { decode_npy(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }", ""), "a.npy"); },
      {"a.npy", "dimension 1", "negative"});
  expect_error(
      [] {
        decode_npy(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", ""),
                   "a.npy");
      },
      {"a.npy", "dimension 0", "overflows"});
  expect_error(
      [] {
        decode_npy(make_npy("{'descr': '<i8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", ""),
                   "a.npy");
      },
      {"a.npy", "[4294967296, 4294967296]", "too large"});
}

TEST(NpyErrors, TruncatedOrOverlongData) {
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4, 32, 32), }";
  try {
    decode_npy(make_npy(dict, std::string(1000, '\0')), "Q.npy");
    ADD_FAILURE() << "did not throw";
  } catch (const TensorError& e) {
    EXPECT_STREQ(e.what(), "Q.npy: expected 32768 bytes of data for float32[2, 4, 32, 32], found 1000");
  }
  expect_error([&] { decode_npy(make_npy(dict, std::string(32769, '\0')), "Q.npy"); },
               {"Q.npy", "expected 32768 bytes", "found 32769"});
  expect_error([] { decode_npy(make_npy("{'descr': '<i8', 'fortran_order': False, 'shape': (0,), }", "x"), "e.npy"); },
               {"e.npy", "expected 0 bytes of data for int64[0], found 1"});
}

TEST_F(NpyFiles, FileErrorsNameThePath) {
  const std::string missing = path("no_such_file.npy");
  expect_error([&] { read_npy(missing); }, {missing, "not found"});
  expect_error([&] { read_npy(dir_.string()); }, {dir_.string(), "directory"});
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4, 32, 32), }";
  write_bytes("Q.npy", make_npy(dict, std::string(1000, '\0')));
  expect_error([&] { read_npy(path("Q.npy")); },
               {path("Q.npy") + ": expected 32768 bytes of data for float32[2, 4, 32, 32], found 1000"});
  write_bytes("bad.npy", "hello");
  expect_error([&] { read_npy(path("bad.npy")); }, {path("bad.npy"), "not an .npy file"});
  write_bytes("trunc.npy", make_npy(dict, "").substr(0, 30));
  expect_error([&] { read_npy(path("trunc.npy")); }, {path("trunc.npy"), "truncated"});
  write_bytes("big.npy", make_npy("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", std::string(4, '\0')));
  expect_error([&] { read_npy(path("big.npy")); }, {path("big.npy"), "big-endian"});
  expect_error([&] { write_npy(path("no_dir/out.npy"), Tensor(DType::Float32, {1})); },
               {path("no_dir/out.npy"), "cannot open for writing"});
}

// ----------------------------------------------------------------------------------------------------------
// Real numpy, when it is installed.

// A python3 with numpy, found by CMake (the system one; one earlier on PATH may lack numpy).
const std::string kPython = TESSERA_TEST_PYTHON;

bool numpy_available() { return std::system((kPython + " -c 'import numpy' >/dev/null 2>&1").c_str()) == 0; }

TEST_F(NpyFiles, InteroperatesWithRealNumpy) {
  if (!numpy_available()) GTEST_SKIP() << "python3 with numpy is not available";
  // numpy writes; we read.
  const std::string script = path("write.py");
  {
    std::ofstream py(script);
    py << "import numpy as np, sys\n"
          "d = sys.argv[1]\n"
          "np.save(d + '/f.npy', (np.arange(24, dtype=np.float32) * 0.5 - 3).reshape(2, 3, 4))\n"
          "np.save(d + '/i.npy', np.array([[1, -2], [3, 2**40]], dtype=np.int64))\n"
          "np.save(d + '/i32.npy', np.array([7, -8, 9], dtype=np.int32))\n"
          "np.save(d + '/s.npy', np.float32(2.5))\n"
          "np.save(d + '/e.npy', np.zeros((0, 3), dtype=np.float32))\n"
          "np.save(d + '/fo.npy', np.asfortranarray(np.ones((2, 3), dtype=np.float32)))\n"
          "np.save(d + '/be.npy', np.ones(3, dtype='>f4'))\n";
  }
  ASSERT_EQ(std::system((kPython + " " + script + " " + dir_.string()).c_str()), 0);
  Tensor f = read_npy(path("f.npy"));
  ASSERT_EQ(f.shape(), (std::vector<int64_t>{2, 3, 4}));
  for (int e = 0; e < 24; ++e) EXPECT_EQ(f.data<float>()[e], static_cast<float>(e) * 0.5f - 3.0f);
  Tensor i = read_npy(path("i.npy"));
  ASSERT_EQ(i.dtype(), DType::Int64);
  EXPECT_EQ(i.data<int64_t>()[3], int64_t{1} << 40);
  expect_error([&] { to_int32(i, "i.npy"); }, {"1099511627776"});
  Tensor i32 = read_npy(path("i32.npy"));
  ASSERT_EQ(i32.dtype(), DType::Int32);
  EXPECT_EQ(i32.data<int32_t>()[1], -8);
  Tensor s = read_npy(path("s.npy"));
  EXPECT_EQ(s.rank(), 0);
  EXPECT_EQ(s.data<float>()[0], 2.5f);
  EXPECT_EQ(read_npy(path("e.npy")).shape(), (std::vector<int64_t>{0, 3}));
  // Our writer produces numpy's bytes exactly, header padding included.
  for (const char* name : {"f.npy", "i.npy", "i32.npy", "s.npy", "e.npy"}) {
    EXPECT_EQ(encode_npy(read_npy(path(name))), read_bytes(name)) << name;
  }
  expect_error([&] { read_npy(path("fo.npy")); }, {"Fortran"});
  expect_error([&] { read_npy(path("be.npy")); }, {"big-endian", "'>f4'"});

  // We write; numpy reads and checks.
  Tensor out(DType::Float32, {2, 2, 3});
  for (int e = 0; e < 12; ++e) out.data<float>()[e] = static_cast<float>(e) / 4.0f;
  write_npy(path("ours.npy"), out);
  Tensor ours_i(DType::Int32, {});
  ours_i.data<int32_t>()[0] = -77;
  write_npy(path("ours_i.npy"), ours_i);
  const std::string check = kPython +
                            " -c \"import numpy as np, sys; a = np.load(sys.argv[1]); b = np.load(sys.argv[2]); "
                            "assert a.dtype == np.float32 and a.shape == (2, 2, 3), (a.dtype, a.shape); "
                            "assert (a.ravel() == np.arange(12, dtype=np.float32) / 4).all(); "
                            "assert b.dtype == np.int32 and b.shape == () and b == -77\" " +
                            path("ours.npy") + " " + path("ours_i.npy");
  EXPECT_EQ(std::system(check.c_str()), 0);
}

}  // namespace
}  // namespace tessera::runtime
