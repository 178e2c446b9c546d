// tessera::Model: the public face of the front end (spec -> graph), the weight loader and the runner. Every
// internal error type is turned into tessera::Error at this boundary, so the header stays free of internals.
#include "tessera/model.h"

#include <fmt/format.h>

#include <fstream>
#include <functional>
#include <optional>
#include <sstream>

#include "compiler/graph/graph.h"
#include "compiler/sema/model_elaboration.h"
#include "compiler/sema/pattern_library.h"
#include "runtime/model/generation.h"
#include "runtime/model/model_runner.h"
#include "runtime/model/model_weights.h"
#include "runtime/wordpiece_tokenizer.h"

namespace tessera {

namespace {

// Runs `body`, rethrowing anything it throws as tessera::Error with the same message.
template <typename F>
auto translated(F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(e.what());
  }
}

runtime::Tensor to_tensor(const TokenIds& tokens, const std::string& what) {
  if (tokens.batch < 1 || tokens.length < 0 ||
      static_cast<int64_t>(tokens.ids.size()) != tokens.batch * tokens.length) {
    throw Error(fmt::format("{}: {} ids do not make {} sequences of {} tokens", what, tokens.ids.size(), tokens.batch,
                            tokens.length));
  }
  runtime::Tensor t(runtime::DType::Int32, {tokens.batch, tokens.length});
  std::copy(tokens.ids.begin(), tokens.ids.end(), t.data<int32_t>());
  return t;
}

Output to_output(const runtime::Tensor& t) {
  Output out;
  out.shape = t.shape();
  out.values.assign(t.data<float>(), t.data<float>() + t.numel());
  return out;
}

}  // namespace

TokenIds TokenIds::sequence(std::vector<int32_t> ids) {
  TokenIds t;
  t.length = static_cast<int64_t>(ids.size());
  t.ids = std::move(ids);
  return t;
}

struct Model::Impl {
  graph::Graph graph;
  std::unique_ptr<runtime::ModelWeights> weights;
  std::unique_ptr<runtime::ModelRunner> runner;
  std::optional<runtime::WordPieceTokenizer> tokenizer;
  int64_t max_tokens = 0;  // the shortest learned position table, 0 when unlimited

  std::map<std::string, const runtime::Tensor*> views(const std::map<std::string, TokenIds>& inputs,
                                                      std::map<std::string, runtime::Tensor>& owned) const {
    std::map<std::string, const runtime::Tensor*> result;
    for (const auto& [name, tokens] : inputs) {
      owned[name] = to_tensor(tokens, fmt::format("input '{}'", name));
      result[name] = &owned[name];
    }
    return result;
  }
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Model Model::load(const std::string& spec_path, const std::string& weights_path, const LoadOptions& options) {
  return translated([&] {
    std::ifstream in(spec_path, std::ios::binary);
    if (!in) throw Error(fmt::format("cannot read the spec '{}'", spec_path));
    std::stringstream text;
    text << in.rdbuf();
    sema::PatternLibrary library;
    dsl::Diagnostics diags;
    library.add_file(std::make_shared<dsl::SourceFile>(spec_path, text.str()), diags);
    std::string name = options.name;
    if (name.empty() && !diags.has_errors()) {
      const std::vector<std::string> models = library.model_names();
      if (models.size() != 1) {
        throw Error(fmt::format("{} declares {} models: name one in LoadOptions::name", spec_path, models.size()));
      }
      name = models.front();
    }
    std::optional<graph::Graph> graph;
    if (!diags.has_errors()) graph = sema::elaborate_model(library, name, options.parameters, diags);
    if (!graph || diags.has_errors()) {
      std::ostringstream messages;
      diags.print(messages);
      throw Error(messages.str());
    }
    auto impl = std::make_unique<Impl>();
    impl->graph = std::move(*graph);
    std::optional<runtime::CheckpointNaming> naming;
    if (options.naming != "auto") naming = runtime::parse_checkpoint_naming(options.naming);
    impl->weights =
        std::make_unique<runtime::ModelWeights>(runtime::ModelWeights::load(weights_path, impl->graph, naming));
    runtime::RunnerOptions runner;
    runner.attention.storage = options.bf16_attention ? cpu::StorageType::BFloat16 : cpu::StorageType::Float32;
    runner.attention.schedule.threads = options.threads;
    impl->runner = std::make_unique<runtime::ModelRunner>(impl->graph, *impl->weights, runner);
    if (!options.vocab.empty()) impl->tokenizer = runtime::WordPieceTokenizer::from_vocab_file(options.vocab);
    for (const graph::Node& node : impl->graph.nodes) {
      if (node.op == graph::OpKind::LearnedPositions) {
        impl->max_tokens = impl->max_tokens == 0 ? node.length : std::min(impl->max_tokens, node.length);
      }
    }
    return Model(std::move(impl));
  });
}

const std::string& Model::name() const { return impl_->graph.name; }
const std::vector<std::string>& Model::inputs() const { return impl_->graph.inputs; }
std::string Model::graph() const { return graph::to_string(impl_->graph); }
std::vector<std::string> Model::unused_weights() const { return impl_->weights->extra(); }

Output Model::run(const TokenIds& tokens) {
  if (impl_->graph.inputs.size() != 1) {
    throw Error(fmt::format("model '{}' has {} inputs: pass them by name", name(), impl_->graph.inputs.size()));
  }
  return run({{impl_->graph.inputs.front(), tokens}});
}

Output Model::run(const std::map<std::string, TokenIds>& inputs) {
  return translated([&] {
    std::map<std::string, runtime::Tensor> owned;
    return to_output(impl_->runner->forward(impl_->views(inputs, owned)));
  });
}

std::vector<std::vector<int32_t>> Model::generate(const TokenIds& prompt, const GenerateOptions& options,
                                                  const std::map<std::string, TokenIds>& fixed_inputs) {
  return translated([&] {
    std::map<std::string, runtime::Tensor> owned;
    const auto fixed = impl_->views(fixed_inputs, owned);
    const runtime::Tensor ids = to_tensor(prompt, "the prompt");
    runtime::GenerationOptions gen;
    gen.max_new_tokens = options.max_new_tokens;
    gen.temperature = options.temperature;
    gen.top_k = options.top_k;
    gen.seed = options.seed;
    const runtime::Tensor result = runtime::generate(*impl_->runner, ids, gen, fixed);
    std::vector<std::vector<int32_t>> rows(static_cast<size_t>(result.dim(0)));
    const int64_t width = result.dim(1);
    for (int64_t b = 0; b < result.dim(0); ++b) {
      rows[static_cast<size_t>(b)].assign(result.data<int32_t>() + b * width, result.data<int32_t>() + (b + 1) * width);
    }
    return rows;
  });
}

std::vector<float> Model::embed(const std::string& text) {
  if (!impl_->tokenizer) throw Error("embed() needs a vocabulary: set LoadOptions::vocab when loading the model");
  return translated([&] {
    const size_t limit = impl_->max_tokens > 0 ? static_cast<size_t>(impl_->max_tokens) : size_t{1} << 20;
    const Output out = run(TokenIds::sequence(impl_->tokenizer->encode(text, limit)));
    if (out.shape.size() != 2) {
      throw Error(fmt::format("embed() needs a model with a pooled output; '{}' returns a sequence", name()));
    }
    return out.values;
  });
}

}  // namespace tessera
