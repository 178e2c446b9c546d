#include "runtime/model/checkpoint_naming.h"

#include <fmt/format.h>

#include <regex>
#include <stdexcept>

#include "runtime/model/model_error.h"

namespace tessera::runtime {

namespace {

struct RenameRule {
  std::regex pattern;
  std::string replacement;  // std::regex_replace format: $1, $2...
};

// Rules are tried in order; the first whose pattern matches the whole name wins.
const std::vector<RenameRule>& bert_rules() {
  static const std::vector<RenameRule> rules = [] {
    const std::string param = "(weight|bias|gamma|beta)";
    std::vector<RenameRule> r;
    auto add = [&](const std::string& from, const std::string& to) { r.push_back({std::regex(from), to}); };
    add("embeddings\\.word_embeddings\\.weight", "word.weight");
    add("embeddings\\.position_embeddings\\.weight", "position.weight");
    add("embeddings\\.token_type_embeddings\\.weight", "token_type.weight");
    add("embeddings\\.LayerNorm\\." + param, "embed_norm.$1");
    add("encoder\\.layer\\.(\\d+)\\.attention\\.self\\.(query|key|value)\\." + param, "layer.$1.attention.$2.$3");
    add("encoder\\.layer\\.(\\d+)\\.attention\\.output\\.dense\\." + param, "layer.$1.attention.output.$2");
    add("encoder\\.layer\\.(\\d+)\\.attention\\.output\\.LayerNorm\\." + param, "layer.$1.attention_norm.$2");
    add("encoder\\.layer\\.(\\d+)\\.intermediate\\.dense\\." + param, "layer.$1.ffn_in.$2");
    add("encoder\\.layer\\.(\\d+)\\.output\\.dense\\." + param, "layer.$1.ffn_out.$2");
    add("encoder\\.layer\\.(\\d+)\\.output\\.LayerNorm\\." + param, "layer.$1.ffn_norm.$2");
    return r;
  }();
  return rules;
}

// Hugging Face's LlamaForCausalLM (MistralForCausalLM names its tensors the same way). Its q_proj and k_proj rows are
// already ordered for the half-split rotation (Hugging Face's conversion permuted Meta's), the rotation
// graph::Node::rotary applies. Linear weights are [out, in] as nn.Linear stores them.
const std::vector<RenameRule>& llama_rules() {
  static const std::vector<RenameRule> rules = [] {
    std::vector<RenameRule> r;
    auto add = [&](const std::string& from, const std::string& to) { r.push_back({std::regex(from), to}); };
    const std::string layer = "model\\.layers\\.(\\d+)\\.";
    add("model\\.embed_tokens\\.weight", "word.weight");
    add(layer + "input_layernorm\\.weight", "layer.$1.attention_norm.weight");
    add(layer + "self_attn\\.q_proj\\.(weight|bias)", "layer.$1.attention.query.$2");
    add(layer + "self_attn\\.k_proj\\.(weight|bias)", "layer.$1.attention.key.$2");
    add(layer + "self_attn\\.v_proj\\.(weight|bias)", "layer.$1.attention.value.$2");
    add(layer + "self_attn\\.o_proj\\.(weight|bias)", "layer.$1.attention.output.$2");
    add(layer + "post_attention_layernorm\\.weight", "layer.$1.ffn_norm.weight");
    add(layer + "mlp\\.gate_proj\\.weight", "layer.$1.gate.weight");
    add(layer + "mlp\\.up_proj\\.weight", "layer.$1.up.weight");
    add(layer + "mlp\\.down_proj\\.weight", "layer.$1.ffn_out.weight");
    add("model\\.norm\\.weight", "final_norm.weight");
    add("lm_head\\.weight", "logits.weight");
    return r;
  }();
  return rules;
}

// The rule of `rules` matching all of `name`, applied; empty when none does.
std::string renamed(const std::string& name, const std::vector<RenameRule>& rules) {
  for (const RenameRule& rule : rules) {
    if (std::regex_match(name, rule.pattern)) return std::regex_replace(name, rule.pattern, rule.replacement);
  }
  return {};
}

// GPT-2 names whose tensors are renamed only; c_attn is split separately. `T` marks a Conv1D weight to transpose.
struct Gpt2Rule {
  std::regex pattern;
  std::string replacement;
  bool transpose = false;
};

const std::vector<Gpt2Rule>& gpt2_rules() {
  static const std::vector<Gpt2Rule> rules = [] {
    std::vector<Gpt2Rule> r;
    auto add = [&](const std::string& from, const std::string& to, bool transpose) {
      r.push_back({std::regex(from), to, transpose});
    };
    add("wte\\.weight", "word.weight", false);
    add("wpe\\.weight", "position.weight", false);
    add("h\\.(\\d+)\\.ln_1\\.(weight|bias)", "layer.$1.attention_norm.$2", false);
    add("h\\.(\\d+)\\.attn\\.c_proj\\.weight", "layer.$1.attention.output.weight", true);
    add("h\\.(\\d+)\\.attn\\.c_proj\\.bias", "layer.$1.attention.output.bias", false);
    add("h\\.(\\d+)\\.ln_2\\.(weight|bias)", "layer.$1.ffn_norm.$2", false);
    add("h\\.(\\d+)\\.mlp\\.c_fc\\.weight", "layer.$1.ffn_in.weight", true);
    add("h\\.(\\d+)\\.mlp\\.c_fc\\.bias", "layer.$1.ffn_in.bias", false);
    add("h\\.(\\d+)\\.mlp\\.c_proj\\.weight", "layer.$1.ffn_out.weight", true);
    add("h\\.(\\d+)\\.mlp\\.c_proj\\.bias", "layer.$1.ffn_out.bias", false);
    add("ln_f\\.(weight|bias)", "final_norm.$1", false);
    return r;
  }();
  return rules;
}

std::string strip_prefix(const std::string& name, const std::string& prefix) {
  return name.rfind(prefix, 0) == 0 ? name.substr(prefix.size()) : name;
}

std::string gamma_beta_as_weight_bias(std::string name) {
  auto replace_suffix = [&](const std::string& from, const std::string& to) {
    if (name.size() > from.size() && name.compare(name.size() - from.size(), from.size(), from) == 0) {
      name = name.substr(0, name.size() - from.size()) + to;
    }
  };
  replace_suffix(".gamma", ".weight");
  replace_suffix(".beta", ".bias");
  return name;
}

Tensor transposed(const Tensor& t, const std::string& name) {
  if (t.rank() != 2) {
    throw TensorError(fmt::format("checkpoint tensor '{}' is {}, expected a 2-D Conv1D weight", name, t.type_string()));
  }
  const int64_t rows = t.dim(0), cols = t.dim(1);
  Tensor out(DType::Float32, {cols, rows});
  const float* src = t.data<float>();
  float* dst = out.data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
  }
  return out;
}

// c_attn: weight [W, 3W] (Conv1D, in × out) with the output columns ordered query | key | value; bias [3W].
void split_c_attn(const std::string& layer, const std::string& param, const Tensor& t, const std::string& name,
                  std::map<std::string, Tensor>& out) {
  const bool weight = param == "weight";
  if ((weight && t.rank() != 2) || (!weight && t.rank() != 1) || t.dim(t.rank() - 1) % 3 != 0) {
    throw TensorError(fmt::format("checkpoint tensor '{}' is {}, expected {} with a last dimension divisible by 3",
                                  name, t.type_string(), weight ? "[W, 3W]" : "[3W]"));
  }
  const int64_t part = t.dim(t.rank() - 1) / 3;
  const int64_t rows = weight ? t.dim(0) : 1;
  const float* src = t.data<float>();
  const char* parts[] = {"query", "key", "value"};
  for (int64_t p = 0; p < 3; ++p) {
    // nn.Linear layout: [out, in] = this part's columns, transposed.
    Tensor piece(DType::Float32, weight ? std::vector<int64_t>{part, rows} : std::vector<int64_t>{part});
    float* dst = piece.data<float>();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < part; ++c) dst[c * rows + r] = src[r * 3 * part + p * part + c];
    }
    out.emplace(fmt::format("layer.{}.attention.{}.{}", layer, parts[p], param), std::move(piece));
  }
}

}  // namespace

const char* checkpoint_naming_name(CheckpointNaming naming) {
  switch (naming) {
    case CheckpointNaming::Tessera: return "tessera";
    case CheckpointNaming::Bert: return "bert";
    case CheckpointNaming::Gpt2: return "gpt2";
    case CheckpointNaming::Llama: return "llama";
  }
  return "?";
}

CheckpointNaming parse_checkpoint_naming(const std::string& text) {
  if (text == "tessera") return CheckpointNaming::Tessera;
  if (text == "bert") return CheckpointNaming::Bert;
  if (text == "gpt2") return CheckpointNaming::Gpt2;
  if (text == "llama") return CheckpointNaming::Llama;
  throw ModelError(fmt::format("unknown checkpoint naming '{}' (expected tessera, bert, gpt2 or llama)", text));
}

CheckpointNaming detect_checkpoint_naming(const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    if (strip_prefix(name, "bert.") == "embeddings.word_embeddings.weight") return CheckpointNaming::Bert;
    if (strip_prefix(name, "transformer.") == "wte.weight") return CheckpointNaming::Gpt2;
    if (name == "model.embed_tokens.weight") return CheckpointNaming::Llama;
  }
  return CheckpointNaming::Tessera;
}

MappedCheckpoint map_checkpoint(std::map<std::string, Tensor> tensors, CheckpointNaming naming) {
  MappedCheckpoint mapped;
  if (naming == CheckpointNaming::Tessera) {
    mapped.tensors = std::move(tensors);
    return mapped;
  }
  static const std::regex c_attn("h\\.(\\d+)\\.attn\\.c_attn\\.(weight|bias)");
  for (auto& [original, tensor] : tensors) {
    std::smatch match;
    if (naming == CheckpointNaming::Bert || naming == CheckpointNaming::Llama) {
      const std::string target = naming == CheckpointNaming::Bert
                                     ? renamed(gamma_beta_as_weight_bias(strip_prefix(original, "bert.")), bert_rules())
                                     : renamed(original, llama_rules());
      if (target.empty()) {
        mapped.unused.push_back(original);
      } else {
        mapped.tensors.emplace(target, std::move(tensor));
      }
      continue;
    }
    const std::string name = strip_prefix(original, "transformer.");
    if (std::regex_match(name, match, c_attn)) {
      split_c_attn(match[1].str(), match[2].str(), tensor, original, mapped.tensors);
      continue;
    }
    bool matched = false;
    for (const Gpt2Rule& rule : gpt2_rules()) {
      if (std::regex_match(name, rule.pattern)) {
        const std::string target = std::regex_replace(name, rule.pattern, rule.replacement);
        mapped.tensors.emplace(target, rule.transpose ? transposed(tensor, original) : std::move(tensor));
        matched = true;
        break;
      }
    }
    if (!matched) mapped.unused.push_back(original);
  }
  return mapped;
}

}  // namespace tessera::runtime
