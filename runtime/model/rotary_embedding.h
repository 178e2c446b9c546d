// Rotary position embeddings (RoPE; Su et al., "RoFormer", 2021), applied to a self-attention layer's queries and
// keys after their projections, as GPT-NeoX and Hugging Face's LLaMA apply them: the first `dims` features of a
// head are rotated in pairs (c, c + dims/2), pair c by the angle position * base^(-2c/dims); the features past
// `dims` pass unchanged (partial rotary, GPT-NeoX's rotary_pct). A query and a key rotated by their positions then
// have a dot product that depends on the positions only through their difference.
#pragma once

#include <cstdint>
#include <vector>

namespace tessera::runtime {

struct RotaryEmbedding {
  double base = 10000;
  int64_t dims = 0;  // even

  bool operator==(const RotaryEmbedding&) const = default;
};

// cos and sin of every (position, pair) for positions [first, first + count), each computed in double and rounded
// once. A forward pass builds one and every rotary layer of the same embedding reads it.
class RotaryTable {
 public:
  // Recomputes the table unless it already holds these positions of `embedding`; keeps its storage.
  void prepare(const RotaryEmbedding& embedding, int64_t first, int64_t count);

  const RotaryEmbedding& embedding() const { return embedding_; }
  int64_t first() const { return first_; }
  int64_t count() const { return count_; }
  // [count][dims / 2] each.
  const float* cos() const { return cos_.data(); }
  const float* sin() const { return sin_.data(); }

 private:
  RotaryEmbedding embedding_;
  int64_t first_ = 0, count_ = -1;
  std::vector<float> cos_, sin_;
};

// Rotates `groups` runs of table.count() rows of head_dim floats (batch and heads folded into groups, row t of a
// run at position table.first() + t), in place, on the kept threads.
void apply_rotary(float* rows, int64_t groups, int64_t head_dim, const RotaryTable& table);

}  // namespace tessera::runtime
