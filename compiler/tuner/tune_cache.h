// The autotuner's results cache: `tessera tune` times candidate schedules and stores the winner here; eval, bench
// and the model runtime look schedules up. Results depend on the pattern, the problem size, the element type, the
// machine and the compiler, so all of those are in the key; shapes are bucketed so that one tuning run serves
// nearby sizes, and a lookup falls back to the nearest tuned bucket before the caller's defaults. The file is
// JSON, rewritten whole under a lock and renamed into place, so concurrent tuners never leave a torn file, and a
// file that is damaged or from another Tessera version is ignored (with a warning), never trusted.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace tessera::tuner {

// Named dimensions of a tuned problem, e.g. {"BH": 8, "N": 4096, "M": 4096, "D": 64, "Dv": 64, "G": 1}.
using Shape = std::map<std::string, int64_t>;
// A schedule as named integer parameters, e.g. {"block_q": 128, "block_k": 64, ...}.
using Schedule = std::map<std::string, int64_t>;

inline constexpr int64_t kExactBucketLimit = 256;
// Values <= kExactBucketLimit are kept exactly; larger ones round UP to the next power of two (300 -> 512,
// 4096 -> 4096). Values < 0, and values above 2^62 (whose bucket would not fit), throw std::invalid_argument:
// shapes come from the compiler, so these are programming errors.
int64_t bucket_dim(int64_t value);
Shape bucket_shape(const Shape& shape);

// 16 lower-case hex digits of the 64-bit FNV-1a hash of `text` (stable across runs and machines).
std::string hash_text(const std::string& text);

struct TuneKey {
  std::string kernel;   // "attention", "gemm", ...
  std::string problem;  // e.g. hash_text(pattern IR) for attention, "" for gemm
  Shape bucket;         // already bucketed by the caller with bucket_shape
  std::string dtype;    // "f32" | "bf16"
  std::string target;   // target string with CPU features, e.g. "cpu:x86-64-linux-avx512..."
  bool operator==(const TuneKey&) const = default;
};

// Now, as ISO-8601 UTC ("2026-12-07T03:50:00Z"): what `tessera tune` writes into TuneEntry::tuned_at.
std::string utc_timestamp();

struct TuneEntry {
  TuneKey key;
  Schedule schedule;
  std::string description;  // human-readable problem, e.g. the pattern expression; informational
  double median_ms = 0;     // the winner's median time
  double default_ms = 0;    // the default schedule's median time at the same shape
  int64_t candidates = 0;   // candidates timed
  double tuning_seconds = 0;
  std::string tuned_at;  // ISO-8601 UTC, filled by the caller (tests can pass anything)
};

enum class Match { Exact, Nearest };
struct Lookup {
  TuneEntry entry;
  Match match;
};

using Warn = std::function<void(const std::string&)>;
void warn_to_stderr(const std::string& message);  // prints "warning: <message>\n" to std::cerr

class TuneCache {
 public:
  TuneCache() = default;
  // Reads `path`. A missing file is an empty cache (no warning). A file that is not valid JSON, not in this
  // format, has malformed entries, or was written by another Tessera version (`version` differs) is ignored
  // entirely with ONE warning through `warn` naming the path and the reason (e.g. "ignoring tuning cache
  // /x/y.json: written by Tessera 0.0.9, this is 0.1.0"), and the cache is empty. Never throws for file content;
  // an unreadable existing file (permissions) also warns and gives an empty cache. Entries in the file with equal
  // keys collapse to the last one, in the position of the first (as put() would).
  static TuneCache load(const std::filesystem::path& path, const std::string& version,
                        const Warn& warn = warn_to_stderr);

  const std::vector<TuneEntry>& entries() const { return entries_; }

  // The entry for `key` with key.bucket equal -> Match::Exact. Otherwise, among entries whose kernel, problem,
  // dtype and target equal the key's and whose bucket has the same set of dimension names, the nearest by
  // sum over dimensions of |log2(max(1,a)) - log2(max(1,b))| (ties: the first in file order) -> Match::Nearest.
  // None -> nullopt (the caller uses its defaults).
  std::optional<Lookup> lookup(const TuneKey& key) const;

  // Adds or replaces (same key) an entry in memory. Throws std::invalid_argument for an entry that could not be
  // read back from the file: a non-finite time (JSON has no infinity or NaN) or a negative bucket dimension.
  void put(const TuneEntry& entry);

  // Read-modify-write of the file at `path`, safe against concurrent writers (threads and processes): take an
  // exclusive flock on `path` + ".lock" (create dirs as needed), re-load the file (ignoring it with a warning if
  // corrupt/foreign, as load() does), put `entry`, write the whole file to a unique temp file in the same
  // directory, flush + fsync, then std::filesystem::rename over `path`. Throws std::runtime_error with the path
  // in the message if the directory cannot be created or the file cannot be written.
  static void store(const std::filesystem::path& path, const std::string& version, const TuneEntry& entry,
                    const Warn& warn = warn_to_stderr);

  // The file's JSON text for this cache (used by store; also handy for tests).
  std::string to_json(const std::string& version) const;

 private:
  std::vector<TuneEntry> entries_;
};

// $XDG_CACHE_HOME/tessera/tune_cache.json if XDG_CACHE_HOME is set and non-empty, else
// $HOME/.cache/tessera/tune_cache.json, else ./.tessera_tune_cache.json.
std::filesystem::path default_cache_path();

}  // namespace tessera::tuner
