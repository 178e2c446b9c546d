// safetensors reading: files written by a small writer here, read back bit for bit; F16 and BF16 checked over every
// bit pattern against independent formulas; one hand-made file per way a header can be wrong; every truncation
// of a GPT-2-like file.
#include "runtime/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "runtime/tensor.h"
#include "test/unit/expect_error.h"

namespace tessera::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Runs `fn`, which must throw TensorError with a message containing every one of `parts`.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  test::expect_error<TensorError>(fn, parts);
}

// Bytes per element, written out here rather than taken from the reader.
size_t element_size(const std::string& dtype) {
  static const std::map<std::string, size_t> kSizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"I64", 8},     {"U64", 8}, {"F64", 8}};
  return kSizes.at(dtype);
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// One tensor for the writer: `gap` junk bytes are put before its data, so offsets need not be aligned.
struct Spec {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::string data;
  size_t gap = 0;
};

// 8-byte little-endian length, header, data: a safetensors file around any header text.
std::string assemble(const std::string& header, const std::string& data = "") {
  std::string out;
  for (int b = 0; b < 8; ++b) out += static_cast<char>((static_cast<uint64_t>(header.size()) >> (8 * b)) & 0xff);
  return out + header + data;
}

std::string length_prefix(uint64_t length) {
  std::string out;
  for (int b = 0; b < 8; ++b) out += static_cast<char>((length >> (8 * b)) & 0xff);
  return out;
}

// A well-formed file holding `tensors` in the order given. `pad_header_to` pads the header with spaces, as the
// reference writer does (to 8 bytes).
std::string write_safetensors(const std::vector<Spec>& tensors, const std::map<std::string, std::string>& metadata = {},
                              size_t pad_header_to = 1) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string data;
  for (const Spec& t : tensors) {
    data.append(t.gap, '\xa5');
    const size_t begin = data.size();
    data += t.data;
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {begin, data.size()}}};
  }
  std::string text = header.dump();
  while ((8 + text.size()) % pad_header_to != 0) text += ' ';
  return assemble(text, data);
}

std::string random_bytes(size_t n, std::mt19937& rng) {
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

Spec random_tensor(const std::string& name, const std::string& dtype, std::vector<int64_t> shape, size_t gap,
                   std::mt19937& rng) {
  const size_t bytes = static_cast<size_t>(numel(shape)) * element_size(dtype);
  return Spec{name, dtype, std::move(shape), random_bytes(bytes, rng), gap};
}

// Half precision by its definition: (-1)^s * 2^(e-15) * 1.m for normals, 2^-14 * 0.m for subnormals.
float reference_half(uint16_t h) {
  const bool negative = (h & 0x8000) != 0;
  const int e = (h >> 10) & 0x1f;
  const int m = h & 0x3ff;
  double magnitude;
  if (e == 0) {
    magnitude = std::ldexp(static_cast<double>(m), -24);
  } else if (e == 31) {
    magnitude = m == 0 ? INFINITY : NAN;
  } else {
    magnitude = std::ldexp(static_cast<double>(1024 + m), e - 25);
  }
  return static_cast<float>(negative ? -magnitude : magnitude);
}

uint32_t bits(float f) { return std::bit_cast<uint32_t>(f); }

// `actual` equals the F16 value `h`: the same bits, or for a NaN, a NaN of the same sign and payload.
void expect_half(uint16_t h, float actual) {
  const float expected = reference_half(h);
  if (std::isnan(expected)) {
    ASSERT_TRUE(std::isnan(actual)) << "half 0x" << std::hex << h;
    ASSERT_EQ(std::signbit(actual), std::signbit(expected)) << "half 0x" << std::hex << h;
    ASSERT_EQ(bits(actual) & 0x7fffffu, static_cast<uint32_t>(h & 0x3ff) << 13) << "half 0x" << std::hex << h;
  } else {
    ASSERT_EQ(bits(actual), bits(expected)) << "half 0x" << std::hex << h << ": " << actual << " vs " << expected;
  }
}

std::vector<uint16_t> halves(const std::string& data) {
  std::vector<uint16_t> out(data.size() / 2);
  if (!out.empty()) std::memcpy(out.data(), data.data(), out.size() * 2);  // an empty vector's data() may be null
  return out;
}

class SafetensorsFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("tessera_safetensors_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string write(const std::string& name, const std::string& bytes) const {
    std::ofstream out(path(name), std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path(name);
  }
  // A file whose header is `header` verbatim and whose data is `data`; open must fail naming the path and `parts`.
  void expect_open_error(const std::string& header, const std::string& data, std::vector<std::string> parts) {
    const std::string p = write("bad.safetensors", assemble(header, data));
    parts.insert(parts.begin(), p + ": ");
    expect_error([&] { SafetensorsFile::open(p); }, parts);
  }

  fs::path dir_;
};

TEST_F(SafetensorsFiles, RoundTripOfEveryDtypeWithUnalignedOffsets) {
  std::mt19937 rng(1234);
  const std::vector<std::string> dtypes = {"BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3", "I16", "U16", "F16",
                                           "BF16", "I32", "U32", "F32",     "I64",     "U64", "F64"};
  const std::vector<std::vector<int64_t>> shapes = {{}, {7}, {3, 5}, {2, 3, 4}, {0}, {4, 0, 2}, {1, 1, 1, 9}};
  std::vector<Spec> specs;
  for (size_t d = 0; d < dtypes.size(); ++d) {
    for (size_t s = 0; s < shapes.size(); ++s) {
      specs.push_back(random_tensor(dtypes[d] + ".t" + std::to_string(s), dtypes[d], shapes[s], (d + s) % 4, rng));
    }
  }
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "h\xc3\xa9llo \"quoted\""}};
  const std::string p = write("all.safetensors", write_safetensors(specs, metadata));
  SafetensorsFile file = SafetensorsFile::open(p);

  std::vector<std::string> expected_names;
  for (const Spec& s : specs) expected_names.push_back(s.name);
  std::sort(expected_names.begin(), expected_names.end());
  EXPECT_EQ(file.names(), expected_names);
  EXPECT_EQ(file.size(), specs.size());
  EXPECT_EQ(file.metadata(), metadata);
  EXPECT_EQ(file.path(), p);
  EXPECT_FALSE(file.contains("F32"));
  EXPECT_FALSE(file.contains("__metadata__"));

  bool saw_unaligned_float = false;
  for (const Spec& s : specs) {
    SCOPED_TRACE(s.name);
    ASSERT_TRUE(file.contains(s.name));
    const SafetensorsTensorInfo& info = file.info(s.name);
    EXPECT_STREQ(safetensors_dtype_name(info.dtype), s.dtype.c_str());
    EXPECT_EQ(safetensors_dtype_size(info.dtype), element_size(s.dtype));
    EXPECT_EQ(info.shape, s.shape);
    EXPECT_EQ(info.byte_size, s.data.size());
    const std::span<const std::byte> bytes = file.bytes(s.name);
    ASSERT_EQ(bytes.size(), s.data.size());
    EXPECT_EQ(std::memcmp(bytes.data(), s.data.data(), s.data.size()), 0);

    if (s.dtype != "F32" && s.dtype != "F16" && s.dtype != "BF16") {
      expect_error([&] { (void)file.to_float32(s.name); }, {p + ": ", "'" + s.name + "'", s.dtype});
      continue;
    }
    if (s.dtype == "F32" && !s.data.empty() && reinterpret_cast<uintptr_t>(bytes.data()) % alignof(float) != 0) {
      saw_unaligned_float = true;
    }
    const Tensor t = file.to_float32(s.name);
    EXPECT_EQ(t.dtype(), DType::Float32);
    EXPECT_EQ(t.shape(), s.shape);
    ASSERT_EQ(t.numel(), numel(s.shape));
    const float* values = t.data<float>();
    if (s.dtype == "F32") {
      // Random bytes include NaNs with payloads: compare bits, not values.
      EXPECT_EQ(std::memcmp(values, s.data.data(), s.data.size()), 0);
    } else {
      const std::vector<uint16_t> raw = halves(s.data);
      for (size_t i = 0; i < raw.size(); ++i) {
        if (s.dtype == "BF16") {
          ASSERT_EQ(bits(values[i]), static_cast<uint32_t>(raw[i]) << 16) << "element " << i;
        } else {
          expect_half(raw[i], values[i]);
        }
      }
    }
  }
  EXPECT_TRUE(saw_unaligned_float) << "the writer was meant to put some F32 data at unaligned addresses";
}

TEST_F(SafetensorsFiles, EveryHalfAndBfloat16BitPatternConvertsExactly) {
  std::string patterns;
  for (uint32_t h = 0; h < 65536; ++h) {
    patterns += static_cast<char>(h & 0xff);
    patterns += static_cast<char>(h >> 8);
  }
  // Odd gaps: the 2-byte elements start at odd offsets.
  const std::string p = write("halves.safetensors", write_safetensors({Spec{"half", "F16", {256, 256}, patterns, 1},
                                                                       Spec{"brain", "BF16", {65536}, patterns, 3}}));
  SafetensorsFile file = SafetensorsFile::open(p);
  const Tensor half = file.to_float32("half");
  const Tensor brain = file.to_float32("brain");
  EXPECT_EQ(half.shape(), (std::vector<int64_t>{256, 256}));
  for (uint32_t h = 0; h < 65536; ++h) {
    expect_half(static_cast<uint16_t>(h), half.data<float>()[h]);
    ASSERT_EQ(bits(brain.data<float>()[h]), h << 16);
  }
  // A few landmarks, so that a shared misreading of the format by both sides would still show.
  EXPECT_EQ(half.data<float>()[0x3c00], 1.0f);
  EXPECT_EQ(half.data<float>()[0xc000], -2.0f);
  EXPECT_EQ(half.data<float>()[0x7bff], 65504.0f);
  EXPECT_EQ(half.data<float>()[0x0001], std::ldexp(1.0f, -24));
  EXPECT_EQ(half.data<float>()[0x0400], std::ldexp(1.0f, -14));
  EXPECT_EQ(half.data<float>()[0x7c00], INFINITY);
  EXPECT_EQ(half.data<float>()[0xfc00], -INFINITY);
  EXPECT_TRUE(std::signbit(half.data<float>()[0x8000]));
  EXPECT_EQ(brain.data<float>()[0x3f80], 1.0f);
}

TEST_F(SafetensorsFiles, ZeroSizeAndZeroDimensionalTensors) {
  float pi = 3.14159f;
  std::string pi_bytes(4, '\0');
  std::memcpy(pi_bytes.data(), &pi, 4);
  // An empty tensor at the very end of the data, one sharing an offset with a real tensor, and a zero extent
  // beside an extent too large for any file.
  std::string header =
      json{{"scalar", {{"dtype", "F32"}, {"shape", json::array()}, {"data_offsets", {1, 5}}}},
           {"empty_at_end", {{"dtype", "F16"}, {"shape", {0}}, {"data_offsets", {5, 5}}}},
           {"empty_inside", {{"dtype", "F32"}, {"shape", {3, 0}}, {"data_offsets", {2, 2}}}},
           {"empty_huge", {{"dtype", "F32"}, {"shape", {0, int64_t{1} << 62}}, {"data_offsets", {0, 0}}}}}
          .dump();
  const std::string p = write("zero.safetensors", assemble(header, "x" + pi_bytes));
  SafetensorsFile file = SafetensorsFile::open(p);
  const Tensor scalar = file.to_float32("scalar");
  EXPECT_EQ(scalar.rank(), 0);
  ASSERT_EQ(scalar.numel(), 1);
  EXPECT_EQ(scalar.data<float>()[0], pi);
  for (const std::string name : {"empty_at_end", "empty_inside", "empty_huge"}) {
    SCOPED_TRACE(name);
    EXPECT_EQ(file.info(name).byte_size, 0u);
    EXPECT_TRUE(file.bytes(name).empty());
    const Tensor t = file.to_float32(name);
    EXPECT_EQ(t.numel(), 0);
    EXPECT_EQ(t.shape(), file.info(name).shape);
  }
}

TEST_F(SafetensorsFiles, EmptyHeaderHoldsNoTensors) {
  const std::string p = write("empty.safetensors", assemble("{}"));
  SafetensorsFile file = SafetensorsFile::open(p);
  EXPECT_EQ(file.size(), 0u);
  EXPECT_TRUE(file.names().empty());
  EXPECT_TRUE(file.metadata().empty());
  expect_error([&] { file.info("w"); }, {p + ": no tensor named 'w' (the file has 0 tensors)"});
}

TEST_F(SafetensorsFiles, UnknownNameListsSomeTensors) {
  std::mt19937 rng(7);
  std::vector<Spec> specs;
  for (const char* name : {"e", "d", "c", "b", "a"}) specs.push_back(random_tensor(name, "F32", {2}, 0, rng));
  const std::string p = write("five.safetensors", write_safetensors(specs));
  SafetensorsFile file = SafetensorsFile::open(p);
  const std::string expected = p + ": no tensor named 'x' (the file has 5 tensors, e.g. a, b, c)";
  expect_error([&] { file.info("x"); }, {expected});
  expect_error([&] { file.bytes("x"); }, {expected});
  expect_error([&] { (void)file.to_float32("x"); }, {expected});
  expect_error([&] { file.require("x", {2}); }, {expected});
}

TEST_F(SafetensorsFiles, RequireChecksTheShape) {
  std::mt19937 rng(8);
  const std::string p = write("w.safetensors", write_safetensors({random_tensor("w", "F16", {2, 3}, 0, rng)}));
  SafetensorsFile file = SafetensorsFile::open(p);
  EXPECT_EQ(file.require("w", {2, 3}).shape, (std::vector<int64_t>{2, 3}));
  expect_error([&] { file.require("w", {3, 2}); }, {p + ": tensor 'w' has shape [2, 3], expected [3, 2]"});
  expect_error([&] { file.require("w", {}); }, {p + ": tensor 'w' has shape [2, 3], expected []"});
}

TEST_F(SafetensorsFiles, MovedFileKeepsItsMapping) {
  std::mt19937 rng(9);
  const Spec spec = random_tensor("w", "F32", {16}, 1, rng);
  const std::string p = write("w.safetensors", write_safetensors({spec}));
  SafetensorsFile kept = SafetensorsFile::open(write("other.safetensors", write_safetensors({})));
  {
    SafetensorsFile first = SafetensorsFile::open(p);
    SafetensorsFile second(std::move(first));
    kept = std::move(second);
  }
  EXPECT_EQ(kept.path(), p);
  ASSERT_TRUE(kept.contains("w"));
  EXPECT_EQ(std::memcmp(kept.bytes("w").data(), spec.data.data(), spec.data.size()), 0);
}

TEST_F(SafetensorsFiles, ReferenceWriterPaddingIsAccepted) {
  std::mt19937 rng(10);
  const std::string bytes = write_safetensors({random_tensor("w", "F32", {3}, 0, rng)}, {{"format", "pt"}}, 8);
  const uint64_t header_length = static_cast<unsigned char>(bytes[0]);
  ASSERT_EQ((8 + header_length) % 8, 0u);
  ASSERT_EQ(bytes[8 + header_length - 1], ' ') << "this case is meant to carry padding";
  SafetensorsFile file = SafetensorsFile::open(write("padded.safetensors", bytes));
  EXPECT_EQ(file.names(), std::vector<std::string>{"w"});
}

// --- Files that cannot be opened ---

TEST_F(SafetensorsFiles, MissingFileOrDirectory) {
  expect_error([&] { SafetensorsFile::open(path("nope.safetensors")); }, {path("nope.safetensors") + ": cannot open"});
  fs::create_directories(path("dir.safetensors"));
  expect_error([&] { SafetensorsFile::open(path("dir.safetensors")); },
               {path("dir.safetensors") + ": not a regular file"});
}

TEST_F(SafetensorsFiles, FileShorterThanTheLength) {
  for (size_t size : {0, 1, 7}) {
    const std::string p = write("short.safetensors", std::string(size, '\x01'));
    expect_error([&] { SafetensorsFile::open(p); }, {p + ": ", "too short", "8-byte header length"});
  }
}

TEST_F(SafetensorsFiles, HeaderLengthBeyondTheFile) {
  const std::string p = write("long.safetensors", length_prefix(40) + "{}");
  expect_error([&] { SafetensorsFile::open(p); }, {p + ": ", "header length 40", "beyond the end of the file"});
}

TEST_F(SafetensorsFiles, AbsurdHeaderLength) {
  for (uint64_t length : {uint64_t{100'000'001}, uint64_t{1} << 63, ~uint64_t{0}}) {
    const std::string p = write("absurd.safetensors", length_prefix(length) + "{}");
    expect_error([&] { SafetensorsFile::open(p); }, {p + ": ", std::to_string(length), "absurd"});
  }
}

TEST_F(SafetensorsFiles, HeaderIsNotJson) {
  expect_open_error(R"({"w": {"dtype": "F32", )", "", {"not valid JSON"});
  expect_open_error("", "", {"not valid JSON"});
  expect_open_error("{\"w\xff\": 1}", "", {"not valid JSON"});  // not UTF-8
}

TEST_F(SafetensorsFiles, HeaderIsNotAnObject) {
  expect_open_error("[1, 2]", "", {"not a JSON object", "array"});
  expect_open_error("\"w\"", "", {"not a JSON object", "string"});
}

TEST_F(SafetensorsFiles, EntryIsNotAnObject) {
  expect_open_error(R"({"w": [1, 2]})", "", {"tensor 'w'", "not an object"});
  expect_open_error(R"({"w": "F32"})", "", {"tensor 'w'", "not an object"});
}

TEST_F(SafetensorsFiles, EntryLacksAField) {
  expect_open_error(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", "abcd", {"tensor 'w'", "lacks 'dtype'"});
  expect_open_error(R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", "abcd", {"tensor 'w'", "lacks 'shape'"});
  expect_open_error(R"({"w": {"dtype": "F32", "shape": [1]}})", "abcd", {"tensor 'w'", "lacks 'data_offsets'"});
}

TEST_F(SafetensorsFiles, FieldHasTheWrongType) {
  expect_open_error(R"({"w": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}})", "abcd",
                    {"tensor 'w'", "'dtype' is not a string"});
  expect_open_error(R"({"w": {"dtype": "F32", "shape": 1, "data_offsets": [0, 4]}})", "abcd",
                    {"tensor 'w'", "'shape' is not an array"});
  expect_open_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4]}})", "abcd",
                    {"tensor 'w'", "'data_offsets' is not an array [begin, end]"});
  expect_open_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}})", "abcd",
                    {"tensor 'w'", "'data_offsets' is not an array [begin, end]"});
  expect_open_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": "0-4"}})", "abcd",
                    {"tensor 'w'", "'data_offsets' is not an array [begin, end]"});
  expect_open_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4.0]}})", "abcd",
                    {"tensor 'w'", "'data_offsets' end is not a non-negative integer"});
  expect_open_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-1, 4]}})", "abcd",
                    {"tensor 'w'", "'data_offsets' begin is negative"});
}

TEST_F(SafetensorsFiles, UnknownDtype) {
  expect_open_error(R"({"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}})", std::string(16, 'x'),
                    {"tensor 'w'", "unknown dtype 'F128'", "BF16"});
  expect_open_error(R"({"w": {"dtype": "f32", "shape": [1], "data_offsets": [0, 4]}})", "abcd",
                    {"tensor 'w'", "unknown dtype 'f32'"});
}

TEST_F(SafetensorsFiles, BadDimensions) {
  expect_open_error(R"({"w": {"dtype": "U8", "shape": [2, -2], "data_offsets": [0, 4]}})", "abcd",
                    {"tensor 'w'", "dimension 1 of 'shape'", "negative"});
  expect_open_error(R"({"w": {"dtype": "U8", "shape": [2, 2.0], "data_offsets": [0, 4]}})", "abcd",
                    {"tensor 'w'", "dimension 1 of 'shape'", "not a non-negative integer"});
  expect_open_error(R"({"w": {"dtype": "U8", "shape": ["4"], "data_offsets": [0, 4]}})", "abcd",
                    {"tensor 'w'", "dimension 0 of 'shape'", "not a non-negative integer"});
  expect_open_error(R"({"w": {"dtype": "U8", "shape": [1e30], "data_offsets": [0, 4]}})", "abcd",
                    {"tensor 'w'", "dimension 0 of 'shape'", "not a non-negative integer"});
  expect_open_error(R"({"w": {"dtype": "U8", "shape": [9223372036854775808], "data_offsets": [0, 4]}})", "abcd",
                    {"tensor 'w'", "dimension 0 of 'shape'", "too large"});
}

TEST_F(SafetensorsFiles, BeginAfterEnd) {
  expect_open_error(R"({"w": {"dtype": "U8", "shape": [0], "data_offsets": [3, 1]}})", "abcd",
                    {"tensor 'w'", "[3, 1]", "begin is after end"});
}

TEST_F(SafetensorsFiles, EndBeyondTheData) {
  expect_open_error(R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
                        "w": {"dtype": "U8", "shape": [3], "data_offsets": [2, 5]}})",
                    "abcd", {"tensor 'w'", "[2, 5]", "beyond the data, which is 4 bytes"});
  // An offset near 2^63 must not wrap around when compared.
  expect_open_error(
      R"({"w": {"dtype": "U8", "shape": [0], "data_offsets": [9223372036854775807, 9223372036854775807]}})", "abcd",
      {"tensor 'w'", "beyond the data"});
}

TEST_F(SafetensorsFiles, ByteLengthDoesNotMatchTheShape) {
  expect_open_error(R"({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}})", std::string(24, 'x'),
                    {"tensor 'w'", "F32[2, 3] needs 24 bytes", "[0, 20] hold 20"});
  expect_open_error(R"({"w": {"dtype": "BF16", "shape": [], "data_offsets": [0, 4]}})", std::string(4, 'x'),
                    {"tensor 'w'", "BF16[] needs 2 bytes"});
}

TEST_F(SafetensorsFiles, ShapeProductOverflows) {
  // 2^32 * 2^32 * 4 bytes wraps to 0 in 64 bits, which would "match" empty data_offsets.
  expect_open_error(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})", "",
                    {"tensor 'w'", "F32[4294967296, 4294967296]", "64-bit"});
  expect_open_error(R"({"w": {"dtype": "U8", "shape": [4294967296, 4294967296, 4], "data_offsets": [0, 0]}})", "",
                    {"tensor 'w'", "64-bit"});
}

TEST_F(SafetensorsFiles, OverlappingTensors) {
  expect_open_error(R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                        "b": {"dtype": "U8", "shape": [2], "data_offsets": [4, 6]},
                        "c": {"dtype": "U8", "shape": [3], "data_offsets": [5, 8]}})",
                    "abcdefgh", {"tensors 'b'", "'c'", "overlap"});
  // One range inside another, not adjacent in name order.
  expect_open_error(R"({"big": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]},
                        "mid": {"dtype": "U8", "shape": [1], "data_offsets": [3, 4]}})",
                    "abcdefgh", {"'big'", "'mid'", "overlap"});
  // The same range twice.
  expect_open_error(R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                        "y": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]}})",
                    "abcd", {"'x'", "'y'", "overlap"});
}

TEST_F(SafetensorsFiles, DuplicateNames) {
  expect_open_error(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                        "v": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]},
                        "w": {"dtype": "U8", "shape": [1], "data_offsets": [2, 3]}})",
                    "abc", {"duplicate tensor name 'w'"});
  expect_open_error(R"({"w": {"dtype": "U8", "shape": [1], "dtype": "F32", "data_offsets": [0, 1]}})", "a",
                    {"tensor 'w'", "duplicate field 'dtype'"});
  expect_open_error(R"({"__metadata__": {"k": "1", "k": "2"}})", "", {"duplicate __metadata__ key 'k'"});
  expect_open_error(R"({"__metadata__": {}, "__metadata__": {}})", "", {"'__metadata__' appears twice"});
}

TEST_F(SafetensorsFiles, BadMetadata) {
  expect_open_error(R"({"__metadata__": {"format": "pt", "epoch": 3}})", "", {"__metadata__ 'epoch'", "not a string"});
  expect_open_error(R"({"__metadata__": ["pt"]})", "", {"'__metadata__'", "not an object"});
}

TEST_F(SafetensorsFiles, EmptyTensorName) {
  expect_open_error(R"({"": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}})", "a", {"empty name"});
}

// A file laid out like a small GPT-2 checkpoint, cut short at every length: each cut must be refused, naming the
// file, and a cut inside the data must name a tensor whose bytes are missing.
TEST_F(SafetensorsFiles, TruncatedCheckpointIsRefusedAtEveryLength) {
  std::mt19937 rng(11);
  const int64_t d = 8, vocab = 16, context = 4;
  std::vector<Spec> specs = {random_tensor("wte.weight", "F32", {vocab, d}, 0, rng),
                             random_tensor("wpe.weight", "F32", {context, d}, 0, rng)};
  for (const std::string layer : {"h.0.", "h.1."}) {
    specs.push_back(random_tensor(layer + "ln_1.weight", "F32", {d}, 0, rng));
    specs.push_back(random_tensor(layer + "ln_1.bias", "F32", {d}, 0, rng));
    specs.push_back(random_tensor(layer + "attn.c_attn.weight", "F16", {d, 3 * d}, 0, rng));
    specs.push_back(random_tensor(layer + "attn.c_attn.bias", "F16", {3 * d}, 0, rng));
    specs.push_back(random_tensor(layer + "attn.c_proj.weight", "BF16", {d, d}, 0, rng));
    specs.push_back(random_tensor(layer + "mlp.c_fc.weight", "F32", {d, 4 * d}, 0, rng));
    specs.push_back(random_tensor(layer + "mlp.c_proj.weight", "F32", {4 * d, d}, 0, rng));
  }
  specs.push_back(random_tensor("ln_f.weight", "F32", {d}, 0, rng));
  const std::string full = write_safetensors(specs, {{"format", "pt"}}, 8);

  // The layout, read back from the header the writer made.
  uint64_t header_length = 0;
  for (int b = 0; b < 8; ++b) header_length |= static_cast<uint64_t>(static_cast<unsigned char>(full[b])) << (8 * b);
  const json header = json::parse(full.substr(8, header_length));
  const size_t data_offset = 8 + header_length;
  size_t data_end = 0;
  for (const auto& [name, entry] : header.items()) {
    if (name != "__metadata__") data_end = std::max(data_end, entry["data_offsets"][1].get<size_t>());
  }
  ASSERT_EQ(data_offset % 8, 0u);
  ASSERT_EQ(full.size(), data_offset + data_end);  // no trailing bytes: every cut loses some tensor's data

  SafetensorsFile whole = SafetensorsFile::open(write("model.safetensors", full));
  EXPECT_EQ(whole.size(), specs.size());
  EXPECT_EQ(whole.require("h.1.attn.c_attn.weight", {d, 3 * d}).byte_size, static_cast<size_t>(d * 3 * d * 2));

  const std::string p = path("cut.safetensors");
  for (size_t length = 0; length < full.size(); ++length) {
    SCOPED_TRACE(length);
    write("cut.safetensors", full.substr(0, length));
    try {
      SafetensorsFile::open(p);
      FAIL() << "a file cut to " << length << " of " << full.size() << " bytes was accepted";
    } catch (const TensorError& e) {
      const std::string message = e.what();
      ASSERT_EQ(message.rfind(p + ": ", 0), 0u) << message;
      if (length >= data_offset) {
        const size_t data_size = length - data_offset;
        bool names_a_cut_tensor = false;
        for (const auto& [name, entry] : header.items()) {
          if (name == "__metadata__") continue;
          if (entry["data_offsets"][1].get<size_t>() > data_size &&
              message.find("tensor '" + name + "'") != std::string::npos) {
            names_a_cut_tensor = true;
          }
        }
        ASSERT_TRUE(names_a_cut_tensor) << message;
        ASSERT_NE(message.find("truncated"), std::string::npos) << message;
      }
    }
  }
}

// Found reviewing the reader for test/fuzz/safetensors_fuzzer.cpp: a deeply nested header value crashed it
// (quoting it in a message, nlohmann's dump() recursed once per level and overflowed the stack). It is refused.
TEST_F(SafetensorsFiles, DeeplyNestedHeaderIsRefusedWithoutRecursing) {
  const size_t depth = 200000;
  const std::string deep = std::string(depth, '[') + std::string(depth, ']');
  expect_open_error(deep, "", {"nests more than 64 levels deep"});
  expect_open_error(R"({"w": {"dtype": "F32", "shape": )" + deep + R"(, "data_offsets": [0, 0]}})", "",
                    {"nests more than 64 levels deep"});
  expect_open_error(R"({"__metadata__": {"k": )" + deep + "}}", "", {"nests more than 64 levels deep"});
  std::string objects;
  for (size_t i = 0; i < depth; ++i) objects += R"({"a": )";
  objects += "1" + std::string(depth, '}');
  expect_open_error(objects, "", {"nests more than 64 levels deep"});
  // Shallow nesting keeps its precise message, which quotes the value.
  expect_open_error(R"({"w": {"dtype": "F32", "shape": [[[2]]], "data_offsets": [0, 8]}})", std::string(8, 'x'),
                    {"tensor 'w'", "dimension 0 of 'shape' [[[2]]]", "not a non-negative integer but array"});
}

// Found in the same review: every dimension of a shape formatted a description quoting the whole shape, used only
// on failure, so a long shape took quadratic time (100000 dimensions: minutes). It opens in linear time.
TEST_F(SafetensorsFiles, LongShapeOpensInLinearTime) {
  const size_t rank = 50000;
  std::string dims = "1";
  for (size_t d = 1; d < rank; ++d) dims += ",1";
  const std::string p = write(
      "long.safetensors",
      assemble(R"({"w": {"dtype": "F32", "shape": [)" + dims + R"(], "data_offsets": [0, 4]}})", std::string(4, 'x')));
  const auto start = std::chrono::steady_clock::now();
  const SafetensorsFile file = SafetensorsFile::open(p);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(file.info("w").shape.size(), rank);
  EXPECT_EQ(file.info("w").byte_size, 4u);
  EXPECT_LT(seconds, 5.0) << "quadratic in the rank again?";  // about 10 ms linear, about a minute quadratic
  // A bad dimension late in a long shape is still reported, with its index.
  expect_open_error(R"({"w": {"dtype": "F32", "shape": [)" + dims + R"(,-1], "data_offsets": [0, 4]}})",
                    std::string(4, 'x'), {"tensor 'w'", "dimension 50000 of 'shape'", "is negative"});
}

}  // namespace
}  // namespace tessera::runtime
