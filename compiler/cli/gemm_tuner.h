// `tessera tune --model`'s second half: the model's GEMMs (runtime::linear), one distinct shape at a time. The
// space is cpu::gemm_schedule_space (how a product is cut into OpenBLAS calls); every candidate is checked against
// a float64 product on a few rows, timed on the model's shape, confirmed against the default in alternating runs,
// and the winner stored in the tuning cache the model runtime reads.
#pragma once

#include <filesystem>
#include <optional>

#include "compiler/tuner/search.h"
#include "targets/cpu/gemm_tuning.h"

namespace tessera::cli {

struct GemmTuneSettings {
  tuner::SearchOptions search;                    // as the attention problems are searched
  std::optional<std::filesystem::path> store_in;  // the cache file; nullopt: report only (--no-store)
};

void tune_gemm(const cpu::GemmShape& shape, const GemmTuneSettings& settings);

}  // namespace tessera::cli
