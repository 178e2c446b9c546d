"""Checks the output of `tessera bench`: the last line is one JSON object with exactly the documented fields,
the given values, one human line per timed run, and gflops consistent with pairs and the median time.

usage: check_bench_json.py OUTPUT --runs R [--field NAME=VALUE ...] [--value-dim Dv]
                           [--segments SEGMENTS.npy]   (expected pairs of `document`, from the tensor itself)
                           [--causal]                  (of `causal & document`)
                           [--tile T]                  (expected pairs_computed: T x T tiles that can hold a pair)
"""
import argparse
import ast
import json
import math
import re
import struct
import sys

FIELDS = {"pattern", "target", "dtype", "B", "H", "N", "M", "D", "median_ms", "min_ms", "pairs", "gflops"}
CPU_FIELDS = FIELDS | {"schedule", "pairs_computed", "gflops_computed"}  # which schedule ran; what its tiles compute


def fail(message):
    print(f"check_bench_json: {message}", file=sys.stderr)
    sys.exit(1)


def read_int32_npy(path):
    """A C-ordered little-endian int32 .npy file, without numpy: (shape, flat values)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:6] != b"\x93NUMPY":
        fail(f"{path} is not an .npy file")
    major = data[6]
    header_len = struct.unpack("<H" if major == 1 else "<I", data[8:10] if major == 1 else data[8:12])[0]
    start = 10 if major == 1 else 12
    header = ast.literal_eval(data[start : start + header_len].decode("latin1"))
    if header["descr"] != "<i4" or header["fortran_order"]:
        fail(f"{path}: expected C-ordered <i4, got {header}")
    shape = header["shape"]
    count = math.prod(shape)
    values = struct.unpack(f"<{count}i", data[start + header_len : start + header_len + 4 * count])
    return shape, values


def read_segments(path, M):
    (B, keys), seg = read_int32_npy(path)
    if keys != M:
        fail(f"segments has {keys} keys, expected {M}")
    return B, seg


def document_pairs(path, N, M, causal):
    """Allowed pairs of `document` (q >= 0 and segments[b, q] == segments[b, k]; with `causal`, k <= q too) summed
    over batches."""
    B, seg = read_segments(path, M)
    total = 0
    for b in range(B):
        row = seg[b * M : (b + 1) * M]
        for i in range(N):
            q = i + M - N
            if q >= 0:
                total += sum(1 for k in range((q + 1) if causal else M) if row[k] == row[q])
    return total


def document_tile_pairs(path, N, M, causal, tile):
    """Pairs the CPU kernels compute for `document` in T x T tiles classified from the segments' values: every tile
    but those where the ids of its queries and of its keys (over every batch) cannot meet, or no key is at or
    before a query (`causal`), each a whole T x T."""
    B, seg = read_segments(path, M)
    computed = 0
    for r in range((N + tile - 1) // tile):
        queries = [i + M - N for i in range(r * tile, min(N, (r + 1) * tile)) if i + M - N >= 0]
        for c in range((M + tile - 1) // tile):
            keys = range(c * tile, min(M, (c + 1) * tile))
            if not queries or (causal and keys[0] > queries[-1]):
                continue
            q_ids = [seg[b * M + q] for b in range(B) for q in queries]
            k_ids = [seg[b * M + k] for b in range(B) for k in keys]
            if max(q_ids) < min(k_ids) or max(k_ids) < min(q_ids):
                continue
            computed += tile * tile
    return computed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("output")
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--field", action="append", default=[])
    parser.add_argument("--value-dim", type=int)
    parser.add_argument("--segments")
    parser.add_argument("--causal", action="store_true")
    parser.add_argument("--tile", type=int)
    args = parser.parse_args()

    lines = [line for line in open(args.output).read().splitlines() if line.strip()]
    if not lines:
        fail("no output")
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError as e:
        fail(f"the last line is not JSON ({e}): {lines[-1]!r}")
    expected_fields = CPU_FIELDS if isinstance(result, dict) and result.get("target") == "cpu" else FIELDS
    if not isinstance(result, dict) or set(result) != expected_fields:
        fail(f"fields {sorted(result)} != {sorted(expected_fields)}")
    if sum(1 for line in lines if line.startswith("{")) != 1:
        fail("more than one JSON line")

    run_lines = [line for line in lines if re.match(r"run \d+/\d+: [0-9.]+ ms$", line)]
    if len(run_lines) != args.runs:
        fail(f"{len(run_lines)} timed runs printed, expected {args.runs}")
    times = sorted(float(line.split(": ")[1].split()[0]) for line in run_lines)

    for binding in args.field:
        name, value = binding.split("=", 1)
        expected = json.loads(value) if name not in ("pattern", "target", "dtype") else value
        if result[name] != expected:
            fail(f"{name} = {result[name]!r}, expected {expected!r}")

    B, H, N, M, D = (result[k] for k in ("B", "H", "N", "M", "D"))
    if args.segments:
        # Every head of a batch sees the same segments: the mean per (batch, head) is the mean per batch.
        expected = document_pairs(args.segments, N, M, args.causal) * H / (B * H)
        if result["pairs"] != expected:
            fail(f"pairs = {result['pairs']}, expected {expected} from {args.segments}")
        if args.tile:
            expected = document_tile_pairs(args.segments, N, M, args.causal, args.tile)
            if result["pairs_computed"] != expected:
                fail(f"pairs_computed = {result['pairs_computed']}, expected {expected} from {args.segments}")

    median, minimum = result["median_ms"], result["min_ms"]
    if not (0 < minimum <= median):
        fail(f"min_ms {minimum} and median_ms {median} must satisfy 0 < min <= median")
    # The printed per-run times are rounded to microseconds.
    n = len(times)
    printed_median = times[n // 2] if n % 2 else (times[n // 2 - 1] + times[n // 2]) / 2
    if abs(printed_median - median) > 1e-3 or abs(times[0] - minimum) > 1e-3:
        fail(f"median {median} / min {minimum} disagree with the runs printed {times}")
    Dv = args.value_dim or D
    gflops = 2 * (D + Dv) * result["pairs"] * B * H / (median * 1e-3) / 1e9
    if not math.isclose(result["gflops"], gflops, rel_tol=1e-9):
        fail(f"gflops = {result['gflops']}, expected 2*(D+Dv)*pairs*B*H/median = {gflops}")
    if "pairs_computed" in result:
        # Tiles compute every allowed pair at least once, and the same time spreads over their pairs.
        if result["pairs_computed"] < result["pairs"]:
            fail(f"pairs_computed {result['pairs_computed']} < the allowed pairs {result['pairs']}")
        computed = 2 * (D + Dv) * result["pairs_computed"] * B * H / (median * 1e-3) / 1e9
        if not math.isclose(result["gflops_computed"], computed, rel_tol=1e-9):
            fail(f"gflops_computed = {result['gflops_computed']}, expected {computed}")
    print(f"ok: pairs {result['pairs']}, {len(run_lines)} runs, {result['gflops']:.3g} GFLOP/s")


main()
