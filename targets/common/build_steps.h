// What writing a library ahead of time needs from the host, for every target: files written and read whole, shell
// commands (the compiler, ar) run with their paths quoted, and a failure that says which step and command failed.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace tessera::targets {

// `s` as one POSIX shell word (single quotes, embedded ones escaped).
std::string shell_quote(const std::string& s);

// Throws std::runtime_error naming the path when the file cannot be written.
void write_text_file(const std::filesystem::path& path, const std::string& text);
// The whole file; empty if it cannot be read.
std::string read_text_file(const std::filesystem::path& path);

// Runs `command` through the shell; on failure throws std::runtime_error "<what> failed; the command was: …",
// followed by the contents of `log` when one is given (where the command's output went).
void run_build_step(const std::string& command, const std::string& what, const std::filesystem::path& log = {});

// The directories of $PATH in order, empty entries (the current directory to a shell) left out: a tool found
// there by accident is not wanted.
std::vector<std::filesystem::path> path_directories();

// Whether `path` is a regular file this process may execute.
bool is_executable_file(const std::filesystem::path& path);

// A fresh directory (mkdtemp of `prefix` + "XXXXXX") removed with everything in it; throws std::runtime_error
// when it cannot be created.
class ScratchDirectory {
 public:
  explicit ScratchDirectory(const std::filesystem::path& prefix);
  ~ScratchDirectory();
  ScratchDirectory(const ScratchDirectory&) = delete;
  ScratchDirectory& operator=(const ScratchDirectory&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// An identifier in upper case (header guards, macro prefixes).
std::string upper_case(std::string s);

}  // namespace tessera::targets
