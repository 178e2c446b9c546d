#!/usr/bin/env bash
# The cost of each attention variant of issue 8 relative to plain `causal` (B=1, H=8, N=4096, D=64, f32, the CPU
# target, default schedules), one `tessera bench` each; prints a markdown table for bench/RESULTS.md.
# Usage: bench/variants.sh [BUILD_DIR] [SEQ]
set -euo pipefail
build=${1:-build}
seq=${2:-4096}
patterns=(
  "causal"
  "causal & dot"
  "causal & bilinear"
  "causal & additive"
  "causal & relative"
  "causal & relative_bidir(max_distance=16)"
  "causal & relative2d(width=64, max_rows=8, max_cols=8)"
  "causal & t5_bias(buckets=32, max_distance=128, bidirectional=false)"
  "local1d(query_block=128, memory=128)"
  "causal & hardmax"
  "causal & luong_local_p(half_width=64)"
)
echo "| pattern | pairs per head | median ms | GFLOP/s (allowed pairs) | time / causal's |"
echo "|---|---|---|---|---|"
causal_ms=""
for p in "${patterns[@]}"; do
  json=$("$build/tessera" bench --pattern "$p" --batch 1 --heads 8 --seq "$seq" --head-dim 64 --dtype f32 \
    --target cpu --runs 10 --warmup 2 | tail -1)
  read -r ms pairs gflops < <(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["median_ms"], j["pairs"], j["gflops"])' "$json")
  [[ -z "$causal_ms" ]] && causal_ms=$ms
  python3 -c 'import sys; p,pairs,ms,g,c=sys.argv[1:]; print(f"| `{p}` | {float(pairs):.0f} | {float(ms):.1f} | {float(g):.1f} | {float(ms)/float(c):.2f}x |")' \
    "$p" "$pairs" "$ms" "$gflops" "$causal_ms"
done
