#include "runtime/model/rotary_embedding.h"

#include <cmath>
#include <stdexcept>

#include "runtime/parallel_rows.h"

namespace tessera::runtime {

void RotaryTable::prepare(const RotaryEmbedding& embedding, int64_t first, int64_t count) {
  if (embedding.dims < 2 || embedding.dims % 2 != 0) {
    throw std::invalid_argument("rotary embedding: dims must be even and at least 2");
  }
  if (embedding == embedding_ && first == first_ && count == count_) return;
  embedding_ = embedding;
  first_ = first;
  count_ = count;
  const int64_t half = embedding.dims / 2;
  cos_.resize(static_cast<size_t>(count * half));
  sin_.resize(static_cast<size_t>(count * half));
  std::vector<double> inverse_frequency(static_cast<size_t>(half));
  for (int64_t c = 0; c < half; ++c) {
    inverse_frequency[static_cast<size_t>(c)] =
        std::pow(embedding.base, -2.0 * static_cast<double>(c) / static_cast<double>(embedding.dims));
  }
  for (int64_t t = 0; t < count; ++t) {
    for (int64_t c = 0; c < half; ++c) {
      const double angle = static_cast<double>(first + t) * inverse_frequency[static_cast<size_t>(c)];
      cos_[static_cast<size_t>(t * half + c)] = static_cast<float>(std::cos(angle));
      sin_[static_cast<size_t>(t * half + c)] = static_cast<float>(std::sin(angle));
    }
  }
}

void apply_rotary(float* rows, int64_t groups, int64_t head_dim, const RotaryTable& table) {
  const int64_t half = table.embedding().dims / 2, count = table.count();
  if (2 * half > head_dim) throw std::invalid_argument("rotary embedding: dims exceed the head dimension");
  parallel_rows(groups * count, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* x = rows + r * head_dim;
      const float* cos = table.cos() + (r % count) * half;
      const float* sin = table.sin() + (r % count) * half;
      for (int64_t c = 0; c < half; ++c) {
        const float a = x[c], b = x[c + half];
        x[c] = a * cos[c] - b * sin[c];
        x[c + half] = b * cos[c] + a * sin[c];
      }
    }
  });
}

}  // namespace tessera::runtime
