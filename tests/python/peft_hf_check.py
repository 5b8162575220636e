#!/usr/bin/env python3
"""Mean causal-LM loss (decoder-only models) or teacher-forced seq2seq loss (encoder-decoders:
BART, mBART) of a Hugging Face model with a PEFT adapter, for comparison with
`vkpeft eval --json` on the same model, adapter folder and data.

Not part of the test suite (it needs `transformers` and `peft`, which the suite's machines
lack); run it by hand where they are installed:

    python3 tests/python/peft_hf_check.py --model MODEL_DIR --peft RUN_DIR --data dev.jsonl
    vkpeft eval --model MODEL_DIR --delta RUN_DIR --data dev.jsonl --weights f32 --json

RUN_DIR is a folder `vkpeft train` wrote (its adapter_config.json + adapter_model.safetensors
are read; delta.json is ignored) or any PEFT folder. Both print JSON; "loss" (the mean
cross-entropy over every scored token), "tokens" and "examples" should agree: the counts
exactly, the loss to f32 rounding (about 1e-5 relative) when vkpeft runs with
--weights f32 as above (its default f16 weights round the model itself; --dtype float64
removes PyTorch's own rounding).

Seen 2026-12-04 (torch 2.11, transformers 5.17.0, peft 0.21.0, float64 on the CPU): the
folders tests/test_cli_lm.c's peft_torch exports (LLaMA with grouped kv heads: LoRA on all six
projections and a prefix; GPT-2: LoRA on c_attn, on attn.c_proj + mlp.c_fc + mlp.c_proj, and
a prefix), on its dev.jsonl and on a file mixing text and prompt/completion lines of unequal
lengths (padding), gave vkpeft eval's loss to 1.1e-7 relative or better, tokens and examples
equal. (Its word-level tokenizer folders were given "tokenizer_class":
"PreTrainedTokenizerFast" in tokenizer_config.json, so that transformers reads tokenizer.json
as it is.)

The data is read the way vkpeft reads it (runtime/train/lmdata.h):
  - JSONL, blank lines skipped; a line with the prompt field ("prompt") is
    prompt + completion, the loss on the completion only; else the text field ("text"),
    the loss on every token;
  - each piece is tokenized without special tokens (add_special_tokens=False), the prompt
    and the completion separately, then [bos] prompt completion [eos] or [bos] text [eos];
  - BOS (config.json's bos_token_id, else the tokenizer's) is added exactly when the
    tokenizer's own template puts it first (tokenizer("") starts with it: LLaMA-2 yes,
    GPT-2 and Qwen2 no); never scored in a prompt example; EOS (config.json's, else the
    tokenizer's) is appended (TRL's SFTTrainer does the same); --add-bos / --add-eos
    override;
  - an example longer than --max-len keeps its first tokens (default: the model's positions
    less a prefix adapter's virtual tokens, as vkpeft eval);
  - rows right-padded (pad token, else EOS; attention mask 0, label -100), HF's shifted
    loss: the logits of token t score the label of token t+1.

An encoder-decoder (config.json's is_encoder_decoder) is read as vkpeft reads seq2seq data
(runtime/train/lmdata.h): lines {"source": ..., "target": ...}; encoder ids = the tokenizer's
encoding of the source with its template (BART: <s> source </s>), labels = the target's, each
truncated to --max-len (specials kept); the model's own forward(labels=...) builds the decoder
inputs (BART's or mBART's shift_tokens_right); the loss is the token-weighted mean cross-entropy
over the labels, with --label-smoothing as HF's LabelSmoother (vkpeft eval's default on
seq2seq is 0.1: pass the same value to both).

Options:
  --model DIR --peft DIR --data FILE   required
  --max-len N        truncate examples to N tokens
  --batch N          examples per forward (default 8; the loss does not depend on it)
  --dtype float32|float64|bfloat16|float16   model dtype (default float32)
  --device DEV       torch device (default: cuda when available, else cpu)
  --text-field, --prompt-field, --completion-field NAME   as vkpeft's flags
  --source-field, --target-field NAME   seq2seq fields (default source, target)
  --label-smoothing E   seq2seq: the smoothing of the reported loss (default 0.1, as vkpeft)
  --add-bos auto|on|off, --add-eos on|off
  --base             also report "base_loss": the model with the adapter disabled
"""
import argparse
import json
import math
import os
import sys


def fail(message):
    print(f"peft_hf_check: {message}", file=sys.stderr)
    sys.exit(2)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="the Hugging Face model folder")
    ap.add_argument("--peft", required=True, help="the PEFT adapter folder (adapter_config.json + weights)")
    ap.add_argument("--data", required=True, help="JSONL: text, or prompt + completion")
    ap.add_argument("--max-len", type=int, default=0, help="truncate examples to N tokens")
    ap.add_argument("--batch", type=int, default=8, help="examples per forward pass")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16", "float16"])
    ap.add_argument("--device", default=None)
    ap.add_argument("--text-field", default="text")
    ap.add_argument("--prompt-field", default="prompt")
    ap.add_argument("--completion-field", default="completion")
    ap.add_argument("--source-field", default="source")
    ap.add_argument("--target-field", default="target")
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--add-bos", default="auto", choices=["auto", "on", "off"])
    ap.add_argument("--add-eos", default="on", choices=["on", "off"])
    ap.add_argument("--base", action="store_true", help="also report the loss without the adapter")
    args = ap.parse_args()
    if args.batch < 1:
        fail(f"--batch {args.batch}: must be at least 1")
    if args.max_len < 0:
        fail(f"--max-len {args.max_len}: must be positive")
    if not 0 <= args.label_smoothing <= 1:
        fail(f"--label-smoothing {args.label_smoothing}: must be in [0, 1]")
    for flag, path in (("--model", args.model), ("--peft", args.peft)):
        if not os.path.isdir(path):
            fail(f"{flag} {path}: not a folder")
    if not os.path.isfile(os.path.join(args.peft, "adapter_config.json")):
        fail(f"--peft {args.peft}: no adapter_config.json (vkpeft writes one when PEFT has the method)")
    if not os.path.isfile(args.data):
        fail(f"--data {args.data}: no such file")
    return args


def special_ids(config, tokenizer):
    """BOS, EOS and pad as vkpeft resolves them: config.json first, then the tokenizer."""
    bos = config.bos_token_id if getattr(config, "bos_token_id", None) is not None else tokenizer.bos_token_id
    eos = config.eos_token_id if getattr(config, "eos_token_id", None) is not None else tokenizer.eos_token_id
    if isinstance(eos, list):
        eos = eos[0]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    return bos, eos, pad


def json_lines(path):
    """(where, object) for every non-blank line of a JSONL file; a line that is not a JSON object fails."""
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                fail(f"{where}: not JSON ({e})")
            if not isinstance(obj, dict):
                fail(f"{where}: not a JSON object")
            yield where, obj


def read_examples(args, encode, bos, eos, add_bos, add_eos, max_len):
    """(ids, labels) per example, as runtime/train/lmdata.c builds them (no packing)."""
    examples = []
    for where, obj in json_lines(args.data):
        prompt = None
        field = args.text_field
        if args.prompt_field in obj:
            prompt, field = obj[args.prompt_field], args.completion_field
            if not isinstance(prompt, str):
                fail(f"{where}: the field \"{args.prompt_field}\" is not a string")
        if field not in obj:
            fail(f"{where}: the field \"{field}\" (or \"{args.prompt_field}\" and "
                 f"\"{args.completion_field}\") is missing")
        if not isinstance(obj[field], str):
            fail(f"{where}: the field \"{field}\" is not a string")
        p = encode(prompt) if prompt is not None else []
        c = encode(obj[field])
        if not c:
            fail(f"{where}: the field \"{field}\" is empty after tokenization")
        ids, labels = [], []
        if add_bos:
            ids.append(bos)
            labels.append(-100 if prompt is not None else bos)
        ids += p
        labels += [-100] * len(p)
        ids += c
        labels += c
        if add_eos:
            ids.append(eos)
            labels.append(eos)
        if len(ids) > max_len:
            if prompt is not None and int(add_bos) + len(p) >= max_len:
                fail(f"{where}: the field \"{field}\" is truncated away: the prompt takes "
                     f"{int(add_bos) + len(p)} of max_len {max_len} tokens")
            ids, labels = ids[:max_len], labels[:max_len]
        examples.append((ids, labels))
    if not examples:
        fail(f"{args.data}: no examples")
    return examples


def evaluate(torch, model, examples, pad, batch, device):
    """Token-weighted mean loss and argmax accuracy over every scored token."""
    loss_sum, correct, tokens = 0.0, 0, 0
    with torch.no_grad():
        for i in range(0, len(examples), batch):
            rows = examples[i:i + batch]
            T = max(len(ids) for ids, _ in rows)
            ids = torch.full((len(rows), T), pad, dtype=torch.long)
            labels = torch.full((len(rows), T), -100, dtype=torch.long)
            mask = torch.zeros((len(rows), T), dtype=torch.long)
            for r, (x, y) in enumerate(rows):
                ids[r, :len(x)] = torch.tensor(x)
                labels[r, :len(y)] = torch.tensor(y)
                mask[r, :len(x)] = 1
            ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
            logits = model(input_ids=ids, attention_mask=mask).logits.double()
            logits, target = logits[:, :-1], labels[:, 1:]
            scored = target != -100
            loss_sum += float(torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum"))
            correct += int(((logits.argmax(-1) == target) & scored).sum())
            tokens += int(scored.sum())
    if tokens == 0:
        fail("no token to evaluate")
    return loss_sum / tokens, correct / tokens, tokens


def read_pairs(args, tokenizer, max_len):
    """(source ids, labels) per line, both with the tokenizer's template, as lmdata.c reads seq2seq."""
    pairs = []
    for where, obj in json_lines(args.data):
        for field in (args.source_field, args.target_field):
            if not isinstance(obj.get(field), str):
                fail(f"{where}: the field \"{field}\" is missing or not a string")
        src = tokenizer(obj[args.source_field], truncation=True, max_length=max_len)["input_ids"]
        tgt = tokenizer(obj[args.target_field], truncation=True, max_length=max_len)["input_ids"]
        if not src or not tgt:
            fail(f"{where}: the source or the target is empty after tokenization")
        pairs.append((src, tgt))
    if not pairs:
        fail(f"{args.data}: no examples")
    return pairs


def evaluate_seq2seq(torch, model, pairs, pad, batch, device, smoothing):
    """Token-weighted mean (smoothed) cross-entropy and argmax accuracy over every label."""
    loss_sum, correct, tokens = 0.0, 0, 0
    with torch.no_grad():
        for i in range(0, len(pairs), batch):
            rows = pairs[i:i + batch]
            S, T = max(len(s) for s, _ in rows), max(len(t) for _, t in rows)
            ids = torch.full((len(rows), S), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), S), dtype=torch.long)
            labels = torch.full((len(rows), T), -100, dtype=torch.long)
            for r, (x, y) in enumerate(rows):
                ids[r, :len(x)] = torch.tensor(x)
                mask[r, :len(x)] = 1
                labels[r, :len(y)] = torch.tensor(y)
            ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
            logits = model(input_ids=ids, attention_mask=mask, labels=labels).logits.double()
            scored = labels != -100
            loss_sum += float(torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="sum",
                label_smoothing=smoothing))
            correct += int(((logits.argmax(-1) == labels) & scored).sum())
            tokens += int(scored.sum())
    return loss_sum / tokens, correct / tokens, tokens


def main():
    args = parse_args()
    try:
        import torch
        import transformers
        import peft
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
        from peft import PeftConfig, PeftModel
    except ImportError as e:
        fail(f"needs torch, transformers and peft ({e}); install them (pip install transformers peft) "
             "or run this where they are")

    dtype = getattr(torch, args.dtype)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    # transformers 4.56 renamed torch_dtype to dtype (older versions would keep an unknown
    # keyword as a config attribute and load float32).
    from packaging import version
    new = version.parse(transformers.__version__) >= version.parse("4.56")
    seq2seq = bool(getattr(AutoConfig.from_pretrained(args.model), "is_encoder_decoder", False))
    auto = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    base = auto.from_pretrained(args.model, **({"dtype": dtype} if new else {"torch_dtype": dtype}))
    base = base.to(device)
    base.eval()
    config = PeftConfig.from_pretrained(args.peft)
    model = PeftModel.from_pretrained(base, args.peft, is_trainable=False).to(device)
    model.eval()

    bos, eos, pad = special_ids(base.config, tokenizer)
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
    if seq2seq:
        pad = base.config.pad_token_id if base.config.pad_token_id is not None else pad
        max_len = args.max_len or base.config.max_position_embeddings
        pairs = read_pairs(args, tokenizer, max_len)
        run = lambda m: evaluate_seq2seq(torch, m, pairs, pad, args.batch, device, args.label_smoothing)
        loss, accuracy, tokens = run(model)
        out = {"loss": loss, "accuracy": accuracy, "tokens": tokens, "examples": len(pairs),
               "label_smoothing": args.label_smoothing, "model": args.model, "peft": args.peft,
               "peft_type": str(getattr(config.peft_type, "value", config.peft_type)), "max_len": max_len,
               "dtype": args.dtype, "device": str(device), "versions": versions}
        if args.base:
            with model.disable_adapter():
                out["base_loss"], _, _ = run(model)
        print(json.dumps(out, indent=1))
        return 0
    if args.add_bos == "auto":
        first = tokenizer("")["input_ids"]
        add_bos = bos is not None and len(first) > 0 and first[0] == bos
    else:
        add_bos = args.add_bos == "on"
    add_eos = args.add_eos == "on"
    if add_bos and bos is None:
        fail(f"{args.model}: --add-bos is on but the model and tokenizer have no BOS token")
    if add_eos and eos is None:
        fail(f"{args.model}: no EOS token to end examples with; pass --add-eos off")
    positions = getattr(base.config, "max_position_embeddings", None) or getattr(base.config, "n_positions", None)
    virtual = (getattr(config, "num_virtual_tokens", None) or 0) if config.peft_type == "PREFIX_TUNING" else 0
    max_len = args.max_len or ((positions - virtual) if positions else 1 << 30)
    if positions and max_len + virtual > positions:
        fail(f"--max-len {max_len}: with {virtual} virtual tokens it passes the model's {positions} positions")

    def encode(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    examples = read_examples(args, encode, bos, eos, add_bos, add_eos, max_len)
    loss, accuracy, tokens = evaluate(torch, model, examples, pad, args.batch, device)
    out = {
        "loss": loss, "perplexity": math.exp(loss), "accuracy": accuracy, "tokens": tokens,
        "examples": len(examples), "model": args.model, "peft": args.peft,
        "peft_type": str(getattr(config.peft_type, "value", config.peft_type)),
        "add_bos": add_bos, "add_eos": add_eos, "max_len": max_len, "dtype": args.dtype, "device": str(device),
        "versions": versions,
    }
    if args.base:
        with model.disable_adapter():
            out["base_loss"], _, _ = evaluate(torch, model, examples, pad, args.batch, device)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
