#!/usr/bin/python3
"""A PyTorch implementation of vkpeft's encoder-decoder models (BART, mBART) and their deltas.

It computes what tests/reference/seq2seq.h specifies, independently of vkpeft's C code,
following Hugging Face's modeling_bart.py / modeling_mbart.py (BartForConditionalGeneration,
MBartForConditionalGeneration) with torch.nn.functional ops in float64 (transformers is not
needed). Dropout is off.

Deltas (tensor names as in seq2seq.h): per place — encoder self-attention and FFN
(encoder.layers.{l}.delta{i}.*), decoder self-attention and FFN (decoder.layers.{l}...),
cross-attention (cross.layers.{l}..., no FFN modules) — LoRA on q, k, v, o, up, down
(cross-attention k, v read the encoder output), adapters (sequential / parallel, attn / ffn,
per head, compose add / scale / gated), prefixes (plain, or one reparameterisation per module
whose output holds a (P_k, P_v) block per place: encoder layers, decoder layers, cross layers),
bitfit and full (the delta file then holds model tensors, trained in place).

Commands:
  run --model DIR --spec SPEC.json --delta DELTA.safetensors --batch BATCH.json
      --out OUT.safetensors
      forward and backward; writes "loss" (1), "logits" (B,T,V) and "grad.<name>" for every
      tensor of the delta file. BATCH.json: "input_ids" (B,S), "attention_mask" (B,S),
      "decoder_input_ids" (B,T), "decoder_attention_mask" (optional), "labels" (B,T, -100
      not scored), "label_smoothing"; with "generate": N also "generated" (B,N): greedy
      tokens (float64), decoded step by step as seq2seq.h says.
  run-many JOBS.json
      the same for a list of {"model", "spec", "delta", "batch", "out"} objects
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vkpeft_torch import (adapter_delta, backward_and_write, command_line, load_trainable,  # noqa: E402
                          read_safetensors, reparam_output, run_command)

FFN_SITES = ("ffn", "up", "down")


class Seq2Seq:
    def __init__(self, model_dir, spec, delta):
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        self.cfg = cfg
        self.mbart = cfg["model_type"] == "mbart"
        self.d, self.H = cfg["d_model"], cfg["encoder_attention_heads"]
        self.hd = self.d // self.H
        self.n = {"encoder": cfg["encoder_layers"], "decoder": cfg["decoder_layers"], "cross": cfg["decoder_layers"]}
        self.scale = math.sqrt(self.d) if cfg.get("scale_embedding", False) else 1.0
        self.act = {"gelu": lambda x: F.gelu(x), "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
                    "relu": F.relu}[cfg.get("activation_function", "gelu")]
        self.tied = cfg.get("tie_word_embeddings", True)
        self.w = {k: v.double() for k, v in read_safetensors(os.path.join(model_dir, "model.safetensors")).items()}
        self.trainable = load_trainable(self.w, delta)
        self.modules = spec["modules"]

    # ---- placement -----------------------------------------------------------------------

    def applies(self, m, place, layer):
        if place not in m.get("stack", ["encoder", "decoder", "cross"]):
            return False
        if place == "cross" and m.get("at") in FFN_SITES:
            return False
        layers = m.get("layers", "all")
        return layers == "all" or layer in layers

    def modules_at(self, place, layer, kind, at=None, insert=None):
        for i, m in enumerate(self.modules):
            if m["kind"] == kind and (at is None or m.get("at") == at) and \
                    (insert is None or m.get("insert") == insert) and self.applies(m, place, layer):
                yield i, m

    def t(self, name):
        return self.trainable[name]

    def lora(self, place, layer, at, x, y):
        for i, m in self.modules_at(place, layer, "lora", at):
            base = f"{place}.layers.{layer}.delta{i}."
            y = y + (m["alpha"] / m["rank"]) * (x @ self.t(base + "lora_A").T @ self.t(base + "lora_B").T)
        return y

    def adapters(self, place, layer, at, insert, z, y):
        for i, m in self.modules_at(place, layer, "adapter", at, insert):
            base = f"{place}.layers.{layer}.delta{i}."
            y = y + adapter_delta(m, z if insert == "parallel" else y, self.t(base + "down.weight"),
                                  self.t(base + "down.bias"), self.t(base + "up.weight"), self.t(base + "up.bias"),
                                  self.trainable.get(base + "gate"), self.H)
        return y

    def prefixes(self, place, layer):
        """(P_k, P_v), each (Lp, d), of every prefix module at the place, in spec order."""
        ks, vs = [], []
        for i, m in self.modules_at(place, layer, "prefix"):
            if m.get("reparam", 800):
                blocks = [(p, l) for p in ("encoder", "decoder", "cross") for l in range(self.n[p])
                          if self.applies(m, p, l)]
                b = blocks.index((place, layer))
                out = reparam_output(self.trainable, i)
                ks.append(out[:, 2 * b * self.d:(2 * b + 1) * self.d])
                vs.append(out[:, (2 * b + 1) * self.d:(2 * b + 2) * self.d])
            else:
                ks.append(self.t(f"{place}.layers.{layer}.delta{i}.prefix_k"))
                vs.append(self.t(f"{place}.layers.{layer}.delta{i}.prefix_v"))
        return (torch.cat(ks), torch.cat(vs)) if ks else (None, None)

    # ---- the frozen model ----------------------------------------------------------------

    def ln(self, x, name):
        return F.layer_norm(x, (self.d,), self.w[name + ".weight"], self.w[name + ".bias"], 1e-5)

    def linear(self, name, x):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def attention(self, place, layer, name, a, kv, key_keep, causal):
        """BartAttention with the deltas: a (B,T,d) queries' input, kv (B,S,d)."""
        B, T, _ = a.shape
        S = kv.shape[1]
        q = self.lora(place, layer, "q", a, self.linear(name + ".q_proj", a))
        k = self.lora(place, layer, "k", kv, self.linear(name + ".k_proj", kv))
        v = self.lora(place, layer, "v", kv, self.linear(name + ".v_proj", kv))
        q = q.view(B, T, self.H, self.hd).transpose(1, 2)
        k = k.view(B, S, self.H, self.hd).transpose(1, 2)
        v = v.view(B, S, self.H, self.hd).transpose(1, 2)
        visible = key_keep.bool()[:, None, :].expand(B, T, S)
        if causal:
            visible = visible & torch.ones(T, S, dtype=torch.bool).tril()[None]
        pk, pv = self.prefixes(place, layer)
        if pk is not None:
            L = pk.shape[0]
            k = torch.cat([pk.view(L, self.H, self.hd).transpose(0, 1).expand(B, -1, -1, -1), k], dim=2)
            v = torch.cat([pv.view(L, self.H, self.hd).transpose(0, 1).expand(B, -1, -1, -1), v], dim=2)
            visible = torch.cat([torch.ones(B, T, L, dtype=torch.bool), visible], dim=2)
        scores = torch.einsum("bhtd,bhsd->bhts", q, k) / math.sqrt(self.hd)
        probs = torch.softmax(scores.masked_fill(~visible[:, None], float("-inf")), dim=-1)
        ctx = torch.einsum("bhts,bhsd->bhtd", probs, v).transpose(1, 2).reshape(B, T, self.d)
        ctx = self.adapters(place, layer, "attn", "parallel", a, ctx)
        o = self.lora(place, layer, "o", ctx, self.linear(name + ".out_proj", ctx))
        return self.adapters(place, layer, "attn", "sequential", None, o)

    def ffn(self, place, layer, p, f):
        up = self.lora(place, layer, "up", f, self.linear(p + "fc1", f))
        u = self.act(up)
        dn = self.lora(place, layer, "down", u, self.linear(p + "fc2", u))
        dn = self.adapters(place, layer, "ffn", "sequential", None, dn)
        return self.adapters(place, layer, "ffn", "parallel", f, dn)

    def block(self, x, norm, sublayer):
        """Post-LN BART: LN(x + f(x)); pre-LN mBART: x + f(LN(x))."""
        if self.mbart:
            return x + sublayer(self.ln(x, norm))
        return self.ln(x + sublayer(x), norm)

    def embed(self, stack, ids):
        T = ids.shape[1]
        x = self.w["model.shared.weight"][ids] * self.scale
        x = x + self.w[f"model.{stack}.embed_positions.weight"][torch.arange(T) + 2][None]
        return self.ln(x, f"model.{stack}.layernorm_embedding")

    def encode(self, ids, keep):
        x = self.embed("encoder", ids)
        for l in range(self.n["encoder"]):
            p = f"model.encoder.layers.{l}."
            x = self.block(x, p + "self_attn_layer_norm",
                           lambda a: self.attention("encoder", l, p + "self_attn", a, a, keep, False))
            x = self.block(x, p + "final_layer_norm", lambda f: self.ffn("encoder", l, p, f))
        return self.ln(x, "model.encoder.layer_norm") if self.mbart else x

    def decode(self, dec_ids, dec_keep, enc, enc_keep):
        x = self.embed("decoder", dec_ids)
        for l in range(self.n["decoder"]):
            p = f"model.decoder.layers.{l}."
            x = self.block(x, p + "self_attn_layer_norm",
                           lambda a: self.attention("decoder", l, p + "self_attn", a, a, dec_keep, True))
            x = self.block(x, p + "encoder_attn_layer_norm",
                           lambda a: self.attention("cross", l, p + "encoder_attn", a, enc, enc_keep, False))
            x = self.block(x, p + "final_layer_norm", lambda f: self.ffn("decoder", l, p, f))
        if self.mbart:
            x = self.ln(x, "model.decoder.layer_norm")
        head = self.w["model.shared.weight"] if self.tied else self.w["lm_head.weight"]
        return x @ head.T + self.w["final_logits_bias"]

    @torch.no_grad()
    def generate(self, ids, keep, max_new):
        """Greedy: encoder once, the decoder re-run on every token so far (seq2seq.h)."""
        cfg = self.cfg
        B = ids.shape[0]
        enc = self.encode(ids, keep)
        pad, eos, forced = cfg.get("pad_token_id", 1), cfg.get("eos_token_id", 2), cfg.get("forced_bos_token_id")
        dec = torch.full((B, 1), cfg.get("decoder_start_token_id", 2), dtype=torch.long)
        out = torch.full((B, max_new), pad, dtype=torch.long)
        done = torch.zeros(B, dtype=torch.bool)
        for t in range(max_new):
            logits = self.decode(dec, torch.ones_like(dec), enc, keep)[:, -1]
            y = logits.argmax(-1)
            if t == 0 and forced is not None:
                y = torch.full_like(y, forced)
            y = torch.where(done, torch.full_like(y, pad), y)
            out[:, t] = y
            done = done | (y == eos)
            dec = torch.cat([dec, y[:, None]], dim=1)
            if bool(done.all()):
                break
        return out


def run(args):
    with open(args.spec) as f:
        spec = json.load(f)
    with open(args.batch) as f:
        batch = json.load(f)
    ids = torch.tensor(batch["input_ids"], dtype=torch.long)
    keep = torch.tensor(batch.get("attention_mask", torch.ones_like(ids).tolist()), dtype=torch.long)
    dec_ids = torch.tensor(batch["decoder_input_ids"], dtype=torch.long)
    dec_keep = torch.tensor(batch.get("decoder_attention_mask", torch.ones_like(dec_ids).tolist()), dtype=torch.long)
    labels = torch.tensor(batch["labels"], dtype=torch.long)
    model = Seq2Seq(args.model, spec, read_safetensors(args.delta))
    logits = model.decode(dec_ids, dec_keep, model.encode(ids, keep), keep)
    V = logits.shape[-1]
    # BartForConditionalGeneration: CrossEntropyLoss over (B·T, V), no shift (the decoder
    # input is the labels shifted right); here with label smoothing.
    loss = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=-100,
                           label_smoothing=batch.get("label_smoothing", 0.0))
    extra = {"generated": model.generate(ids, keep, int(batch["generate"])).double()} if batch.get("generate") else {}
    backward_and_write(args.out, loss, logits, model.trainable, extra)
    return 0


def main():
    ap, _ = command_line(__doc__)
    return run_command(ap.parse_args(), run)


if __name__ == "__main__":
    sys.exit(main())
