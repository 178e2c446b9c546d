// Shared by the model tests: example specs elaborated with small parameters, random weights of the shapes a graph
// declares, random token ids.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>

#include "compiler/graph/graph.h"
#include "compiler/sema/model_elaboration.h"
#include "compiler/sema/pattern_library.h"
#include "runtime/model/random_weights.h"
#include "runtime/tensor.h"

namespace tessera::test {

inline std::string read_source(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Elaborates model `name` of examples/models/<file>; a test failure (and an empty graph) on errors.
inline graph::Graph example_model(const std::string& file, const std::string& name,
                                  const std::map<std::string, std::string>& overrides) {
  const std::string path = std::string(TESSERA_SOURCE_DIR) + "/examples/models/" + file;
  sema::PatternLibrary library;
  dsl::Diagnostics diags;
  library.add_file(std::make_shared<dsl::SourceFile>(path, read_source(path)), diags);
  std::optional<graph::Graph> graph = sema::elaborate_model(library, name, overrides, diags);
  std::ostringstream messages;
  diags.print(messages);
  EXPECT_TRUE(graph.has_value() && !diags.has_errors()) << messages.str();
  return graph ? std::move(*graph) : graph::Graph{};
}

// Weights of the declared shapes (runtime::random_weights), seeded.
inline std::map<std::string, runtime::Tensor> random_weights(const graph::Graph& graph, uint32_t seed) {
  return runtime::random_weights(graph, seed);
}

inline runtime::Tensor random_ids(int64_t B, int64_t N, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(vocab - 1));
  runtime::Tensor ids(runtime::DType::Int32, {B, N});
  for (int64_t i = 0; i < ids.numel(); ++i) ids.data<int32_t>()[i] = pick(rng);
  return ids;
}

// The vocabulary of the embedding an input feeds.
inline int64_t input_vocab(const graph::Graph& graph, const std::string& input) {
  int input_node = -1;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    if (graph.nodes[i].op == graph::OpKind::Input && graph.nodes[i].input_name == input)
      input_node = static_cast<int>(i);
  }
  for (const graph::Node& node : graph.nodes) {
    if (node.op == graph::OpKind::Embedding && node.inputs.at(0) == input_node) return node.vocab;
  }
  return 1;
}

}  // namespace tessera::test
