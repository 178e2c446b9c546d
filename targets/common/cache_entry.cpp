#include "targets/common/cache_entry.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <functional>
#include <system_error>
#include <thread>

#include "targets/common/sha256.h"

namespace tessera::targets {

namespace fs = std::filesystem;

namespace {

std::string trailer(std::string_view tag, const std::string& key, const std::string& content) {
  return fmt::format("{}key={} sha256={}\n", tag, key, sha256_hex(content));
}

// An owned file descriptor.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int close() {
    const int result = ::close(fd_) == 0 ? 0 : errno;
    fd_ = -1;
    return result;
  }

 private:
  int fd_;
};

}  // namespace

std::optional<std::string> read_regular_file(const fs::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat info {};
  if (fd.get() < 0 || ::fstat(fd.get(), &info) != 0 || !S_ISREG(info.st_mode)) return std::nullopt;
  std::string content;
  std::array<char, 65536> buffer{};
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) return content;
    content.append(buffer.data(), static_cast<size_t>(n));
  }
}

std::optional<std::string> read_cache_entry(const fs::path& path, const std::string& key, std::string_view tag) {
  const std::optional<std::string> content = read_regular_file(path);
  if (!content) return std::nullopt;
  const size_t at = content->rfind(tag);
  if (at == std::string::npos || (at != 0 && (*content)[at - 1] != '\n')) return std::nullopt;
  std::string entry = content->substr(0, at);
  // The trailer must be the whole rest of the file, byte for byte, so appended garbage is caught too.
  if (content->compare(at, std::string::npos, trailer(tag, key, entry)) != 0) return std::nullopt;
  return entry;
}

namespace {

// Writes `content` to a fresh temporary file in `directory` and returns its path; throws std::system_error.
// The name is unique per process, thread and call (O_EXCL besides), and starts with a dot to keep listings quiet.
fs::path write_temp_file(const fs::path& directory, const std::string& name, const std::string& content) {
  static std::atomic<uint64_t> counter{0};
  const fs::path temp =
      directory / fmt::format(".{}.{}.{:x}.{}.tmp", name, ::getpid(),
                              std::hash<std::thread::id>{}(std::this_thread::get_id()), counter.fetch_add(1));
  Fd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (fd.get() < 0) throw std::system_error(errno, std::generic_category(), "cannot create " + temp.string());
  auto fail = [&](int error, const char* what) {
    fd.close();
    ::unlink(temp.c_str());
    throw std::system_error(error, std::generic_category(), fmt::format("cannot {} {}", what, temp.string()));
  };
  for (size_t written = 0; written < content.size();) {
    const ssize_t n = ::write(fd.get(), content.data() + written, content.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(errno, "write");
    written += static_cast<size_t>(n);
  }
  // No fsync: after a crash the entry may be empty or short, which read_cache_entry() rejects and the next
  // compile repairs. A cache is not worth a disk flush per kernel.
  if (const int error = fd.close(); error != 0) fail(error, "close");
  return temp;
}

}  // namespace

std::string write_cache_entry(const fs::path& directory, const std::string& name, const std::string& key,
                              const std::string& content, std::string_view tag) {
  try {
    fs::create_directories(directory);
    const fs::path temp = write_temp_file(directory, name, content + trailer(tag, key, content));
    std::error_code error;
    fs::rename(temp, directory / name, error);
    if (error) {
      ::unlink(temp.c_str());
      return fmt::format("cannot rename {} to {}: {}", temp.string(), (directory / name).string(), error.message());
    }
    return "";
  } catch (const std::system_error& e) {  // filesystem_error too
    return e.what();
  }
}

std::string default_cache_dir(const std::string& subdirectory) {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0') {
    return (fs::path(xdg) / "tessera" / subdirectory).string();
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return (fs::path(home) / ".cache" / "tessera" / subdirectory).string();
  }
  return "";
}

}  // namespace tessera::targets
