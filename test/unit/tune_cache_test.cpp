// The tuning cache: bucketing, hashing, file round trips, lookup fallback, damaged and foreign files ignored with
// one warning, and concurrent writers (threads and processes) never losing or tearing entries.
#include "compiler/tuner/tune_cache.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "test/unit/expect_error.h"
#include "test/unit/scoped_resources.h"

namespace tessera::tuner {
namespace {

namespace fs = std::filesystem;
using test::ScopedEnv;
using test::TempDir;

constexpr const char* kVersion = "0.1.0";

// Collects warnings; safe to share between threads.
class Warnings {
 public:
  Warn sink() {
    return [this](const std::string& message) {
      const std::lock_guard lock(mutex_);
      messages_.push_back(message);
    };
  }
  std::vector<std::string> messages() const {
    const std::lock_guard lock(mutex_);
    return messages_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> messages_;
};

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

std::string read_whole(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::set<std::string> directory_names(const fs::path& directory) {
  std::set<std::string> names;
  for (const auto& item : fs::directory_iterator(directory)) names.insert(item.path().filename().string());
  return names;
}

TuneKey attention_key(const Shape& shape, const std::string& dtype = "f32", const std::string& target = "cpu:test",
                      const std::string& problem = hash_text("causal")) {
  return TuneKey{"attention", problem, bucket_shape(shape), dtype, target};
}

TuneEntry make_entry(const TuneKey& key, int64_t block_q, double median_ms = 1.5) {
  TuneEntry entry;
  entry.key = key;
  entry.schedule = {{"block_q", block_q}, {"block_k", 64}, {"threads", 16}};
  entry.description = "causal";
  entry.median_ms = median_ms;
  entry.default_ms = 2.0;
  entry.candidates = 12;
  entry.tuning_seconds = 31.5;
  entry.tuned_at = "2024-05-01T12:00:00Z";
  return entry;
}

void expect_same_entry(const TuneEntry& actual, const TuneEntry& expected) {
  EXPECT_EQ(actual.key.kernel, expected.key.kernel);
  EXPECT_EQ(actual.key.problem, expected.key.problem);
  EXPECT_EQ(actual.key.bucket, expected.key.bucket);
  EXPECT_EQ(actual.key.dtype, expected.key.dtype);
  EXPECT_EQ(actual.key.target, expected.key.target);
  EXPECT_EQ(actual.schedule, expected.schedule);
  EXPECT_EQ(actual.description, expected.description);
  EXPECT_EQ(actual.median_ms, expected.median_ms);  // exact: the file must carry doubles without rounding
  EXPECT_EQ(actual.default_ms, expected.default_ms);
  EXPECT_EQ(actual.candidates, expected.candidates);
  EXPECT_EQ(actual.tuning_seconds, expected.tuning_seconds);
  EXPECT_EQ(actual.tuned_at, expected.tuned_at);
}

// Loads `path`, which must be ignored: an empty cache and exactly one warning naming the path and every one of
// `parts`.
void expect_ignored(const fs::path& path, const std::vector<std::string>& parts) {
  Warnings warnings;
  const TuneCache cache = TuneCache::load(path, kVersion, warnings.sink());
  EXPECT_TRUE(cache.entries().empty());
  const auto messages = warnings.messages();
  ASSERT_EQ(messages.size(), 1u) << read_whole(path);
  EXPECT_NE(messages[0].find(path.string()), std::string::npos) << messages[0];
  for (const auto& part : parts) EXPECT_NE(messages[0].find(part), std::string::npos) << messages[0];
}

// A valid one-entry file.
std::string valid_file() {
  TuneCache cache;
  cache.put(make_entry(attention_key({{"N", 1024}}), 128));
  return cache.to_json(kVersion);
}

// valid_file() with `replace` substituted for `find`, to damage one thing at a time.
std::string valid_file_with(const std::string& find, const std::string& replace) {
  std::string text = valid_file();
  const size_t at = text.find(find);
  EXPECT_NE(at, std::string::npos) << find;
  if (at != std::string::npos) text.replace(at, find.size(), replace);
  return text;
}

TEST(TuneCache, BucketDimIsExactUpTo256ThenPowersOfTwo) {
  EXPECT_EQ(bucket_dim(0), 0);
  EXPECT_EQ(bucket_dim(1), 1);
  EXPECT_EQ(bucket_dim(3), 3);
  EXPECT_EQ(bucket_dim(255), 255);
  EXPECT_EQ(bucket_dim(256), 256);
  EXPECT_EQ(bucket_dim(257), 512);
  EXPECT_EQ(bucket_dim(300), 512);
  EXPECT_EQ(bucket_dim(512), 512);
  EXPECT_EQ(bucket_dim(4095), 4096);
  EXPECT_EQ(bucket_dim(4096), 4096);
  EXPECT_EQ(bucket_dim(4097), 8192);
  EXPECT_EQ(bucket_dim(int64_t{1} << 62), int64_t{1} << 62);
  EXPECT_THROW(bucket_dim(-1), std::invalid_argument);
  EXPECT_THROW(bucket_dim((int64_t{1} << 62) + 1), std::invalid_argument);

  const Shape bucketed = bucket_shape({{"BH", 8}, {"N", 3000}, {"D", 64}});
  EXPECT_EQ(bucketed, (Shape{{"BH", 8}, {"N", 4096}, {"D", 64}}));
}

TEST(TuneCache, HashTextIsPinnedFnv1a) {
  EXPECT_EQ(hash_text(""), "cbf29ce484222325");
  EXPECT_EQ(hash_text("a"), "af63dc4c8601ec8c");
  EXPECT_EQ(hash_text("foobar"), "85944171f73967e8");
  EXPECT_EQ(hash_text("causal"), hash_text("causal"));
  EXPECT_NE(hash_text("causal"), hash_text("causal "));
  EXPECT_NE(hash_text("ab"), hash_text("ba"));
  EXPECT_EQ(hash_text("x").size(), 16u);
}

TEST(TuneCache, RoundTripKeepsEveryField) {
  const TempDir dir;
  const fs::path path = dir.path() / "nested" / "deeper" / "cache.json";  // store() creates the directories
  std::vector<TuneEntry> stored = {
      make_entry(attention_key({{"BH", 8}, {"N", 4096}, {"D", 64}}), 128, 1.25),
      make_entry(attention_key({{"BH", 8}, {"N", 4096}, {"D", 64}}, "bf16"), 64, 0.1),
      make_entry(attention_key({{"BH", 8}, {"N", 4096}, {"D", 64}}, "f32", "cpu:other-avx2"), 32, 1.0 / 3.0),
  };
  TuneEntry gemm;
  gemm.key = TuneKey{"gemm", "", {{"M", 512}, {"N", 7}, {"K", 0}}, "f32", "cpu:x86-64-linux-avx512f,avx512bw"};
  gemm.schedule = {{"tile_m", -1}, {"huge", int64_t{1} << 60}};
  gemm.description = "gemm \"quoted\" \\ ünïcödé \n newline";
  gemm.median_ms = 123456.789e-7;
  gemm.default_ms = 1e300;
  gemm.candidates = 0;
  gemm.tuning_seconds = 0;
  gemm.tuned_at = "";
  stored.push_back(gemm);
  TuneEntry empty_shape = make_entry(TuneKey{"softmax", "p", {}, "f32", "t"}, 1);
  empty_shape.schedule = {};
  stored.push_back(empty_shape);

  Warnings warnings;
  for (const auto& entry : stored) TuneCache::store(path, kVersion, entry, warnings.sink());
  EXPECT_TRUE(warnings.messages().empty());

  const TuneCache loaded = TuneCache::load(path, kVersion, warnings.sink());
  EXPECT_TRUE(warnings.messages().empty());
  ASSERT_EQ(loaded.entries().size(), stored.size());
  for (size_t i = 0; i < stored.size(); ++i) {
    SCOPED_TRACE(i);
    expect_same_entry(loaded.entries()[i], stored[i]);
  }

  // The documented layout, in the documented order, so that people can read and diff it.
  const std::string text = read_whole(path);
  EXPECT_TRUE(text.starts_with("{\n  \"format\": \"tessera-tune-cache\",\n  \"version\": \"0.1.0\",\n  \"entries\": ["))
      << text;
  EXPECT_LT(text.find("\"kernel\""), text.find("\"problem\""));
  EXPECT_LT(text.find("\"problem\""), text.find("\"bucket\""));
  EXPECT_LT(text.find("\"schedule\""), text.find("\"tuned_at\""));
  EXPECT_EQ(text, loaded.to_json(kVersion));  // rewriting an unchanged cache changes nothing
}

TEST(TuneCache, StoringTheSameKeyReplacesTheEntry) {
  const TempDir dir;
  const fs::path path = dir.path() / "cache.json";
  const TuneKey first = attention_key({{"N", 1024}});
  const TuneKey second = attention_key({{"N", 2048}});
  TuneCache::store(path, kVersion, make_entry(first, 128, 3.0));
  TuneCache::store(path, kVersion, make_entry(second, 64, 2.0));
  TuneCache::store(path, kVersion, make_entry(first, 32, 1.0));

  const TuneCache loaded = TuneCache::load(path, kVersion);
  ASSERT_EQ(loaded.entries().size(), 2u);
  // Replaced in place: file order (which breaks lookup ties) does not depend on how often a key was re-tuned.
  EXPECT_EQ(loaded.entries()[0].key, first);
  EXPECT_EQ(loaded.entries()[0].schedule.at("block_q"), 32);
  EXPECT_EQ(loaded.entries()[0].median_ms, 1.0);
  EXPECT_EQ(loaded.entries()[1].key, second);

  TuneCache memory;
  memory.put(make_entry(first, 1));
  memory.put(make_entry(first, 2));
  ASSERT_EQ(memory.entries().size(), 1u);
  EXPECT_EQ(memory.entries()[0].schedule.at("block_q"), 2);
}

TEST(TuneCache, PutRefusesWhatTheFileCannotHold) {
  TuneCache cache;
  TuneEntry entry = make_entry(attention_key({{"N", 8}}), 1);
  entry.default_ms = std::numeric_limits<double>::infinity();
  EXPECT_THROW(cache.put(entry), std::invalid_argument);
  entry.default_ms = 1;
  entry.median_ms = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(cache.put(entry), std::invalid_argument);
  entry.median_ms = 1;
  entry.key.bucket["N"] = -4;
  EXPECT_THROW(cache.put(entry), std::invalid_argument);
  EXPECT_TRUE(cache.entries().empty());
}

TEST(TuneCache, LookupExactThenNearestByLogDistance) {
  TuneCache cache;
  cache.put(make_entry(attention_key({{"BH", 8}, {"N", 1024}}), 1));
  cache.put(make_entry(attention_key({{"BH", 8}, {"N", 16384}}), 2));

  const auto exact = cache.lookup(attention_key({{"BH", 8}, {"N", 1000}}));  // buckets to 1024
  ASSERT_TRUE(exact.has_value());
  EXPECT_EQ(exact->match, Match::Exact);
  EXPECT_EQ(exact->entry.schedule.at("block_q"), 1);

  const auto near_small = cache.lookup(attention_key({{"BH", 8}, {"N", 2048}}));  // 1 octave vs 3
  ASSERT_TRUE(near_small.has_value());
  EXPECT_EQ(near_small->match, Match::Nearest);
  EXPECT_EQ(near_small->entry.schedule.at("block_q"), 1);
  EXPECT_EQ(near_small->entry.key.bucket.at("N"), 1024);

  const auto near_large = cache.lookup(attention_key({{"BH", 8}, {"N", 8192}}));  // 3 octaves vs 1
  ASSERT_TRUE(near_large.has_value());
  EXPECT_EQ(near_large->match, Match::Nearest);
  EXPECT_EQ(near_large->entry.schedule.at("block_q"), 2);

  // Every dimension counts: N matches the second entry exactly, but BH is 6 octaves from it.
  cache.put(make_entry(attention_key({{"BH", 512}, {"N", 4096}}), 3));
  const auto summed = cache.lookup(attention_key({{"BH", 8}, {"N", 4096}}));
  ASSERT_TRUE(summed.has_value());
  EXPECT_EQ(summed->entry.schedule.at("block_q"), 1);  // 0 + 2 octaves beats 6 + 0 (and ties 0 + 2 with 16384)

  // Zero and one are the same distance from everything (max(1, v)).
  TuneCache zeros;
  zeros.put(make_entry(attention_key({{"N", 0}}), 7));
  const auto from_one = zeros.lookup(attention_key({{"N", 1}}));
  ASSERT_TRUE(from_one.has_value());
  EXPECT_EQ(from_one->match, Match::Nearest);
  EXPECT_EQ(from_one->entry.schedule.at("block_q"), 7);
}

TEST(TuneCache, LookupTiesGoToTheFirstEntryInFileOrder) {
  TuneCache cache;
  cache.put(make_entry(attention_key({{"N", 9}}), 1));
  cache.put(make_entry(attention_key({{"N", 4}}), 2));
  // 6/4 == 9/6: equal in exact arithmetic, not necessarily in floating point.
  const auto tie = cache.lookup(attention_key({{"N", 6}}));
  ASSERT_TRUE(tie.has_value());
  EXPECT_EQ(tie->entry.schedule.at("block_q"), 1);

  TuneCache reversed;
  reversed.put(make_entry(attention_key({{"N", 4}}), 2));
  reversed.put(make_entry(attention_key({{"N", 9}}), 1));
  EXPECT_EQ(reversed.lookup(attention_key({{"N", 6}}))->entry.schedule.at("block_q"), 2);

  // Ties whose two floating-point sums do differ in the last bit, one each way.
  for (const auto& [first, second, asked] : {std::tuple<int64_t, int64_t, int64_t>{2, 200, 20}, {20, 5, 10}}) {
    SCOPED_TRACE(asked);
    TuneCache rounding;
    rounding.put(make_entry(attention_key({{"N", first}}), 1));
    rounding.put(make_entry(attention_key({{"N", second}}), 2));
    EXPECT_EQ(rounding.lookup(attention_key({{"N", asked}}))->entry.schedule.at("block_q"), 1);
  }

  TuneCache powers;
  powers.put(make_entry(attention_key({{"N", 4096}}), 1));
  powers.put(make_entry(attention_key({{"N", 1024}}), 2));
  EXPECT_EQ(powers.lookup(attention_key({{"N", 2048}}))->entry.schedule.at("block_q"), 1);
}

TEST(TuneCache, LookupNeverCrossesDtypeTargetProblemKernelOrDimensions) {
  TuneCache cache;
  cache.put(make_entry(attention_key({{"BH", 8}, {"N", 1024}}), 1));

  EXPECT_FALSE(cache.lookup(attention_key({{"BH", 8}, {"N", 1024}}, "bf16")).has_value());
  EXPECT_FALSE(cache.lookup(attention_key({{"BH", 8}, {"N", 1024}}, "f32", "cpu:other")).has_value());
  EXPECT_FALSE(cache.lookup(attention_key({{"BH", 8}, {"N", 1024}}, "f32", "cpu:test", hash_text("other"))));
  TuneKey gemm = attention_key({{"BH", 8}, {"N", 1024}});
  gemm.kernel = "gemm";
  EXPECT_FALSE(cache.lookup(gemm).has_value());
  // Same kernel and problem, but a different set of dimensions: a different layout, not a nearby size.
  EXPECT_FALSE(cache.lookup(attention_key({{"N", 1024}})).has_value());
  EXPECT_FALSE(cache.lookup(attention_key({{"BH", 8}, {"M", 1024}})).has_value());
  EXPECT_FALSE(cache.lookup(attention_key({{"BH", 8}, {"N", 1024}, {"D", 64}})).has_value());

  EXPECT_FALSE(TuneCache().lookup(attention_key({{"N", 1024}})).has_value());
}

TEST(TuneCache, MissingFileIsEmptyWithoutWarning) {
  const TempDir dir;
  Warnings warnings;
  const TuneCache cache = TuneCache::load(dir.path() / "absent" / "cache.json", kVersion, warnings.sink());
  EXPECT_TRUE(cache.entries().empty());
  EXPECT_TRUE(warnings.messages().empty());
}

TEST(TuneCache, DamagedFilesAreIgnoredWithOneWarning) {
  const TempDir dir;
  const fs::path path = dir.path() / "cache.json";
  // The undamaged file loads, so each case below fails for its own damage.
  write_file(path, valid_file());
  {
    Warnings warnings;
    EXPECT_EQ(TuneCache::load(path, kVersion, warnings.sink()).entries().size(), 1u);
    EXPECT_TRUE(warnings.messages().empty());
  }

  const struct {
    const char* name;
    std::string text;
    std::vector<std::string> parts;
  } cases[] = {
      {"not JSON", "this is not json", {"not valid JSON"}},
      {"empty", "", {"not valid JSON"}},
      {"truncated", valid_file().substr(0, 80), {"not valid JSON"}},
      {"trailing garbage", valid_file() + "}", {"not valid JSON"}},
      {"top level array", "[1, 2]", {"not a Tessera tuning cache"}},
      {"no format", R"({"version": "0.1.0", "entries": []})", {"'format'"}},
      {"wrong format", R"({"format": "other-cache", "version": "0.1.0", "entries": []})", {"'format'"}},
      {"format not a string", R"({"format": 7, "version": "0.1.0", "entries": []})", {"'format'"}},
      {"no version", R"({"format": "tessera-tune-cache", "entries": []})", {"'version' is missing"}},
      {"version not a string", R"({"format": "tessera-tune-cache", "version": 1, "entries": []})", {"'version'"}},
      {"no entries", R"({"format": "tessera-tune-cache", "version": "0.1.0"})", {"'entries' is missing"}},
      {"entries not an array",
       R"({"format": "tessera-tune-cache", "version": "0.1.0", "entries": {}})",
       {"'entries' is not an array"}},
      {"entry not an object",
       R"({"format": "tessera-tune-cache", "version": "0.1.0", "entries": [3]})",
       {"entry 0", "not an object"}},
      {"float schedule value",
       valid_file_with("\"block_q\": 128", "\"block_q\": 128.5"),
       {"entry 0", "'schedule.block_q' is not an integer"}},
      {"integral float schedule value",
       valid_file_with("\"block_q\": 128", "\"block_q\": 128.0"),
       {"'schedule.block_q' is not an integer"}},
      {"string schedule value",
       valid_file_with("\"block_q\": 128", "\"block_q\": \"128\""),
       {"'schedule.block_q' is not an integer"}},
      {"schedule value too big",
       valid_file_with("\"block_q\": 128", "\"block_q\": 9223372036854775808"),
       {"'schedule.block_q' does not fit in 64 bits"}},
      {"schedule not an object",
       valid_file_with("\"schedule\": {", "\"schedule\": [], \"x\": {"),
       {"'schedule' is not an object"}},
      {"negative bucket", valid_file_with("\"N\": 1024", "\"N\": -1024"), {"'bucket.N' is negative"}},
      {"float bucket", valid_file_with("\"N\": 1024", "\"N\": 1e3"), {"'bucket.N' is not an integer"}},
      {"string time", valid_file_with("\"median_ms\": 1.5", "\"median_ms\": \"1.5\""), {"'median_ms' is not a number"}},
      {"overflowing time", valid_file_with("\"median_ms\": 1.5", "\"median_ms\": 1e999"), {"1e999"}},
      {"null candidates",
       valid_file_with("\"candidates\": 12", "\"candidates\": null"),
       {"'candidates' is not an integer"}},
      {"missing field", valid_file_with("\"tuned_at\"", "\"tuned_when\""), {"entry 0", "'tuned_at' is missing"}},
      {"dtype not a string", valid_file_with("\"dtype\": \"f32\"", "\"dtype\": 32"), {"'dtype' is not a string"}},
      {"duplicate key",
       valid_file_with("\"description\": \"causal\"", "\"description\": \"a\", \"description\": \"b\""),
       {"'description' appears twice"}},
      {"invalid UTF-8", valid_file_with("causal\"", "caus\xff\""), {"not valid JSON"}},
      {"deeply nested", std::string(100000, '['), {"not valid JSON"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    write_file(path, c.text);
    expect_ignored(path, c.parts);
  }

  // A later entry's damage spoils the whole file, and the warning says which entry.
  TuneCache two;
  two.put(make_entry(attention_key({{"N", 1}}), 1));
  two.put(make_entry(attention_key({{"N", 2}}), 2));
  std::string text = two.to_json(kVersion);
  text.replace(text.rfind("\"candidates\": 12"), 16, "\"candidates\": 1.5");
  write_file(path, text);
  expect_ignored(path, {"entry 1", "'candidates' is not an integer"});
}

TEST(TuneCache, ForeignVersionIsIgnoredNamingBothVersions) {
  const TempDir dir;
  const fs::path path = dir.path() / "cache.json";
  TuneCache old;
  old.put(make_entry(attention_key({{"N", 1024}}), 128));
  write_file(path, old.to_json("0.0.9"));
  expect_ignored(path, {"0.0.9", "0.1.0", "written by Tessera 0.0.9, this is 0.1.0"});

  // The same file is fine for the version that wrote it.
  Warnings warnings;
  EXPECT_EQ(TuneCache::load(path, "0.0.9", warnings.sink()).entries().size(), 1u);
  EXPECT_TRUE(warnings.messages().empty());
}

TEST(TuneCache, DirectoryAtThePathIsIgnoredWithOneWarning) {
  const TempDir dir;
  const fs::path directory = dir.path() / "a_directory.json";
  fs::create_directories(directory);
  expect_ignored(directory, {"directory"});
}

TEST(TuneCache, UnreadableFileIsIgnoredWithOneWarning) {
  const TempDir dir;
  const fs::path path = dir.path() / "cache.json";
  TuneCache::store(path, kVersion, make_entry(attention_key({{"N", 1}}), 1));
  if (::geteuid() == 0) GTEST_SKIP() << "root reads files whatever their permissions";
  fs::permissions(path, fs::perms::none);
  expect_ignored(path, {"cannot read it"});
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write);
}

TEST(TuneCache, StoreOverDamagedOrForeignFileLeavesAValidFile) {
  const TempDir dir;
  const fs::path path = dir.path() / "cache.json";
  const TuneEntry entry = make_entry(attention_key({{"N", 1024}}), 128);

  write_file(path, "{\"format\": \"tessera-tune-cache\", \"version\": \"0.1.0\", \"entries\": [");
  Warnings store_warnings;
  TuneCache::store(path, kVersion, entry, store_warnings.sink());
  ASSERT_EQ(store_warnings.messages().size(), 1u);
  EXPECT_NE(store_warnings.messages()[0].find(path.string()), std::string::npos);

  Warnings load_warnings;
  const TuneCache loaded = TuneCache::load(path, kVersion, load_warnings.sink());
  EXPECT_TRUE(load_warnings.messages().empty());
  ASSERT_EQ(loaded.entries().size(), 1u);
  expect_same_entry(loaded.entries()[0], entry);

  // A foreign version's file is replaced by this version's, holding only this version's results.
  TuneCache old;
  old.put(make_entry(attention_key({{"N", 4}}), 4));
  write_file(path, old.to_json("0.0.9"));
  Warnings foreign_warnings;
  TuneCache::store(path, kVersion, entry, foreign_warnings.sink());
  EXPECT_EQ(foreign_warnings.messages().size(), 1u);
  const TuneCache replaced = TuneCache::load(path, kVersion, load_warnings.sink());
  EXPECT_TRUE(load_warnings.messages().empty());
  ASSERT_EQ(replaced.entries().size(), 1u);
  EXPECT_EQ(replaced.entries()[0].key, entry.key);
  EXPECT_EQ(directory_names(dir.path()), (std::set<std::string>{"cache.json", "cache.json.lock"}));
}

TEST(TuneCache, StoreErrorsNameThePath) {
  const TempDir dir;
  const fs::path blocker = dir.path() / "a_file";
  write_file(blocker, "not a directory");
  const fs::path path = blocker / "sub" / "cache.json";
  test::expect_error<std::runtime_error>(
      [&] {
        TuneCache::store(path, kVersion, make_entry(attention_key({{"N", 1}}), 1));
      },
      {path.string(), "cannot create directory"});

  // The cache path is a directory: the rename cannot replace it, and no temp file is left behind.
  const fs::path occupied = dir.path() / "occupied.json";
  fs::create_directories(occupied / "inside");
  Warnings warnings;
  test::expect_error<std::runtime_error>(
      [&] {
        TuneCache::store(occupied, kVersion, make_entry(attention_key({{"N", 1}}), 1), warnings.sink());
      },
      {occupied.string()});
  EXPECT_EQ(directory_names(dir.path()), (std::set<std::string>{"a_file", "occupied.json", "occupied.json.lock"}));
}

// Thread t stores keys (t, 0..per_writer-1); all distinct, so a lost update shows up as a missing entry.
TuneEntry writer_entry(int writer, int index) {
  return make_entry(attention_key({{"W", writer}, {"I", index}}), writer * 100 + index);
}

void expect_all_writers_present(const fs::path& path, int writers, int per_writer) {
  Warnings warnings;
  const TuneCache loaded = TuneCache::load(path, kVersion, warnings.sink());
  EXPECT_TRUE(warnings.messages().empty());
  ASSERT_EQ(loaded.entries().size(), static_cast<size_t>(writers * per_writer));
  for (int w = 0; w < writers; ++w) {
    for (int i = 0; i < per_writer; ++i) {
      const auto found = loaded.lookup(writer_entry(w, i).key);
      ASSERT_TRUE(found.has_value()) << w << " " << i;
      EXPECT_EQ(found->match, Match::Exact);
      EXPECT_EQ(found->entry.schedule.at("block_q"), w * 100 + i);
    }
  }
  EXPECT_EQ(directory_names(path.parent_path()), (std::set<std::string>{"cache.json", "cache.json.lock"}));
}

TEST(TuneCache, ConcurrentThreadsDoNotLoseOrTearEntries) {
  const TempDir dir;
  const fs::path path = dir.path() / "cache.json";
  constexpr int kThreads = 8;
  constexpr int kPerThread = 10;
  Warnings warnings;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        try {
          TuneCache::store(path, kVersion, writer_entry(t, i), warnings.sink());
        } catch (const std::exception&) {
          ++failures;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_TRUE(warnings.messages().empty());  // no writer ever saw a half-written file
  expect_all_writers_present(path, kThreads, kPerThread);
}

TEST(TuneCache, ConcurrentProcessesDoNotLoseOrTearEntries) {
  const TempDir dir;
  const fs::path path = dir.path() / "cache.json";
  constexpr int kProcesses = 4;
  constexpr int kPerProcess = 10;
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0) << "fork failed";
    if (pid == 0) {
      // The child reports through its exit status only (_exit: no gtest or static destructors in the child).
      int status = 0;
      try {
        bool warned = false;
        for (int i = 0; i < kPerProcess; ++i) {
          TuneCache::store(path, kVersion, writer_entry(p, i), [&](const std::string&) { warned = true; });
        }
        if (warned) status = 2;
      } catch (...) {
        status = 1;
      }
      ::_exit(status);
    }
    children.push_back(pid);
  }
  for (const pid_t child : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status)) << status;
    EXPECT_EQ(WEXITSTATUS(status), 0) << "1: a store threw, 2: a store saw a damaged file";
  }
  expect_all_writers_present(path, kProcesses, kPerProcess);
}

TEST(TuneCache, DefaultCachePathHonoursXdgThenHome) {
  {
    const ScopedEnv xdg("XDG_CACHE_HOME", "/xdg/cache");
    const ScopedEnv home("HOME", "/home/someone");
    EXPECT_EQ(default_cache_path(), fs::path("/xdg/cache/tessera/tune_cache.json"));
  }
  {
    const ScopedEnv xdg("XDG_CACHE_HOME", "");  // set but empty: as if unset
    const ScopedEnv home("HOME", "/home/someone");
    EXPECT_EQ(default_cache_path(), fs::path("/home/someone/.cache/tessera/tune_cache.json"));
  }
  {
    const ScopedEnv xdg("XDG_CACHE_HOME", nullptr);
    const ScopedEnv home("HOME", nullptr);
    EXPECT_EQ(default_cache_path(), fs::path(".tessera_tune_cache.json"));
  }
}

}  // namespace
}  // namespace tessera::tuner
