#include "runtime/safetensors.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <utility>

namespace tessera::runtime {

// Multi-byte elements are copied as they lie in the file, and safetensors stores them little-endian.
static_assert(std::endian::native == std::endian::little, "the safetensors reader assumes a little-endian host");

namespace {

using nlohmann::json;

// The reference implementation's limit: a header this large is a corrupt length, not a real model.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr size_t kLengthBytes = 8;
// A valid header nests 3 levels (header, entry, shape). Deeper containers are not kept: nlohmann's dump() recurses
// once per level, so quoting a deeply nested value in a message would overflow the stack.
constexpr int kMaxHeaderDepth = 64;

struct DTypeSpelling {
  SafetensorsDType dtype;
  const char* name;
  size_t size;
};

constexpr DTypeSpelling kDTypes[] = {
    {SafetensorsDType::Bool, "BOOL", 1},       {SafetensorsDType::U8, "U8", 1},
    {SafetensorsDType::I8, "I8", 1},           {SafetensorsDType::F8_E5M2, "F8_E5M2", 1},
    {SafetensorsDType::F8_E4M3, "F8_E4M3", 1}, {SafetensorsDType::I16, "I16", 2},
    {SafetensorsDType::U16, "U16", 2},         {SafetensorsDType::F16, "F16", 2},
    {SafetensorsDType::BF16, "BF16", 2},       {SafetensorsDType::I32, "I32", 4},
    {SafetensorsDType::U32, "U32", 4},         {SafetensorsDType::F32, "F32", 4},
    {SafetensorsDType::I64, "I64", 8},         {SafetensorsDType::U64, "U64", 8},
    {SafetensorsDType::F64, "F64", 8},
};

const DTypeSpelling& spelling(SafetensorsDType dtype) {
  for (const auto& s : kDTypes) {
    if (s.dtype == dtype) return s;
  }
  return kDTypes[0];  // unreachable: every enumerator is in the table
}

std::string known_dtypes() {
  std::vector<std::string> names;
  for (const auto& s : kDTypes) names.emplace_back(s.name);
  return fmt::format("{}", fmt::join(names, ", "));
}

// A JSON value as it appears in the header, shortened so that a huge value cannot swamp the message.
std::string shown(const json& value) {
  std::string text = value.dump();
  constexpr size_t kMax = 60;
  if (text.size() > kMax) text = text.substr(0, kMax) + "...";
  return text;
}

std::string system_error() { return std::strerror(errno); }

// nlohmann's parser keeps the last of duplicate keys silently; a weights file with two entries of one name is
// ambiguous, so the parser callback remembers every object's keys and reports the first key seen twice, with
// the keys of the objects that enclose it (["tensor", "dtype"] for a repeated field of a tensor's entry).
class DuplicateKeyFinder {
 public:
  bool operator()(int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start: stack_.push_back(Frame{true, {}, {}}); break;
      case json::parse_event_t::array_start: stack_.push_back(Frame{false, {}, {}}); break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!stack_.empty()) stack_.pop_back();
        break;
      case json::parse_event_t::key:
        if (!stack_.empty() && stack_.back().is_object && parsed.is_string()) {
          Frame& frame = stack_.back();
          frame.last_key = parsed.get<std::string>();
          if (!frame.keys.insert(frame.last_key).second && !duplicate_) {
            std::vector<std::string> path;
            for (const Frame& f : stack_) path.push_back(f.is_object ? f.last_key : "[]");
            duplicate_ = std::move(path);
          }
        }
        break;
      case json::parse_event_t::value: break;
    }
    return true;
  }

  const std::optional<std::vector<std::string>>& duplicate() const { return duplicate_; }

 private:
  struct Frame {
    bool is_object;
    std::set<std::string> keys;
    std::string last_key;
  };
  std::vector<Frame> stack_;
  std::optional<std::vector<std::string>> duplicate_;
};

[[noreturn]] void fail_duplicate(const std::string& path, const std::vector<std::string>& keys) {
  if (keys.size() == 1 && keys[0] == "__metadata__")
    throw TensorError(fmt::format("{}: '__metadata__' appears twice", path));
  if (keys.size() == 1) throw TensorError(fmt::format("{}: duplicate tensor name '{}' in the header", path, keys[0]));
  if (keys.size() == 2 && keys[0] == "__metadata__") {
    throw TensorError(fmt::format("{}: duplicate __metadata__ key '{}'", path, keys[1]));
  }
  if (keys.size() == 2) throw TensorError(fmt::format("{}: tensor '{}': duplicate field '{}'", path, keys[0], keys[1]));
  throw TensorError(fmt::format("{}: duplicate key '{}' in the header", path, fmt::join(keys, "/")));
}

json parse_header(const char* begin, const char* end, const std::string& path) {
  // Held by pointer: nlohmann keeps its own copy of the callback, and the result must be read from this one.
  auto finder = std::make_shared<DuplicateKeyFinder>();
  auto too_deep = std::make_shared<bool>(false);
  json header;
  try {
    header = json::parse(begin, end, [finder, too_deep](int depth, json::parse_event_t event, json& parsed) {
      const bool opens = event == json::parse_event_t::object_start || event == json::parse_event_t::array_start;
      if (opens && depth >= kMaxHeaderDepth) {
        *too_deep = true;
        return false;  // dropped, with everything inside it (the parser itself does not recurse)
      }
      return (*finder)(depth, event, parsed);
    });
  } catch (const json::exception& e) {
    throw TensorError(fmt::format("{}: the header is not valid JSON: {}", path, e.what()));
  }
  if (*too_deep) {
    throw TensorError(fmt::format("{}: the header nests more than {} levels deep (a safetensors header has 3)", path,
                                  kMaxHeaderDepth));
  }
  if (finder->duplicate()) fail_duplicate(path, *finder->duplicate());
  if (!header.is_object()) {
    throw TensorError(
        fmt::format("{}: the header is not a JSON object but {} {}", path, header.type_name(), shown(header)));
  }
  return header;
}

std::map<std::string, std::string> parse_metadata(const json& value, const std::string& path) {
  if (!value.is_object()) {
    throw TensorError(
        fmt::format("{}: '__metadata__' is not an object of strings but {} {}", path, value.type_name(), shown(value)));
  }
  std::map<std::string, std::string> metadata;
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) {
      throw TensorError(
          fmt::format("{}: __metadata__ '{}' is not a string but {} {}", path, key, item.type_name(), shown(item)));
    }
    metadata.emplace(key, item.get<std::string>());
  }
  return metadata;
}

// Parses one tensor's entry; `fail` prefixes the path and the tensor's name.
class EntryParser {
 public:
  EntryParser(const std::string& path, const std::string& name) : path_(path), name_(name) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw TensorError(fmt::format("{}: tensor '{}': {}", path_, name_, what));
  }

  const json& field(const json& entry, const char* key) const {
    auto it = entry.find(key);
    if (it == entry.end()) fail(fmt::format("the entry lacks '{}' (it is {})", key, shown(entry)));
    return *it;
  }

  SafetensorsDType dtype(const json& value) const {
    if (!value.is_string()) fail(fmt::format("'dtype' is not a string but {} {}", value.type_name(), shown(value)));
    const std::string& text = value.get_ref<const std::string&>();
    for (const auto& s : kDTypes) {
      if (text == s.name) return s.dtype;
    }
    fail(fmt::format("unknown dtype '{}' (known: {})", text, known_dtypes()));
  }

  // A non-negative integer that fits in int64 (what Tensor's dimensions and the offsets need).
  uint64_t count(const json& value, const std::string& what) const {
    if (value.is_number_integer() && !value.is_number_unsigned())
      fail(fmt::format("{} is negative ({})", what, shown(value)));
    if (!value.is_number_unsigned()) {
      fail(fmt::format("{} is not a non-negative integer but {} {}", what, value.type_name(), shown(value)));
    }
    const uint64_t n = value.get<uint64_t>();
    if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(fmt::format("{} is too large ({})", what, n));
    return n;
  }

  std::vector<int64_t> shape(const json& value) const {
    if (!value.is_array()) fail(fmt::format("'shape' is not an array but {} {}", value.type_name(), shown(value)));
    std::vector<int64_t> dims;
    for (size_t d = 0; d < value.size(); ++d) {
      const json& dim = value[d];
      // The description quotes the whole shape, so it is built only to fail: built for every dimension, a long
      // shape would take quadratic time.
      const bool valid =
          dim.is_number_unsigned() && dim.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
      dims.push_back(static_cast<int64_t>(
          valid ? dim.get<uint64_t>() : count(dim, fmt::format("dimension {} of 'shape' {}", d, shown(value)))));
    }
    return dims;
  }

  std::pair<uint64_t, uint64_t> offsets(const json& value) const {
    if (!value.is_array() || value.size() != 2) {
      fail(fmt::format("'data_offsets' is not an array [begin, end] but {} {}", value.type_name(), shown(value)));
    }
    return {count(value[0], "'data_offsets' begin"), count(value[1], "'data_offsets' end")};
  }

  // product(shape) * element size, or an error rather than a wrapped-around product.
  size_t byte_size(SafetensorsDType dtype, const std::vector<int64_t>& shape) const {
    if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
    uint64_t bytes = spelling(dtype).size;
    for (int64_t extent : shape) {
      if (__builtin_mul_overflow(bytes, static_cast<uint64_t>(extent), &bytes)) {
        fail(
            fmt::format("{}{} has more bytes than a 64-bit count can hold", spelling(dtype).name, shape_string(shape)));
      }
    }
    return bytes;
  }

 private:
  const std::string& path_;
  const std::string& name_;
};

// A file descriptor closed on every path out of `open`; the mapping outlives it.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

struct Range {
  uint64_t begin;
  uint64_t end;
  const std::string* name;
};

// Half precision (1 sign, 5 exponent, 10 mantissa bits) to single, exactly: every half is a float.
float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {
    // Inf or NaN; the payload keeps its position at the top of the mantissa, so quiet NaNs stay quiet.
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {
    // Subnormal half: mantissa * 2^-24, normal as a float. Shift until the implicit bit appears.
    int32_t e = 127 - 15 + 1;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --e;
    }
    bits = sign | (static_cast<uint32_t>(e) << 23) | ((mantissa & 0x3ffu) << 13);
  }
  return std::bit_cast<float>(bits);
}

// bfloat16 is the top half of a float32.
float bfloat16_to_float(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

template <float (*Convert)(uint16_t)>
void convert_16bit(const std::byte* src, float* dst, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    uint16_t v;
    std::memcpy(&v, src + 2 * i, sizeof v);
    dst[i] = Convert(v);
  }
}

}  // namespace

const char* safetensors_dtype_name(SafetensorsDType dtype) { return spelling(dtype).name; }
size_t safetensors_dtype_size(SafetensorsDType dtype) { return spelling(dtype).size; }

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw TensorError(fmt::format("{}: cannot open: {}", path, system_error()));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw TensorError(fmt::format("{}: cannot stat: {}", path, system_error()));
  if (!S_ISREG(st.st_mode)) throw TensorError(fmt::format("{}: not a regular file", path));
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < kLengthBytes) {
    throw TensorError(fmt::format(
        "{}: the file is {} bytes, too short for the 8-byte header length of a safetensors file", path, file_size));
  }

  SafetensorsFile file;
  file.path_ = path;
  void* map = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (map == MAP_FAILED) throw TensorError(fmt::format("{}: cannot map {} bytes: {}", path, file_size, system_error()));
  // From here on the destructor unmaps if validation throws.
  file.map_ = static_cast<const std::byte*>(map);
  file.map_size_ = file_size;

  uint64_t header_length = 0;
  for (size_t b = 0; b < kLengthBytes; ++b) header_length |= static_cast<uint64_t>(file.map_[b]) << (8 * b);
  if (header_length > kMaxHeaderBytes) {
    throw TensorError(fmt::format("{}: the header length {} is absurd (more than {} bytes): not a safetensors file?",
                                  path, header_length, kMaxHeaderBytes));
  }
  if (header_length > file_size - kLengthBytes) {
    throw TensorError(
        fmt::format("{}: the header length {} reaches beyond the end of the file ({} bytes follow the "
                    "length; file truncated?)",
                    path, header_length, file_size - kLengthBytes));
  }
  const char* header_begin = reinterpret_cast<const char*>(file.map_ + kLengthBytes);
  json header = parse_header(header_begin, header_begin + header_length, path);

  const uint64_t data_offset = kLengthBytes + header_length;
  const uint64_t data_size = file_size - data_offset;
  std::vector<Range> ranges;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      file.metadata_ = parse_metadata(value, path);
      continue;
    }
    if (name.empty()) throw TensorError(fmt::format("{}: a tensor has an empty name", path));
    EntryParser parser(path, name);
    if (!value.is_object())
      parser.fail(fmt::format("the entry is not an object but {} {}", value.type_name(), shown(value)));
    Entry entry;
    entry.info.dtype = parser.dtype(parser.field(value, "dtype"));
    entry.info.shape = parser.shape(parser.field(value, "shape"));
    const auto [begin, end] = parser.offsets(parser.field(value, "data_offsets"));
    if (begin > end) parser.fail(fmt::format("'data_offsets' [{}, {}]: begin is after end", begin, end));
    if (end > data_size) {
      parser.fail(fmt::format("'data_offsets' [{}, {}] reach beyond the data, which is {} bytes (file truncated?)",
                              begin, end, data_size));
    }
    entry.info.byte_size = parser.byte_size(entry.info.dtype, entry.info.shape);
    if (entry.info.byte_size != end - begin) {
      parser.fail(fmt::format("{}{} needs {} bytes, but 'data_offsets' [{}, {}] hold {}",
                              safetensors_dtype_name(entry.info.dtype), shape_string(entry.info.shape),
                              entry.info.byte_size, begin, end, end - begin));
    }
    entry.offset = data_offset + begin;
    auto inserted = file.entries_.emplace(name, std::move(entry));
    if (begin != end) ranges.push_back(Range{begin, end, &inserted.first->first});
  }

  // Sorted by begin, two ranges overlap only if some neighbours do. Empty tensors take no bytes and cannot.
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < ranges.size(); ++i) {
    const Range& a = ranges[i - 1];
    const Range& b = ranges[i];
    if (b.begin < a.end) {
      throw TensorError(fmt::format("{}: tensors '{}' (data_offsets [{}, {}]) and '{}' ([{}, {}]) overlap", path,
                                    *a.name, a.begin, a.end, *b.name, b.begin, b.end));
    }
  }
  return file;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept
    : path_(std::move(other.path_)),
      map_(std::exchange(other.map_, nullptr)),
      map_size_(std::exchange(other.map_size_, 0)),
      entries_(std::move(other.entries_)),
      metadata_(std::move(other.metadata_)) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    unmap();
    path_ = std::move(other.path_);
    map_ = std::exchange(other.map_, nullptr);
    map_size_ = std::exchange(other.map_size_, 0);
    entries_ = std::move(other.entries_);
    metadata_ = std::move(other.metadata_);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() { unmap(); }

void SafetensorsFile::unmap() noexcept {
  if (map_ != nullptr) ::munmap(const_cast<std::byte*>(map_), map_size_);
  map_ = nullptr;
  map_size_ = 0;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> names;
  names.reserve(entries_.size());
  for (const auto& [name, entry] : entries_) names.push_back(name);
  return names;
}

const SafetensorsFile::Entry& SafetensorsFile::entry(const std::string& name) const {
  auto it = entries_.find(name);
  if (it != entries_.end()) return it->second;
  std::vector<std::string> some;
  for (auto e = entries_.begin(); e != entries_.end() && some.size() < 3; ++e) some.push_back(e->first);
  std::string listing = entries_.size() == 1 ? "1 tensor" : fmt::format("{} tensors", entries_.size());
  if (!some.empty()) listing += fmt::format(", e.g. {}", fmt::join(some, ", "));
  throw TensorError(fmt::format("{}: no tensor named '{}' (the file has {})", path_, name, listing));
}

const SafetensorsTensorInfo& SafetensorsFile::info(const std::string& name) const { return entry(name).info; }

std::span<const std::byte> SafetensorsFile::bytes(const std::string& name) const {
  const Entry& e = entry(name);
  return {map_ + e.offset, e.info.byte_size};
}

Tensor SafetensorsFile::to_float32(const std::string& name) const {
  const Entry& e = entry(name);
  const SafetensorsDType dtype = e.info.dtype;
  if (dtype != SafetensorsDType::F32 && dtype != SafetensorsDType::F16 && dtype != SafetensorsDType::BF16) {
    throw TensorError(fmt::format("{}: tensor '{}' has dtype {}; only F32, F16 and BF16 convert to float32", path_,
                                  name, safetensors_dtype_name(dtype)));
  }
  Tensor tensor(DType::Float32, e.info.shape);
  const std::byte* src = map_ + e.offset;
  float* dst = tensor.data<float>();
  const size_t count = static_cast<size_t>(tensor.numel());
  // memcpy, not a cast of `src`: the data may lie at any byte offset.
  if (dtype == SafetensorsDType::F32 && count > 0) std::memcpy(dst, src, count * sizeof(float));
  if (dtype == SafetensorsDType::F16) convert_16bit<half_to_float>(src, dst, count);
  if (dtype == SafetensorsDType::BF16) convert_16bit<bfloat16_to_float>(src, dst, count);
  return tensor;
}

const SafetensorsTensorInfo& SafetensorsFile::require(const std::string& name,
                                                      const std::vector<int64_t>& expected_shape) const {
  const SafetensorsTensorInfo& i = info(name);
  if (i.shape != expected_shape) {
    throw TensorError(fmt::format("{}: tensor '{}' has shape {}, expected {}", path_, name, shape_string(i.shape),
                                  shape_string(expected_shape)));
  }
  return i;
}

void write_safetensors(const std::string& path, const std::map<std::string, const Tensor*>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  size_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (tensor == nullptr || tensor->dtype() != DType::Float32) {
      throw TensorError(fmt::format("{}: tensor '{}' is {}, only float32 tensors are written", path, name,
                                    tensor ? tensor->type_string() : "null"));
    }
    header[name] = {
        {"dtype", "F32"}, {"shape", tensor->shape()}, {"data_offsets", {offset, offset + tensor->size_bytes()}}};
    offset += tensor->size_bytes();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data starts 8-byte aligned, as the format recommends
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw TensorError(fmt::format("{}: cannot open for writing", path));
  uint64_t length = text.size();
  unsigned char prefix[8];
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<unsigned char>(length >> (8 * i));  // little-endian
  out.write(reinterpret_cast<const char*>(prefix), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const auto& [name, tensor] : tensors) {
    out.write(static_cast<const char*>(tensor->raw_data()), static_cast<std::streamsize>(tensor->size_bytes()));
  }
  if (!out) throw TensorError(fmt::format("{}: write failed", path));
}

}  // namespace tessera::runtime
