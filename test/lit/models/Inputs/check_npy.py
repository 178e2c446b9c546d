"""check_npy.py FILE SHAPE [--unit-rows] [--same-as OTHER]: the array's shape, unit L2 norm of its last axis, equality."""
import sys

import numpy as np

a = np.load(sys.argv[1])
shape = tuple(int(d) for d in sys.argv[2].split(","))
assert a.shape == shape, f"shape {a.shape}, expected {shape}"
assert np.isfinite(a).all(), "non-finite values"
if "--unit-rows" in sys.argv:
    norms = np.linalg.norm(a, axis=-1)
    assert np.allclose(norms, 1.0, atol=1e-5), f"norms {norms}"
if "--same-as" in sys.argv:
    b = np.load(sys.argv[sys.argv.index("--same-as") + 1])
    assert np.array_equal(a, b), "arrays differ"
print("ok", a.shape)
