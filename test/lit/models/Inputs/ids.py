"""Writes token ids for the model tests: ids.py OUT.npy BATCH LENGTH VOCAB [SEED] [--dtype NUMPY_DTYPE] (int64 default)."""
import sys

import numpy as np

args = [a for a in sys.argv[1:] if not a.startswith("--")]
dtype = "int64"
if "--dtype" in sys.argv:
    dtype = sys.argv[sys.argv.index("--dtype") + 1]
    args.remove(dtype)
out, batch, length, vocab = args[0], int(args[1]), int(args[2]), int(args[3])
seed = int(args[4]) if len(args) > 4 else 0
ids = np.random.default_rng(seed).integers(0, vocab, size=(batch, length))
np.save(out, ids.astype(dtype))
