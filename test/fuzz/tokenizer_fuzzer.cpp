// libFuzzer target for the WordPiece tokenizer (runtime/wordpiece_tokenizer.h), which `tessera embed` runs on
// whatever text a user passes: arbitrary bytes must give a TokenizerError (invalid UTF-8 only), or ids that are all
// in the vocabulary, framed by [CLS] and [SEP], within max_length when truncating; and the word pieces as strings
// must be vocabulary entries. A crash, a sanitizer report, another exception type or a broken invariant (a trap)
// is a bug.
//
// Build (clang only; the target compiles this file and the tokenizer with its Unicode tables, nothing else):
//   CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DTESSERA_FUZZ=ON
//   cmake --build build-fuzz --target tokenizer_fuzzer
// Run on a scratch copy of the seeds (sentences in several scripts, special tokens, control characters):
//   mkdir -p /tmp/text_corpus && cp test/fuzz/corpus/text/* /tmp/text_corpus/
//   build-fuzz/test/tokenizer_fuzzer -max_total_time=600 /tmp/text_corpus
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/wordpiece_tokenizer.h"

namespace {

using tessera::runtime::TokenizerError;
using tessera::runtime::WordPieceTokenizer;

void require(bool condition) {
  if (!condition) __builtin_trap();
}

// A small vocabulary with whole words, continuations and single characters of a few scripts, so that inputs reach
// every branch of the greedy match: full matches, continuations, and words that end as [UNK].
const WordPieceTokenizer& tokenizer() {
  static const WordPieceTokenizer t = WordPieceTokenizer::from_vocab(
      {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a",   "cafe", "##s", "##ing", "run", "##n", "token",
       "##ize", "##r",   ".",     ",",     "!",      "?",   "'",   "-",    "é",   "e",     "##e", "##a", "日",
       "本",    "語",    "ß",     "ss",    "##ss",   "α",   "##β", "ﬁ",    "x",   "##x",   "1",   "##1", "##2"});
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const WordPieceTokenizer& t = tokenizer();
  std::vector<int32_t> ids;
  try {
    ids = t.encode(text, 16, /*truncate=*/true);
  } catch (const TokenizerError&) {
    return 0;  // invalid UTF-8
  }
  require(ids.size() >= 2 && ids.size() <= 16);
  require(ids.front() == *t.token_id("[CLS]") && ids.back() == *t.token_id("[SEP]"));
  for (int32_t id : ids) require(id >= 0 && static_cast<size_t>(id) < t.vocab_size());
  for (const std::string& piece : t.tokenize(text)) require(t.token_id(piece).has_value());
  return 0;
}
