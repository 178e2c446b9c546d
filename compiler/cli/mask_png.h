// Writes a picture of an attention mask as a PNG, for sequences too long for the terminal.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tessera::cli {

// `cells` is rows x cols, row-major: 0 = no pair allowed (white), 1 = some allowed (grey), 2 = all (black).
// Throws std::runtime_error naming the file if it cannot be written.
void write_mask_png(const std::string& path, int64_t rows, int64_t cols, const std::vector<uint8_t>& cells);

}  // namespace tessera::cli
