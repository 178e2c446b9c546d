#!/usr/bin/env python3
"""Tessera's CUDA target against PyTorch FlexAttention and SDPA (FlashAttention-2, cuDNN) on one NVIDIA GPU.

Not a test (neither scripts/test nor ctest runs it); needs no network. The PyTorch columns need numpy and a CUDA
build of torch; without them Tessera is still timed and the rest marked "torch unavailable". bf16, default
B=4 H=16 N=M=8192 D=128. Per pattern: Tessera = `tessera bench --target cuda --dtype bf16`, its JSON line parsed;
Flex = flex_attention under torch.compile with a BlockMask from create_block_mask (mask_mods transcribe
dsl/prelude.attn) and a score_mod for alibi / softcap; SDPA = scaled_dot_product_attention pinned to the
FLASH_ATTENTION and CUDNN_ATTENTION backends: is_causal=True for causal, an additive [1,H,N,N] bias for
causal & alibi (cuDNN, within --max-mask-gib), "n/a" where a dense N x N mask would be needed. Torch is timed
with CUDA events after warm-up (compilation excluded). TFLOP/s = 4*D*pairs*B*H / median s / 1e12 with Tessera's
`pairs` for every column; `causal & document` uses the very segments `tessera bench` draws (from `tessera
inputs`, same shape and seed). A spot check at N=1024 B=1 H=2 reports max |`tessera eval --target cuda` - Flex|.
--time-budget bounds the run (what would not fit is skipped, and says so). Exit code 2 when neither Tessera nor
torch finds a CUDA device, or without the tessera CLI.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECK_B, CHECK_H, CHECK_N = 1, 2, 1024
# (key, Tessera pattern expression); the torch side of each key is in torch_mods().
PATTERNS = [
    ("causal", "causal"),
    ("sliding_window", "sliding_window(window=256)"),
    ("strided", "strided(stride=128)"),
    ("fixed", "fixed(block=128, summary=8)"),
    ("causal_document", "causal & document"),
    ("causal_alibi", "causal & alibi"),
    ("causal_softcap", "causal & softcap(cap=30)"),
]
COLUMNS = ["tessera", "flex", "fa2", "cudnn"]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tessera", type=Path, default=None,
                   help="tessera CLI (default build-lead/tessera, then build/tessera, under the repo root)")
    for flag, default, what in (("--batch", 4, "B"), ("--heads", 16, "H"), ("--seq", 8192, "N = M"),
                                ("--head-dim", 128, "D = Dv")):
        p.add_argument(flag, type=int, default=default, help=f"{what} (default {default})")
    p.add_argument("--runs", type=int, default=20, help="timed runs per measurement (default 20)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first, after compilation (default 5)")
    p.add_argument("--patterns", nargs="+", default=None, choices=[k for k, _ in PATTERNS], metavar="KEY",
                   help="only these pattern keys (default all): " + ", ".join(k for k, _ in PATTERNS))
    p.add_argument("--max-mask-gib", type=float, default=4.0,
                   help="largest SDPA bias (causal & alibi, bf16 [1,H,N,N]) in GiB (default 4)")
    p.add_argument("--time-budget", type=float, default=420.0,
                   help="seconds for the whole run; what would not fit is skipped (default 420)")
    p.add_argument("--no-check", action="store_true", help="skip the N=1024 correctness spot check")
    p.add_argument("--json", type=Path, default=None, help="write every measurement as JSON here")
    p.add_argument("--markdown", type=Path, default=None, help="write the markdown report here")
    return p.parse_args(argv)


class Budget:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def left(self):
        return self.end - time.monotonic()


def short(e: BaseException, n=70) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:n]


def failed(e: BaseException) -> str:
    """The cell of a measurement that did not happen: time_cuda's TimeoutError says why it was skipped."""
    return str(e) if isinstance(e, TimeoutError) else f"error: {short(e)}"


# Tessera side.

def find_tessera(arg):
    candidates = [arg] if arg else [Path("build-lead/tessera"), Path("build/tessera")]
    for c in candidates:
        path = c if c.is_absolute() else REPO_ROOT / c
        if path.is_file():
            return path
    return None


def run_tessera(cmd, timeout):
    """stdout of a successful tessera command; RuntimeError carrying its error message otherwise."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {timeout:.0f} s") from None
    if r.returncode != 0:
        last = (r.stderr.strip() or r.stdout.strip() or f"exit {r.returncode}").splitlines()[-1]
        raise RuntimeError((last[len("tessera: error: "):] if last.startswith("tessera: error: ") else last)[:160])
    return r.stdout


def tessera_bench(tessera, expr, args, timeout):
    out = run_tessera([str(tessera), "bench", "--target", "cuda", "--dtype", "bf16", "--pattern", expr,
                       "--batch", str(args.batch), "--heads", str(args.heads), "--seq", str(args.seq),
                       "--head-dim", str(args.head_dim), "--runs", str(args.runs), "--warmup", str(args.warmup)],
                      timeout)
    lines = out.strip().splitlines()
    j = json.loads(lines[-1])
    j["device"] = next((ln[len("device: "):] for ln in lines if ln.startswith("device: ")), None)
    return j


def tessera_segments(tessera, args, work, timeout):
    """The segments `tessera bench` times `document` on: `tessera inputs` draws them from the same seeded stream
    after Q/K/V, so it must be asked for the same shape (it writes ~B*H*N*D*12 bytes of Q/K/V, deleted here)."""
    import numpy as np
    with tempfile.TemporaryDirectory(dir=work) as d:
        run_tessera([str(tessera), "inputs", "--batch", str(args.batch), "--heads", str(args.heads),
                     "--seq", str(args.seq), "--head-dim", str(args.head_dim), "--pattern", "causal & document",
                     "--seed", "0", "--dir", d], timeout)
        return np.load(Path(d) / "segments.npy")


def check_segments(rng, batch, n, documents=3):
    """Non-decreasing document ids like tessera's random_segments(): documents-1 uniform cuts in [0, n], sorted;
    position m gets the number of cuts <= m."""
    import numpy as np
    seg = np.empty((batch, n), dtype=np.int32)
    for b in range(batch):
        cuts = np.sort(rng.integers(0, n + 1, size=documents - 1))
        seg[b] = np.searchsorted(cuts, np.arange(n), side="right")
    return seg


# Torch side. The mask_mods transcribe dsl/prelude.attn; with N = M the query position q is the query index, and
# torch's `//` and `%` floor like the DSL's.

def import_torch():
    try:
        __import__("numpy")  # for the segments and the spot check's .npy files
        import torch
    except Exception as e:
        return None, f"torch unavailable: {short(e, 60)}"
    if not torch.cuda.is_available():
        return None, f"torch {torch.__version__} unavailable: torch.cuda.is_available() is false"
    return torch, None


def torch_mods(torch, key, seg, heads):
    """(mask_mod, score_mod) for a pattern key; `seg` is the [B, N] int64 CUDA segments tensor (document)."""

    def causal(b, h, q, k):
        return k <= q

    def alibi(score, b, h, q, k):  # slope 2^(-8 (h + 1) / H), H the heads of this call
        return score - torch.exp2(-8.0 * (h + 1).to(torch.float32) / heads) * (q - k).to(torch.float32)

    masks = {
        "sliding_window": lambda b, h, q, k: (q - k >= 0) & (q - k < 256),
        "strided": lambda b, h, q, k: (k <= q) & ((q - k < 128) | ((q - k) % 128 == 0)),
        "fixed": lambda b, h, q, k: (k <= q) & ((k // 128 == q // 128) | (k % 128 >= 128 - 8)),
        "causal_document": lambda b, h, q, k: (k <= q) & (q >= 0) & (seg[b, q] == seg[b, k]),
    }
    scores = {"causal_alibi": alibi, "causal_softcap": lambda score, b, h, q, k: 30.0 * torch.tanh(score / 30.0)}
    return masks.get(key, causal), scores.get(key)


class Flex:
    def __init__(self, torch):
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
        self.create_block_mask = create_block_mask
        self.fn = torch.compile(flex_attention, dynamic=False)

    def make(self, mask_mod, score_mod, batch, n, reads_b):
        # H=None broadcasts the block mask over heads (no mask reads h); B only when the mask reads b (document).
        bm = self.create_block_mask(mask_mod, batch if reads_b else None, None, n, n, device="cuda")
        return lambda q, k, v: self.fn(q, k, v, score_mod=score_mod, block_mask=bm)


def time_cuda(torch, fn, args, budget):
    """(median ms, min ms, first-call seconds): first call (compilation) and --warmup untimed, CUDA events."""
    def timed(count):
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(count)]
        for s, e in events:
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize()
        return [s.elapsed_time(e) for s, e in events]

    t0 = time.monotonic()
    fn()
    torch.cuda.synchronize()
    first = time.monotonic() - t0
    one, runs = timed(1)[0] / 1e3, args.runs
    while runs > 3 and one * (runs + args.warmup) > budget.left() * 0.5:
        runs -= 1
    if one * (runs + args.warmup) > budget.left():
        raise TimeoutError(f"skipped: {runs} runs of {one * 1e3:.0f} ms exceed the budget left")
    for _ in range(args.warmup):
        fn()
    ms = timed(runs)
    return statistics.median(ms), min(ms), first


def alibi_causal_bias(torch, heads, n):
    """[1, H, N, N] bf16: -slope_h * (q - k) where k <= q, -inf above the diagonal; built head by head."""
    bias = torch.empty(1, heads, n, n, dtype=torch.bfloat16, device="cuda")
    pos = torch.arange(n, device="cuda")
    d = (pos.view(n, 1) - pos.view(1, n)).to(torch.float32)
    for h in range(heads):
        slope = 2.0 ** (-8.0 * (h + 1) / heads)
        bias[0, h] = torch.where(d >= 0, -slope * d, float("-inf")).to(torch.bfloat16)
    return bias


def sdpa_cells(torch, key, q, k, v, args, budget):
    """{'fa2': ..., 'cudnn': ...}: median ms (float) or a string saying why not."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    if key == "causal_softcap":
        return dict.fromkeys(("fa2", "cudnn"), "n/a (softcap not expressible)")
    if key not in ("causal", "causal_alibi"):
        return dict.fromkeys(("fa2", "cudnn"), "n/a (needs a dense mask)")
    out, bias = {}, None
    if key == "causal_alibi":
        gib = args.heads * args.seq ** 2 * 2 / 2**30
        free = torch.cuda.mem_get_info()[0] / 2**30
        out["fa2"] = "n/a (FA2 takes no attn_mask)"
        if gib > args.max_mask_gib or gib > 0.8 * free:
            out["cudnn"] = f"skipped: bias {gib:.1f} GiB > --max-mask-gib or free memory"
            return out
        bias = alibi_causal_bias(torch, args.heads, args.seq)
    for col, name in (("fa2", "FLASH_ATTENTION"), ("cudnn", "CUDNN_ATTENTION")):
        if col in out:
            continue
        if not hasattr(SDPBackend, name):
            out[col] = f"n/a (no SDPBackend.{name} in torch {torch.__version__})"
            continue

        def fn():
            if bias is None:
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        try:
            with sdpa_kernel(getattr(SDPBackend, name)):  # only this backend: an error rather than a fallback
                out[col] = time_cuda(torch, fn, args, budget)[0]
        except Exception as e:
            out[col] = failed(e)
    bias = None
    torch.cuda.empty_cache()
    return out


def measure_torch(torch, rows, keys, expr, tessera, args, budget, work):
    import numpy as np
    b, h, n, d = args.batch, args.heads, args.seq, args.head_dim
    seg, seg_err = None, None
    if "causal_document" in keys:
        try:
            seg = torch.from_numpy(tessera_segments(tessera, args, work, budget.left()).astype(np.int64)).cuda()
        except Exception as e:
            seg_err = f"error: segments: {short(e, 50)}"
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(b, h, n, d, generator=g, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    try:
        flex = Flex(torch)
    except Exception as e:
        flex = f"error: {short(e)}"
    compiles = []  # seconds per Flex compilation so far; the first is guessed
    for key in keys:
        row = rows[key]
        with torch.no_grad():
            if isinstance(flex, str) or (key == "causal_document" and seg_err):
                row["flex"] = flex if isinstance(flex, str) else seg_err
            elif budget.left() < max(compiles, default=30.0) + 10:
                row["flex"] = f"skipped: budget ({budget.left():.0f} s left)"
            else:
                try:
                    mask_mod, score_mod = torch_mods(torch, key, seg, h)
                    fn = flex.make(mask_mod, score_mod, b, n, key == "causal_document")
                    med, _, first = time_cuda(torch, lambda: fn(q, k, v), args, budget)
                    row["flex"], row["flex_compile_s"] = med, first
                    compiles.append(first)
                except Exception as e:
                    row["flex"] = failed(e)
                fn = None
                torch.cuda.empty_cache()
            print(f"[{key}] flex {row['flex']}", file=sys.stderr)
            if budget.left() < 5:
                row.update(fa2="skipped: budget", cudnn="skipped: budget")
            else:
                row.update(sdpa_cells(torch, key, q, k, v, args, budget))
            print(f"[{key}] sdpa fa2 {row['fa2']}, cudnn {row['cudnn']}", file=sys.stderr)


def spot_check(torch, keys, expr, tessera, args, budget, work):
    """max |Tessera - Flex| at N=1024 B=1 H=2 on the same random float32 inputs (both sides round them to bf16)."""
    import numpy as np
    rng = np.random.default_rng(1)
    shape = (CHECK_B, CHECK_H, CHECK_N, args.head_dim)
    arrays = {name: rng.standard_normal(shape, dtype=np.float32) for name in ("q", "k", "v")}
    arrays["segments"] = check_segments(rng, CHECK_B, CHECK_N)
    files = {name: work / f"{name}.npy" for name in arrays}  # `work` is deleted at the end of the run
    for name, a in arrays.items():
        np.save(files[name], a)
    tq, tk, tv = (torch.from_numpy(arrays[x]).cuda().to(torch.bfloat16) for x in ("q", "k", "v"))
    seg = torch.from_numpy(arrays["segments"].astype(np.int64)).cuda()
    flex, out = Flex(torch), {}
    for key in keys:
        if budget.left() < 40:
            out[key] = "skipped: budget"
            continue
        cmd = [str(tessera), "eval", "--target", "cuda", "--pattern", expr[key], "--out", str(work / "out.npy")]
        for name in ("q", "k", "v") + (("segments",) if key == "causal_document" else ()):
            cmd += [f"--{name}", str(files[name])]
        try:
            run_tessera(cmd, budget.left())
            ours = torch.from_numpy(np.load(work / "out.npy")).cuda()
            mask_mod, score_mod = torch_mods(torch, key, seg, CHECK_H)
            with torch.no_grad():
                theirs = flex.make(mask_mod, score_mod, CHECK_B, CHECK_N, key == "causal_document")(tq, tk, tv)
            out[key] = f"{(theirs.float() - ours).abs().max().item():.2e}"
        except Exception as e:
            out[key] = failed(e)
        print(f"[check] {key}: {out[key]}", file=sys.stderr)
    return out


# Report.

def speedup(row, col):
    """How many times faster Tessera is than `col` (other ms / Tessera ms), or None."""
    t, o = row.get("tessera"), row.get(col)
    return o / t if isinstance(t, float) and isinstance(o, float) and t > 0 else None


def vs_best_sdpa(row):
    ms = [row[c] for c in ("fa2", "cudnn") if isinstance(row.get(c), float)]
    return speedup({"tessera": row.get("tessera"), "sdpa": min(ms)}, "sdpa") if ms else None


def goals(rows):
    def line(text, r, target):
        return f"{text}: " + ("n/a (not measured)" if r is None else f"{'yes' if r >= target else 'no'} ({r:.2f})")

    c = rows.get("causal", {})
    lines = [line("dense causal >= 0.9x Flex", speedup(c, "flex"), 0.9),
             line("dense causal >= 0.7x the fastest SDPA", vs_best_sdpa(c), 0.7)]
    others = {k: speedup(r, "flex") for k, r in rows.items() if k != "causal"}
    measured = {k: r for k, r in others.items() if r is not None}
    missing = [k for k in others if k not in measured]
    worst = min(measured, key=measured.get) if measured else None
    if worst and (measured[worst] < 1 or not missing):  # one miss decides it even when others were not measured
        lines.append(f"every other pattern >= Flex: {'yes' if measured[worst] >= 1 else 'no'} "
                     f"(lowest {measured[worst]:.2f} on {worst})")
    else:
        lines.append(f"every other pattern >= Flex: n/a (not measured: {', '.join(missing) or 'none selected'})")
    for key, target in (("strided", 5.0), ("fixed", 3.0)):
        lines.append(line(f"{key} >= {target:.0f}x Flex", speedup(rows.get(key, {}), "flex"), target))
    return lines


def render(rows, checks, expr, goal_lines, meta, args):
    def cell(row, col):
        v = row.get(col, "–")
        if not isinstance(v, float):
            return str(v).replace("|", "\\|")  # an error message must not split the table's cell
        pairs = row.get("pairs")
        tf = f" · {4 * args.head_dim * pairs * args.batch * args.heads / (v / 1e3) / 1e12:.1f} TFLOP/s" if pairs else ""
        return f"{v:.3f} ms{tf}"

    def ratio(r):
        return "–" if r is None else f"{r:.2f}×"

    out = [f"# Tessera CUDA vs FlexAttention vs SDPA — {meta['device']}", "",
           f"{meta['date']}; {meta['torch']}; bf16, B={args.batch} H={args.heads} N=M={args.seq} "
           f"D={args.head_dim}; median of {args.runs} CUDA-event-timed runs after {args.warmup} warm-up runs "
           "(Flex's compilation excluded). TFLOP/s = 4·D·pairs·B·H / median, with Tessera's `pairs` (allowed pairs "
           "per (batch, head)) for every column. Ratios > 1× mean Tessera is faster.", "",
           "| pattern | Tessera | Flex | SDPA-FA2 | SDPA-cuDNN | Tessera/Flex | Tessera/best SDPA |",
           "|---|---|---|---|---|---|---|"]
    for key, row in rows.items():
        out.append(f"| `{expr[key]}` | {' | '.join(cell(row, c) for c in COLUMNS)} | "
                   f"{ratio(speedup(row, 'flex'))} | {ratio(vs_best_sdpa(row))} |")
    out += ["", "Goals:", ""] + [f"- {g}" for g in goal_lines]
    if checks:
        out += ["", f"Spot check, N={CHECK_N} B={CHECK_B} H={CHECK_H} D={args.head_dim}, same random inputs in bf16: "
                "max |Tessera − Flex|", "", "| pattern | max abs diff |", "|---|---|"]
        out += [f"| `{expr[k]}` | {cell({'v': v}, 'v')} |" for k, v in checks.items()]
    return "\n".join(out) + "\n"


def main(argv):
    args = parse_args(argv)
    tessera = find_tessera(args.tessera)
    if tessera is None:
        print(f"error: tessera CLI not found ({args.tessera or 'build-lead/tessera, build/tessera'}); build it or "
              "pass --tessera", file=sys.stderr)
        return 2
    budget = Budget(args.time_budget)
    keys = [k for k, _ in PATTERNS if not args.patterns or k in args.patterns]
    expr = dict(PATTERNS)
    torch, torch_why = import_torch()
    rows = {k: {"key": k, "pattern": expr[k]} for k in keys}
    meta = {"date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), "device": None,
            "torch": f"torch {torch.__version__}" if torch else torch_why, "tessera": str(tessera)}
    if torch:
        meta["device"] = torch.cuda.get_device_name()
        with contextlib.suppress(Exception):  # one compiled graph per pattern and shape
            torch._dynamo.config.cache_size_limit, torch._dynamo.config.accumulated_cache_size_limit = 64, 512
    print(f"tessera {tessera}; {meta['torch']}; budget {args.time_budget:.0f} s", file=sys.stderr)

    # Tessera first, every pattern: it is the column the others are compared with, and it gives `pairs`.
    no_device, slowest = None, 0.0
    for key in keys:
        row = rows[key]
        if no_device:
            row["tessera"] = no_device
        elif budget.left() < slowest * 1.5 + 5:
            row["tessera"] = f"skipped: budget ({budget.left():.0f} s left)"
        else:
            t0 = time.monotonic()
            try:
                j = tessera_bench(tessera, expr[key], args, budget.left())
                row.update(tessera=float(j["median_ms"]), tessera_min_ms=j["min_ms"], pairs=j["pairs"],
                           schedule=j.get("schedule"))
                meta["device"] = meta["device"] or j.get("device")
            except Exception as e:
                row["tessera"] = f"error: {str(e)[:100]}"
                if "no CUDA device" in str(e):
                    no_device = row["tessera"]
            slowest = max(slowest, time.monotonic() - t0)
        print(f"[{key}] tessera {row['tessera']}", file=sys.stderr)
    if not torch and not any(isinstance(r.get("tessera"), float) for r in rows.values()):
        first = rows[keys[0]]["tessera"] if keys else "no pattern"
        print(f"error: nothing could run on a GPU: {torch_why}; tessera: {first}", file=sys.stderr)
        return 2

    checks = {}
    with tempfile.TemporaryDirectory(prefix="tessera-compare-cuda-") as tmp:
        work = Path(tmp)
        if torch:
            try:
                measure_torch(torch, rows, keys, expr, tessera, args, budget, work)
            except Exception as e:  # e.g. out of memory for Q/K/V: the cells not yet filled say so
                for row in rows.values():
                    for col in ("flex", "fa2", "cudnn"):
                        row.setdefault(col, f"error: {short(e)}")
            if not args.no_check:
                try:
                    checks = spot_check(torch, keys, expr, tessera, args, budget, work)
                except Exception as e:
                    checks = dict.fromkeys(keys, f"error: {short(e)}")
        else:
            for row in rows.values():
                row.update(dict.fromkeys(("flex", "fa2", "cudnn"), "torch unavailable"))
    meta["device"] = meta["device"] or "unknown device"
    goal_lines = goals(rows)
    report = render(rows, checks, expr, goal_lines, meta, args)
    print(report)
    if args.markdown:
        args.markdown.write_text(report)
    if args.json:
        shape = dict(B=args.batch, H=args.heads, N=args.seq, D=args.head_dim, runs=args.runs, warmup=args.warmup)
        args.json.write_text(json.dumps({**meta, "dtype": "bf16", "shape": shape, "rows": list(rows.values()),
                                         "goals": goal_lines, "checks": checks}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
