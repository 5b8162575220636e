#!/usr/bin/python3
"""A PyTorch implementation of vkpeft's encoder model and delta modules.

It computes exactly what runtime/model/README.md specifies, independently of
vkpeft's C code, so tests can compare vkpeft (and its C reference) against
PyTorch on tiny models. Only Debian's python3-torch is needed: safetensors
files are read and written here with the format's 8-byte header + JSON.

Commands:
  make-model FAMILY DIR [--seed N] [--layers N] [--hidden N] [--heads N]
             [--ffn N] [--vocab N] [--labels N] [--dtype F32|F16|BF16] [--mlm]
      writes a tiny random bert/roberta sequence classifier (config.json +
      model.safetensors) in Hugging Face naming; --mlm: a masked LM instead
      (BertForMaskedLM's cls.predictions.*, RobertaForMaskedLM's lm_head.*,
      decoder tied to the word embeddings; BERT keeps its pooler)
  run --model DIR --spec SPEC.json --delta DELTA.safetensors --batch BATCH.json
      --out OUT.safetensors
      forward and backward with dropout off; writes "loss" (1), "logits"
      (B,C) and "grad.<name>" for every trainable tensor. With "mlm_labels"
      (B,T) (-100 ignored) in the batch: the MLM head and loss, logits (B*T,V)
  run-many JOBS.json
      the same for a list of {"model", "spec", "delta", "batch", "out"}
      objects, in one process (importing torch once)
"""
import argparse
import json
import math
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "F64": torch.float64}
NAMES = {v: k for k, v in DTYPES.items()}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        t = torch.frombuffer(bytearray(data[b:end]), dtype=DTYPES[e["dtype"]]) if end > b else \
            torch.zeros(0, dtype=DTYPES[e["dtype"]])
        out[name] = t.reshape(e["shape"]).clone()
    return out


def write_safetensors(path, tensors):
    header, blobs, at = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        b = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - (len(h) + 8) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---- tiny models -------------------------------------------------------------------------

def make_model(family, out_dir, seed=0, layers=2, hidden=16, heads=2, ffn=24, vocab=40, labels=3,
               dtype="F32", max_pos=24, mlm=False):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, std=0.02):
        return torch.randn(*shape, generator=g, dtype=torch.float64).float() * std

    p = family
    pad = 1 if family == "roberta" else 0
    types = 1 if family == "roberta" else 2
    w = {f"{p}.embeddings.word_embeddings.weight": rnd(vocab, hidden, std=0.5),
         f"{p}.embeddings.position_embeddings.weight": rnd(max_pos, hidden, std=0.5),
         f"{p}.embeddings.token_type_embeddings.weight": rnd(types, hidden, std=0.5),
         f"{p}.embeddings.LayerNorm.weight": 1 + rnd(hidden, std=0.1),
         f"{p}.embeddings.LayerNorm.bias": rnd(hidden, std=0.1)}
    for l in range(layers):
        b = f"{p}.encoder.layer.{l}."
        for name, (o, i) in {"attention.self.query": (hidden, hidden), "attention.self.key": (hidden, hidden),
                             "attention.self.value": (hidden, hidden), "attention.output.dense": (hidden, hidden),
                             "intermediate.dense": (ffn, hidden), "output.dense": (hidden, ffn)}.items():
            w[b + name + ".weight"] = rnd(o, i, std=0.3)
            w[b + name + ".bias"] = rnd(o, std=0.1)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[b + ln + ".weight"] = 1 + rnd(hidden, std=0.1)
            w[b + ln + ".bias"] = rnd(hidden, std=0.1)
    if family == "bert":
        w["bert.pooler.dense.weight"] = rnd(hidden, hidden, std=0.3)
        w["bert.pooler.dense.bias"] = rnd(hidden, std=0.1)
    if mlm:
        r, ln = ("cls.predictions.", "cls.predictions.transform.LayerNorm") if family == "bert" else \
            ("lm_head.", "lm_head.layer_norm")
        dense = r + ("transform.dense" if family == "bert" else "dense")
        w[dense + ".weight"] = rnd(hidden, hidden, std=0.3)
        w[dense + ".bias"] = rnd(hidden, std=0.1)
        w[ln + ".weight"] = 1 + rnd(hidden, std=0.1)
        w[ln + ".bias"] = rnd(hidden, std=0.1)
        w[r + "bias"] = rnd(vocab, std=0.1)
    elif family == "bert":
        w["classifier.weight"] = rnd(labels, hidden, std=0.3)
        w["classifier.bias"] = rnd(labels, std=0.1)
    else:
        w["classifier.dense.weight"] = rnd(hidden, hidden, std=0.3)
        w["classifier.dense.bias"] = rnd(hidden, std=0.1)
        w["classifier.out_proj.weight"] = rnd(labels, hidden, std=0.3)
        w["classifier.out_proj.bias"] = rnd(labels, std=0.1)
    w = {k: v.to(DTYPES[dtype]) for k, v in w.items()}
    arch = ("Roberta" if family == "roberta" else "Bert") + ("ForMaskedLM" if mlm else "ForSequenceClassification")
    config = {"model_type": family, "architectures": [arch],
        "vocab_size": vocab, "hidden_size": hidden, "num_hidden_layers": layers,
        "num_attention_heads": heads, "intermediate_size": ffn, "hidden_act": "gelu",
        "max_position_embeddings": max_pos, "type_vocab_size": types, "pad_token_id": pad,
        "layer_norm_eps": 1e-5 if family == "roberta" else 1e-12, "num_labels": labels,
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}
    with open(f"{out_dir}/config.json", "w") as f:
        json.dump(config, f, indent=2)
    write_safetensors(f"{out_dir}/model.safetensors", w)


# ---- pieces shared with decoder_torch.py -------------------------------------------------------

def act_fn(name):
    return {"relu": torch.relu, "gelu": lambda x: torch.nn.functional.gelu(x),
            "identity": lambda x: x}[name]


def load_trainable(weights, delta):
    """The delta file's tensors as float64 leaves that require grad, keyed by name; a name the
    model has (bitfit, full, the head) replaces the model's own tensor in `weights`."""
    trainable = {}
    for name, t in delta.items():
        t = t.double().clone().requires_grad_(True)
        trainable[name] = t
        if name in weights:
            weights[name] = t
    return trainable


def adapter_delta(m, z, down_w, down_b, up_w, up_b, gate, heads):
    """s·Δ(z) of adapter module m: Δ(z) = f(z·W_downᵀ + b_down)·W_upᵀ + b_up, per head with
    m["per_head"] (head h's columns of z give head h's of Δ); s = 1, m["scale"] or σ(gate)."""
    f = act_fn(m.get("act", "relu"))
    if m.get("per_head"):
        zh = z.unflatten(-1, (heads, -1))                                    # (B,T,H,hd)
        hid = f(torch.einsum("bthd,hrd->bthr", zh, down_w) + down_b)        # (B,T,H,r)
        out = (torch.einsum("bthr,hdr->bthd", hid, up_w) + up_b).flatten(-2)
    else:
        out = f(z @ down_w.T + down_b) @ up_w.T + up_b
    compose = m.get("compose", "add")
    if compose == "scale":
        out = out * m.get("scale", 1.0)
    elif compose == "gated":
        out = out * torch.sigmoid(gate)[0]
    return out


def reparam_output(trainable, i):
    """Prefix module i's reparameterisation: tanh(E·W0ᵀ + b0)·W2ᵀ + b2, (L, layers·2·width)."""
    hid = torch.tanh(trainable[f"delta{i}.reparam.embedding"] @ trainable[f"delta{i}.reparam.0.weight"].T
                     + trainable[f"delta{i}.reparam.0.bias"])
    return hid @ trainable[f"delta{i}.reparam.2.weight"].T + trainable[f"delta{i}.reparam.2.bias"]


def backward_and_write(path, loss, logits, trainable, extra=None):
    """Runs loss's backward and writes "loss" (1), "logits" and "grad.<name>" of every trainable
    tensor (zeros where none flowed), and the tensors of `extra` (a dict) when given."""
    loss.backward()
    out = {"loss": loss.detach().reshape(1), "logits": logits.detach()}
    for name, t in trainable.items():
        out["grad." + name] = t.grad if t.grad is not None else torch.zeros_like(t)
    out.update(extra or {})
    write_safetensors(path, out)


def command_line(doc):
    """The parser of a script's commands with `run` and `run-many`, and its subparsers for more."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    rn = sub.add_parser("run")
    for opt in ("model", "spec", "delta", "batch", "out"):
        rn.add_argument("--" + opt, required=True)
    many = sub.add_parser("run-many")
    many.add_argument("jobs")
    return ap, sub


def run_command(args, run):
    """`run` once, or `run-many`: every job of the list in this process (importing torch once)."""
    torch.set_grad_enabled(True)
    if args.cmd == "run-many":
        with open(args.jobs) as f:
            for job in json.load(f):
                run(argparse.Namespace(**job))
        return 0
    return run(args)


# ---- the model ----------------------------------------------------------------------------


class Model:
    """Frozen weights + trainable tensors (requires_grad) keyed by name."""

    def __init__(self, model_dir, spec, delta):
        with open(f"{model_dir}/config.json") as f:
            self.cfg = json.load(f)
        self.family = self.cfg["model_type"]
        self.w = {k: v.double() for k, v in read_safetensors(f"{model_dir}/model.safetensors").items()}
        self.spec = spec
        self.trainable = load_trainable(self.w, delta)  # bitfit / full / head train the model's own

    def p(self, name):
        return self.w[f"{self.family}.{name}"]

    def d(self, name):
        return self.trainable.get(name)

    def modules_at(self, layer, kind, at=None, insert=None):
        for i, m in enumerate(self.spec["modules"]):
            if m["kind"] != kind or (at and m.get("at") != at) or (insert and m.get("insert") != insert):
                continue
            layers = m.get("layers", "all")
            if layers == "all" or layer in layers:
                yield i, m

    def adapter(self, l, i, m, z):
        base = f"encoder.layers.{l}.delta{i}."
        return adapter_delta(m, z, self.d(base + "down.weight"), self.d(base + "down.bias"),
                             self.d(base + "up.weight"), self.d(base + "up.bias"), self.d(base + "gate"),
                             self.cfg["num_attention_heads"])

    def proj(self, l, at, name, x):
        y = x @ self.p(f"encoder.layer.{l}.{name}.weight").T + self.p(f"encoder.layer.{l}.{name}.bias")
        for i, m in self.modules_at(l, "lora", at):
            base = f"encoder.layers.{l}.delta{i}."
            s = m.get("alpha", 16) / m.get("rank", 8)
            y = y + s * ((x @ self.d(base + "lora_A").T) @ self.d(base + "lora_B").T)
        return y

    def prefixes(self, l):
        d, H = self.cfg["hidden_size"], self.cfg["num_attention_heads"]
        for i, m in self.modules_at(l, "prefix"):
            if m.get("reparam", 800):
                layers = m.get("layers", "all")
                applicable = list(range(self.cfg["num_hidden_layers"])) if layers == "all" else sorted(layers)
                j = applicable.index(l)
                out = reparam_output(self.trainable, i)
                pk, pv = out[:, j * 2 * d:j * 2 * d + d], out[:, j * 2 * d + d:(j + 1) * 2 * d]
            else:
                pk = self.d(f"encoder.layers.{l}.delta{i}.prefix_k")
                pv = self.d(f"encoder.layers.{l}.delta{i}.prefix_v")
            L = pk.shape[0]
            yield pk.view(L, H, -1).transpose(0, 1), pv.view(L, H, -1).transpose(0, 1)   # (H,L,hd)

    def layer(self, l, x, keep):
        B, T, d = x.shape
        H = self.cfg["num_attention_heads"]
        hd = d // H
        eps = self.cfg.get("layer_norm_eps", 1e-12)
        a_in = x
        q = self.proj(l, "q", "attention.self.query", a_in).view(B, T, H, hd).transpose(1, 2)
        k = self.proj(l, "k", "attention.self.key", a_in).view(B, T, H, hd).transpose(1, 2)
        v = self.proj(l, "v", "attention.self.value", a_in).view(B, T, H, hd).transpose(1, 2)
        mask = keep[:, None, None, :].bool().expand(B, H, T, T)
        for pk, pv in self.prefixes(l):
            L = pk.shape[1]
            k = torch.cat([pk.unsqueeze(0).expand(B, -1, -1, -1), k], dim=2)
            v = torch.cat([pv.unsqueeze(0).expand(B, -1, -1, -1), v], dim=2)
            mask = torch.cat([torch.ones(B, H, T, L, dtype=torch.bool), mask], dim=3)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        scores = scores.masked_fill(~mask, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        probs = torch.nan_to_num(probs, nan=0.0)  # fully masked rows are zero, as the contract says
        ctx = (probs @ v).transpose(1, 2).reshape(B, T, d)
        for i, m in self.modules_at(l, "adapter", "attn", "parallel"):
            ctx = ctx + self.adapter(l, i, m, a_in)
        o = self.proj(l, "o", "attention.output.dense", ctx)
        for i, m in self.modules_at(l, "adapter", "attn", "sequential"):
            o = o + self.adapter(l, i, m, o)
        ln = f"encoder.layer.{l}.attention.output.LayerNorm"
        h = torch.nn.functional.layer_norm(x + o, (d,), self.p(ln + ".weight"), self.p(ln + ".bias"), eps)
        u = self.proj(l, "up", "intermediate.dense", h)
        u = torch.nn.functional.gelu(u) if self.cfg.get("hidden_act", "gelu") == "gelu" else \
            torch.nn.functional.gelu(u, approximate="tanh")
        dn = self.proj(l, "down", "output.dense", u)
        for i, m in self.modules_at(l, "adapter", "ffn", "sequential"):
            dn = dn + self.adapter(l, i, m, dn)
        for i, m in self.modules_at(l, "adapter", "ffn", "parallel"):
            dn = dn + self.adapter(l, i, m, h)
        ln = f"encoder.layer.{l}.output.LayerNorm"
        return torch.nn.functional.layer_norm(h + dn, (d,), self.p(ln + ".weight"), self.p(ln + ".bias"), eps)

    def mlm_head(self, x):
        """BertForMaskedLM / RobertaForMaskedLM: logits (B*T, V)."""
        d = self.cfg["hidden_size"]
        eps = self.cfg.get("layer_norm_eps", 1e-12)
        if self.family == "bert":
            dense, ln, bias = "cls.predictions.transform.dense", "cls.predictions.transform.LayerNorm", \
                "cls.predictions.bias"
            act = torch.nn.functional.gelu if self.cfg.get("hidden_act", "gelu") == "gelu" else \
                (lambda z: torch.nn.functional.gelu(z, approximate="tanh"))
        else:
            dense, ln, bias = "lm_head.dense", "lm_head.layer_norm", "lm_head.bias"
            act = torch.nn.functional.gelu
        h = act(x @ self.w[dense + ".weight"].T + self.w[dense + ".bias"])
        h = torch.nn.functional.layer_norm(h, (d,), self.w[ln + ".weight"], self.w[ln + ".bias"], eps)
        logits = h @ self.p("embeddings.word_embeddings.weight").T + self.w[bias]
        return logits.reshape(-1, logits.shape[-1])

    def forward(self, ids, keep, type_ids, labels, label_smoothing=0.0, mlm_labels=None):
        d = self.cfg["hidden_size"]
        eps = self.cfg.get("layer_norm_eps", 1e-12)
        pad = self.cfg.get("pad_token_id", 0)
        if self.family == "roberta":
            nonpad = (ids != pad).long()
            pos = torch.cumsum(nonpad, dim=1) * nonpad + pad
        else:
            pos = torch.arange(ids.shape[1]).unsqueeze(0).expand_as(ids)
        e = self.p("embeddings.word_embeddings.weight")[ids] + self.p("embeddings.position_embeddings.weight")[pos]
        e = e + self.p("embeddings.token_type_embeddings.weight")[type_ids]
        x = torch.nn.functional.layer_norm(e, (d,), self.p("embeddings.LayerNorm.weight"),
                                           self.p("embeddings.LayerNorm.bias"), eps)
        for l in range(self.cfg["num_hidden_layers"]):
            x = self.layer(l, x, keep)
        if mlm_labels is not None:
            logits = self.mlm_head(x)
            loss = torch.nn.functional.cross_entropy(logits, mlm_labels.reshape(-1), ignore_index=-100,
                                                     label_smoothing=label_smoothing)
            return loss, logits
        first = x[:, 0]
        if self.family == "bert":
            pooled = torch.tanh(first @ self.p("pooler.dense.weight").T + self.p("pooler.dense.bias"))
            logits = pooled @ self.w["classifier.weight"].T + self.w["classifier.bias"]
        else:
            z = torch.tanh(first @ self.w["classifier.dense.weight"].T + self.w["classifier.dense.bias"])
            logits = z @ self.w["classifier.out_proj.weight"].T + self.w["classifier.out_proj.bias"]
        loss = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=label_smoothing)
        return loss, logits


def run(args):
    torch.manual_seed(0)
    with open(args.spec) as f:
        spec = json.load(f)
    with open(args.batch) as f:
        batch = json.load(f)
    delta = read_safetensors(args.delta)
    model = Model(args.model, spec, delta)
    ids = torch.tensor(batch["input_ids"], dtype=torch.long)
    keep = torch.tensor(batch.get("attention_mask", [[1] * ids.shape[1]] * ids.shape[0]), dtype=torch.long)
    type_ids = torch.tensor(batch.get("token_type_ids", [[0] * ids.shape[1]] * ids.shape[0]), dtype=torch.long)
    labels = torch.tensor(batch["labels"], dtype=torch.long) if "labels" in batch else None
    mlm = torch.tensor(batch["mlm_labels"], dtype=torch.long) if "mlm_labels" in batch else None
    loss, logits = model.forward(ids, keep, type_ids, labels, batch.get("label_smoothing", 0.0), mlm)
    backward_and_write(args.out, loss, logits, model.trainable)
    return 0


def main():
    ap, sub = command_line(__doc__)
    mk = sub.add_parser("make-model")
    mk.add_argument("family", choices=["bert", "roberta"])
    mk.add_argument("dir")
    for opt, default in (("seed", 0), ("layers", 2), ("hidden", 16), ("heads", 2), ("ffn", 24),
                         ("vocab", 40), ("labels", 3)):
        mk.add_argument("--" + opt, type=int, default=default)
    mk.add_argument("--dtype", default="F32", choices=["F32", "F16", "BF16"])
    mk.add_argument("--mlm", action="store_true")
    args = ap.parse_args()
    if args.cmd == "make-model":
        make_model(args.family, args.dir, args.seed, args.layers, args.hidden, args.heads, args.ffn,
                   args.vocab, args.labels, args.dtype, mlm=args.mlm)
        return 0
    return run_command(args, run)


if __name__ == "__main__":
    sys.exit(main())
