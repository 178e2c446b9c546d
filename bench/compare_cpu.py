#!/usr/bin/env python3
"""Tessera's CPU target against PyTorch on the CPU: SDPA and FlexAttention (torch.compile), same shapes.

Not a test: neither scripts/test nor ctest runs it. It brings its own virtual environment OUTSIDE the repository
(default ~/.cache/tessera/bench-venv, --venv to change), installs torch and numpy there and re-executes itself
inside it, so the system Python stays untouched.

For each pattern of the standard library that PyTorch can express and each N (--seq, default 4096 and 16384),
B=1 H=8 D=64 fp32 on --threads threads (default 2):
  * Tessera:  `tessera bench --target cpu --dtype f32`, its JSON last line parsed.
  * SDPA:     torch.nn.functional.scaled_dot_product_attention; is_causal=True for causal, no mask for full,
              an explicit boolean attn_mask for other masks and an additive float bias for alibi while they fit
              (--max-mask-mib); softcap is not expressible and is skipped. The table says which was used.
  * Flex:     torch.nn.attention.flex_attention under torch.compile, BlockMask from create_block_mask and the
              pattern's score_mod; a failure to compile or run is reported as "unsupported: <reason>".
GFLOP/s for every column counts only the pairs the mask allows, exactly as Tessera does: 4*D*pairs*B*H/time with
`pairs` taken from Tessera's JSON for the same pattern and N. A correctness spot check at N=1024 compares
`tessera eval --target cpu` with Flex and SDPA on the same random inputs (max abs diff, reported, not asserted).
The whole run stays within --time-budget seconds: measurements whose estimated cost does not fit are skipped and
the table says so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = Path.home() / ".cache" / "tessera" / "bench-venv"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
B, H, D = 1, 8, 64
CHECK_N = 1024


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="virtual environment to create/use (%(default)s)")
    p.add_argument("--tessera", type=Path, default=REPO_ROOT / "build" / "tessera",
                   help="tessera CLI (default build/tessera under the repo root)")
    p.add_argument("--seq", type=int, nargs="+", default=[4096, 16384], help="sequence lengths N (= M)")
    p.add_argument("--threads", type=int, default=2, help="threads for Tessera and torch (default 2)")
    p.add_argument("--runs", type=int, default=10, help="timed runs per measurement (default 10; 3 when one run > 2 s)")
    p.add_argument("--time-budget", type=float, default=1200.0,
                   help="seconds for the whole run; what does not fit is skipped (default 1200)")
    p.add_argument("--patterns", nargs="+", default=None,
                   help="only these pattern keys (default all): " + ", ".join(k for k, *_ in PATTERN_KEYS))
    p.add_argument("--max-mask-mib", type=float, default=1024.0,
                   help="largest explicit SDPA attn_mask/bias in MiB; bigger ones skip SDPA (default 1024)")
    p.add_argument("--no-check", action="store_true", help="skip the N=1024 correctness spot check")
    p.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    return p.parse_args(argv)


# (key, Tessera pattern expression); the torch side of each key is in torch_pattern().
PATTERN_KEYS = [
    ("causal", "causal"),
    ("sliding_window", "sliding_window(window=256)"),
    ("strided", "strided(stride=128)"),
    ("fixed", "fixed(block=128, summary=8)"),
    ("dilated", "dilated(window=32, dilation=4)"),
    ("local", "local(window=128)"),
    ("prefix_lm", "prefix_lm(prefix=512)"),
    ("full", "full"),
    ("alibi", "alibi"),
    ("causal_softcap", "causal & softcap(cap=30)"),
    ("causal_document", "causal & document"),
    ("local2d", "local2d(width=64, block_h=8, block_w=8, halo_h=8, halo_w=8)"),
]


# ---------------------------------------------------------------------------------------------------------------
# Environment: run inside our own venv so the benchmark's heavy dependencies never touch the system Python.

def in_venv(venv: Path) -> bool:
    return Path(sys.prefix).resolve() == venv.resolve()


def cpu_index_reachable() -> bool:
    import urllib.request
    try:
        with urllib.request.urlopen(CPU_INDEX + "/torch/", timeout=5) as r:
            return r.status == 200
    except Exception:
        return False


def ensure_venv_and_reexec(args, argv):
    if in_venv(args.venv) or os.environ.get("TESSERA_BENCH_IN_VENV") == "1":
        return
    py = args.venv / "bin" / "python"
    if not py.exists():
        print(f"[setup] creating virtual environment {args.venv}", file=sys.stderr)
        args.venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(args.venv)], check=True)
    have = subprocess.run([str(py), "-c", "import torch, numpy"], capture_output=True).returncode == 0
    if not have:
        pip = [str(py), "-m", "pip", "install", "--quiet"]
        if cpu_index_reachable():
            print(f"[setup] pip install torch from {CPU_INDEX}", file=sys.stderr)
            subprocess.run(pip + ["torch", "--index-url", CPU_INDEX], check=True)
        else:
            print("[setup] CPU wheel index unreachable: plain `pip install torch` (large download)", file=sys.stderr)
            subprocess.run(pip + ["torch"], check=True)
        subprocess.run(pip + ["numpy"], check=True)
    env = dict(os.environ, TESSERA_BENCH_IN_VENV="1", OMP_NUM_THREADS=str(args.threads))
    os.execve(str(py), [str(py), str(Path(__file__).resolve()), *argv], env)


# ---------------------------------------------------------------------------------------------------------------
# Tessera side.

def tessera_json(cmd: list[str]) -> dict:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])} failed ({r.returncode}): {r.stderr.strip()[-300:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def tessera_bench(tessera: Path, pattern: str, n: int, threads: int, runs: int, warmup: int) -> dict:
    return tessera_json([str(tessera), "bench", "--pattern", pattern, "--batch", str(B), "--heads", str(H),
                         "--seq", str(n), "--head-dim", str(D), "--dtype", "f32", "--target", "cpu",
                         "--threads", str(threads), "--runs", str(runs), "--warmup", str(warmup)])


# ---------------------------------------------------------------------------------------------------------------
# Torch side. Every mask_mod mirrors dsl/prelude.attn literally; here N = M so the query position q is the
# query index. Python's/torch's `//` and `%` floor like the DSL's.

def torch_pattern(key: str, seg):
    """(mask_mod or None, score_mod or None, SDPA recipe) where the recipe is 'causal', 'none', 'bool', 'alibi'
    or 'skip:<why>'. `seg` is the [B, M] int segments tensor, for document."""
    import torch

    def causal(b, h, q, k):
        return k <= q

    def sliding_window(b, h, q, k):
        d = q - k
        return (d >= 0) & (d < 256)

    def strided(b, h, q, k):
        d = q - k
        return (k <= q) & ((d < 128) | (d % 128 == 0))

    def fixed(b, h, q, k):
        return (k <= q) & ((k // 128 == q // 128) | (k % 128 >= 128 - 8))

    def dilated(b, h, q, k):
        d = q - k
        return (d >= 0) & (d < 32 * 4) & (d % 4 == 0)

    def local(b, h, q, k):
        return torch.abs(q - k) < 128

    def prefix_lm(b, h, q, k):
        return (k <= q) | (k < 512)

    def document(b, h, q, k):
        return (q >= 0) & (seg[b, q] == seg[b, k])

    def causal_document(b, h, q, k):
        return causal(b, h, q, k) & document(b, h, q, k)

    def local2d(b, h, q, k, width=64, block_h=8, block_w=8, halo_h=8, halo_w=8):
        row_q, col_q = q // width, q % width
        row_k, col_k = k // width, k % width
        r0 = row_q // block_h * block_h
        c0 = col_q // block_w * block_w
        return ((k <= q) & (row_k >= r0 - halo_h) & (row_k <= r0 + block_h - 1)
                & (col_k >= c0 - halo_w) & (col_k <= c0 + block_w - 1 + halo_w))

    def alibi(score, b, h, q, k):
        return score - torch.exp2(-8.0 * (h + 1).to(torch.float32) / H) * (q - k).to(torch.float32)

    def softcap(score, b, h, q, k):
        return 30.0 * torch.tanh(score / 30.0)

    table = {
        "causal": (causal, None, "causal"),
        "sliding_window": (sliding_window, None, "bool"),
        "strided": (strided, None, "bool"),
        "fixed": (fixed, None, "bool"),
        "dilated": (dilated, None, "bool"),
        "local": (local, None, "bool"),
        "prefix_lm": (prefix_lm, None, "bool"),
        "full": (None, None, "none"),
        "alibi": (None, alibi, "alibi"),
        "causal_softcap": (causal, softcap, "skip:softcap not expressible in SDPA"),
        "causal_document": (causal_document, None, "bool"),
        "local2d": (local2d, None, "bool"),
    }
    return table[key]


def dense_bool_mask(mask_mod, n):
    """[N, N] (broadcast over b, h) boolean mask from a mask_mod that does not read h (true of every pattern here;
    b is 0 since B = 1), built row-block by row-block so the int64 intermediates stay small."""
    import torch
    out = torch.empty(n, n, dtype=torch.bool)
    k = torch.arange(n).view(1, n)
    zero = torch.zeros((), dtype=torch.long)
    for r in range(0, n, 512):
        q = torch.arange(r, min(r + 512, n)).view(-1, 1)
        out[r:r + q.shape[0]] = mask_mod(zero, zero, q, k)
    return out


def alibi_bias(n):
    import torch
    h = torch.arange(H, dtype=torch.float32).view(H, 1, 1)
    d = (torch.arange(n).view(n, 1) - torch.arange(n).view(1, n)).to(torch.float32)
    return (-torch.exp2(-8.0 * (h + 1) / H) * d).unsqueeze(0)  # [1, H, N, N]


def make_sdpa(recipe, mask_mod, n, max_mask_mib):
    """A zero-argument-but-qkv callable for SDPA, and a note for the table; (None, why) when skipped."""
    import torch
    import torch.nn.functional as F
    if recipe.startswith("skip:"):
        return None, recipe[5:]
    if recipe == "causal":
        return (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)), "is_causal"
    if recipe == "none":
        return (lambda q, k, v: F.scaled_dot_product_attention(q, k, v)), "no mask"
    if recipe == "bool":
        mib = n * n / 2**20
        if mib > max_mask_mib:
            return None, f"bool mask {mib:.0f} MiB > --max-mask-mib"
        m = dense_bool_mask(mask_mod, n)
        return (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=m)), "bool attn_mask"
    if recipe == "alibi":
        mib = H * n * n * 4 / 2**20
        if mib > max_mask_mib:
            return None, f"alibi bias {mib:.0f} MiB > --max-mask-mib"
        bias = alibi_bias(n)
        return (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=bias)), "float bias"
    raise ValueError(recipe)


_compiled_flex = None


def make_flex(mask_mod, score_mod, n, seg_batch):
    """Callable running compiled flex_attention with this pattern, plus a note; raises when unsupported."""
    global _compiled_flex
    import torch
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    block_mask = None
    if mask_mod is not None:
        # H=None broadcasts one block mask over the heads: none of these masks reads h, and a per-head copy at
        # N=16384 would only cost memory. B stays B (document reads b).
        block_mask = create_block_mask(mask_mod, seg_batch, None, n, n, device="cpu")
    fn = _compiled_flex
    return (lambda q, k, v: fn(q, k, v, score_mod=score_mod, block_mask=block_mask)), \
        ("block mask" if block_mask is not None else "no mask") + (" + score_mod" if score_mod else "")


class Budget:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def left(self):
        return self.end - time.monotonic()


def time_torch(fn, q, k, v, runs, budget: Budget):
    """Median and min ms after a warm-up (compile included). None with a reason when the budget is short."""
    import torch
    with torch.no_grad():
        t0 = time.perf_counter()
        fn(q, k, v)  # compile / first touch
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        fn(q, k, v)
        one = time.perf_counter() - t0
        if one > 2.0:
            runs = min(runs, 3)
        # Keep a slice of the budget for the rest: fewer runs (down to 3) before skipping.
        while runs > 3 and one * runs > budget.left() * 0.5:
            runs -= 1
        if one * runs > budget.left():
            return None, f"skipped: {runs} runs of ~{one:.1f} s exceed the budget left"
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn(q, k, v)
            times.append((time.perf_counter() - t0) * 1e3)
    return (statistics.median(times), min(times), len(times), first), None


# ---------------------------------------------------------------------------------------------------------------

def tessera_segments(tessera: Path, n: int, workdir: Path):
    """The segments `tessera bench` draws for causal & document (same seed), so Flex/SDPA see the same documents
    and Tessera's `pairs` applies to them."""
    import numpy as np
    d = workdir / f"inputs{n}"
    d.mkdir(exist_ok=True)
    r = subprocess.run([str(tessera), "inputs", "--batch", str(B), "--heads", str(H), "--seq", str(n),
                        "--head-dim", str(D), "--pattern", "causal & document", "--seed", "0", "--dir", str(d)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("tessera inputs failed: " + r.stderr.strip()[-300:])
    seg = np.load(d / "segments.npy")
    for f in d.iterdir():
        f.unlink()
    d.rmdir()
    return seg


def fmt_ms(x):
    return f"{x:.1f}" if isinstance(x, float) else x


def main(argv):
    args = parse_args(argv)
    ensure_venv_and_reexec(args, argv)

    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    try:
        torch._dynamo.config.cache_size_limit = 256  # one compiled graph per (pattern, N)
        torch._dynamo.config.accumulated_cache_size_limit = 1024
    except Exception:
        pass

    tessera = args.tessera if args.tessera.is_absolute() else (REPO_ROOT / args.tessera)
    if not tessera.exists():
        sys.exit(f"tessera CLI not found at {tessera} (build it, or pass --tessera)")
    keys = [k for k, _ in PATTERN_KEYS]
    if args.patterns:
        unknown = set(args.patterns) - set(keys)
        if unknown:
            sys.exit(f"unknown pattern keys {sorted(unknown)}; known: {keys}")
        keys = [k for k in keys if k in args.patterns]
    expr = dict(PATTERN_KEYS)
    budget = Budget(args.time_budget)
    work = Path(tempfile.mkdtemp(prefix="tessera-compare-"))
    print(f"torch {torch.__version__}, threads {args.threads}, B={B} H={H} D={D} fp32, budget {args.time_budget:.0f} s",
          file=sys.stderr)

    # Correctness spot check first: it is cheap and says whether the timed kernels agree at all.
    checks = {}
    if not args.no_check:
        checks = spot_check(tessera, keys, expr, work, args)

    rows = []
    tessera_ms_by_key = {}  # first N's median, to predict the next N's cost from the pairs ratio
    for n in sorted(args.seq):
        seg_np = tessera_segments(tessera, n, work) if "causal_document" in keys else None
        seg = torch.from_numpy(seg_np.astype(np.int64)) if seg_np is not None else None
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(B, H, n, D, generator=g) for _ in range(3))
        for key in keys:
            row = {"key": key, "pattern": expr[key], "N": n}
            rows.append(row)
            if budget.left() < 5:
                row.update(tessera="skipped: budget", sdpa="skipped: budget", flex="skipped: budget")
                continue
            # Tessera: predict one run's cost from a smaller N (cost ~ pairs, which grow ~N or ~N^2).
            runs = args.runs
            prev = tessera_ms_by_key.get(key)
            est = None
            if prev is not None:
                ms0, pairs0, n0 = prev
                est = ms0 * (n / n0) ** 2 / 1e3 if key in ("causal", "full", "alibi", "causal_softcap",
                                                           "prefix_lm", "causal_document") else ms0 * (n / n0) / 1e3
                if est > 2.0:
                    runs = 3
            if est is not None and est * (runs + 1) + 5 > budget.left():
                row["tessera"] = f"skipped: ~{est * (runs + 1):.0f} s exceeds the budget left"
            else:
                try:
                    t0 = time.monotonic()
                    j = tessera_bench(tessera, expr[key], n, args.threads, runs, 1)
                    row.update(tessera=j["median_ms"], pairs=int(j["pairs"]), tessera_gflops=j["gflops"])
                    tessera_ms_by_key[key] = (j["median_ms"], j["pairs"], n)
                    print(f"[{key} N={n}] tessera {j['median_ms']:.1f} ms ({time.monotonic() - t0:.0f} s)",
                          file=sys.stderr)
                except Exception as e:
                    row["tessera"] = f"error: {str(e)[:80]}"
            mask_mod, score_mod, recipe = torch_pattern(key, seg)
            # SDPA
            try:
                fn, note = make_sdpa(recipe, mask_mod, n, args.max_mask_mib)
                row["sdpa_note"] = note
                if fn is None:
                    row["sdpa"] = f"skipped: {note}"
                else:
                    res, why = time_torch(fn, q, k, v, args.runs, budget)
                    row["sdpa"] = why if res is None else res[0]
                    print(f"[{key} N={n}] sdpa ({note}) {row['sdpa']}", file=sys.stderr)
                    fn = None  # drop the explicit mask before Flex allocates
            except Exception as e:
                row["sdpa"] = f"error: {type(e).__name__}: {str(e)[:60]}"
            # Flex
            try:
                if budget.left() < 10:
                    row["flex"] = "skipped: budget"
                else:
                    fn, note = make_flex(mask_mod, score_mod, n, B)
                    row["flex_note"] = note
                    res, why = time_torch(fn, q, k, v, args.runs, budget)
                    row["flex"] = why if res is None else res[0]
                    if res is not None:
                        row["flex_compile_s"] = res[3]
                    print(f"[{key} N={n}] flex ({note}) {row['flex']}", file=sys.stderr)
            except Exception as e:
                reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:90]
                row["flex"] = f"unsupported: {reason}"
                print(f"[{key} N={n}] flex failed: {reason}", file=sys.stderr)

    table = render(rows, checks, torch.__version__, args)
    print(table)
    if args.out:
        args.out.write_text(table)
    try:
        work.rmdir()
    except OSError:
        pass


def spot_check(tessera, keys, expr, work, args):
    """max |Tessera - Flex| and max |Tessera - SDPA| at N=1024 on the same random inputs, per pattern."""
    import numpy as np
    import torch
    n = CHECK_N
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((B, H, n, D), dtype=np.float32) for _ in range(3))
    seg = np.sort(rng.integers(0, 3, size=(B, n))).astype(np.int32)  # non-decreasing document ids, 3 documents
    files = {}
    for name, arr in (("q", q), ("k", k), ("v", v), ("segments", seg)):
        files[name] = work / f"{name}.npy"
        np.save(files[name], arr)
    tq, tk, tv = (torch.from_numpy(a) for a in (q, k, v))
    tseg = torch.from_numpy(seg.astype(np.int64))
    out = {}
    for key in keys:
        res = {}
        cmd = [str(tessera), "eval", "--target", "cpu", "--pattern", expr[key], "--q", str(files["q"]),
               "--k", str(files["k"]), "--v", str(files["v"]), "--out", str(work / "out.npy")]
        if key == "causal_document":
            cmd += ["--segments", str(files["segments"])]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            out[key] = {"flex": "tessera eval failed", "sdpa": "tessera eval failed"}
            continue
        ours = torch.from_numpy(np.load(work / "out.npy"))
        mask_mod, score_mod, recipe = torch_pattern(key, tseg)
        with torch.no_grad():
            try:
                fn, _ = make_flex(mask_mod, score_mod, n, B)
                res["flex"] = f"{(fn(tq, tk, tv) - ours).abs().max().item():.1e}"
            except Exception as e:
                res["flex"] = f"unsupported ({type(e).__name__})"
            try:
                fn, note = make_sdpa(recipe, mask_mod, n, args.max_mask_mib)
                res["sdpa"] = "–" if fn is None else f"{(fn(tq, tk, tv) - ours).abs().max().item():.1e}"
            except Exception as e:
                res["sdpa"] = f"error ({type(e).__name__})"
        out[key] = res
        print(f"[check N={n}] {key}: {res}", file=sys.stderr)
    for f in list(files.values()) + [work / "out.npy"]:
        if f.exists():
            f.unlink()
    return out


def render(rows, checks, torch_version, args):
    def ratio(a, b):
        if isinstance(a, float) and isinstance(b, float) and a > 0:
            return f"{b / a:.2f}×"
        return "–"

    def gf(ms, pairs):
        if isinstance(ms, float) and pairs:
            return f"{4 * D * pairs * B * H / (ms / 1e3) / 1e9:.1f}"
        return "–"

    lines = [
        f"torch {torch_version}; threads {args.threads}; B={B} H={H} D={D} fp32; median of ≥3 (usually {args.runs}) "
        "timed runs after warm-up (Flex's warm-up includes torch.compile); GFLOP/s = 4·D·pairs·B·H / median over "
        "the pairs the mask allows (Tessera's `pairs`) for every column. Ratios > 1× mean Tessera is faster. "
        f"Check: max |Tessera − X| at N={CHECK_N} on the same random inputs.",
        "",
        "| pattern | N | Tessera ms | SDPA ms (how) | Flex ms | Tessera GFLOP/s | SDPA GFLOP/s | Flex GFLOP/s "
        "| Tessera vs SDPA | Tessera vs Flex | check vs Flex / SDPA |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        pairs = r.get("pairs")
        t, s, f = r.get("tessera", "–"), r.get("sdpa", "–"), r.get("flex", "–")
        sd = fmt_ms(s) + (f" ({r['sdpa_note']})" if isinstance(s, float) and r.get("sdpa_note") else "")
        c = checks.get(r["key"], {})
        chk = f"{c.get('flex', '–')} / {c.get('sdpa', '–')}" if c and r["N"] == min(args.seq) else ""
        lines.append(f"| `{r['pattern']}` | {r['N']} | {fmt_ms(t)} | {sd} | {fmt_ms(f)} | {gf(t, pairs)} | "
                     f"{gf(s, pairs)} | {gf(f, pairs)} | {ratio(t, s)} | {ratio(t, f)} | {chk} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(sys.argv[1:])
