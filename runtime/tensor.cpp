#include "runtime/tensor.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>

namespace tessera::runtime {

namespace {

constexpr size_t kAlignment = 64;

// Element count of `shape`, rejecting negative dimensions and byte sizes that do not fit in int64.
int64_t checked_numel(const std::vector<int64_t>& shape, DType dtype) {
  int64_t numel = 1;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] < 0) {
      throw TensorError(fmt::format("tensor shape {} has a negative dimension {}", shape_string(shape), d));
    }
  }
  // Any zero dimension makes the tensor empty, however large the others are.
  for (int64_t extent : shape) {
    if (extent == 0) return 0;
  }
  // Leave headroom for rounding the allocation up to the alignment.
  const int64_t limit = (std::numeric_limits<int64_t>::max() - 2 * static_cast<int64_t>(kAlignment)) /
                        static_cast<int64_t>(dtype_size(dtype));
  for (int64_t extent : shape) {
    if (numel > limit / extent) {
      throw TensorError(fmt::format("tensor {}{} is too large", dtype_name(dtype), shape_string(shape)));
    }
    numel *= extent;
  }
  return numel;
}

}  // namespace

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::Float32: return "float32";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::BFloat16: return "bfloat16";
  }
  return "?";
}

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::Float32: return 4;
    case DType::Int32: return 4;
    case DType::Int64: return 8;
    case DType::BFloat16: return 2;
  }
  return 1;
}

std::string shape_string(const std::vector<int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

Tensor::Tensor() : Tensor(DType::Float32, {0}) {}

Tensor::Tensor(DType dtype, std::vector<int64_t> shape)
    : dtype_(dtype), shape_(std::move(shape)), numel_(checked_numel(shape_, dtype)) {
  // Even an empty tensor gets one aligned block, so data() is never null and views of it stay valid.
  size_t bytes = std::max(size_bytes(), kAlignment);
  bytes = (bytes + kAlignment - 1) / kAlignment * kAlignment;  // aligned_alloc wants a multiple of the alignment
  storage_.reset(static_cast<std::byte*>(std::aligned_alloc(kAlignment, bytes)));
  if (!storage_) {
    throw TensorError(fmt::format("out of memory allocating {} bytes for tensor {}", bytes, type_string()));
  }
  std::memset(storage_.get(), 0, bytes);
}

Tensor::Tensor(Tensor&& other) noexcept
    : dtype_(other.dtype_), shape_(std::move(other.shape_)), numel_(other.numel_), storage_(std::move(other.storage_)) {
  // A moved-from tensor must not claim elements it no longer owns.
  other.shape_ = {0};
  other.numel_ = 0;
}

Tensor& Tensor::operator=(Tensor&& other) noexcept {
  if (this != &other) {
    dtype_ = other.dtype_;
    shape_ = std::move(other.shape_);
    numel_ = other.numel_;
    storage_ = std::move(other.storage_);
    other.shape_ = {0};
    other.numel_ = 0;
  }
  return *this;
}

Tensor Tensor::borrow(DType dtype, std::vector<int64_t> shape, void* data) {
  if (data == nullptr || reinterpret_cast<uintptr_t>(data) % kAlignment != 0) {
    throw TensorError(fmt::format("a borrowed tensor {}{} needs non-null, {}-byte aligned memory", dtype_name(dtype),
                                  runtime::shape_string(shape), kAlignment));
  }
  Tensor view;
  view.dtype_ = dtype;
  view.shape_ = std::move(shape);
  view.numel_ = checked_numel(view.shape_, dtype);
  view.storage_ = std::unique_ptr<std::byte[], AlignedFree>(static_cast<std::byte*>(data), AlignedFree{false});
  return view;
}

Tensor Tensor::clone() const {
  Tensor copy(dtype_, shape_);
  if (size_bytes() > 0) std::memcpy(copy.storage_.get(), storage_.get(), size_bytes());
  return copy;
}

int64_t Tensor::dim(int64_t i) const {
  if (i < 0 || i >= rank()) {
    throw TensorError(fmt::format("dimension {} is out of range for tensor {} of rank {}", i, type_string(), rank()));
  }
  return shape_[static_cast<size_t>(i)];
}

std::string Tensor::type_string() const { return fmt::format("{}{}", dtype_name(dtype_), shape_string()); }

void Tensor::check_dtype(DType requested) const {
  if (requested != dtype_) {
    throw TensorError(fmt::format("tensor {} accessed as {}", type_string(), dtype_name(requested)));
  }
}

Tensor to_int32(const Tensor& tensor, const std::string& what) {
  if (tensor.dtype() == DType::Int32) return tensor.clone();
  if (tensor.dtype() != DType::Int64) {
    throw TensorError(
        fmt::format("{}: expected an integer tensor (int32 or int64), got {}", what, tensor.type_string()));
  }
  Tensor result(DType::Int32, tensor.shape());
  const int64_t* in = tensor.data<int64_t>();
  int32_t* out = result.data<int32_t>();
  for (int64_t e = 0; e < tensor.numel(); ++e) {
    if (in[e] < std::numeric_limits<int32_t>::min() || in[e] > std::numeric_limits<int32_t>::max()) {
      throw TensorError(fmt::format("{}: int64 value {} at flat index {} does not fit in int32", what, in[e], e));
    }
    out[e] = static_cast<int32_t>(in[e]);
  }
  return result;
}

void round_to_bfloat16(const float* in, int64_t count, uint16_t* out) {
  for (int64_t e = 0; e < count; ++e) {
    uint32_t bits;
    std::memcpy(&bits, &in[e], 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) {
      bits |= 0x00400000u;
    } else {
      bits += 0x7fffu + ((bits >> 16) & 1u);
    }
    out[e] = static_cast<uint16_t>(bits >> 16);
  }
}

Tensor to_bfloat16(const Tensor& tensor) {
  if (tensor.dtype() != DType::Float32) {
    throw TensorError(fmt::format("to_bfloat16 needs a float32 tensor, got {}", tensor.type_string()));
  }
  Tensor out(DType::BFloat16, tensor.shape());
  round_to_bfloat16(tensor.data<float>(), tensor.numel(), out.data<uint16_t>());
  return out;
}

Tensor bfloat16_to_float32(const Tensor& tensor) {
  if (tensor.dtype() != DType::BFloat16) {
    throw TensorError(fmt::format("bfloat16_to_float32 needs a bfloat16 tensor, got {}", tensor.type_string()));
  }
  Tensor out(DType::Float32, tensor.shape());
  const uint16_t* in = tensor.data<uint16_t>();
  float* values = out.data<float>();
  for (int64_t e = 0; e < tensor.numel(); ++e) {
    const uint32_t bits = static_cast<uint32_t>(in[e]) << 16;
    std::memcpy(&values[e], &bits, 4);
  }
  return out;
}

}  // namespace tessera::runtime
