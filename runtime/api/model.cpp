// tessera::Model: the public face of the front end (spec -> graph), the weight loader and the runner. Every
// internal error type is turned into tessera::Error at this boundary, so the header stays free of internals.
#include "tessera/model.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
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
#include "targets/cpu/tuned_schedules.h"

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
  if (tokens.batch < 1 || tokens.length < 1 ||
      static_cast<int64_t>(tokens.ids.size()) != tokens.batch * tokens.length) {
    throw Error(fmt::format("{}: {} ids do not make {} sequences of {} tokens (batch and length must be >= 1)", what,
                            tokens.ids.size(), tokens.batch, tokens.length));
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

  // The given inputs as tensors held in `owned`. A name the model does not read is an error: a typo would
  // otherwise surface as a missing input, or not at all for an optional run-time tensor.
  std::map<std::string, const runtime::Tensor*> views(const std::map<std::string, TokenIds>& inputs,
                                                      std::map<std::string, runtime::Tensor>& owned) const {
    std::vector<std::string> known = graph.inputs;
    for (const ir::TensorDecl& decl : graph.runtime_tensors) known.push_back(decl.name);
    std::map<std::string, const runtime::Tensor*> result;
    for (const auto& [name, tokens] : inputs) {
      if (std::find(known.begin(), known.end(), name) == known.end()) {
        throw Error(
            fmt::format("model '{}' has no input '{}' (it reads: {})", graph.name, name, fmt::join(known, ", ")));
      }
      owned[name] = to_tensor(tokens, fmt::format("input '{}'", name));
      result[name] = &owned[name];
    }
    return result;
  }
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Model::Impl& Model::impl() const {
  if (!impl_) throw Error("this tessera::Model was moved from: use the Model it was moved into");
  return *impl_;
}

Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Model Model::load(const std::string& spec_path, const std::string& weights_path, const LoadOptions& options) {
  return translated([&] {
    std::ifstream in(spec_path, std::ios::binary);
    if (!in) throw Error(fmt::format("cannot read the spec '{}'", spec_path));
    if (options.threads < 0) throw Error(fmt::format("LoadOptions::threads is {}, must be >= 0", options.threads));
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
    if (options.use_tune_cache) {
      runner.attention.tuned = cpu::TunedSchedules::load(
          options.tune_cache.empty() ? tuner::default_cache_path() : std::filesystem::path(options.tune_cache));
    }
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

const std::string& Model::name() const { return impl().graph.name; }
const std::vector<std::string>& Model::inputs() const { return impl().graph.inputs; }
std::vector<std::string> Model::runtime_tensors() const {
  std::vector<std::string> names;
  for (const ir::TensorDecl& decl : impl().graph.runtime_tensors) names.push_back(decl.name);
  return names;
}
std::string Model::graph() const { return graph::to_string(impl().graph); }
std::vector<std::string> Model::unused_weights() const { return impl().weights->extra(); }

Output Model::run(const TokenIds& tokens) {
  const graph::Graph& g = impl().graph;
  if (g.inputs.size() != 1 || !g.runtime_tensors.empty()) {
    throw Error(fmt::format("model '{}' reads {} inputs and {} run-time tensors: pass them by name", g.name,
                            g.inputs.size(), g.runtime_tensors.size()));
  }
  return run({{g.inputs.front(), tokens}});
}

Output Model::run(const std::map<std::string, TokenIds>& inputs) {
  Impl& self = impl();
  return translated([&] {
    std::map<std::string, runtime::Tensor> owned;
    return to_output(self.runner->forward(self.views(inputs, owned)));
  });
}

std::vector<std::vector<int32_t>> Model::generate(const TokenIds& prompt, const GenerateOptions& options,
                                                  const std::map<std::string, TokenIds>& fixed_inputs) {
  Impl& self = impl();
  if (!(options.temperature >= 0) || !std::isfinite(options.temperature)) {
    throw Error(fmt::format("GenerateOptions::temperature is {}, must be a finite number >= 0", options.temperature));
  }
  if (options.top_k < 0) throw Error(fmt::format("GenerateOptions::top_k is {}, must be >= 0", options.top_k));
  // The runner keeps run-time tensors from the prefill, so one sized by the sequence (document's segments
  // [B, M]) no longer fits at the first decoding step; say so before any work rather than after the prefill.
  for (const ir::TensorDecl& decl : self.graph.runtime_tensors) {
    for (const std::string& dim : decl.dims) {
      if (dim == "N" || dim == "M") {
        throw Error(
            fmt::format("model '{}' reads run-time tensor '{}' [{}], sized by the sequence: generate() cannot "
                        "decode it incrementally yet (run() can run it)",
                        self.graph.name, decl.name, fmt::join(decl.dims, ", ")));
      }
    }
  }
  return translated([&] {
    std::map<std::string, runtime::Tensor> owned;
    const auto fixed = self.views(fixed_inputs, owned);
    const runtime::Tensor ids = to_tensor(prompt, "the prompt");
    runtime::GenerationOptions gen;
    gen.max_new_tokens = options.max_new_tokens;
    gen.temperature = options.temperature;
    gen.top_k = options.top_k;
    gen.seed = options.seed;
    const runtime::Tensor result = runtime::generate(*self.runner, ids, gen, fixed);
    std::vector<std::vector<int32_t>> rows(static_cast<size_t>(result.dim(0)));
    const int64_t width = result.dim(1);
    for (int64_t b = 0; b < result.dim(0); ++b) {
      rows[static_cast<size_t>(b)].assign(result.data<int32_t>() + b * width, result.data<int32_t>() + (b + 1) * width);
    }
    return rows;
  });
}

std::vector<float> Model::embed(const std::string& text) {
  Impl& self = impl();
  if (!self.tokenizer) throw Error("embed() needs a vocabulary: set LoadOptions::vocab when loading the model");
  return translated([&] {
    const size_t limit = self.max_tokens > 0 ? static_cast<size_t>(self.max_tokens) : size_t{1} << 20;
    const Output out = run(TokenIds::sequence(self.tokenizer->encode(text, limit)));
    if (out.shape.size() != 2) {
      throw Error(fmt::format("embed() needs a model with a pooled output; '{}' returns a sequence", name()));
    }
    return out.values;
  });
}

}  // namespace tessera
