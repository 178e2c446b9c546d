// NumPy .npy files: how run-time inputs (Q, K, V, segment ids, ...) get in and results get out.
//
// Supported: format versions 1.0, 2.0 and 3.0; little-endian float32, int32 and int64 ('<f4', '<i4', '<i8',
// also written without the byte-order character or with '=' / '|'); C order only. Everything else is refused
// with a TensorError that names the file and says what is wrong and what would be accepted.
#pragma once

#include <string>
#include <string_view>

#include "runtime/tensor.h"

namespace tessera::runtime {

Tensor read_npy(const std::string& path);
// Writes a version 1.0 file (2.0 if the header would not fit), header padded to a multiple of 64 bytes.
void write_npy(const std::string& path, const Tensor& tensor);

// The same formats in memory. `name` stands for the file in error messages.
Tensor decode_npy(std::string_view bytes, const std::string& name);
std::string encode_npy(const Tensor& tensor);

}  // namespace tessera::runtime
