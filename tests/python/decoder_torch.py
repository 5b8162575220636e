#!/usr/bin/python3
"""A PyTorch implementation of vkpeft's decoder-only causal LM and its delta modules.

It computes what tests/reference/decoder.h specifies, independently of vkpeft's C code,
following Hugging Face's modeling_gpt2.py (GPT2LMHeadModel) and modeling_llama.py /
modeling_qwen2.py (LlamaForCausalLM, Qwen2ForCausalLM) with torch.nn.functional ops in
float64 (transformers is not needed; HF computes RoPE angles and RMSNorm in float32, this
does everything in float64). Dropout is off.

Deltas (tensor names as in decoder.h): LoRA on q, k, v, o, up, down (GPT-2's q/k/v are
column blocks of c_attn), adapters (sequential / parallel, at attn / ffn, per head,
compose add / scale / gated), prefixes (plain or reparameterised, in K/V head space,
never rotated, sequence positions starting at the prefix length as PEFT does, or at 0),
bitfit and full (the delta file then holds model tensors, which are trained in place).

Commands:
  run --model DIR --spec SPEC.json --delta DELTA.safetensors --batch BATCH.json
      --out OUT.safetensors
      forward and backward; writes "loss" (1), "logits" (B,T,V) and "grad.<name>" for
      every tensor of the delta file. BATCH.json: "input_ids" (B,T), "attention_mask"
      (B,T, optional), "labels" (B,T, HF: -100 not scored; default input_ids masked by
      attention_mask), "label_smoothing", "prefix_positions": "peft" (default) | "zero"
  run-many JOBS.json
      the same for a list of {"model", "spec", "delta", "batch", "out"} objects, in one
      process (importing torch once)
  greedy --model DIR --spec SPEC.json --delta DELTA.safetensors --prompts PROMPTS.json
      --out OUT.json
      greedy decoding, one prompt at a time, the whole sequence re-run for every new token
      (no cache): PROMPTS.json "prompts" (lists of ids), "max_new_tokens", "eos_token_id"
      (optional); OUT.json "tokens": the generated ids of each prompt, the eos included
  greedy-many JOBS.json
      the same for a list of {"model", "spec", "delta", "prompts", "out"} objects, the
      prompts file's fields inline
  peft-loss --model DIR [--peft DIR] --batch BATCH.json --out OUT.json
      the mean causal-LM loss of the model with a Hugging Face PEFT adapter folder
      (adapter_config.json + adapter_model.safetensors: LORA or PREFIX_TUNING) applied the
      way PEFT applies it, read with PEFT's own names and layouts (not vkpeft's): LoRA adds
      lora_B(lora_A(x))·lora_alpha/r (alpha/sqrt(r) with use_rslora) to the output of the
      module it names (GPT-2's c_attn before its split into q, k, v; fan_in_fan_out only
      changes merging); prefix tuning views prompt_embeddings (L, layers·2·token_dim) as
      PEFT's get_prompt does and passes the pairs as past_key_values (positions from L).
      BATCH.json as for run. OUT.json: {"loss", "base_loss" (without the adapter), "tokens"}
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vkpeft_torch import (adapter_delta, backward_and_write, command_line, load_trainable,  # noqa: E402
                          read_safetensors, reparam_output, run_command)


class CausalLM:
    """Frozen weights plus the trainable tensors of the delta file (requires_grad)."""

    def __init__(self, model_dir, spec, delta, prefix_positions="peft"):
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        self.gpt2 = cfg["model_type"] == "gpt2"
        if self.gpt2:
            self.d, self.n_layers, self.H = cfg["n_embd"], cfg["n_layer"], cfg["n_head"]
            self.G, self.hd = self.H, self.d // self.H
            self.eps = cfg.get("layer_norm_epsilon", 1e-5)
            self.tied = cfg.get("tie_word_embeddings", True)
        else:
            self.d, self.n_layers, self.H = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]
            self.G = cfg.get("num_key_value_heads", self.H)
            self.hd = cfg.get("head_dim", self.d // self.H)
            self.eps = cfg.get("rms_norm_eps", 1e-6)
            self.theta = cfg.get("rope_theta", 10000.0)
            self.tied = cfg.get("tie_word_embeddings", False)
        self.w = {k: v.double() for k, v in read_safetensors(os.path.join(model_dir, "model.safetensors")).items()}
        self.trainable = load_trainable(self.w, delta)  # bitfit / full train the model's own tensors
        self.modules = spec["modules"]
        self.prefix_positions = prefix_positions
        self.peft = None  # a PeftAdapter, applied on top (peft-loss)

    # ---- spec helpers ----------------------------------------------------------------

    def applies(self, m, layer):
        if "decoder" not in m.get("stack", ["encoder", "decoder", "cross"]):
            return False
        layers = m.get("layers", "all")
        return layers == "all" or layer in layers

    def modules_at(self, layer, kind, at=None, insert=None):
        for i, m in enumerate(self.modules):
            if m["kind"] == kind and (at is None or m.get("at") == at) and \
                    (insert is None or m.get("insert") == insert) and self.applies(m, layer):
                yield i, m

    def t(self, name):
        return self.trainable[name]

    # ---- delta modules ---------------------------------------------------------------

    def lora(self, layer, at, x, y):
        for i, m in self.modules_at(layer, "lora", at):
            base = f"decoder.layers.{layer}.delta{i}."
            y = y + (m["alpha"] / m["rank"]) * (x @ self.t(base + "lora_A").T @ self.t(base + "lora_B").T)
        return y

    def adapter(self, layer, i, m, z):
        base = f"decoder.layers.{layer}.delta{i}."
        return adapter_delta(m, z, self.t(base + "down.weight"), self.t(base + "down.bias"),
                             self.t(base + "up.weight"), self.t(base + "up.bias"),
                             self.trainable.get(base + "gate"), self.H)

    def adapters(self, layer, at, insert, z, y):
        for i, m in self.modules_at(layer, "adapter", at, insert):
            y = y + self.adapter(layer, i, m, z if insert == "parallel" else y)
        return y

    def prefix_rows(self, layer):
        """Every prefix module's (P_k, P_v) of the layer, each (L, G*hd), in spec order."""
        kvd = self.G * self.hd
        rows = []
        for i, m in self.modules_at(layer, "prefix"):
            if m.get("reparam", 800):
                block = [l for l in range(self.n_layers) if self.applies(m, l)].index(layer)
                out = reparam_output(self.trainable, i)
                rows.append((out[:, 2 * block * kvd:(2 * block + 1) * kvd],
                             out[:, (2 * block + 1) * kvd:(2 * block + 2) * kvd]))
            else:
                rows.append((self.t(f"decoder.layers.{layer}.delta{i}.prefix_k"),
                             self.t(f"decoder.layers.{layer}.delta{i}.prefix_v")))
        return rows

    def prefix_length(self):
        if self.prefix_positions == "zero":
            return 0
        if self.peft is not None and self.peft.past is not None:
            return self.peft.num_virtual_tokens
        return max(sum(m["length"] for _, m in self.modules_at(l, "prefix")) for l in range(self.n_layers))

    # ---- the frozen model ------------------------------------------------------------

    def norm(self, x, name):
        if self.gpt2:
            return F.layer_norm(x, (self.d,), self.w[name + ".weight"], self.w[name + ".bias"], self.eps)
        variance = x.pow(2).mean(-1, keepdim=True)        # LlamaRMSNorm
        return self.w[name + ".weight"] * (x * torch.rsqrt(variance + self.eps))

    def peft_lora(self, name, x, y):
        return y if self.peft is None else self.peft.lora_forward(name, x, y)

    def linear(self, name, x, bias=True):
        """nn.Linear ([out, in]) for LLaMA; GPT-2 Conv1D ([in, out]) is handled by its callers."""
        y = x @ self.w[name + ".weight"].T
        return y + self.w[name + ".bias"] if bias and name + ".bias" in self.w else y

    def rope(self, x, pos):
        """HF apply_rotary_pos_emb on (B,heads,T,hd) with rotate_half."""
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, self.hd, 2, dtype=torch.float64) / self.hd))
        freqs = pos.double()[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        x1, x2 = x[..., :self.hd // 2], x[..., self.hd // 2:]
        return x * cos + torch.cat((-x2, x1), dim=-1) * sin

    def attention(self, layer, a, keep, pos):
        B, T, _ = a.shape
        p = f"transformer.h.{layer}.attn." if self.gpt2 else f"model.layers.{layer}.self_attn."
        if self.gpt2:
            qkv = self.peft_lora(p + "c_attn", a, a @ self.w[p + "c_attn.weight"] + self.w[p + "c_attn.bias"])
            q, k, v = qkv.split(self.d, dim=-1)
        else:
            q, k, v = (self.peft_lora(p + n + "_proj", a, self.linear(p + n + "_proj", a)) for n in ("q", "k", "v"))
        q, k, v = self.lora(layer, "q", a, q), self.lora(layer, "k", a, k), self.lora(layer, "v", a, v)
        q = q.view(B, T, self.H, self.hd).transpose(1, 2)
        k = k.view(B, T, self.G, self.hd).transpose(1, 2)
        v = v.view(B, T, self.G, self.hd).transpose(1, 2)
        if not self.gpt2:
            q, k = self.rope(q, pos), self.rope(k, pos)
        prefixes = self.prefix_rows(layer)
        Lp = sum(pk.shape[0] for pk, _ in prefixes)
        if prefixes:  # past_key_values: (B, G, Lp, hd) in front, never rotated
            pk = torch.cat([pk for pk, _ in prefixes]).view(Lp, self.G, self.hd).transpose(0, 1)
            pv = torch.cat([pv for _, pv in prefixes]).view(Lp, self.G, self.hd).transpose(0, 1)
        if self.peft is not None and self.peft.past is not None:
            pk, pv = self.peft.past[layer]  # (G, L, hd) each, as PEFT's get_prompt hands them over
            if pk.shape != (self.G, pk.shape[1], self.hd):
                raise SystemExit(f"PEFT prefix of layer {layer} is {tuple(pk.shape)}; the model's keys are "
                                 f"({self.G}, L, {self.hd})")
            prefixes, Lp = [(pk, pv)], pk.shape[1]
        if prefixes:
            k = torch.cat([pk.expand(B, -1, -1, -1), k], dim=2)
            v = torch.cat([pv.expand(B, -1, -1, -1), v], dim=2)
        rep = self.H // self.G  # repeat_kv: query head h reads kv head h // rep
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        visible = causal[None, :, :] & keep.bool()[:, None, :]                       # (B,T,T)
        visible = torch.cat([torch.ones(B, T, Lp, dtype=torch.bool), visible], dim=2)
        scores = torch.einsum("bhtd,bhsd->bhts", q, k) / math.sqrt(self.hd)
        probs = torch.softmax(scores.masked_fill(~visible[:, None], float("-inf")), dim=-1)
        ctx = torch.einsum("bhts,bhsd->bhtd", probs, v).transpose(1, 2).reshape(B, T, self.H * self.hd)
        ctx = self.adapters(layer, "attn", "parallel", a, ctx)
        if self.gpt2:
            o = self.peft_lora(p + "c_proj", ctx, ctx @ self.w[p + "c_proj.weight"] + self.w[p + "c_proj.bias"])
        else:
            o = self.peft_lora(p + "o_proj", ctx, self.linear(p + "o_proj", ctx))
        o = self.lora(layer, "o", ctx, o)
        return self.adapters(layer, "attn", "sequential", None, o)

    def mlp(self, layer, f):
        if self.gpt2:
            p = f"transformer.h.{layer}.mlp."
            up = self.peft_lora(p + "c_fc", f, f @ self.w[p + "c_fc.weight"] + self.w[p + "c_fc.bias"])
            up = self.lora(layer, "up", f, up)
            u = F.gelu(up, approximate="tanh")   # gelu_new
            dn = self.peft_lora(p + "c_proj", u, u @ self.w[p + "c_proj.weight"] + self.w[p + "c_proj.bias"])
        else:
            p = f"model.layers.{layer}.mlp."
            up = self.lora(layer, "up", f, self.peft_lora(p + "up_proj", f, self.linear(p + "up_proj", f)))
            u = F.silu(self.peft_lora(p + "gate_proj", f, self.linear(p + "gate_proj", f))) * up
            dn = self.peft_lora(p + "down_proj", u, self.linear(p + "down_proj", u))
        dn = self.lora(layer, "down", u, dn)
        dn = self.adapters(layer, "ffn", "sequential", None, dn)
        return self.adapters(layer, "ffn", "parallel", f, dn)

    def forward(self, ids, keep):
        B, T = ids.shape
        pos = torch.arange(T) + self.prefix_length()
        if self.gpt2:
            x = self.w["transformer.wte.weight"][ids] + self.w["transformer.wpe.weight"][pos][None]
        else:
            x = self.w["model.embed_tokens.weight"][ids]
        for layer in range(self.n_layers):
            n1, n2 = (f"transformer.h.{layer}.ln_1", f"transformer.h.{layer}.ln_2") if self.gpt2 else \
                (f"model.layers.{layer}.input_layernorm", f"model.layers.{layer}.post_attention_layernorm")
            x = x + self.attention(layer, self.norm(x, n1), keep, pos)
            x = x + self.mlp(layer, self.norm(x, n2))
        x = self.norm(x, "transformer.ln_f" if self.gpt2 else "model.norm")
        if self.tied:
            head = self.w["transformer.wte.weight" if self.gpt2 else "model.embed_tokens.weight"]
        else:
            head = self.w["lm_head.weight"]
        return x @ head.T


class PeftAdapter:
    """A PEFT adapter folder with PEFT's semantics, keyed by PEFT's module names."""

    def __init__(self, folder):
        with open(os.path.join(folder, "adapter_config.json")) as f:
            cfg = json.load(f)
        tensors = {k: v.double() for k, v in
                   read_safetensors(os.path.join(folder, "adapter_model.safetensors")).items()}
        self.type = cfg.get("peft_type")
        self.lora, self.used, self.past = {}, set(), None
        if self.type == "LORA":
            if cfg.get("use_dora") or cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
                raise SystemExit(f"{folder}: DoRA, rank_pattern and alpha_pattern are not modelled here")
            r, alpha = cfg["r"], cfg.get("lora_alpha", 8)
            scaling = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
            pairs = {}
            for key, t in tensors.items():
                name = key[len("base_model.model."):] if key.startswith("base_model.model.") else key
                module, part = name.rsplit(".lora_", 1)      # "transformer.h.0.attn.c_attn", "A.weight"
                pairs.setdefault(module, {})[part] = t
            # PEFT's Linear: lora_A = nn.Linear(in, r), lora_B = nn.Linear(r, out); forward
            # result = base_layer(x) + lora_B(lora_A(x)) * scaling, for Conv1D targets too.
            self.lora = {m: (ab["A.weight"], ab["B.weight"], scaling) for m, ab in pairs.items()}
        elif self.type == "PREFIX_TUNING":
            L, layers = cfg["num_virtual_tokens"], cfg["num_layers"]
            heads, dim = cfg["num_attention_heads"], cfg["token_dim"]
            if cfg.get("num_transformer_submodules", 1) != 1:
                raise SystemExit(f"{folder}: num_transformer_submodules must be 1 for a decoder")
            pe = tensors["prompt_embeddings"]
            # get_prompt: (B, L, layers·2, heads, dim/heads), permute([2, 0, 3, 1, 4]) and
            # split(2): layer l's key is entry 2l, its value 2l + 1, each (B, heads, L, dim/heads).
            pkv = pe.view(L, layers * 2, heads, dim // heads).permute(1, 2, 0, 3)
            self.past = [(pkv[2 * l], pkv[2 * l + 1]) for l in range(layers)]
            self.num_virtual_tokens = L
        else:
            raise SystemExit(f"{folder}: peft_type {self.type} is not modelled here")

    def lora_forward(self, name, x, y):
        if name not in self.lora:
            return y
        A, B, scaling = self.lora[name]
        self.used.add(name)
        return y + (x @ A.T @ B.T) * scaling

    def check_used(self):
        unused = sorted(set(self.lora) - self.used)
        if unused:
            raise SystemExit(f"PEFT LoRA on modules this model does not have: {unused}")


def causal_lm_loss(logits, labels, label_smoothing=0.0):
    """HF ForCausalLMLoss: token t predicts labels[t+1]; mean over the scored positions."""
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100,
                           label_smoothing=label_smoothing)


def peft_loss(args):
    with open(args.batch) as f:
        batch = json.load(f)
    ids = torch.tensor(batch["input_ids"], dtype=torch.long)
    keep = torch.tensor(batch.get("attention_mask", torch.ones_like(ids).tolist()), dtype=torch.long)
    labels = torch.tensor(batch["labels"], dtype=torch.long) if "labels" in batch else ids.masked_fill(keep == 0, -100)
    model = CausalLM(args.model, {"modules": []}, {})
    out = {"tokens": int((labels[:, 1:] != -100).sum())}
    with torch.no_grad():
        out["base_loss"] = float(causal_lm_loss(model.forward(ids, keep), labels))
        if args.peft:
            model.peft = PeftAdapter(args.peft)
            out["loss"] = float(causal_lm_loss(model.forward(ids, keep), labels))
            model.peft.check_used()
    with open(args.out, "w") as f:
        json.dump(out, f)
    return 0


def run(args):
    with open(args.spec) as f:
        spec = json.load(f)
    with open(args.batch) as f:
        batch = json.load(f)
    ids = torch.tensor(batch["input_ids"], dtype=torch.long)
    keep = torch.tensor(batch.get("attention_mask", torch.ones_like(ids).tolist()), dtype=torch.long)
    labels = torch.tensor(batch["labels"], dtype=torch.long) if "labels" in batch else ids.masked_fill(keep == 0, -100)
    model = CausalLM(args.model, spec, read_safetensors(args.delta), batch.get("prefix_positions", "peft"))
    logits = model.forward(ids, keep)
    loss = causal_lm_loss(logits, labels, batch.get("label_smoothing", 0.0))
    backward_and_write(args.out, loss, logits, model.trainable)
    return 0


def greedy(args):
    with open(args.spec) as f:
        spec = json.load(f)
    if isinstance(args.prompts, str):
        with open(args.prompts) as f:
            job = json.load(f)
    else:
        job = vars(args)
    model = CausalLM(args.model, spec, read_safetensors(args.delta), job.get("prefix_positions", "peft"))
    eos = job.get("eos_token_id")
    out = []
    with torch.no_grad():
        for prompt in job["prompts"]:
            ids, new = list(prompt), []
            for _ in range(job["max_new_tokens"]):
                x = torch.tensor([ids], dtype=torch.long)
                token = int(torch.argmax(model.forward(x, torch.ones_like(x))[0, -1]))
                ids.append(token)
                new.append(token)
                if eos is not None and token == eos:
                    break
            out.append(new)
    with open(args.out, "w") as f:
        json.dump({"tokens": out}, f)
    return 0


def main():
    ap, sub = command_line(__doc__)
    gr = sub.add_parser("greedy")
    for opt in ("model", "spec", "delta", "prompts", "out"):
        gr.add_argument("--" + opt, required=True)
    many = sub.add_parser("greedy-many")
    many.add_argument("jobs")
    pl = sub.add_parser("peft-loss")
    pl.add_argument("--model", required=True)
    pl.add_argument("--peft")
    pl.add_argument("--batch", required=True)
    pl.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.cmd == "peft-loss":
        return peft_loss(args)
    if args.cmd == "greedy":
        return greedy(args)
    if args.cmd == "greedy-many":
        with open(args.jobs) as f:
            for job in json.load(f):
                greedy(argparse.Namespace(**job))
        return 0
    return run_command(args, run)


if __name__ == "__main__":
    sys.exit(main())
