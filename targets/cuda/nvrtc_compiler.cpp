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

#include "targets/common/build_steps.h"
#include "targets/common/cache_entry.h"
#include "targets/common/sha256.h"

extern char** environ;

namespace tessera::cuda {

namespace {

namespace fs = std::filesystem;

constexpr int kMinimumMajor = 8;

// The start of the comment line that ends every cache file (see targets/common/cache_entry.h). A PTX comment
// keeps the file valid PTX for anyone who wants to feed it to ptxas by hand.
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

// --- running a program ------------------------------------------------------------------------------------------

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

std::string kernel_cache_key(const NvrtcSource& source, const CudaArch& arch) {
  // Every field is length-prefixed, so no two different inputs serialise alike (moving text between the
  // source and a header, or between two options, changes the key).
  targets::Sha256 sha;
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
  if (std::optional<std::string> ptx = targets::read_cache_entry(directory / key, key, kCacheTrailer)) {
    return NvrtcResult{std::move(*ptx), "", true};
  }
  NvrtcResult result = compile_uncached(source, arch);
  if (const std::string failure = targets::write_cache_entry(directory, key, key, result.ptx, kCacheTrailer);
      !failure.empty()) {
    result.log += fmt::format("{}note: the PTX was not cached: {}\n",
                              result.log.empty() || result.log.ends_with('\n') ? "" : "\n", failure);
  }
  return result;
}

std::string default_kernel_cache_dir() { return targets::default_cache_dir("cuda"); }

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
  const targets::ScratchDirectory temp(fs::temp_directory_path() / "tessera-ptxas-");
  const fs::path input = temp.path() / "kernel.ptx";
  const fs::path output = temp.path() / "ptxas.log";
  write_file(input, ptx);
  const int status = run_program({ptxas_path, fmt::format("-arch={}", arch_name(arch)), "-v", input.string(), "-o",
                                  (temp.path() / "kernel.cubin").string()},
                                 output);
  PtxasReport report;
  report.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  report.log = targets::read_regular_file(output).value_or("");
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
  for (fs::path& directory : targets::path_directories()) directories.push_back(std::move(directory));
  for (const fs::path& directory : directories) {
    const fs::path candidate = directory / name;
    if (targets::is_executable_file(candidate)) return candidate.string();
  }
  return "";
}

}  // namespace tessera::cuda
