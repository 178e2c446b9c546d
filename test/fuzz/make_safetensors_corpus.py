"""Writes the seed corpus of test/fuzz/safetensors_fuzzer.cpp: small valid files of every shape of header the
reader accepts and a few of each way one goes wrong, so that mutations start next to both.

    python3 test/fuzz/make_safetensors_corpus.py [DIR]   (default: test/fuzz/corpus/safetensors)
"""
import json
import os
import struct
import sys


def assemble(header, data=b"", pad=True):
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    if pad:
        text += b" " * (-len(text) % 8)  # as the reference writer does
    return struct.pack("<Q", len(text)) + text + data


def f32(*values):
    return struct.pack(f"<{len(values)}f", *values)


SEEDS = {
    # Valid.
    "valid_f32": assemble({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                           "__metadata__": {"format": "pt"}}, f32(1, -2, 3.5, 0.25), pad=False),
    "valid_mixed": assemble({"a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]},
                             "b": {"dtype": "I64", "shape": [1], "data_offsets": [4, 12]},
                             "c": {"dtype": "F16", "shape": [0, 3], "data_offsets": [12, 12]}},
                            b"\x80?\x00@" + struct.pack("<q", -7), pad=False),
    # F16 +inf, -inf, a NaN, the smallest subnormal, -0; a 0-d scalar; unaligned offsets after a 1-byte tensor.
    "f16_specials_scalar": assemble({"h": {"dtype": "F16", "shape": [5], "data_offsets": [1, 11]},
                                     "s": {"dtype": "F32", "shape": [], "data_offsets": [11, 15]},
                                     "u": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}},
                                    b"\x07" + struct.pack("<5H", 0x7C00, 0xFC00, 0x7E01, 0x0001, 0x8000) + f32(42)),
    "every_int_dtype": assemble({d: {"dtype": d, "shape": [1], "data_offsets": [8 * i, 8 * i + n]}
                                 for i, (d, n) in enumerate([("BOOL", 1), ("I8", 1), ("F8_E5M2", 1), ("F8_E4M3", 1),
                                                             ("I16", 2), ("U16", 2), ("I32", 4), ("U32", 4),
                                                             ("U64", 8), ("F64", 8)])},
                                bytes(80)),
    "empty_header": assemble({}),
    # Wrong.
    "truncated": assemble({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                           "__metadata__": {"format": "pt"}}, f32(1, -2, 3.5, 0.25)[:-4], pad=False),
    "lying_offsets": assemble({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 64]}},
                              f32(1, -2, 3.5, 0.25), pad=False),
    "overlap": assemble({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                         "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, f32(1, -2, 3.5, 0.25),
                        pad=False),
    "huge_header_length": struct.pack("<Q", 1 << 62) + b"{}",
    "shape_overflow": assemble({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}}),
    "nested_shape": assemble(b'{"w": {"dtype": "F32", "shape": [[[2]]], "data_offsets": [0, 8]}}', f32(1, 2)),
    # Structure at the reader's limits: 100 levels of nesting (refused past 64), a shape of 1000 dimensions.
    "deep_nesting": assemble(b'{"w": {"dtype": "F32", "shape": ' + b"[" * 100 + b"]" * 100 + b', "data_offsets": [0, 0]}}'),
    "long_shape": assemble({"w": {"dtype": "F32", "shape": [1] * 1000, "data_offsets": [0, 4]}}, f32(9)),
    "duplicate_name": assemble(b'{"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, '
                               b'"w": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}', b"ab"),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "safetensors")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(SEEDS)} seeds to {out}")


if __name__ == "__main__":
    main()
