#!/usr/bin/env bash
# Tunes every standard-library pattern of the CPU backend's bench table (B=1, H=8, D=64, f32) at N=4096 and
# N=16384 into a fresh cache, and prints one JSON line per problem (default and tuned medians, the speedup, the
# tuning time), for bench/RESULTS.md. Run it on an otherwise idle machine: the tuner times candidates with every
# core. Usage: bench/tune_patterns.sh [TESSERA] [OUT_DIR] [SEQ_LENGTHS, default "4096 16384"]
set -euo pipefail
tessera=${1:-build/tessera}
out=${2:-$(mktemp -d)}
read -r -a seqs <<< "${3:-4096 16384}"
mkdir -p "$out"
patterns=(
  'causal' 'full' 'sliding_window(window=256)' 'local(window=128)' 'strided(stride=128)'
  'fixed(block=128, summary=8)' 'dilated(window=32, dilation=4)' 'prefix_lm(prefix=512)' 'alibi'
  'causal & softcap(cap=30)' 'causal & document' 'local2d(width=64, block_h=8, block_w=8, halo_h=8, halo_w=8)'
)
for n in "${seqs[@]}"; do
  if [[ $n == 4096 ]]; then budget=90 candidates=12; else budget=150 candidates=8; fi
  for p in "${patterns[@]}"; do
    "$tessera" tune --pattern "$p" --seq "$n" --batch 1 --heads 8 --head-dim 64 --dtype f32 --runs 3 \
      --budget "$budget" --max-candidates "$candidates" --cache "$out/tune_cache.json" > "$out/tune.log.tmp" 2>&1 || {
      echo "tune failed for '$p' at N=$n:" >&2
      cat "$out/tune.log.tmp" >&2
      continue
    }
    cat "$out/tune.log.tmp" >> "$out/tune.log"
    tail -n 1 "$out/tune.log.tmp"
  done
done
rm -f "$out/tune.log.tmp"
echo "log: $out/tune.log, cache: $out/tune_cache.json" >&2
