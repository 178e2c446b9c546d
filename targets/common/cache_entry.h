// Entries of the on-disk kernel caches (NVRTC's PTX, the CPU kernels' shared objects): each file is its content
// followed by one trailer line naming the key it was written for and the SHA-256 of the content, so that a
// truncated, edited or misnamed file is recognised and rebuilt rather than used. Writes are atomic (a temporary
// file renamed into place): concurrent writers never expose a torn entry.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace tessera::targets {

// The content of the regular file `path`, or nullopt if it cannot be read whole (missing, a directory,
// permissions, an I/O error). Plain POSIX reads: libstdc++ streams throw on some of these.
std::optional<std::string> read_regular_file(const std::filesystem::path& path);

// The content of `path` if it is a complete entry for `key` whose trailer starts with `tag`; nullopt for a
// missing, unreadable or damaged file. The content of an entry ends with '\n' (the trailer is a line of its own).
std::optional<std::string> read_cache_entry(const std::filesystem::path& path, const std::string& key,
                                            std::string_view tag);

// Stores `content` (which must end with '\n') as `directory/name`, creating the directory; returns "" or why
// it could not. Never throws for I/O: a cache that cannot be written only costs a rebuild next time.
std::string write_cache_entry(const std::filesystem::path& directory, const std::string& name, const std::string& key,
                              const std::string& content, std::string_view tag);

// `subdirectory` of $XDG_CACHE_HOME/tessera, else of $HOME/.cache/tessera, else "" (no cache).
std::string default_cache_dir(const std::string& subdirectory);

}  // namespace tessera::targets
