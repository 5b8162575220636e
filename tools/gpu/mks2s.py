# Tiny random BART and mBART folders in Hugging Face format (word-level tokenizer.json with BART's
# <s> ... </s> template) and a word-mapping task (train.jsonl, dev.jsonl), for checking vkpeft's
# seq2seq PEFT files with real transformers + peft (tests/python/peft_hf_check.py). Device machine.
import json, os, random, sys, torch, transformers
from tokenizers import Tokenizer, models, pre_tokenizers, processors
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
specials = ["<s>", "<pad>", "</s>", "<unk>"]
words = [f"x{i}" for i in range(16)] + [f"y{i}" for i in range(16)]
vocab = {t: i for i, t in enumerate(specials + words)}
tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
tok.add_special_tokens(specials)
tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                   special_tokens=[("<s>", 0), ("</s>", 2)])
fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                            pad_token="<pad>", unk_token="<unk>")
shape = dict(vocab_size=len(vocab), d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
             decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=64,
             pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2,
             init_std=0.2)
for name, cls, cfg in (("bart", transformers.BartForConditionalGeneration, transformers.BartConfig(**shape)),
                       ("mbart", transformers.MBartForConditionalGeneration,
                        transformers.MBartConfig(scale_embedding=True, **shape))):
    torch.manual_seed(1)
    m = cls(cfg)
    m.save_pretrained(f"{out}/{name}", safe_serialization=True)
    fast.save_pretrained(f"{out}/{name}")
    print(name, sum(p.numel() for p in m.parameters()), "parameters", flush=True)
rng = random.Random(5)
perm = list(range(16))
rng.shuffle(perm)
for split, n in (("train", 512), ("dev", 64)):
    with open(f"{out}/{split}.jsonl", "w") as f:
        for _ in range(n):
            xs = [rng.randrange(16) for _ in range(rng.randint(2, 6))]
            f.write(json.dumps({"source": " ".join(f"x{i}" for i in xs),
                                "target": " ".join(f"y{perm[i]}" for i in xs)}) + "\n")
