// NVRTC compilation, the PTX cache, and running ptxas.
#include "targets/cuda/nvrtc_compiler.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <nvrtc.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <system_error>
#include <thread>

extern char** environ;

namespace tessera::cuda {

namespace {

namespace fs = std::filesystem;

constexpr int kMinimumMajor = 8;

// The comment line that ends every cache file: which key the file was written for and a checksum of the PTX
// above it, so that a truncated, edited or misnamed file is recognised and recompiled. A PTX comment keeps the
// file valid PTX for anyone who wants to feed it to ptxas by hand.
constexpr std::string_view kCacheTrailer = "// tessera-ptx-cache v1 ";

std::string error_text(int error) { return std::generic_category().message(error); }

[[noreturn]] void unsupported(const std::string& text, const std::string& why) {
  throw UnsupportedArch(fmt::format("unsupported CUDA architecture '{}': {}", text, why));
}

// The architectures (major * 10 + minor) this NVRTC can compile for.
const std::vector<int>& nvrtc_supported_archs() {
  static const std::vector<int> archs = [] {
    int count = 0;
    std::vector<int> result;
    if (nvrtcGetNumSupportedArchs(&count) != NVRTC_SUCCESS || count <= 0) return result;
    result.resize(static_cast<size_t>(count));
    if (nvrtcGetSupportedArchs(result.data()) != NVRTC_SUCCESS) result.clear();
    return result;
  }();
  return archs;
}

void check_nvrtc(nvrtcResult result, const char* call) {
  if (result != NVRTC_SUCCESS)
    throw NvrtcError(fmt::format("NVRTC error in {}: {}", call, nvrtcGetErrorString(result)));
}

// An nvrtcProgram that is destroyed on every path out.
class Program {
 public:
  explicit Program(const NvrtcSource& source) {
    std::vector<const char*> header_texts, header_names;
    for (const auto& [name, text] : source.headers) {
      header_names.push_back(name.c_str());
      header_texts.push_back(text.c_str());
    }
    check_nvrtc(nvrtcCreateProgram(&program_, source.text.c_str(), source.name.c_str(),
                                   static_cast<int>(source.headers.size()), header_texts.data(), header_names.data()),
                "nvrtcCreateProgram");
  }
  ~Program() {
    if (program_ != nullptr) nvrtcDestroyProgram(&program_);
  }
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;

  nvrtcProgram get() const { return program_; }

  std::string log() const {
    size_t size = 0;
    check_nvrtc(nvrtcGetProgramLogSize(program_, &size), "nvrtcGetProgramLogSize");
    std::string text(size, '\0');
    check_nvrtc(nvrtcGetProgramLog(program_, text.data()), "nvrtcGetProgramLog");
    return trim_nul(std::move(text));
  }

  std::string ptx() const {
    size_t size = 0;
    check_nvrtc(nvrtcGetPTXSize(program_, &size), "nvrtcGetPTXSize");
    std::string text(size, '\0');
    check_nvrtc(nvrtcGetPTX(program_, text.data()), "nvrtcGetPTX");
    return trim_nul(std::move(text));
  }

 private:
  // NVRTC's sizes count the terminating NUL.
  static std::string trim_nul(std::string text) {
    while (!text.empty() && text.back() == '\0') text.pop_back();
    return text;
  }

  nvrtcProgram program_ = nullptr;
};

std::vector<std::string> compile_options(const NvrtcSource& source, const CudaArch& arch) {
  std::vector<std::string> options = {
      "-std=c++17",
      fmt::format("--gpu-architecture=compute_{}{}{}", arch.major, arch.minor, arch.accelerated ? "a" : ""),
      "-lineinfo",
  };
  options.insert(options.end(), source.options.begin(), source.options.end());
  return options;
}

NvrtcResult compile_uncached(const NvrtcSource& source, const CudaArch& arch) {
  Program program(source);
  const std::vector<std::string> options = compile_options(source, arch);
  std::vector<const char*> option_pointers;
  for (const auto& option : options) option_pointers.push_back(option.c_str());
  const nvrtcResult result =
      nvrtcCompileProgram(program.get(), static_cast<int>(option_pointers.size()), option_pointers.data());
  std::string log = program.log();
  if (result == NVRTC_ERROR_COMPILATION) {
    throw NvrtcError(fmt::format("NVRTC failed to compile {} for {}:\n{}", source.name, arch_name(arch),
                                 quote_error_lines(log, source)));
  }
  if (result != NVRTC_SUCCESS) {
    // An option NVRTC rejects lands here (NVRTC_ERROR_INVALID_OPTION), with the log saying which.
    throw NvrtcError(fmt::format("NVRTC failed to compile {} for {}: {}{}{}", source.name, arch_name(arch),
                                 nvrtcGetErrorString(result), log.empty() ? "" : "\n", log));
  }
  return NvrtcResult{program.ptx(), std::move(log), false};
}

// --- the cache -------------------------------------------------------------------------------------------------

std::string cache_trailer(const std::string& key, const std::string& ptx) {
  return fmt::format("{}key={} sha256={}\n", kCacheTrailer, key, sha256_hex(ptx));
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

// The content of the regular file `path`, or nullopt if it cannot be read whole (missing, a directory,
// permissions, an I/O error). Plain POSIX reads: libstdc++ streams throw on some of these.
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

// The PTX in `path` if it is a complete entry for `key`; nullopt for a missing, unreadable or damaged file.
std::optional<std::string> read_cache_entry(const fs::path& path, const std::string& key) {
  const std::optional<std::string> content = read_regular_file(path);
  if (!content) return std::nullopt;
  const size_t trailer = content->rfind(kCacheTrailer);
  if (trailer == std::string::npos || (trailer != 0 && (*content)[trailer - 1] != '\n')) return std::nullopt;
  std::string ptx = content->substr(0, trailer);
  // The trailer must be the whole rest of the file, byte for byte, so appended garbage is caught too.
  if (content->compare(trailer, std::string::npos, cache_trailer(key, ptx)) != 0) return std::nullopt;
  return ptx;
}

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

// Stores an entry; returns "" or why it could not.
std::string write_cache_entry(const fs::path& directory, const std::string& key, const std::string& ptx) {
  try {
    fs::create_directories(directory);
    const fs::path temp = write_temp_file(directory, key, ptx + cache_trailer(key, ptx));
    std::error_code error;
    fs::rename(temp, directory / key, error);
    if (error) {
      ::unlink(temp.c_str());
      return fmt::format("cannot rename {} to {}: {}", temp.string(), (directory / key).string(), error.message());
    }
    return "";
  } catch (const std::system_error& e) {
    return e.what();
  }
}

// --- SHA-256 (FIPS 180-4) ---------------------------------------------------------------------------------------

class Sha256 {
 public:
  void update(std::string_view data) {
    for (const char c : data) {
      block_[block_size_++] = static_cast<uint8_t>(c);
      if (block_size_ == 64) {
        compress();
        block_size_ = 0;
      }
    }
    length_ += data.size();
  }

  std::string hex() {
    const uint64_t bits = length_ * 8;
    const uint8_t one = 0x80;
    update(std::string_view(reinterpret_cast<const char*>(&one), 1));
    while (block_size_ != 56) update(std::string_view("\0", 1));
    for (int i = 7; i >= 0; --i) {
      const auto byte = static_cast<char>((bits >> (8 * i)) & 0xff);
      update(std::string_view(&byte, 1));
    }
    std::string result;
    for (const uint32_t word : state_) result += fmt::format("{:08x}", word);
    return result;
  }

 private:
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

  void compress() {
    static constexpr std::array<uint32_t, 64> k = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    std::array<uint32_t, 64> w{};
    for (int i = 0; i < 16; ++i) {
      w[i] = uint32_t{block_[4 * i]} << 24 | uint32_t{block_[4 * i + 1]} << 16 | uint32_t{block_[4 * i + 2]} << 8 |
             uint32_t{block_[4 * i + 3]};
    }
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    auto [a, b, c, d, e, f, g, h] = state_;
    for (int i = 0; i < 64; ++i) {
      const uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    const std::array<uint32_t, 8> add = {a, b, c, d, e, f, g, h};
    for (int i = 0; i < 8; ++i) state_[i] += add[i];
  }

  std::array<uint32_t, 8> state_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<uint8_t, 64> block_{};
  size_t block_size_ = 0;
  uint64_t length_ = 0;
};

// --- running a program ------------------------------------------------------------------------------------------

// A temporary directory removed with everything in it.
class TempDirectory {
 public:
  TempDirectory() {
    std::string pattern = (fs::temp_directory_path() / "tessera-ptxas-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      throw std::runtime_error(fmt::format("cannot create a temporary directory {}: {}", pattern, error_text(errno)));
    }
    path_ = pattern;
  }
  ~TempDirectory() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDirectory(const TempDirectory&) = delete;
  TempDirectory& operator=(const TempDirectory&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_file(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
  if (!out.flush()) throw std::runtime_error(fmt::format("cannot write {}", path.string()));
}

// Runs `argv` with stdout and stderr both going to `output`; returns the wait status. No shell, so paths need
// no quoting.
int run_program(const std::vector<std::string>& argv, const fs::path& output) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int error = posix_spawn(&pid, argv[0].c_str(), &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) throw std::runtime_error(fmt::format("cannot run {}: {}", argv[0], error_text(error)));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw std::runtime_error(fmt::format("waiting for {}: {}", argv[0], error_text(errno)));
  }
  return status;
}

bool is_executable_file(const fs::path& path) {
  std::error_code error;
  return fs::is_regular_file(path, error) && ::access(path.c_str(), X_OK) == 0;
}

std::string_view trim(std::string_view text) {
  const size_t begin = text.find_first_not_of(" \t\r");
  if (begin == std::string_view::npos) return {};
  return text.substr(begin, text.find_last_not_of(" \t\r") - begin + 1);
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    if (end == std::string_view::npos) {
      lines.push_back(text.substr(start));
      break;
    }
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

// "<file>(<line>): error..." or "...: catastrophic error..." -> (file, line); otherwise line 0.
std::pair<std::string_view, size_t> error_location(std::string_view log_line) {
  const size_t close = log_line.find("): ");
  if (close == std::string_view::npos) return {{}, 0};
  const std::string_view kind = log_line.substr(close + 3);
  if (!kind.starts_with("error") && !kind.starts_with("catastrophic error")) return {{}, 0};
  const size_t open = log_line.rfind('(', close);
  if (open == std::string_view::npos || open == 0 || open + 1 == close) return {{}, 0};
  size_t line = 0;
  for (const char c : log_line.substr(open + 1, close - open - 1)) {
    if (c < '0' || c > '9' || line > 100'000'000) return {{}, 0};
    line = line * 10 + static_cast<size_t>(c - '0');
  }
  return {log_line.substr(0, open), line};
}

}  // namespace

// --- public -----------------------------------------------------------------------------------------------------

CudaArch parse_cuda_arch(const std::string& text) {
  constexpr std::string_view kPrefix = "sm_";
  std::string_view digits(text);
  if (!digits.starts_with(kPrefix)) unsupported(text, "expected sm_<version>, e.g. sm_80, sm_86 or sm_90a");
  digits.remove_prefix(kPrefix.size());
  const bool accelerated = digits.ends_with('a');
  if (accelerated) digits.remove_suffix(1);
  const bool numeric = digits.size() >= 2 && digits.size() <= 3 && digits.front() != '0' &&
                       std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!numeric) unsupported(text, "expected sm_<version>, e.g. sm_80, sm_86 or sm_90a");
  const int number = std::stoi(std::string(digits));
  const CudaArch arch{number / 10, number % 10, accelerated};
  if (arch.major < kMinimumMajor) unsupported(text, "Tessera needs sm_80 or newer");
  if (accelerated && arch.major < 9) unsupported(text, "only sm_90 and newer have an 'a' variant");
  const std::vector<int>& supported = nvrtc_supported_archs();
  if (!supported.empty() && std::find(supported.begin(), supported.end(), number) == supported.end()) {
    std::string known;
    for (const int s : supported) {
      if (s / 10 >= kMinimumMajor) known += fmt::format("{}sm_{}", known.empty() ? "" : ", ", s);
    }
    unsupported(text, fmt::format("NVRTC {} supports {}", nvrtc_version(), known));
  }
  return arch;
}

std::string arch_name(const CudaArch& arch) {
  return fmt::format("sm_{}{}{}", arch.major, arch.minor, arch.accelerated ? "a" : "");
}

std::string nvrtc_version() {
  int major = 0, minor = 0;
  check_nvrtc(nvrtcVersion(&major, &minor), "nvrtcVersion");
  return fmt::format("{}.{}", major, minor);
}

std::string sha256_hex(std::string_view data) {
  Sha256 sha;
  sha.update(data);
  return sha.hex();
}

std::string kernel_cache_key(const NvrtcSource& source, const CudaArch& arch) {
  // Every field is length-prefixed, so no two different inputs serialise alike (moving text between the
  // source and a header, or between two options, changes the key).
  Sha256 sha;
  auto field = [&](std::string_view text) {
    sha.update(fmt::format("{}:", text.size()));
    sha.update(text);
  };
  field("tessera-nvrtc-cache-v1");
  field(nvrtc_version());
  field(arch_name(arch));
  field(source.name);
  field(source.text);
  field(std::to_string(source.headers.size()));
  for (const auto& [name, text] : source.headers) {
    field(name);
    field(text);
  }
  const std::vector<std::string> options = compile_options(source, arch);
  field(std::to_string(options.size()));
  for (const auto& option : options) field(option);
  return sha.hex() + ".ptx";
}

NvrtcResult compile_to_ptx(const NvrtcSource& source, const CudaArch& arch, const std::string& cache_dir) {
  if (cache_dir.empty()) return compile_uncached(source, arch);
  const fs::path directory(cache_dir);
  const std::string key = kernel_cache_key(source, arch);
  if (std::optional<std::string> ptx = read_cache_entry(directory / key, key)) {
    return NvrtcResult{std::move(*ptx), "", true};
  }
  NvrtcResult result = compile_uncached(source, arch);
  if (const std::string failure = write_cache_entry(directory, key, result.ptx); !failure.empty()) {
    result.log += fmt::format("{}note: the PTX was not cached: {}\n",
                              result.log.empty() || result.log.ends_with('\n') ? "" : "\n", failure);
  }
  return result;
}

std::string default_kernel_cache_dir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0') {
    return (fs::path(xdg) / "tessera" / "cuda").string();
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return (fs::path(home) / ".cache" / "tessera" / "cuda").string();
  }
  return "";
}

std::string quote_error_lines(const std::string& log, const NvrtcSource& source) {
  std::map<std::string_view, std::vector<std::string_view>> files;
  files.emplace(source.name, split_lines(source.text));
  for (const auto& [name, text] : source.headers) files.emplace(name, split_lines(text));

  const std::vector<std::string_view> lines = split_lines(log);
  std::string result;
  for (size_t i = 0; i < lines.size(); ++i) {
    result.append(lines[i]).push_back('\n');
    const auto [file, line] = error_location(lines[i]);
    const auto found = files.find(file);
    if (line == 0 || found == files.end() || line > found->second.size()) continue;
    const std::string_view quoted = found->second[line - 1];
    const bool already_quoted = i + 1 < lines.size() && trim(lines[i + 1]) == trim(quoted);
    if (!already_quoted) result.append("  ").append(quoted).push_back('\n');
  }
  if (!log.empty() && !log.ends_with('\n')) result.pop_back();
  return result;
}

PtxasReport assemble_ptx(const std::string& ptx, const CudaArch& arch, const std::string& ptxas_path) {
  if (ptxas_path.empty()) throw std::runtime_error("cannot assemble PTX: no ptxas was given");
  const TempDirectory temp;
  const fs::path input = temp.path() / "kernel.ptx";
  const fs::path output = temp.path() / "ptxas.log";
  write_file(input, ptx);
  const int status = run_program({ptxas_path, fmt::format("-arch={}", arch_name(arch)), "-v", input.string(), "-o",
                                  (temp.path() / "kernel.cubin").string()},
                                 output);
  PtxasReport report;
  report.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  report.log = read_regular_file(output).value_or("");
  if (WIFSIGNALED(status)) report.log += fmt::format("{} was killed by signal {}\n", ptxas_path, WTERMSIG(status));
  return report;
}

std::string find_cuda_tool(const std::string& name) {
  std::vector<fs::path> directories;
  for (const char* variable : {"CUDA_HOME", "CUDA_PATH"}) {
    if (const char* root = std::getenv(variable); root != nullptr && *root != '\0') {
      directories.push_back(fs::path(root) / "bin");
    }
  }
  directories.emplace_back("/usr/local/cuda/bin");
  if (const char* path = std::getenv("PATH"); path != nullptr) {
    std::string_view rest(path);
    while (!rest.empty()) {
      const size_t colon = rest.find(':');
      // An empty entry means the current directory to a shell; a tool found there by accident is not wanted.
      if (const std::string_view entry = rest.substr(0, colon); !entry.empty()) directories.emplace_back(entry);
      rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
    }
  }
  for (const fs::path& directory : directories) {
    const fs::path candidate = directory / name;
    if (is_executable_file(candidate)) return candidate.string();
  }
  return "";
}

}  // namespace tessera::cuda
