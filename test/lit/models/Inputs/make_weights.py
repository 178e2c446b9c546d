"""Writes a .safetensors of random float32 weights for a model spec, independently of Tessera's own writer.

    make_weights.py TESSERA SPEC OUT.safetensors [--set PARAM=V]... [--name MODEL] [--seed S]
                    [--naming tessera|bert|gpt2] [--prefix]
                    [--drop NAME]... [--rename OLD=NEW]... [--reshape NAME=D0,D1]... [--extra NAME=D0,D1]...
                    [--int-extra NAME=D0,D1]...

The weight list (names and shapes) is read from `TESSERA check SPEC --emit=graph`: each node lists its weights
as `{name[d0, d1], ...}`. Values depend only on the seed and the Tessera weight name, so files written in
different namings from one seed hold the same model. `--naming bert|gpt2` writes the names and layouts of those
checkpoints (runtime/model/checkpoint_naming.h, inverted here): GPT-2's Conv1D weights [in, out] (transposed) and
its fused c_attn [W, 3W] whose columns are query | key | value; `--prefix` adds the "bert." / "transformer."
prefix that some exports carry. Edits (applied in Tessera names, before renaming to the checkpoint's):
  --drop NAME           leave the tensor out
  --rename OLD=NEW      store it under another name
  --reshape NAME=DIMS   store random values of another shape
  --extra NAME=DIMS     add a float32 tensor no model reads (a checkpoint name, written as given)
  --int-extra NAME=DIMS add an int64 tensor (a bookkeeping buffer such as BERT's position_ids)
"""
import argparse
import json
import re
import struct
import subprocess
import sys
import zlib

import numpy as np


def model_weights(tessera, spec, sets, name):
    """[(name, shape)] in graph order, each weight once (a tied table is listed by the node that owns it)."""
    command = [tessera, "check", spec, "--emit=graph"] + [f"--set={s}" for s in sets]
    if name:
        command += ["--model", name]
    graph = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    weights = {}
    for braces in re.findall(r"\{([^{}]*)\}\s*$", graph, flags=re.MULTILINE):
        for weight, dims in re.findall(r"([\w.]+)\[([0-9, ]*)\]", braces):
            weights.setdefault(weight, tuple(int(d) for d in dims.split(",") if d.strip()))
    if not weights:
        sys.exit(f"make_weights.py: no weights in the graph of {spec}:\n{graph}")
    return list(weights.items())


def random_values(name, shape, seed):
    """Seeded by the Tessera name: the same tensor whatever the checkpoint naming. Norm scales sit near 1."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    values = rng.normal(0.0, 0.2, size=shape)
    if re.search(r"norm\.weight$", name):
        values += 1.0
    return values.astype(np.float32)


BERT_NAMES = [
    (r"word\.weight", "embeddings.word_embeddings.weight"),
    (r"position\.weight", "embeddings.position_embeddings.weight"),
    (r"token_type\.weight", "embeddings.token_type_embeddings.weight"),
    (r"embed_norm\.(weight|bias)", r"embeddings.LayerNorm.\1"),
    (r"layer\.(\d+)\.attention\.(query|key|value)\.(weight|bias)", r"encoder.layer.\1.attention.self.\2.\3"),
    (r"layer\.(\d+)\.attention\.output\.(weight|bias)", r"encoder.layer.\1.attention.output.dense.\2"),
    (r"layer\.(\d+)\.attention_norm\.(weight|bias)", r"encoder.layer.\1.attention.output.LayerNorm.\2"),
    (r"layer\.(\d+)\.ffn_in\.(weight|bias)", r"encoder.layer.\1.intermediate.dense.\2"),
    (r"layer\.(\d+)\.ffn_out\.(weight|bias)", r"encoder.layer.\1.output.dense.\2"),
    (r"layer\.(\d+)\.ffn_norm\.(weight|bias)", r"encoder.layer.\1.output.LayerNorm.\2"),
]

# (Tessera name, GPT-2 name, Conv1D weight stored [in, out]).
GPT2_NAMES = [
    (r"word\.weight", "wte.weight", False),
    (r"position\.weight", "wpe.weight", False),
    (r"layer\.(\d+)\.attention_norm\.(weight|bias)", r"h.\1.ln_1.\2", False),
    (r"layer\.(\d+)\.attention\.output\.weight", r"h.\1.attn.c_proj.weight", True),
    (r"layer\.(\d+)\.attention\.output\.bias", r"h.\1.attn.c_proj.bias", False),
    (r"layer\.(\d+)\.ffn_norm\.(weight|bias)", r"h.\1.ln_2.\2", False),
    (r"layer\.(\d+)\.ffn_in\.weight", r"h.\1.mlp.c_fc.weight", True),
    (r"layer\.(\d+)\.ffn_in\.bias", r"h.\1.mlp.c_fc.bias", False),
    (r"layer\.(\d+)\.ffn_out\.weight", r"h.\1.mlp.c_proj.weight", True),
    (r"layer\.(\d+)\.ffn_out\.bias", r"h.\1.mlp.c_proj.bias", False),
    (r"final_norm\.(weight|bias)", r"ln_f.\1", False),
]


def to_bert(tensors, prefix):
    out = {}
    for name, value in tensors.items():
        for pattern, replacement in BERT_NAMES:
            if re.fullmatch(pattern, name):
                name = re.sub(pattern, replacement, name)
                break
        out[("bert." if prefix else "") + name] = value
    return out


def to_gpt2(tensors, prefix):
    out = {}
    fused = {}  # (layer, weight|bias) -> {query|key|value: tensor}
    for name, value in tensors.items():
        qkv = re.fullmatch(r"layer\.(\d+)\.attention\.(query|key|value)\.(weight|bias)", name)
        if qkv:
            fused.setdefault((qkv[1], qkv[3]), {})[qkv[2]] = value
            continue
        for pattern, replacement, conv1d in GPT2_NAMES:
            if re.fullmatch(pattern, name):
                name = re.sub(pattern, replacement, name)
                value = np.ascontiguousarray(value.T) if conv1d else value
                break
        out[name] = value
    for (layer, param), parts in fused.items():
        if set(parts) != {"query", "key", "value"}:
            sys.exit(f"make_weights.py: layer {layer} lacks one of query/key/value {param}: cannot fuse c_attn")
        # Conv1D [in, out]: each nn.Linear [out, in] part transposed, then the parts side by side.
        pieces = [parts[p].T if param == "weight" else parts[p] for p in ("query", "key", "value")]
        out[f"h.{layer}.attn.c_attn.{param}"] = np.ascontiguousarray(np.concatenate(pieces, axis=-1))
    return {("transformer." if prefix else "") + k: v for k, v in out.items()}


def write_safetensors(path, tensors):
    """8-byte little-endian header length, JSON header {name: {dtype, shape, data_offsets}}, packed data."""
    dtypes = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        value = tensors[name]
        blob = value.astype(value.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtypes[value.dtype], "shape": list(value.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header_bytes = json.dumps(header).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)  # data 8-byte aligned, as the safetensors package writes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for blob in blobs:
            f.write(blob)


def dims(text):
    return tuple(int(d) for d in text.split(",") if d)


def binding(text, flag):
    if "=" not in text:
        sys.exit(f"make_weights.py: {flag} expects NAME=VALUE, got '{text}'")
    return text.split("=", 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tessera")
    parser.add_argument("spec")
    parser.add_argument("out")
    parser.add_argument("--set", action="append", default=[], dest="sets")
    parser.add_argument("--name")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--naming", choices=["tessera", "bert", "gpt2"], default="tessera")
    parser.add_argument("--prefix", action="store_true")
    parser.add_argument("--drop", action="append", default=[])
    parser.add_argument("--rename", action="append", default=[])
    parser.add_argument("--reshape", action="append", default=[])
    parser.add_argument("--extra", action="append", default=[])
    parser.add_argument("--int-extra", action="append", default=[])
    args = parser.parse_args()

    weights = model_weights(args.tessera, args.spec, args.sets, args.name)
    shapes = dict(weights)
    for name, new_dims in (binding(r, "--reshape") for r in args.reshape):
        if name not in shapes:
            sys.exit(f"make_weights.py: --reshape {name}: the model has no such weight")
        shapes[name] = dims(new_dims)
    tensors = {name: random_values(name, shapes[name], args.seed) for name, _ in weights}
    for name in args.drop:
        if tensors.pop(name, None) is None:
            sys.exit(f"make_weights.py: --drop {name}: the model has no such weight")
    for old, new in (binding(r, "--rename") for r in args.rename):
        if old not in tensors:
            sys.exit(f"make_weights.py: --rename {old}: the model has no such weight")
        tensors[new] = tensors.pop(old)

    if args.naming == "bert":
        tensors = to_bert(tensors, args.prefix)
    elif args.naming == "gpt2":
        tensors = to_gpt2(tensors, args.prefix)
    for name, new_dims in (binding(e, "--extra") for e in args.extra):
        tensors[name] = random_values(name, dims(new_dims), args.seed)
    for name, new_dims in (binding(e, "--int-extra") for e in args.int_extra):
        shape = dims(new_dims)
        tensors[name] = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    write_safetensors(args.out, tensors)
    print(f"wrote {args.out}: {len(tensors)} tensors ({args.naming} naming)")


if __name__ == "__main__":
    main()
