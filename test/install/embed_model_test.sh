#!/usr/bin/env bash
# Installs Tessera into a temporary prefix, builds examples/embed_model against it with find_package(Tessera),
# and runs it on random weights: the package config, the exported link dependencies and the public header work
# for an application outside this tree.
#   embed_model_test.sh CMAKE BUILD_DIR SOURCE_DIR
set -euo pipefail
cmake_bin=$1 build=$2 source=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Runs a step quietly; on failure shows its output, which would otherwise vanish with $work.
step() {
  local log=$1
  shift
  if ! "$@" > "$work/$log" 2>&1; then
    echo "failed: $*" >&2
    cat "$work/$log" >&2
    exit 1
  fi
}

step install.log "$cmake_bin" --install "$build" --prefix "$work/prefix"
launcher=()
if command -v ccache > /dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
# The application's own strict warnings: the public header must compile cleanly under them.
step configure.log "$cmake_bin" -S "$source/examples/embed_model" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS="-Wall -Wextra -Wpedantic -Werror" "${launcher[@]}"
step build.log "$cmake_bin" --build "$work/build"

params=(layers=2 width=32 heads=4 ffn=64 vocab=50 context=64)
sets=()
for p in "${params[@]}"; do sets+=(--set "$p"); done
"$work/prefix/bin/tessera" init-weights --model "$source/examples/models/gpt.attn" "${sets[@]}" -o "$work/w.safetensors"
out=$("$work/build/embed_model" "$source/examples/models/gpt.attn" "$work/w.safetensors" "${params[@]}")
echo "$out"
grep -q "loaded model 'gpt' with inputs: tokens" <<< "$out"
grep -q "output shape \[1, 16, 50\]" <<< "$out"
grep -Eq "^generated:( [0-9]+){8}$" <<< "$out"

# A bad spec argument comes back as tessera::Error with the file named, and a non-zero exit.
if "$work/build/embed_model" "$work/missing.attn" "$work/w.safetensors" 2> "$work/err.txt"; then
  echo "embed_model accepted a missing spec" >&2
  exit 1
fi
grep -q "missing.attn" "$work/err.txt"
echo "ok: installed package builds and runs an application"
