// Embeds a Tessera model in an application: load a spec and its weights, run it on token ids, and, for a
// decoder, generate a few tokens.
//
//   embed_model SPEC WEIGHTS [PARAM=VALUE ...]
//
// Token ids 1, 2, 3, ... (as many as the model has positions, up to 16) stand in for a tokenized prompt.
#include <tessera/model.h>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s SPEC WEIGHTS [PARAM=VALUE ...]\n", argv[0]);
    return 2;
  }
  tessera::LoadOptions options;
  for (int i = 3; i < argc; ++i) {
    const std::string binding = argv[i];
    const size_t eq = binding.find('=');
    if (eq == std::string::npos) {
      std::fprintf(stderr, "expected PARAM=VALUE, got '%s'\n", argv[i]);
      return 2;
    }
    options.parameters[binding.substr(0, eq)] = binding.substr(eq + 1);
  }
  try {
    tessera::Model model = tessera::Model::load(argv[1], argv[2], options);
    std::printf("loaded model '%s' with inputs:", model.name().c_str());
    for (const std::string& input : model.inputs()) std::printf(" %s", input.c_str());
    std::printf("\n");

    std::vector<int32_t> ids;
    for (int32_t i = 1; i <= 16; ++i) ids.push_back(i);
    std::map<std::string, tessera::TokenIds> inputs;
    for (const std::string& input : model.inputs()) inputs[input] = tessera::TokenIds::sequence(ids);
    const tessera::Output out = model.run(inputs);
    std::printf("output shape [");
    for (size_t d = 0; d < out.shape.size(); ++d)
      std::printf("%s%lld", d ? ", " : "", static_cast<long long>(out.shape[d]));
    std::printf("], first values %.6f %.6f %.6f\n", out.values[0], out.values[1], out.values[2]);

    if (out.shape.size() == 3 && model.inputs().size() == 1) {  // a decoder's logits: generate
      tessera::GenerateOptions generate;
      generate.max_new_tokens = 8;
      const std::vector<std::vector<int32_t>> tokens =
          model.generate(tessera::TokenIds::sequence({1, 2, 3, 4}), generate);
      std::printf("generated:");
      for (size_t i = 4; i < tokens[0].size(); ++i) std::printf(" %d", tokens[0][i]);
      std::printf("\n");
    }
  } catch (const tessera::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
