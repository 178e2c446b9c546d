// Owning host tensors: the run-time currency between .npy files, the reference executor and the backends.
//
// Storage is C-ordered and 64-byte aligned so vectorised kernels may assume aligned rows at the base pointer.
// A tensor is move-only by default; copying several hundred megabytes by accident is a bug, so copies are
// spelled `clone()`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace tessera::runtime {

// BFloat16 holds the upper 16 bits of a float32 (8 exponent, 7 mantissa bits): storage for attention inputs and
// weights at half the bytes, widened to float32 for arithmetic. Its elements are accessed as their bit patterns,
// data<uint16_t>().
enum class DType : uint8_t { Float32, Int32, Int64, BFloat16 };

const char* dtype_name(DType dtype);  // "float32", "int32", "int64", "bfloat16"
size_t dtype_size(DType dtype);       // bytes per element

// Bad shapes, dtype mismatches, unreadable or malformed files. The message says what and where.
class TensorError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <typename T>
constexpr DType dtype_of() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, int32_t> || std::is_same_v<T, int64_t> ||
                    std::is_same_v<T, uint16_t>,
                "tensors hold float, int32_t, int64_t or uint16_t (bfloat16 bits)");
  if constexpr (std::is_same_v<T, float>) return DType::Float32;
  if constexpr (std::is_same_v<T, int32_t>) return DType::Int32;
  if constexpr (std::is_same_v<T, uint16_t>) return DType::BFloat16;
  return DType::Int64;
}

// "[2, 4, 128, 64]"; "[]" for a 0-d shape.
std::string shape_string(const std::vector<int64_t>& shape);

class Tensor {
 public:
  // An empty float32 tensor of shape [0].
  Tensor();
  // Zero-initialised. Throws TensorError for a negative dimension or a size that overflows.
  Tensor(DType dtype, std::vector<int64_t> shape);

  Tensor(Tensor&& other) noexcept;
  Tensor& operator=(Tensor&& other) noexcept;
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;
  ~Tensor() = default;

  // A tensor over memory it does not own (never freed here), e.g. the first M rows of a KV cache allocated for
  // more: the model runtime hands such views to the kernels instead of allocating per call. `data` must stay
  // valid and be 64-byte aligned, and hold at least numel elements, for as long as the view is used. clone()
  // of a view owns its copy.
  static Tensor borrow(DType dtype, std::vector<int64_t> shape, void* data);

  Tensor clone() const;
  bool owns_storage() const { return storage_.get_deleter().owning; }

  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t rank() const { return static_cast<int64_t>(shape_.size()); }
  int64_t dim(int64_t i) const;  // throws TensorError if i is not in [0, rank)
  int64_t numel() const { return numel_; }
  size_t size_bytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }
  std::string shape_string() const { return runtime::shape_string(shape_); }
  // "float32[2, 4, 128, 64]"
  std::string type_string() const;

  // Typed element access; throws TensorError if T does not match dtype(). Never null, even for zero elements.
  template <typename T>
  T* data() {
    check_dtype(dtype_of<T>());
    return reinterpret_cast<T*>(storage_.get());
  }
  template <typename T>
  const T* data() const {
    check_dtype(dtype_of<T>());
    return reinterpret_cast<const T*>(storage_.get());
  }
  void* raw_data() { return storage_.get(); }
  const void* raw_data() const { return storage_.get(); }

 private:
  struct AlignedFree {
    // Constructors spelled out: a default member initializer would not be usable while Tensor is incomplete.
    constexpr AlignedFree() noexcept : owning(true) {}
    explicit constexpr AlignedFree(bool owns) noexcept : owning(owns) {}
    bool owning;
    void operator()(std::byte* p) const {
      if (owning) std::free(p);
    }
  };

  void check_dtype(DType requested) const;

  DType dtype_ = DType::Float32;
  std::vector<int64_t> shape_;
  int64_t numel_ = 0;
  std::unique_ptr<std::byte[], AlignedFree> storage_;
};

// An int32 copy of an int32 or int64 tensor. numpy's default integer is int64, while patterns read int32
// run-time tensors; `what` (a file or tensor name) prefixes the error if a value does not fit in int32.
Tensor to_int32(const Tensor& tensor, const std::string& what);

// float32 -> bfloat16, rounded to nearest even; NaN stays NaN (made quiet, so no payload bit is lost into an
// infinity), a finite value may round up to infinity as IEEE rounding says. Throws TensorError for another dtype.
Tensor to_bfloat16(const Tensor& tensor);
// The same for `count` floats from `in` into `out` (a KV cache's appended rows).
void round_to_bfloat16(const float* in, int64_t count, uint16_t* out);
// bfloat16 -> float32, exact. Throws TensorError for another dtype.
Tensor bfloat16_to_float32(const Tensor& tensor);

}  // namespace tessera::runtime
