#include "compiler/cli/mask_png.h"

#include <fmt/format.h>
#include <png.h>

#include <cstdio>
#include <memory>
#include <stdexcept>

namespace tessera::cli {

namespace {

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};

// libpng reports errors by longjmp by default; throwing from its error callback is what C++ users do instead.
[[noreturn]] void png_error_callback(png_structp, png_const_charp message) {
  throw std::runtime_error(fmt::format("libpng: {}", message));
}

void png_warning_callback(png_structp, png_const_charp) {}

}  // namespace

void write_mask_png(const std::string& path, int64_t rows, int64_t cols, const std::vector<uint8_t>& cells) {
  if (rows <= 0 || cols <= 0 || static_cast<int64_t>(cells.size()) != rows * cols) {
    throw std::logic_error("tessera internal error: write_mask_png given inconsistent sizes");
  }
  std::unique_ptr<FILE, FileCloser> file(std::fopen(path.c_str(), "wb"));
  if (!file) throw std::runtime_error(fmt::format("cannot write PNG '{}'", path));

  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, png_error_callback, png_warning_callback);
  if (!png) throw std::runtime_error("libpng: out of memory");
  png_infop info = png_create_info_struct(png);
  struct Cleanup {
    png_structp* png;
    png_infop* info;
    ~Cleanup() { png_destroy_write_struct(png, info); }
  } cleanup{&png, &info};
  if (!info) throw std::runtime_error("libpng: out of memory");

  png_init_io(png, file.get());
  png_set_IHDR(png, info, static_cast<png_uint_32>(cols), static_cast<png_uint_32>(rows), 8, PNG_COLOR_TYPE_GRAY,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  std::vector<png_byte> row(static_cast<size_t>(cols));
  constexpr png_byte kShade[3] = {255, 160, 0};
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) row[c] = kShade[std::min<uint8_t>(cells[r * cols + c], 2)];
    png_write_row(png, row.data());
  }
  png_write_end(png, nullptr);
  if (std::fflush(file.get()) != 0) throw std::runtime_error(fmt::format("cannot write PNG '{}'", path));
}

}  // namespace tessera::cli
