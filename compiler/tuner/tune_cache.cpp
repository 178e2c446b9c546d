// The tuning cache: bucketing, the JSON file format and its validation, lookup with fallback, and locked atomic
// rewrites of the file.
#include "compiler/tuner/tune_cache.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace tessera::tuner {

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
// Written with insertion order kept, so the file reads in the documented field order rather than alphabetically.
using OrderedJson = nlohmann::ordered_json;

constexpr const char* kFormat = "tessera-tune-cache";

// Something wrong with the file's content or readability: load() turns it into its one warning, never an error.
class BadCache : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string error_text(int error) { return std::generic_category().message(error); }

// A string from the file, fit for a one-line message: printable ASCII is shown as is, anything else (control
// characters, a megabyte of text) JSON-escaped and cut short.
std::string shown(const std::string& text) {
  constexpr size_t kMax = 60;
  bool plain = text.size() <= kMax && !text.empty();
  for (unsigned char c : text) plain = plain && c >= 0x20 && c < 0x7f;
  if (plain) return text;
  std::string quoted = Json(text).dump(-1, ' ', false, Json::error_handler_t::replace);
  if (quoted.size() > kMax) quoted = quoted.substr(0, kMax) + "...";
  return quoted;
}

// An owned file descriptor.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  // Closes now, reporting close()'s errno (0 on success): for a written file, a failed close can mean lost data.
  int close() {
    if (fd_ < 0) return 0;
    const int result = ::close(fd_);
    fd_ = -1;
    return result == 0 ? 0 : errno;
  }

 private:
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd_;
};

// An exclusive flock held for the object's lifetime. flock rather than fcntl record locks because flock locks
// belong to the open file description: two threads of one process, each opening the lock file, exclude each
// other, which record locks (owned by the process) would not do. A separate lock file because the cache file
// itself is replaced by rename, and a lock on a replaced inode would protect nothing.
class FileLock {
 public:
  explicit FileLock(const fs::path& lock_path) : fd_(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666)) {
    if (!fd_) {
      throw std::runtime_error(
          fmt::format("cannot open tuning cache lock file {}: {}", lock_path.string(), error_text(errno)));
    }
    while (::flock(fd_.get(), LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(
          fmt::format("cannot lock tuning cache lock file {}: {}", lock_path.string(), error_text(errno)));
    }
  }
  // Closing the descriptor (Fd's destructor) releases the lock.

 private:
  Fd fd_;
};

// The whole file, or nullopt if it does not exist. Anything else that stops the read is a BadCache.
std::optional<std::string> read_file(const fs::path& path) {
  // O_NONBLOCK so that a FIFO at the path cannot hang the open; it does nothing for a regular file.
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) {
    const int error = errno;
    if (error == ENOENT) return std::nullopt;
    throw BadCache(fmt::format("cannot read it: {}", error_text(error)));
  }
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) throw BadCache(fmt::format("cannot read it: {}", error_text(errno)));
  if (S_ISDIR(info.st_mode)) throw BadCache("it is a directory");
  if (!S_ISREG(info.st_mode)) throw BadCache("it is not a regular file");
  std::string text;
  char buffer[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw BadCache(fmt::format("cannot read it: {}", error_text(errno)));
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  return text;
}

// nlohmann keeps the last of two equal keys silently; in a cache file that is damage (which "schedule" is the
// tuned one?), so the parser callback records the first key seen twice in any one object.
class DuplicateKeyFinder {
 public:
  bool operator()(int /*depth*/, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start: frames_.push_back(Frame{true, {}}); break;
      case Json::parse_event_t::array_start: frames_.push_back(Frame{false, {}}); break;
      case Json::parse_event_t::object_end:
      case Json::parse_event_t::array_end:
        if (!frames_.empty()) frames_.pop_back();
        break;
      case Json::parse_event_t::key:
        if (!frames_.empty() && frames_.back().is_object && parsed.is_string() && !duplicate_) {
          const auto& key = parsed.get_ref<const std::string&>();
          if (!frames_.back().keys.insert(key).second) duplicate_ = key;
        }
        break;
      case Json::parse_event_t::value: break;
    }
    return true;
  }
  const std::optional<std::string>& duplicate() const { return duplicate_; }

 private:
  struct Frame {
    bool is_object;
    std::set<std::string> keys;
  };
  std::vector<Frame> frames_;
  std::optional<std::string> duplicate_;
};

Json parse_json(const std::string& text) {
  DuplicateKeyFinder finder;
  Json document;
  try {
    // nlohmann copies the callback; capturing by reference makes the copy report into `finder`.
    document = Json::parse(
        text, [&finder](int depth, Json::parse_event_t event, Json& parsed) { return finder(depth, event, parsed); });
  } catch (const Json::exception& e) {
    // nlohmann prefixes "[json.exception.parse_error.101] ": noise for someone reading a warning.
    std::string what = e.what();
    if (const size_t end = what.find("] "); what.starts_with("[json.exception.") && end != std::string::npos) {
      what = what.substr(end + 2);
    }
    throw BadCache(fmt::format("it is not valid JSON ({})", what));
  }
  if (finder.duplicate())
    throw BadCache(fmt::format("the key '{}' appears twice in one object", shown(*finder.duplicate())));
  return document;
}

// Reads one element of "entries", naming it in every complaint.
class EntryReader {
 public:
  EntryReader(const Json& object, size_t index) : object_(object), index_(index) {
    if (!object_.is_object()) fail("it is not an object");
  }

  std::string string(const std::string& name) const {
    const Json& value = field(name);
    if (!value.is_string()) fail(fmt::format("'{}' is not a string", name));
    return value.get<std::string>();
  }

  double number(const std::string& name) const {
    const Json& value = field(name);
    if (!value.is_number()) fail(fmt::format("'{}' is not a number", name));
    const double result = value.get<double>();
    if (!std::isfinite(result)) fail(fmt::format("'{}' is not a finite number", name));
    return result;
  }

  int64_t integer(const std::string& name) const { return to_integer(field(name), name); }

  std::map<std::string, int64_t> integer_map(const std::string& name, bool non_negative) const {
    const Json& value = field(name);
    if (!value.is_object()) fail(fmt::format("'{}' is not an object", name));
    std::map<std::string, int64_t> result;
    for (const auto& [dimension, item] : value.items()) {
      const std::string where = fmt::format("{}.{}", name, shown(dimension));
      const int64_t n = to_integer(item, where);
      if (non_negative && n < 0) fail(fmt::format("'{}' is negative", where));
      result.emplace(dimension, n);
    }
    return result;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw BadCache(fmt::format("entry {}: {}", index_, what)); }

  const Json& field(const std::string& name) const {
    const auto it = object_.find(name);
    if (it == object_.end()) fail(fmt::format("'{}' is missing", name));
    return *it;
  }

  // JSON integers only: 128.0 or "128" in a schedule means the file was not written by store().
  int64_t to_integer(const Json& value, const std::string& where) const {
    if (value.is_number_unsigned()) {
      const auto n = value.get<uint64_t>();
      if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        fail(fmt::format("'{}' does not fit in 64 bits", where));
      }
      return static_cast<int64_t>(n);
    }
    if (!value.is_number_integer()) fail(fmt::format("'{}' is not an integer", where));
    return value.get<int64_t>();
  }

  const Json& object_;
  size_t index_;
};

// The entries of a cache file's text, or BadCache saying why the file cannot be used.
std::vector<TuneEntry> parse_cache(const std::string& text, const std::string& version) {
  const Json document = parse_json(text);
  if (!document.is_object()) throw BadCache("it is not a Tessera tuning cache (not a JSON object)");
  const auto format = document.find("format");
  if (format == document.end()) throw BadCache("it is not a Tessera tuning cache (no 'format')");
  if (!format->is_string() || format->get_ref<const std::string&>() != kFormat) {
    throw BadCache(fmt::format("it is not a Tessera tuning cache ('format' is not \"{}\")", kFormat));
  }
  // The version is checked before the entries: another version may lay its entries out differently.
  const auto file_version = document.find("version");
  if (file_version == document.end()) throw BadCache("'version' is missing");
  if (!file_version->is_string()) throw BadCache("'version' is not a string");
  if (file_version->get_ref<const std::string&>() != version) {
    throw BadCache(fmt::format("written by Tessera {}, this is {}", shown(file_version->get<std::string>()), version));
  }
  const auto items = document.find("entries");
  if (items == document.end()) throw BadCache("'entries' is missing");
  if (!items->is_array()) throw BadCache("'entries' is not an array");

  TuneCache cache;  // through put(), so that repeated keys collapse exactly as they would have when stored
  for (size_t i = 0; i < items->size(); ++i) {
    const EntryReader reader((*items)[i], i);
    TuneEntry entry;
    entry.key.kernel = reader.string("kernel");
    entry.key.problem = reader.string("problem");
    entry.key.bucket = reader.integer_map("bucket", /*non_negative=*/true);
    entry.key.dtype = reader.string("dtype");
    entry.key.target = reader.string("target");
    entry.schedule = reader.integer_map("schedule", /*non_negative=*/false);
    entry.description = reader.string("description");
    entry.median_ms = reader.number("median_ms");
    entry.default_ms = reader.number("default_ms");
    entry.candidates = reader.integer("candidates");
    entry.tuning_seconds = reader.number("tuning_seconds");
    entry.tuned_at = reader.string("tuned_at");
    cache.put(entry);
  }
  return cache.entries();
}

// Sum over dimensions of the distance in octaves; nullopt when the two buckets do not name the same dimensions
// (a different problem layout, not a different size).
std::optional<double> log_distance(const Shape& a, const Shape& b) {
  if (a.size() != b.size()) return std::nullopt;
  double distance = 0;
  for (auto ia = a.begin(), ib = b.begin(); ia != a.end(); ++ia, ++ib) {
    if (ia->first != ib->first) return std::nullopt;
    const auto octaves = [](int64_t v) { return std::log2(static_cast<double>(std::max<int64_t>(1, v))); };
    distance += std::abs(octaves(ia->second) - octaves(ib->second));
  }
  return distance;
}

// Removes a half-written temp file and reports the failure against the cache file the user named.
[[noreturn]] void fail_temp_write(Fd& fd, const fs::path& temp, const fs::path& target, const char* what, int error) {
  fd.close();
  ::unlink(temp.c_str());
  throw std::runtime_error(
      fmt::format("cannot write tuning cache {}: {} {}: {}", target.string(), what, temp.string(), error_text(error)));
}

// Writes `text` to a new file beside `target` and fsyncs it; returns its path. The name is unique even among
// writers that do not hold the lock (O_EXCL, retried), and starts with a dot so listings of the cache directory
// stay quiet while it briefly exists.
fs::path write_temp_file(const fs::path& target, const std::string& text) {
  thread_local std::mt19937_64 random{std::random_device{}()};
  const fs::path directory = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  for (int attempt = 0;; ++attempt) {
    const fs::path temp =
        directory / fmt::format(".{}.{}.{:016x}.tmp", target.filename().string(), ::getpid(), random());
    Fd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666));
    if (!fd) {
      if (errno == EEXIST && attempt < 100) continue;
      throw std::runtime_error(fmt::format("cannot write tuning cache {}: cannot create {}: {}", target.string(),
                                           temp.string(), error_text(errno)));
    }
    for (size_t written = 0; written < text.size();) {
      const ssize_t n = ::write(fd.get(), text.data() + written, text.size() - written);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail_temp_write(fd, temp, target, "writing", errno);
      written += static_cast<size_t>(n);
    }
    // Without the fsync a crash after the rename could leave the new name pointing at an empty file.
    if (::fsync(fd.get()) != 0) fail_temp_write(fd, temp, target, "syncing", errno);
    if (const int error = fd.close(); error != 0) fail_temp_write(fd, temp, target, "closing", error);
    return temp;
  }
}

// Makes the rename itself durable. Best effort: some file systems refuse fsync on a directory, and the cache is
// only a cache.
void sync_directory(const fs::path& directory) {
  Fd fd(::open(directory.empty() ? "." : directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd) ::fsync(fd.get());
}

}  // namespace

int64_t bucket_dim(int64_t value) {
  if (value < 0) throw std::invalid_argument(fmt::format("bucket_dim: negative dimension {}", value));
  if (value <= kExactBucketLimit) return value;
  constexpr int64_t kLargestBucket = int64_t{1} << 62;
  if (value > kLargestBucket) {
    throw std::invalid_argument(fmt::format("bucket_dim: dimension {} has no power-of-two bucket in 64 bits", value));
  }
  return static_cast<int64_t>(std::bit_ceil(static_cast<uint64_t>(value)));
}

Shape bucket_shape(const Shape& shape) {
  Shape bucketed;
  for (const auto& [name, value] : shape) bucketed.emplace(name, bucket_dim(value));
  return bucketed;
}

std::string hash_text(const std::string& text) {
  uint64_t hash = 0xcbf29ce484222325ULL;  // FNV-1a 64-bit offset basis
  for (const unsigned char c : text) {
    hash ^= c;
    hash *= 0x100000001b3ULL;  // FNV 64-bit prime
  }
  return fmt::format("{:016x}", hash);
}

void warn_to_stderr(const std::string& message) { std::cerr << "warning: " << message << "\n"; }

TuneCache TuneCache::load(const fs::path& path, const std::string& version, const Warn& warn) {
  TuneCache cache;
  try {
    const std::optional<std::string> text = read_file(path);
    if (!text) return cache;
    cache.entries_ = parse_cache(*text, version);
  } catch (const BadCache& e) {
    if (warn) warn(fmt::format("ignoring tuning cache {}: {}", path.string(), e.what()));
  } catch (const std::exception& e) {
    // Not expected (the reader validates before converting), but a cache must never stop the program.
    if (warn) warn(fmt::format("ignoring tuning cache {}: {}", path.string(), e.what()));
  }
  return cache;
}

std::optional<Lookup> TuneCache::lookup(const TuneKey& key) const {
  for (const TuneEntry& entry : entries_) {
    if (entry.key == key) return Lookup{entry, Match::Exact};
  }
  // Sums of logarithms of different sizes can be equal in exact arithmetic yet differ in the last bit (6 is as
  // far from 4 as from 9); the tolerance keeps such ties going to the earlier entry, as documented.
  constexpr double kTieTolerance = 1e-9;
  const TuneEntry* best = nullptr;
  double best_distance = 0;
  for (const TuneEntry& entry : entries_) {
    if (entry.key.kernel != key.kernel || entry.key.problem != key.problem || entry.key.dtype != key.dtype ||
        entry.key.target != key.target) {
      continue;
    }
    const std::optional<double> distance = log_distance(entry.key.bucket, key.bucket);
    if (!distance) continue;
    if (best == nullptr || *distance < best_distance - kTieTolerance) {
      best = &entry;
      best_distance = *distance;
    }
  }
  if (best == nullptr) return std::nullopt;
  return Lookup{*best, Match::Nearest};
}

void TuneCache::put(const TuneEntry& entry) {
  // What the file cannot represent or load() would refuse must not get as far as the file.
  for (const auto& [name, value] : {std::pair<const char*, double>{"median_ms", entry.median_ms},
                                    {"default_ms", entry.default_ms},
                                    {"tuning_seconds", entry.tuning_seconds}}) {
    if (!std::isfinite(value)) throw std::invalid_argument(fmt::format("TuneCache::put: {} is {}", name, value));
  }
  for (const auto& [name, value] : entry.key.bucket) {
    if (value < 0) throw std::invalid_argument(fmt::format("TuneCache::put: bucket dimension {} is {}", name, value));
  }
  for (TuneEntry& existing : entries_) {
    if (existing.key == entry.key) {
      existing = entry;
      return;
    }
  }
  entries_.push_back(entry);
}

void TuneCache::store(const fs::path& path, const std::string& version, const TuneEntry& entry, const Warn& warn) {
  const fs::path directory = path.parent_path();
  if (!directory.empty()) {
    std::error_code error;
    fs::create_directories(directory, error);
    if (error) {
      throw std::runtime_error(fmt::format("cannot write tuning cache {}: cannot create directory {}: {}",
                                           path.string(), directory.string(), error.message()));
    }
  }
  const FileLock lock(fs::path(path.string() + ".lock"));
  TuneCache cache = load(path, version, warn);
  cache.put(entry);
  const fs::path temp = write_temp_file(path, cache.to_json(version));
  std::error_code error;
  fs::rename(temp, path, error);
  if (error) {
    ::unlink(temp.c_str());
    throw std::runtime_error(fmt::format("cannot write tuning cache {}: cannot rename {} over it: {}", path.string(),
                                         temp.string(), error.message()));
  }
  sync_directory(directory);
}

std::string TuneCache::to_json(const std::string& version) const {
  OrderedJson entries = OrderedJson::array();
  for (const TuneEntry& entry : entries_) {
    OrderedJson item = OrderedJson::object();
    item["kernel"] = entry.key.kernel;
    item["problem"] = entry.key.problem;
    item["bucket"] = OrderedJson::object();
    for (const auto& [name, value] : entry.key.bucket) item["bucket"][name] = value;
    item["dtype"] = entry.key.dtype;
    item["target"] = entry.key.target;
    item["schedule"] = OrderedJson::object();
    for (const auto& [name, value] : entry.schedule) item["schedule"][name] = value;
    item["description"] = entry.description;
    item["median_ms"] = entry.median_ms;
    item["default_ms"] = entry.default_ms;
    item["candidates"] = entry.candidates;
    item["tuning_seconds"] = entry.tuning_seconds;
    item["tuned_at"] = entry.tuned_at;
    entries.push_back(std::move(item));
  }
  OrderedJson document = OrderedJson::object();
  document["format"] = kFormat;
  document["version"] = version;
  document["entries"] = std::move(entries);
  // Invalid UTF-8 (a description pasted from somewhere odd) is replaced rather than thrown on: losing a character
  // of an informational field beats losing the tuning result.
  return document.dump(2, ' ', false, OrderedJson::error_handler_t::replace) + "\n";
}

fs::path default_cache_path() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0') {
    return fs::path(xdg) / "tessera" / "tune_cache.json";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return fs::path(home) / ".cache" / "tessera" / "tune_cache.json";
  }
  return fs::path(".tessera_tune_cache.json");
}

std::string utc_timestamp() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

}  // namespace tessera::tuner
