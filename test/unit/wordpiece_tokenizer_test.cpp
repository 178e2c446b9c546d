// WordPiece tokenization: hand-made vocabularies for each rule (splitting, "##" continuations, [UNK], accents, CJK,
// punctuation, special tokens, truncation, invalid UTF-8); greedy matching against a brute-force ASCII reference
// on random vocabularies; Unicode table spot checks against values read off the Unicode Character Database; and
// all-MiniLM-L6-v2's own tokenizer ids (test/fixtures/minilm_tokens.json, made by
// scripts/make_tokenizer_fixture.py) when scripts/fetch_minilm has put the model's vocab.txt in the cache.
#include "runtime/wordpiece_tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "runtime/unicode_tables.h"
#include "test/unit/expect_error.h"

namespace tessera::runtime {
namespace {

namespace fs = std::filesystem;
using Strings = std::vector<std::string>;

constexpr size_t kNoLimit = std::numeric_limits<size_t>::max();

// Runs `fn`, which must throw TokenizerError with a message containing every one of `parts`.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  test::expect_error<TokenizerError>(fn, parts);
}

const Strings kSpecials = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

// The specials at ids 0-4, then `words`.
WordPieceTokenizer make(const Strings& words, WordPieceOptions options = {}) {
  Strings vocab = kSpecials;
  vocab.insert(vocab.end(), words.begin(), words.end());
  return WordPieceTokenizer::from_vocab(vocab, std::move(options));
}

// The classic example from BERT's own tests.
const Strings kBertWords = {"want", "##want", "##ed", "wa", "un", "runn", "##ing", ","};

TEST(WordPieceTokenizer, GreedyLongestMatchWithContinuations) {
  auto t = make(kBertWords);
  EXPECT_EQ(t.tokenize("unwanted running"), (Strings{"un", "##want", "##ed", "runn", "##ing"}));
  EXPECT_EQ(t.encode("unwanted running", 512), (std::vector<int32_t>{2, 9, 6, 7, 10, 11, 3}));
  EXPECT_EQ(t.tokenize("unwanted, running"), (Strings{"un", "##want", "##ed", ",", "runn", "##ing"}));
}

TEST(WordPieceTokenizer, AWordWithAnUnmatchedPieceIsOneUnk) {
  auto t = make(kBertWords);
  // "unwantedx": un ##want ##ed match, then "x" has no "##x": the whole word is [UNK], not its tail.
  EXPECT_EQ(t.tokenize("unwantedX running"), (Strings{"[UNK]", "runn", "##ing"}));
  EXPECT_EQ(t.encode("unwantedX", 512), (std::vector<int32_t>{2, 1, 3}));
  EXPECT_EQ(t.tokenize("xyz"), (Strings{"[UNK]"}));
  // A continuation alone never starts a word: "ed" is not "##ed".
  EXPECT_EQ(t.tokenize("ed"), (Strings{"[UNK]"}));
}

TEST(WordPieceTokenizer, LongestPrefixWinsEvenWhenAShorterOneWouldAlsoWork) {
  auto t = make({"a", "ab", "##c", "##bc"});
  EXPECT_EQ(t.tokenize("abc"), (Strings{"ab", "##c"}));
  // Greedy, no backtracking: "ab" then "##d" fails, so the word is unknown although "a" "##bd" would not be either.
  auto u = make({"a", "ab", "##bd"});
  EXPECT_EQ(u.tokenize("abd"), (Strings{"[UNK]"}));
}

TEST(WordPieceTokenizer, MaxInputCharsPerWordCountsCodePointsAfterNormalization) {
  auto t = make({"a", "##a", "e", "##e", "é", "##é"});
  EXPECT_EQ(t.tokenize(std::string(100, 'a')).size(), 100u);
  EXPECT_EQ(t.tokenize(std::string(101, 'a')), (Strings{"[UNK]"}));
  std::string e_acute_100, e_acute_101;
  for (int i = 0; i < 100; ++i) e_acute_100 += "\u00e9";
  e_acute_101 = e_acute_100 + "\u00e9";
  // Accents are stripped first: 100 "é" are 100 "e" (not 200 code points of e + U+0301).
  auto pieces = t.tokenize(e_acute_100);
  ASSERT_EQ(pieces.size(), 100u);
  EXPECT_EQ(pieces[0], "e");
  EXPECT_EQ(pieces[99], "##e");
  EXPECT_EQ(t.tokenize(e_acute_101), (Strings{"[UNK]"}));
  // Without accent stripping "é" is one code point (two bytes): the limit is in code points, not bytes.
  WordPieceOptions cased;
  cased.lower_case = false;
  auto c = make({"é", "##é"}, cased);
  EXPECT_EQ(c.tokenize(e_acute_100).size(), 100u);
  EXPECT_EQ(c.tokenize(e_acute_101), (Strings{"[UNK]"}));
  WordPieceOptions short_words;
  short_words.max_input_chars_per_word = 3;
  auto s = make({"a", "##a"}, short_words);
  EXPECT_EQ(s.tokenize("aaa aaaa"), (Strings{"a", "##a", "##a", "[UNK]"}));
}

TEST(WordPieceTokenizer, PunctuationIsSplitOffAsWordsOfItsOwn) {
  auto t = make({});
  EXPECT_EQ(t.basic_tokenize("Hello, world!"), (Strings{"hello", ",", "world", "!"}));
  // Every non-alphanumeric ASCII character counts, symbols included.
  EXPECT_EQ(t.basic_tokenize("$5+3^2=`x`|~"), (Strings{"$", "5", "+", "3", "^", "2", "=", "`", "x", "`", "|", "~"}));
  EXPECT_EQ(t.basic_tokenize("a--b"), (Strings{"a", "-", "-", "b"}));
  EXPECT_EQ(t.basic_tokenize("don't"), (Strings{"don", "'", "t"}));
  // Unicode punctuation (P*) splits; Unicode symbols (S*) outside ASCII do not.
  EXPECT_EQ(t.basic_tokenize("\u00bfQu\u00e9?"), (Strings{"\u00bf", "que", "?"}));
  EXPECT_EQ(t.basic_tokenize("a\u2014b\u201cc\u201d"), (Strings{"a", "\u2014", "b", "\u201c", "c", "\u201d"}));
  EXPECT_EQ(t.basic_tokenize("5\u20ac x\u00b0"), (Strings{"5\u20ac", "x\u00b0"}));
  EXPECT_EQ(t.basic_tokenize("\u4e2d\u3002"), (Strings{"\u4e2d", "\u3002"}));
}

TEST(WordPieceTokenizer, WhitespaceSplitsAndControlCharactersVanish) {
  auto t = make({});
  EXPECT_EQ(t.basic_tokenize("  a\tb\nc\r\nd  "), (Strings{"a", "b", "c", "d"}));
  // Unicode separators: no-break space, ideographic space, line and paragraph separators, thin space.
  EXPECT_EQ(t.basic_tokenize("a\u00a0b\u3000c\u2028d\u2029e\u2009f"), (Strings{"a", "b", "c", "d", "e", "f"}));
  // Dropped, so their neighbours join: NUL, BEL, ESC, DEL, NEL, vertical tab, zero-width space (Cf), soft hyphen
  // (Cf), byte order mark (Cf), U+FFFD, a private-use character (Co).
  for (const std::string& c : {std::string(1, '\0'), std::string("\x07"), std::string("\x1b"), std::string("\x7f"),
                               std::string("\u0085"), std::string("\x0b"), std::string("\u200b"), std::string("\u00ad"),
                               std::string("\ufeff"), std::string("\ufffd"), std::string("\ue000")}) {
    EXPECT_EQ(t.basic_tokenize("ab" + c + "cd"), (Strings{"abcd"})) << "character bytes " << c.size();
  }
  // Unassigned code points are kept (the reference keeps them); they make the word unknown.
  EXPECT_EQ(t.basic_tokenize("a\u0378b"), (Strings{"a\u0378b"}));
  EXPECT_EQ(t.basic_tokenize(""), Strings{});
  EXPECT_EQ(t.basic_tokenize(" \t\n\u00a0"), Strings{});
}

TEST(WordPieceTokenizer, AccentsAreStrippedAfterCanonicalDecomposition) {
  auto t = make({});
  EXPECT_EQ(t.basic_tokenize("Caf\u00e9 NA\u00cfVE"), (Strings{"cafe", "naive"}));
  EXPECT_EQ(t.basic_tokenize("Cafe\u0301"), (Strings{"cafe"}));  // already decomposed
  EXPECT_EQ(t.basic_tokenize("\u1ea5"), (Strings{"a"}));         // a with circumflex and acute: two levels deep
  EXPECT_EQ(t.basic_tokenize("\u00c5\u212b"), (Strings{"aa"}));  // A-ring and the Angstrom sign
  EXPECT_EQ(t.basic_tokenize("\u304c"), (Strings{"\u304b"}));    // hiragana ga -> ka (the voicing mark is Mn)
  // Hangul syllables decompose into conjoining jamo, which are letters and stay.
  EXPECT_EQ(t.basic_tokenize("\ud55c"), (Strings{"\u1112\u1161\u11ab"}));
  EXPECT_EQ(t.basic_tokenize("\uac00"), (Strings{"\u1100\u1161"}));
  // Spacing marks (Mc) are not accents: Devanagari "aa" sign stays.
  EXPECT_EQ(t.basic_tokenize("\u0915\u093e"), (Strings{"\u0915\u093e"}));
  // ß, the ligature fi and fullwidth letters have no canonical decomposition: only lowercased.
  EXPECT_EQ(t.basic_tokenize("\u00df \ufb01 \uff28"), (Strings{"\u00df", "\ufb01", "\uff48"}));
  // Cased: no lowercasing and, following it, no accent stripping.
  WordPieceOptions cased;
  cased.lower_case = false;
  EXPECT_EQ(make({}, cased).basic_tokenize("Caf\u00e9"), (Strings{"Caf\u00e9"}));
  // Each can be set apart.
  WordPieceOptions keep_accents;
  keep_accents.strip_accents = false;
  EXPECT_EQ(make({}, keep_accents).basic_tokenize("Caf\u00e9"), (Strings{"caf\u00e9"}));
  WordPieceOptions strip_only;
  strip_only.lower_case = false;
  strip_only.strip_accents = true;
  EXPECT_EQ(make({}, strip_only).basic_tokenize("Caf\u00e9"), (Strings{"Cafe"}));
}

TEST(WordPieceTokenizer, LowercasesEachCharacterAlone) {
  auto t = make({});
  // No Greek final-sigma rule: the reference lowercases character by character.
  EXPECT_EQ(t.basic_tokenize("\u039f\u0394\u039f\u03a3"), (Strings{"\u03bf\u03b4\u03bf\u03c3"}));
  EXPECT_EQ(t.basic_tokenize("\u0130stanbul"), (Strings{"istanbul"}));     // dotted capital I, dot stripped
  EXPECT_EQ(t.basic_tokenize("\u01c5"), (Strings{"\u01c6"}));              // titlecase dz with caron
  EXPECT_EQ(t.basic_tokenize("\u212a \u2126"), (Strings{"k", "\u03c9"}));  // Kelvin sign, Ohm sign
  EXPECT_EQ(t.basic_tokenize("\u041f\u0420\u0418\u0412\u0415\u0422"),
            (Strings{"\u043f\u0440\u0438\u0432\u0435\u0442"}));
  EXPECT_EQ(t.basic_tokenize("\u216b"), (Strings{"\u217b"}));  // Roman numeral twelve
  WordPieceOptions keep_accents;
  keep_accents.strip_accents = false;
  // Without stripping, capital dotted I lowercases to i + combining dot above.
  EXPECT_EQ(make({}, keep_accents).basic_tokenize("\u0130"), (Strings{"i\u0307"}));
}

TEST(WordPieceTokenizer, CjkIdeographsAreWordsOfTheirOwn) {
  auto t = make({});
  EXPECT_EQ(t.basic_tokenize("\u4e2d\u6587abc\u5b57"), (Strings{"\u4e2d", "\u6587", "abc", "\u5b57"}));
  // Extension A and B, and a compatibility ideograph (which also decomposes to its unified twin).
  EXPECT_EQ(t.basic_tokenize("\u3400\U00020000\uf900"), (Strings{"\u3400", "\U00020000", "\u8c48"}));
  // The reference's Extension E range starts at U+2B920, not U+2B820 as in Google's BERT.
  EXPECT_EQ(t.basic_tokenize("\U0002b81f\U0002b820\U0002b821\U0002b91f\U0002b920\U0002b921"),
            (Strings{"\U0002b81f", "\U0002b820\U0002b821\U0002b91f", "\U0002b920", "\U0002b921"}));
  // Kana and Hangul are not in BERT's ranges.
  EXPECT_EQ(t.basic_tokenize("\u3072\u3089\u30ab\u30bf"), (Strings{"\u3072\u3089\u30ab\u30bf"}));
  WordPieceOptions no_cjk;
  no_cjk.tokenize_chinese_chars = false;
  EXPECT_EQ(make({}, no_cjk).basic_tokenize("\u4e2d\u6587abc"), (Strings{"\u4e2d\u6587abc"}));
}

TEST(WordPieceTokenizer, SpecialTokensInTheRawTextKeepTheirIds) {
  auto t = make({"hi", "x", "y", "mask", "sep", "["});
  EXPECT_EQ(t.encode("[CLS] hi [MASK]", 512), (std::vector<int32_t>{2, 2, 5, 4, 3}));
  EXPECT_EQ(t.tokenize("x[SEP]y"), (Strings{"x", "[SEP]", "y"}));
  EXPECT_EQ(t.tokenize("[CLS][SEP][PAD]"), (Strings{"[CLS]", "[SEP]", "[PAD]"}));
  // Matched before normalization: lowercase "[mask]" is ordinary text.
  EXPECT_EQ(t.tokenize("[mask]"), (Strings{"[", "mask", "[UNK]"}));
  WordPieceOptions none;
  none.special_tokens = {};
  EXPECT_EQ(make({"hi", "x", "y", "mask", "sep", "["}, none).tokenize("x[SEP]"), (Strings{"x", "[", "sep", "[UNK]"}));
  // The longest special token wins where two start at the same place.
  WordPieceOptions nested;
  nested.special_tokens = {"<s>", "<s></s>"};
  auto n = WordPieceTokenizer::from_vocab({"[UNK]", "[CLS]", "[SEP]", "<s>", "<s></s>", "a"}, nested);
  EXPECT_EQ(n.tokenize("a<s></s><s>a"), (Strings{"a", "<s></s>", "<s>", "a"}));
}

TEST(WordPieceTokenizer, EncodeAddsClsAndSepAndTruncatesOrRefuses) {
  auto t = make({"a", "b", "c", "d"});  // ids 5..8
  EXPECT_EQ(t.encode("", 2), (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(t.encode("a b c d", 6), (std::vector<int32_t>{2, 5, 6, 7, 8, 3}));  // fits exactly
  EXPECT_EQ(t.encode("a b c d", 5, true), (std::vector<int32_t>{2, 5, 6, 7, 3}));
  EXPECT_EQ(t.encode("a b c d", 2, true), (std::vector<int32_t>{2, 3}));
  expect_error([&] { t.encode("a b c d", 5); }, {"6 tokens", "max_length 5"});
  expect_error([&] { t.encode("a", 1, true); }, {"max_length 1", "[CLS]", "[SEP]"});
}

TEST(WordPieceTokenizer, InvalidUtf8IsAnErrorNamingTheByte) {
  auto t = make({});
  expect_error([&] { t.encode("ab\xc3", 512); }, {"invalid UTF-8", "byte 2", "ends inside a character"});
  expect_error([&] { t.encode("a\x80", 512); }, {"invalid UTF-8", "byte 1", "0x80 cannot start"});
  expect_error([&] { t.encode("\xc0\xaf", 512); }, {"byte 0", "overlong"});
  expect_error([&] { t.encode("\xe0\x80\xaf", 512); }, {"byte 0", "overlong"});
  expect_error([&] { t.encode("x\xed\xa0\x80", 512); }, {"byte 1", "surrogate"});
  expect_error([&] { t.encode("\xf4\x90\x80\x80", 512); }, {"above U+10FFFF"});
  expect_error([&] { t.encode("\xe2\x28\xa1", 512); }, {"0x28 is not a continuation byte"});
  expect_error([&] { t.encode("\xff", 512); }, {"0xFF cannot start"});
  // The largest code point of each length decodes.
  EXPECT_EQ(t.basic_tokenize("\x7f\xdf\xbf\xef\xbf\xbf\xf4\x8f\xbf\xbf").size(), 1u);
}

TEST(WordPieceTokenizer, VocabularyLoading) {
  expect_error([] { WordPieceTokenizer::from_vocab({"[CLS]", "[SEP]"}); }, {"unknown-word token '[UNK]'"});
  expect_error([] { WordPieceTokenizer::from_vocab({"[UNK]", "[CLS]", "[SEP]"}); }, {"special token '[PAD]'"});
  WordPieceOptions plain;
  plain.special_tokens = {};
  auto minimal = WordPieceTokenizer::from_vocab({"[UNK]", "[CLS]", "[SEP]"}, plain);
  EXPECT_EQ(minimal.vocab_size(), 3u);
  EXPECT_EQ(minimal.token(1), "[CLS]");
  expect_error([&] { minimal.token(3); }, {"token id 3"});
  // A token listed twice keeps its last id.
  auto twice = WordPieceTokenizer::from_vocab({"[UNK]", "[CLS]", "[SEP]", "a", "a"}, plain);
  EXPECT_EQ(twice.token_id("a"), 4);
  EXPECT_EQ(twice.token_id("b"), std::nullopt);

  fs::path dir = fs::temp_directory_path() / ("tessera_wordpiece_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    std::ofstream(dir / "crlf.txt", std::ios::binary) << "[UNK]\r\n[CLS]\r\n[SEP]\r\nhello\r\n";
    auto t = WordPieceTokenizer::from_vocab_file((dir / "crlf.txt").string(), plain);
    EXPECT_EQ(t.vocab_size(), 4u);
    EXPECT_EQ(t.encode("Hello", 512), (std::vector<int32_t>{1, 3, 2}));
  }
  expect_error([&] { WordPieceTokenizer::from_vocab_file((dir / "absent.txt").string()); },
               {(dir / "absent.txt").string(), "cannot open"});
  {
    std::ofstream(dir / "nounk.txt") << "[CLS]\n[SEP]\n";
    expect_error([&] { WordPieceTokenizer::from_vocab_file((dir / "nounk.txt").string()); },
                 {(dir / "nounk.txt").string(), "'[UNK]' is not in the vocabulary (2 tokens)"});
  }
  fs::remove_all(dir);
}

// Greedy longest-match-first WordPiece written plainly over ASCII, as the reference for random vocabularies.
Strings brute_force_word_pieces(const std::string& word, const std::set<std::string>& vocab) {
  Strings pieces;
  size_t start = 0;
  while (start < word.size()) {
    bool found = false;
    for (size_t len = word.size() - start; len > 0; --len) {
      std::string candidate = (start > 0 ? "##" : "") + word.substr(start, len);
      if (vocab.count(candidate)) {
        pieces.push_back(candidate);
        start += len;
        found = true;
        break;
      }
    }
    if (!found) return {"[UNK]"};
  }
  return pieces;
}

TEST(WordPieceTokenizer, GreedyMatchingEqualsBruteForceOnRandomVocabularies) {
  std::mt19937 rng(20240611);
  auto random_string = [&](size_t min_len, size_t max_len) {
    std::uniform_int_distribution<size_t> len(min_len, max_len);
    std::uniform_int_distribution<int> letter(0, 2);
    std::string s(len(rng), 'a');
    for (char& c : s) c = static_cast<char>('a' + letter(rng));
    return s;
  };
  for (int trial = 0; trial < 200; ++trial) {
    std::set<std::string> vocab_set;
    Strings words;
    for (int i = 0; i < 12; ++i) {
      std::string piece = random_string(1, 3);
      if (rng() % 2) piece = "##" + piece;
      if (vocab_set.insert(piece).second) words.push_back(piece);
    }
    auto t = make(words);
    for (int w = 0; w < 20; ++w) {
      std::string word = random_string(1, 8);
      EXPECT_EQ(t.tokenize(word), brute_force_word_pieces(word, vocab_set)) << "word " << word;
    }
  }
}

TEST(UnicodeTables, AgreeWithTheCharacterDatabase) {
  using unicode::CategoryGroup;
  EXPECT_EQ(unicode::category_group(U'a'), CategoryGroup::Other);
  EXPECT_EQ(unicode::category_group(U'!'), CategoryGroup::Punctuation);
  EXPECT_EQ(unicode::category_group(U'$'), CategoryGroup::Other);  // Sc: BERT's ASCII rule makes it punctuation
  EXPECT_EQ(unicode::category_group(0x0301), CategoryGroup::NonspacingMark);
  EXPECT_EQ(unicode::category_group(0x093E), CategoryGroup::Other);  // Mc
  EXPECT_EQ(unicode::category_group(0x00A0), CategoryGroup::SpaceSeparator);
  EXPECT_EQ(unicode::category_group(0x2028), CategoryGroup::LineSeparator);
  EXPECT_EQ(unicode::category_group(0x2029), CategoryGroup::ParagraphSeparator);
  EXPECT_EQ(unicode::category_group(0x0000), CategoryGroup::Control);
  EXPECT_EQ(unicode::category_group(0x200B), CategoryGroup::Format);
  EXPECT_EQ(unicode::category_group(0xE000), CategoryGroup::PrivateUse);
  EXPECT_EQ(unicode::category_group(0x10FFFD), CategoryGroup::PrivateUse);
  EXPECT_EQ(unicode::category_group(0x0378), CategoryGroup::Unassigned);
  EXPECT_EQ(unicode::category_group(0x10FFFF), CategoryGroup::Unassigned);
  EXPECT_EQ(unicode::category_group(0xD800), CategoryGroup::Surrogate);
  EXPECT_EQ(unicode::category_group(0x1F600), CategoryGroup::Other);  // So

  EXPECT_EQ(unicode::canonical_combining_class(U'a'), 0);
  EXPECT_EQ(unicode::canonical_combining_class(0x0301), 230);
  EXPECT_EQ(unicode::canonical_combining_class(0x0323), 220);
  EXPECT_EQ(unicode::canonical_combining_class(0x031B), 216);
  EXPECT_EQ(unicode::canonical_combining_class(0x3099), 8);

  auto lower = [](char32_t cp) {
    std::u32string out;
    unicode::append_lowercase(cp, out);
    return out;
  };
  EXPECT_EQ(lower(U'A'), U"a");
  EXPECT_EQ(lower(U'a'), U"a");
  EXPECT_EQ(lower(U'1'), U"1");
  EXPECT_EQ(lower(0x03A3), U"\u03c3");
  EXPECT_EQ(lower(0x0130), U"i\u0307");
  EXPECT_EQ(lower(0x0100), U"\u0101");  // Latin Extended-A alternates upper, lower
  EXPECT_EQ(lower(0x0101), U"\u0101");
  EXPECT_EQ(lower(0x1E9E), U"\u00df");
  EXPECT_EQ(lower(0x10400), U"\U00010428");  // Deseret

  auto decompose = [](char32_t cp) {
    std::u32string out;
    unicode::append_canonical_decomposition(cp, out);
    return out;
  };
  EXPECT_EQ(decompose(U'a'), U"a");
  EXPECT_EQ(decompose(0x00E9), U"e\u0301");
  EXPECT_EQ(decompose(0x1EA5), U"a\u0302\u0301");
  EXPECT_EQ(decompose(0x212B), U"A\u030a");
  EXPECT_EQ(decompose(0xF900), U"\u8c48");
  EXPECT_EQ(decompose(0x00DF), U"\u00df");
  EXPECT_EQ(decompose(0xFB01), U"\ufb01");  // compatibility only
  EXPECT_EQ(decompose(0xD7A3), U"\u1112\u1175\u11c2");
  EXPECT_EQ(decompose(0xD7A4), U"\ud7a4");  // just past the Hangul syllables
}

TEST(WordPieceTokenizer, CanonicalReorderingPrecedesAccentStripping) {
  // U+0F73 (Tibetan vowel sign ii) decomposes into U+0F71 U+0F72, both Mn: gone. A Musical Symbol combining stem
  // (U+1D165, Mc, class 216) after an augmentation dot (U+1D16D, Mc, class 226) is reordered before it by NFD.
  WordPieceOptions strip_only;
  strip_only.lower_case = false;
  strip_only.strip_accents = true;
  auto t = make({}, strip_only);
  EXPECT_EQ(t.basic_tokenize("x\u0f73"), (Strings{"x"}));
  EXPECT_EQ(t.basic_tokenize("x\U0001D16D\U0001D165"), (Strings{"x\U0001D165\U0001D16D"}));
}

fs::path minilm_dir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  fs::path cache = (xdg && *xdg) ? fs::path(xdg) : fs::path(home ? home : "") / ".cache";
  return cache / "tessera" / "models" / "all-MiniLM-L6-v2";
}

TEST(WordPieceTokenizer, MatchesTheMiniLmPackageTokenizerOnTheFixture) {
  std::ifstream fixture_file(fs::path(TESSERA_SOURCE_DIR) / "test" / "fixtures" / "minilm_tokens.json");
  ASSERT_TRUE(fixture_file) << "test/fixtures/minilm_tokens.json is missing (scripts/make_tokenizer_fixture.py)";
  const auto fixture = nlohmann::json::parse(fixture_file);
  ASSERT_GE(fixture.size(), 200u);

  const fs::path vocab = minilm_dir() / "vocab.txt";
  if (!fs::exists(vocab)) {
    GTEST_SKIP() << vocab.string() << " is absent: run scripts/fetch_minilm to fetch all-MiniLM-L6-v2";
  }
  auto t = WordPieceTokenizer::from_vocab_file(vocab.string());
  ASSERT_EQ(t.vocab_size(), 30522u);
  ASSERT_EQ(t.token_id("[CLS]"), 101);
  ASSERT_EQ(t.token_id("[SEP]"), 102);

  size_t long_entries = 0;
  for (const auto& entry : fixture) {
    const std::string text = entry.at("text").get<std::string>();
    const auto expected = entry.at("ids").get<std::vector<int32_t>>();
    EXPECT_EQ(t.encode(text, kNoLimit), expected) << "text: " << nlohmann::json(text).dump();
    if (!entry.value("long", false)) continue;
    ++long_entries;
    ASSERT_GT(expected.size(), 512u);
    expect_error([&] { t.encode(text, 512); }, {std::to_string(expected.size()) + " tokens", "max_length 512"});
    std::vector<int32_t> truncated(expected.begin(), expected.begin() + 511);
    truncated.push_back(102);
    EXPECT_EQ(t.encode(text, 512, true), truncated);
  }
  EXPECT_EQ(long_entries, 1u);
}

}  // namespace
}  // namespace tessera::runtime
