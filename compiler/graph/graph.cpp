#include "compiler/graph/graph.h"

#include <fmt/format.h>

#include <cmath>

namespace tessera::graph {

const char* value_kind_name(ValueKind kind) {
  switch (kind) {
    case ValueKind::TokenIds: return "ids";
    case ValueKind::Sequence: return "seq";
    case ValueKind::Pooled: return "pooled";
  }
  return "?";
}

const char* evolving_kind_name(EvolvingKind kind) {
  switch (kind) {
    case EvolvingKind::Encoder: return "encoder";
    case EvolvingKind::Decoder: return "decoder";
    case EvolvingKind::Cross: return "cross";
  }
  return "?";
}

const char* op_name(OpKind op) {
  switch (op) {
    case OpKind::Input: return "input";
    case OpKind::Embedding: return "embedding";
    case OpKind::LearnedPositions: return "learned_positions";
    case OpKind::SinusoidalPositions: return "sinusoidal_positions";
    case OpKind::SegmentEmbedding: return "segment_embedding";
    case OpKind::LayerNorm: return "layernorm";
    case OpKind::RMSNorm: return "rmsnorm";
    case OpKind::Linear: return "linear";
    case OpKind::Attention: return "attention";
    case OpKind::Add: return "+";
    case OpKind::Mul: return "*";
    case OpKind::Scale: return "scale";  // written `NUMBER * x`
    case OpKind::ReLU: return "relu";
    case OpKind::GELU: return "gelu";
    case OpKind::GELUTanh: return "gelu_tanh";
    case OpKind::SiLU: return "silu";
    case OpKind::MeanPool: return "mean_pool";
    case OpKind::ClsPool: return "cls_pool";
    case OpKind::Normalize: return "normalize";
    case OpKind::Unembed: return "unembed";
  }
  return "?";
}

std::vector<Weight> Graph::weights() const {
  std::vector<Weight> out;
  for (const auto& node : nodes) out.insert(out.end(), node.weights.begin(), node.weights.end());
  return out;
}

namespace {

// Shortest round-trip form, always recognisably a float ("2.0", "1e-12", not "2" or "1e-05").
std::string float_text(double v) {
  if (!std::isfinite(v)) return fmt::format("{}", v);
  std::string text = fmt::format("{}", v);
  if (text.find_first_of(".e") == std::string::npos) text += ".0";
  for (const char* sign : {"e-", "e+"}) {
    size_t at = text.find(sign);
    if (at == std::string::npos) continue;
    size_t digits = at + 2;
    while (digits + 1 < text.size() && text[digits] == '0') text.erase(digits, 1);
  }
  return text;
}

std::string shape_text(ValueKind kind, int64_t width) {
  switch (kind) {
    case ValueKind::TokenIds: return "ids[B, N]";
    case ValueKind::Sequence: return fmt::format("seq[B, N, {}]", width);
    case ValueKind::Pooled: return fmt::format("pooled[B, {}]", width);
  }
  return "?";
}

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string ref(int index) { return fmt::format("%{}", index); }

// `op(%a, %b)` or the infix forms of +, * and scaling.
std::string operation_text(const Node& node) {
  std::vector<std::string> inputs;
  for (int i : node.inputs) inputs.push_back(ref(i));
  switch (node.op) {
    case OpKind::Add:
    case OpKind::Mul:
      if (inputs.size() == 2) return fmt::format("{} {} {}", inputs[0], op_name(node.op), inputs[1]);
      break;
    case OpKind::Scale:
      if (inputs.size() == 1) return fmt::format("{} * {}", float_text(node.factor), inputs[0]);
      break;
    case OpKind::Input: return "input";
    default: break;
  }
  return fmt::format("{}({})", op_name(node.op), fmt::join(inputs, ", "));
}

// The attributes that matter for the node's op, `key=value` each, in a fixed order.
std::vector<std::string> attributes(const Node& node) {
  std::vector<std::string> out;
  switch (node.op) {
    case OpKind::Embedding: out.push_back(fmt::format("vocab={}", node.vocab)); break;
    case OpKind::LearnedPositions: out.push_back(fmt::format("length={}", node.length)); break;
    case OpKind::SegmentEmbedding: out.push_back(fmt::format("types={}", node.types)); break;
    case OpKind::LayerNorm:
    case OpKind::RMSNorm: out.push_back("eps=" + float_text(node.eps)); break;
    case OpKind::Linear:
      if (!node.has_bias) out.emplace_back("bias=false");
      break;
    case OpKind::Attention:
      out.push_back(fmt::format("heads={}", node.heads));
      out.push_back(fmt::format("kv_heads={}", node.kv_heads));
      out.push_back(fmt::format("head_dim={}", node.head_dim));
      if (node.scale) out.push_back("scale=" + float_text(*node.scale));
      out.push_back("pattern=" + quoted(node.pattern ? node.pattern->name : "?"));
      out.push_back(fmt::format("causal_in_time={}", node.causal_in_time));
      if (!node.has_bias) out.emplace_back("bias=false");
      if (node.rotary) {
        out.push_back(fmt::format("rotary_dims={}", node.rotary_dims));
        out.push_back("rotary_base=" + float_text(node.rotary_base));
      }
      if (node.evolving) {
        out.push_back(fmt::format("evolving={}", evolving_kind_name(*node.evolving)));
        out.push_back("alpha=" + float_text(node.evolving_alpha));
        out.push_back("beta=" + float_text(node.evolving_beta));
        out.push_back("previous=" + (node.evolving_previous < 0 ? std::string("none") : ref(node.evolving_previous)));
      }
      break;
    case OpKind::Unembed: out.push_back("tied=" + ref(node.tied)); break;
    default: break;
  }
  return out;
}

std::string weight_text(const Weight& w) { return fmt::format("{}[{}]", w.name, fmt::join(w.shape, ", ")); }

}  // namespace

std::string to_string(const Graph& graph) {
  std::vector<std::string> inputs;
  for (const auto& name : graph.inputs) inputs.push_back(name + ": " + shape_text(ValueKind::TokenIds, 0));
  std::string result = "?";
  if (graph.output >= 0 && static_cast<size_t>(graph.output) < graph.nodes.size()) {
    result = shape_text(graph.output_node().kind, graph.output_node().width);
  }
  std::string out = fmt::format("graph {}({}) -> {} {{\n", graph.name, fmt::join(inputs, ", "), result);
  for (const auto& t : graph.runtime_tensors) {
    out += fmt::format("  runtime {}: {}[{}]\n", t.name, ir::elem_type_name(t.elem_type), fmt::join(t.dims, ", "));
  }
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& node = graph.nodes[i];
    std::string line = fmt::format("  %{}", i);
    if (!node.name.empty()) line += " " + node.name;
    line += " = " + operation_text(node);
    for (const auto& a : attributes(node)) line += " " + a;
    line += " : " + shape_text(node.kind, node.width);
    if (!node.weights.empty()) {
      std::vector<std::string> weights;
      for (const auto& w : node.weights) weights.push_back(weight_text(w));
      line += fmt::format(" {{{}}}", fmt::join(weights, ", "));
    }
    out += line + "\n";
  }
  out += fmt::format("  output {}\n}}\n", graph.output >= 0 ? ref(graph.output) : "?");
  return out;
}

}  // namespace tessera::graph
