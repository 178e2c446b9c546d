"""Turns the one entry of a CPU tuning cache into entries for GPUs, as `tessera tune --target cuda` would have
written them on those GPUs: same pattern hash and shape bucket, bf16, a CUDA schedule.
Usage: cuda_tune_entries.py CACHE.json  (rewritten in place)"""
import json
import sys

path = sys.argv[1]
with open(path) as f:
    cache = json.load(f)
(cpu,) = cache["entries"]
entries = []
for target, schedule in [
    ("cuda:sm_90a NVIDIA H200", {"block_m": 128, "block_n": 128, "stages": 4, "reindex": 1, "kv_splits": 0}),
    ("cuda:sm_80 NVIDIA A100-SXM4-80GB", {"block_m": 64, "block_n": 32, "stages": 3, "reindex": 1, "kv_splits": 0}),
]:
    entry = dict(cpu)
    entry.update(dtype="bf16", target=target, schedule=schedule)
    entries.append(entry)
cache["entries"] = entries
with open(path, "w") as f:
    json.dump(cache, f, indent=2)
