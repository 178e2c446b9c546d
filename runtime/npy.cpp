#include "runtime/npy.h"

#include <fmt/format.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>

namespace tessera::runtime {

// .npy data is copied byte for byte, so '<' (little-endian) data is only native on a little-endian host.
static_assert(std::endian::native == std::endian::little, "the .npy reader assumes a little-endian host");

namespace {

constexpr std::string_view kMagic = "\x93NUMPY";
constexpr const char* kSupportedDtypes = "supported: '<f4' (float32), '<i4' (int32), '<i8' (int64)";

// What the preamble (magic, version, header length) says about where the header and the data lie.
struct Preamble {
  int major = 1;
  int minor = 0;
  size_t header_offset = 0;
  size_t header_length = 0;
};

struct Header {
  DType dtype = DType::Float32;
  std::vector<int64_t> shape;
};

uint32_t read_le(std::string_view bytes, size_t offset, size_t count) {
  uint32_t value = 0;
  for (size_t b = 0; b < count; ++b)
    value |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[offset + b])) << (8 * b);
  return value;
}

// `start` holds the first bytes of the file (at least 12 if the file has them); `total` is the file's size.
Preamble parse_preamble(std::string_view start, uint64_t total, const std::string& name) {
  if (total < kMagic.size() || start.substr(0, kMagic.size()) != kMagic) {
    throw TensorError(fmt::format("{}: not an .npy file (it does not start with the magic string \\x93NUMPY)", name));
  }
  if (total < 8) throw TensorError(fmt::format("{}: truncated .npy header: the file ends inside the version", name));
  Preamble p;
  p.major = static_cast<unsigned char>(start[6]);
  p.minor = static_cast<unsigned char>(start[7]);
  if (p.major < 1 || p.major > 3 || p.minor != 0) {
    throw TensorError(
        fmt::format("{}: unsupported .npy format version {}.{} (supported: 1.0, 2.0, 3.0)", name, p.major, p.minor));
  }
  // Version 1.0 has a 2-byte header length, later versions a 4-byte one.
  size_t length_bytes = p.major == 1 ? 2 : 4;
  p.header_offset = 8 + length_bytes;
  if (total < p.header_offset) {
    throw TensorError(fmt::format("{}: truncated .npy header: the file ends inside the header length", name));
  }
  p.header_length = read_le(start, 8, length_bytes);
  if (total - p.header_offset < p.header_length) {
    throw TensorError(fmt::format("{}: truncated .npy header: the header should be {} bytes, but only {} follow", name,
                                  p.header_length, total - p.header_offset));
  }
  return p;
}

// A friendlier name for dtypes people are likely to have by accident.
std::string describe_descr(std::string_view code) {
  static const std::pair<std::string_view, std::string_view> kKnown[] = {
      {"f2", "float16"}, {"f4", "float32"}, {"f8", "float64"},   {"i1", "int8"},       {"i2", "int16"},
      {"i4", "int32"},   {"i8", "int64"},   {"u1", "uint8"},     {"u2", "uint16"},     {"u4", "uint32"},
      {"u8", "uint64"},  {"b1", "bool"},    {"c8", "complex64"}, {"c16", "complex128"}};
  for (const auto& [c, n] : kKnown) {
    if (c == code) return fmt::format(" ({})", n);
  }
  return "";
}

DType dtype_from_descr(const std::string& descr, const std::string& name) {
  std::string_view code = descr;
  char order = '=';
  if (!code.empty() && std::string_view("<>=|!").find(code[0]) != std::string_view::npos) {
    order = code[0];
    code.remove_prefix(1);
  }
  std::optional<DType> dtype;
  if (code == "f4") dtype = DType::Float32;
  if (code == "i4") dtype = DType::Int32;
  if (code == "i8") dtype = DType::Int64;
  if (dtype && (order == '>' || order == '!')) {
    throw TensorError(
        fmt::format("{}: unsupported big-endian dtype '{}'{}; {} (convert with "
                    "arr.astype(arr.dtype.newbyteorder('<')))",
                    name, descr, describe_descr(code), kSupportedDtypes));
  }
  if (!dtype) {
    throw TensorError(
        fmt::format("{}: unsupported dtype '{}'{}; {}", name, descr, describe_descr(code), kSupportedDtypes));
  }
  return *dtype;
}

// A parser for the header: a tiny Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// Hand-written so that spacing, key order, quote style and trailing commas are all accepted.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& name) : text_(text), name_(name) {}

  Header parse() {
    std::optional<std::string> descr;
    std::optional<bool> fortran_order;
    std::optional<std::vector<int64_t>> shape;
    skip_space();
    expect('{');
    skip_space();
    while (!at('}')) {
      std::string key = parse_string("a quoted key");
      skip_space();
      expect(':');
      skip_space();
      if (key == "descr") {
        if (descr) fail("duplicate key 'descr'");
        if (at('[')) fail("structured dtypes (a list as 'descr') are not supported; " + std::string(kSupportedDtypes));
        descr = parse_string("a quoted dtype string as 'descr'");
      } else if (key == "fortran_order") {
        if (fortran_order) fail("duplicate key 'fortran_order'");
        fortran_order = parse_bool();
      } else if (key == "shape") {
        if (shape) fail("duplicate key 'shape'");
        shape = parse_shape();
      } else {
        fail(fmt::format("unexpected key '{}' (expected 'descr', 'fortran_order' and 'shape')", key));
      }
      skip_space();
      if (at(',')) {
        ++pos_;
        skip_space();
      } else if (!at('}')) {
        fail("expected ',' or '}'");
      }
    }
    ++pos_;
    skip_space();
    if (pos_ != text_.size()) fail("unexpected text after the closing '}'");
    if (!descr) fail("missing key 'descr'");
    if (!fortran_order) fail("missing key 'fortran_order'");
    if (!shape) fail("missing key 'shape'");
    if (*fortran_order) {
      throw TensorError(
          fmt::format("{}: Fortran-ordered arrays are not supported; save a C-ordered array "
                      "(np.ascontiguousarray(arr))",
                      name_));
    }
    return Header{dtype_from_descr(*descr, name_), std::move(*shape)};
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    std::string shown(text_.substr(0, 200));
    while (!shown.empty() && (shown.back() == '\n' || shown.back() == ' ')) shown.pop_back();
    throw TensorError(fmt::format("{}: bad .npy header: {} (at byte {} of header \"{}\")", name_, what, pos_, shown));
  }

  bool at(char c) const { return pos_ < text_.size() && text_[pos_] == c; }

  void expect(char c) {
    if (!at(c)) fail(fmt::format("expected '{}'", c));
    ++pos_;
  }

  void skip_space() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  std::string parse_string(const char* what) {
    if (!at('\'') && !at('"')) fail(fmt::format("expected {}", what));
    char quote = text_[pos_++];
    size_t end = text_.find(quote, pos_);
    if (end == std::string_view::npos) fail("unterminated string");
    std::string value(text_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return value;
  }

  bool parse_bool() {
    for (auto [word, value] :
         {std::pair{std::string_view("True"), true}, std::pair{std::string_view("False"), false}}) {
      if (text_.substr(pos_, word.size()) == word) {
        pos_ += word.size();
        return value;
      }
    }
    fail("expected True or False as 'fortran_order'");
  }

  std::vector<int64_t> parse_shape() {
    expect('(');
    std::vector<int64_t> shape;
    skip_space();
    while (!at(')')) {
      shape.push_back(parse_dim(shape.size()));
      skip_space();
      if (at(',')) {
        ++pos_;
        skip_space();
      } else if (!at(')')) {
        fail("expected ',' or ')' in 'shape'");
      }
    }
    ++pos_;
    // (5) is not a tuple in Python, but it is unambiguous; a 1-d shape must be written (5,) by numpy anyway.
    return shape;
  }

  int64_t parse_dim(size_t index) {
    bool negative = at('-');
    if (negative) ++pos_;
    if (pos_ >= text_.size() || text_[pos_] < '0' || text_[pos_] > '9')
      fail("expected an integer dimension in 'shape'");
    int64_t value = 0;
    bool overflow = false;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      int digit = text_[pos_++] - '0';
      if (value > (std::numeric_limits<int64_t>::max() - digit) / 10) overflow = true;
      if (!overflow) value = value * 10 + digit;
    }
    if (at('L')) ++pos_;  // Python 2 long literal, found in old files
    if (negative) fail(fmt::format("dimension {} of 'shape' is negative", index));
    if (overflow) fail(fmt::format("dimension {} of 'shape' overflows a 64-bit integer", index));
    return value;
  }

  std::string_view text_;
  const std::string& name_;
  size_t pos_ = 0;
};

// Bytes of data the header promises, or an error if that overflows.
uint64_t expected_data_bytes(const Header& h, const std::string& name) {
  uint64_t bytes = dtype_size(h.dtype);
  for (int64_t extent : h.shape) {
    if (extent == 0) return 0;
  }
  const uint64_t limit = static_cast<uint64_t>(std::numeric_limits<int64_t>::max() / 2);
  for (int64_t extent : h.shape) {
    if (bytes > limit / static_cast<uint64_t>(extent)) {
      throw TensorError(fmt::format("{}: shape {} is too large", name, shape_string(h.shape)));
    }
    bytes *= static_cast<uint64_t>(extent);
  }
  return bytes;
}

Header parse_header(std::string_view file_start, const Preamble& p, const std::string& name) {
  return HeaderParser(file_start.substr(p.header_offset, p.header_length), name).parse();
}

void check_data_size(const Header& h, uint64_t expected, uint64_t found, const std::string& name) {
  if (found != expected) {
    throw TensorError(fmt::format("{}: expected {} bytes of data for {}{}, found {}", name, expected,
                                  dtype_name(h.dtype), shape_string(h.shape), found));
  }
}

std::string header_text(const Tensor& tensor) {
  if (tensor.dtype() == DType::BFloat16) {
    throw TensorError(
        fmt::format("a bfloat16 tensor {} has no .npy dtype: convert it to float32 first", tensor.shape_string()));
  }
  const char* descr = tensor.dtype() == DType::Float32 ? "<f4" : tensor.dtype() == DType::Int32 ? "<i4" : "<i8";
  std::string shape;
  for (int64_t extent : tensor.shape()) shape += fmt::format("{}, ", extent);
  // Python tuples: () for 0-d, (5,) for 1-d, (2, 3) otherwise.
  if (tensor.rank() > 1) shape.resize(shape.size() - 2);
  if (tensor.rank() == 1) shape.pop_back();
  return fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}), }}", descr, shape);
}

// Magic, version, header length and the padded header: everything before the data.
std::string encode_preamble_and_header(const Tensor& tensor) {
  std::string header = header_text(tensor);
  // numpy pads so that the data starts 64-byte aligned, and ends the header with a newline.
  auto padded = [&](size_t preamble) {
    size_t unpadded = preamble + header.size() + 1;
    return (unpadded + 63) / 64 * 64 - preamble;
  };
  int major = 1;
  size_t length = padded(10);
  if (length > std::numeric_limits<uint16_t>::max()) {
    major = 2;
    length = padded(12);
  }
  std::string out(kMagic);
  out += static_cast<char>(major);
  out += '\0';
  for (size_t b = 0; b < (major == 1 ? 2u : 4u); ++b) out += static_cast<char>((length >> (8 * b)) & 0xff);
  out += header;
  out.append(length - header.size() - 1, ' ');
  out += '\n';
  return out;
}

std::string system_error() { return std::strerror(errno); }

}  // namespace

Tensor decode_npy(std::string_view bytes, const std::string& name) {
  Preamble p = parse_preamble(bytes.substr(0, 12), bytes.size(), name);
  Header h = parse_header(bytes, p, name);
  size_t data_offset = p.header_offset + p.header_length;
  uint64_t expected = expected_data_bytes(h, name);
  check_data_size(h, expected, bytes.size() - data_offset, name);
  Tensor tensor(h.dtype, std::move(h.shape));
  if (expected > 0) std::memcpy(tensor.raw_data(), bytes.data() + data_offset, expected);
  return tensor;
}

std::string encode_npy(const Tensor& tensor) {
  std::string out = encode_preamble_and_header(tensor);
  out.append(static_cast<const char*>(tensor.raw_data()), tensor.size_bytes());
  return out;
}

Tensor read_npy(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw TensorError(fmt::format("{}: file not found", path));
  if (std::filesystem::is_directory(path, ec))
    throw TensorError(fmt::format("{}: is a directory, not an .npy file", path));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw TensorError(fmt::format("{}: cannot open: {}", path, system_error()));
  in.seekg(0, std::ios::end);
  const auto end = in.tellg();
  if (end < 0) throw TensorError(fmt::format("{}: cannot determine the file size", path));
  const uint64_t total = static_cast<uint64_t>(end);
  in.seekg(0);

  // Read the preamble and header first so that the data can go straight into the tensor's storage.
  std::string start(std::min<uint64_t>(total, 12), '\0');
  in.read(start.data(), static_cast<std::streamsize>(start.size()));
  Preamble p = parse_preamble(start, total, path);
  start.resize(p.header_offset + p.header_length);
  in.seekg(0);
  in.read(start.data(), static_cast<std::streamsize>(start.size()));
  if (!in) throw TensorError(fmt::format("{}: read error in the header: {}", path, system_error()));
  Header h = parse_header(start, p, path);
  uint64_t expected = expected_data_bytes(h, path);
  check_data_size(h, expected, total - start.size(), path);
  Tensor tensor(h.dtype, std::move(h.shape));
  if (expected > 0) {
    in.read(static_cast<char*>(tensor.raw_data()), static_cast<std::streamsize>(expected));
    if (!in || static_cast<uint64_t>(in.gcount()) != expected) {
      throw TensorError(fmt::format("{}: read error in the data: {}", path, system_error()));
    }
  }
  return tensor;
}

void write_npy(const std::string& path, const Tensor& tensor) {
  std::string header = encode_preamble_and_header(tensor);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw TensorError(fmt::format("{}: cannot open for writing: {}", path, system_error()));
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(static_cast<const char*>(tensor.raw_data()), static_cast<std::streamsize>(tensor.size_bytes()));
  out.close();
  if (!out) throw TensorError(fmt::format("{}: write failed: {}", path, system_error()));
}

}  // namespace tessera::runtime
