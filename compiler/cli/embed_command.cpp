// `tessera embed`: sentences in, embeddings out — WordPiece tokenization, then the model per sentence.
#include <fmt/format.h>

#include <cmath>
#include <iostream>

#include "compiler/cli/command_context.h"
#include "compiler/cli/commands.h"
#include "compiler/cli/model_context.h"
#include "runtime/npy.h"
#include "runtime/wordpiece_tokenizer.h"

namespace tessera::cli {

namespace {

struct EmbedOptions {
  ModelFlags model;
  std::string vocab;
  std::vector<std::string> sentences;
  std::string out;
  int64_t max_tokens = 0;
  bool truncate = false;
};

// The longest input the model takes: its learned position tables' shortest length, else unlimited.
int64_t model_max_tokens(const graph::Graph& graph) {
  int64_t limit = 0;
  for (const graph::Node& node : graph.nodes) {
    if (node.op == graph::OpKind::LearnedPositions) limit = limit == 0 ? node.length : std::min(limit, node.length);
  }
  return limit;
}

int run_embed(const EmbedOptions& options) {
  const graph::Graph graph = load_model_graph(options.model);
  if (graph.inputs.size() != 1) {
    throw UserError(fmt::format("embed needs a model with one input, '{}' has {}", graph.name, graph.inputs.size()));
  }
  if (graph.output_node().kind != graph::ValueKind::Pooled) {
    throw UserError(
        fmt::format("embed needs a model whose output is pooled (one vector per sentence); '{}' returns "
                    "a sequence: end it with e.g. `output normalize(mean_pool(x));`",
                    graph.name));
  }
  const runtime::WordPieceTokenizer tokenizer = runtime::WordPieceTokenizer::from_vocab_file(options.vocab);
  // A vocabulary longer than the token table is another model's: its ids would run past the table's rows.
  for (const graph::Node& node : graph.nodes) {
    if (node.op != graph::OpKind::Embedding || node.inputs.empty()) continue;
    if (graph.nodes.at(static_cast<size_t>(node.inputs.front())).op != graph::OpKind::Input) continue;
    if (static_cast<int64_t>(tokenizer.vocab_size()) > node.vocab) {
      throw UserError(
          fmt::format("{} has {} tokens, but embedding '{}' of model '{}' has {} rows: the vocabulary "
                      "does not belong to this model (or --set vocab=... is wrong)",
                      options.vocab, tokenizer.vocab_size(), node.name, graph.name, node.vocab));
    }
  }
  const int64_t position_limit = model_max_tokens(graph);
  if (options.max_tokens > 0 && options.max_tokens < 2) {
    throw UserError(fmt::format("--max-tokens {}: [CLS] and [SEP] alone take 2 tokens", options.max_tokens));
  }
  if (options.max_tokens > 0 && position_limit > 0 && options.max_tokens > position_limit) {
    throw UserError(fmt::format("--max-tokens {} is more than model '{}' has positions for ({})", options.max_tokens,
                                graph.name, position_limit));
  }
  int64_t max_tokens = options.max_tokens > 0 ? options.max_tokens : position_limit;
  if (max_tokens == 0) max_tokens = 1 << 20;
  const runtime::ModelWeights weights = load_model_weights(options.model, graph);
  runtime::ModelRunner runner(graph, weights, runner_options(options.model));

  const int64_t S = static_cast<int64_t>(options.sentences.size());
  const int64_t W = graph.output_node().width;
  runtime::Tensor embeddings(runtime::DType::Float32, {S, W});
  for (int64_t s = 0; s < S; ++s) {
    std::vector<int32_t> ids;
    try {
      ids = tokenizer.encode(options.sentences[static_cast<size_t>(s)], static_cast<size_t>(max_tokens),
                             options.truncate);
    } catch (const runtime::TokenizerError& e) {
      throw UserError(
          fmt::format("sentence {}: {}{}", s + 1, e.what(), options.truncate ? "" : " (--truncate cuts it)"));
    }
    runtime::Tensor batch(runtime::DType::Int32, {1, static_cast<int64_t>(ids.size())});
    std::copy(ids.begin(), ids.end(), batch.data<int32_t>());
    const runtime::Tensor& out = runner.forward({{graph.inputs.front(), &batch}});
    std::copy_n(out.data<float>(), W, embeddings.data<float>() + s * W);
    const float* e = out.data<float>();
    std::cout << fmt::format("[{}] {} tokens: [{:.4f}, {:.4f}, {:.4f}, {:.4f}, ...]  {}\n", s, ids.size(), e[0],
                             e[std::min<int64_t>(1, W - 1)], e[std::min<int64_t>(2, W - 1)],
                             e[std::min<int64_t>(3, W - 1)], options.sentences[static_cast<size_t>(s)]);
  }
  if (S > 1) {
    std::cout << "cosine similarity:\n";
    for (int64_t a = 0; a < S; ++a) {
      std::string row = fmt::format("[{}]", a);
      for (int64_t b = 0; b < S; ++b) {
        double dot = 0, na = 0, nb = 0;
        for (int64_t c = 0; c < W; ++c) {
          const double x = embeddings.data<float>()[a * W + c], y = embeddings.data<float>()[b * W + c];
          dot += x * y;
          na += x * x;
          nb += y * y;
        }
        row += fmt::format(" {:6.3f}", dot / std::max(std::sqrt(na * nb), 1e-30));
      }
      std::cout << row << "\n";
    }
  }
  if (!options.out.empty()) {
    runtime::write_npy(options.out, embeddings);
    std::cout << fmt::format("wrote {} {}\n", options.out, embeddings.type_string());
  }
  return 0;
}

}  // namespace

Command add_embed_command(CLI::App& app) {
  auto options = std::make_shared<EmbedOptions>();
  CLI::App* cmd = app.add_subcommand("embed", "Embed sentences: WordPiece tokens through a pooled encoder model");
  add_model_flags(cmd, options->model);
  cmd->add_option("--vocab", options->vocab, "The model's WordPiece vocabulary (vocab.txt)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("sentences", options->sentences, "Sentences to embed")->required();
  cmd->add_option("--out", options->out, "Write the embeddings, float32 [sentences, width] .npy");
  cmd->add_option("--max-tokens", options->max_tokens,
                  "Longest token sequence, [CLS] and [SEP] included (default: the model's position table)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--truncate", options->truncate, "Cut longer sentences to --max-tokens instead of failing");
  return {cmd, [options] { return run_embed(*options); }};
}

}  // namespace tessera::cli
