"""max_abs_diff.py A.npy B.npy TOL: the two arrays have the same shape and differ by at most TOL anywhere."""
import sys

import numpy as np

a = np.load(sys.argv[1])
b = np.load(sys.argv[2])
tol = float(sys.argv[3])
assert a.shape == b.shape, f"shapes {a.shape} and {b.shape}"
worst = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
assert worst <= tol, f"max abs difference {worst} > {tol}"
print(f"ok, max abs difference {worst:.3g}")
