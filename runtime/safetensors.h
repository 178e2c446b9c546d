// Read-only access to .safetensors weight files (Hugging Face's format), memory-mapped.
//
// Layout: an 8-byte little-endian header length N, N bytes of JSON mapping each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the first byte after the header), an
// optional "__metadata__" object of strings, then the data. `open` checks every entry against the file before
// anything is handed out, so no accessor can read outside the mapping; every failure is a TensorError whose
// message starts with the path and names the tensor or field at fault.
//
// Data is not guaranteed to be aligned (offsets are arbitrary byte positions), so `bytes` hands out raw bytes and
// `to_float32` copies them; never cast them to a wider type in place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "runtime/tensor.h"

namespace tessera::runtime {

// The element types a safetensors header may name. Only F32, F16 and BF16 convert to float32; the others are
// accepted so that their sizes can be validated and their bytes read.
enum class SafetensorsDType : uint8_t {
  Bool,
  U8,
  I8,
  F8_E5M2,
  F8_E4M3,
  I16,
  U16,
  F16,
  BF16,
  I32,
  U32,
  F32,
  I64,
  U64,
  F64
};

const char* safetensors_dtype_name(SafetensorsDType dtype);  // the header's spelling: "F32", "BF16", ...
size_t safetensors_dtype_size(SafetensorsDType dtype);       // bytes per element

struct SafetensorsTensorInfo {
  SafetensorsDType dtype = SafetensorsDType::F32;
  std::vector<int64_t> shape;  // [] for a 0-d tensor (one element)
  size_t byte_size = 0;        // product(shape) * dtype size, equal to end - begin
};

class SafetensorsFile {
 public:
  // Maps `path` read-only and validates the header and every entry. Throws TensorError.
  static SafetensorsFile open(const std::string& path);

  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  size_t size() const { return entries_.size(); }  // number of tensors
  std::vector<std::string> names() const;          // sorted
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // These throw "PATH: no tensor named 'X' (the file has N tensors, e.g. a, b, c)" for an unknown name.
  const SafetensorsTensorInfo& info(const std::string& name) const;
  // The tensor's bytes inside the mapping, valid while this object lives. Not aligned.
  std::span<const std::byte> bytes(const std::string& name) const;
  // An owning float32 copy of an F32, F16 or BF16 tensor, converted exactly; other dtypes throw.
  Tensor to_float32(const std::string& name) const;
  // info(name), after checking the shape: "PATH: tensor 'X' has shape [..], expected [..]".
  const SafetensorsTensorInfo& require(const std::string& name, const std::vector<int64_t>& expected_shape) const;

 private:
  struct Entry {
    SafetensorsTensorInfo info;
    size_t offset = 0;  // from the start of the file
  };

  SafetensorsFile() = default;
  const Entry& entry(const std::string& name) const;
  void unmap() noexcept;

  std::string path_;
  const std::byte* map_ = nullptr;
  size_t map_size_ = 0;
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes float32 tensors (by name) as a .safetensors file, F32, in name order with 8-byte aligned offsets: what
// `tessera init-weights` and the tests use to make weight files. Throws TensorError naming the path when it cannot be
// written, or a tensor that is not float32.
void write_safetensors(const std::string& path, const std::map<std::string, const Tensor*>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace tessera::runtime
