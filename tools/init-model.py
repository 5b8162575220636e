#!/usr/bin/env python3
"""Writes a randomly initialised BERT model folder, the starting point that
`vkpeft pretrain` trains into the bundled model.

    python3 tools/init-model.py OUT --vocab-size V [--hidden 128] [--layers 4]
        [--heads 4] [--intermediate 512] [--max-positions 64] [--seed 1]

OUT gets config.json (BertForMaskedLM, Hugging Face field names) and
model.safetensors (F32) holding every tensor Hugging Face's BertForMaskedLM
has, pooler included, under its names: weights drawn from N(0, 0.02) as
BERT's `initializer_range` says, biases 0, LayerNorm weights 1. The masked-LM
decoder is tied to the word embeddings, so it is not stored.

Only the Python standard library is used; the output depends only on the
arguments (random.Random(seed)), and files are written atomically.
"""
import argparse
import array
import json
import os
import random
import struct
import sys


def tensors(cfg):
    """(name, shape, kind) in file order; kind: normal, zero or one."""
    d, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    out = [("bert.embeddings.word_embeddings.weight", (v, d), "normal"),
           ("bert.embeddings.position_embeddings.weight", (cfg["max_position_embeddings"], d), "normal"),
           ("bert.embeddings.token_type_embeddings.weight", (cfg["type_vocab_size"], d), "normal"),
           ("bert.embeddings.LayerNorm.weight", (d,), "one"),
           ("bert.embeddings.LayerNorm.bias", (d,), "zero")]

    def linear(name, rows, cols):
        out.append((name + ".weight", (rows, cols), "normal"))
        out.append((name + ".bias", (rows,), "zero"))

    def norm(name):
        out.append((name + ".weight", (d,), "one"))
        out.append((name + ".bias", (d,), "zero"))

    for layer in range(cfg["num_hidden_layers"]):
        p = "bert.encoder.layer.%d." % layer
        for proj in ("query", "key", "value"):
            linear(p + "attention.self." + proj, d, d)
        linear(p + "attention.output.dense", d, d)
        norm(p + "attention.output.LayerNorm")
        linear(p + "intermediate.dense", inter, d)
        linear(p + "output.dense", d, inter)
        norm(p + "output.LayerNorm")
    linear("bert.pooler.dense", d, d)
    linear("cls.predictions.transform.dense", d, d)
    norm("cls.predictions.transform.LayerNorm")
    out.append(("cls.predictions.bias", (v,), "zero"))
    return out


def values(shape, kind, rng, std):
    n = 1
    for s in shape:
        n *= s
    if kind == "normal":
        return array.array("f", (rng.gauss(0.0, std) for _ in range(n)))
    return array.array("f", [1.0 if kind == "one" else 0.0]) * n


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def safetensors_bytes(cfg, seed):
    rng = random.Random(seed)
    header, blobs, offset = {}, [], 0
    for name, shape, kind in tensors(cfg):
        a = values(shape, kind, rng, cfg["initializer_range"])
        if sys.byteorder != "little":
            a.byteswap()
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    header["__metadata__"] = {"format": "pt", "writer": "vkpeft tools/init-model.py"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="model folder to write")
    ap.add_argument("--vocab-size", type=int, required=True)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=512)
    ap.add_argument("--max-positions", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.vocab_size < 1 or a.hidden < 1 or a.layers < 1 or a.heads < 1 or a.hidden % a.heads:
        sys.exit("init-model: --hidden must be a positive multiple of --heads, sizes positive")
    cfg = {
        "architectures": ["BertForMaskedLM"], "model_type": "bert",
        "vocab_size": a.vocab_size, "hidden_size": a.hidden, "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads, "intermediate_size": a.intermediate, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": a.max_positions, "type_vocab_size": 2, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "pad_token_id": 0, "position_embedding_type": "absolute",
        "torch_dtype": "float32",
    }
    os.makedirs(a.out, exist_ok=True)
    write_atomic(os.path.join(a.out, "config.json"), (json.dumps(cfg, indent=2) + "\n").encode())
    write_atomic(os.path.join(a.out, "model.safetensors"), safetensors_bytes(cfg, a.seed))
    print("init-model: %s (%d layers, hidden %d, vocabulary %d)" % (a.out, a.layers, a.hidden, a.vocab_size))


if __name__ == "__main__":
    main()
