#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora (tests/fuzz/corpus/<harness>/): small
valid files of every kind each parser reads, and near-valid ones that stop
at one check each. Run it again after changing it; the output is committed.

Usage: make-corpus.py [OUT_DIR]   (default: corpus/ beside this script)
"""
import json
import os
import shutil
import struct
import sys

SEP = b"\n\x00\n"  # tests/fuzz/fuzz.h: fuzz_split


def safetensors(tensors, meta=None, raw_header=None, data=None, claimed=None):
    """tensors: [(name, dtype, shape, bytes)] laid out in order."""
    header, blob = {}, b""
    for name, dtype, shape, payload in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(payload)]}
        blob += payload
    if meta:
        header["__metadata__"] = meta
    h = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    size = len(h) if claimed is None else claimed
    return struct.pack("<Q", size) + h + (blob if data is None else data)


def f32(*v):
    return struct.pack(f"<{len(v)}f", *v)


def st_corpus():
    yield "f32_f16_meta", safetensors([("w", "F32", [2, 3], f32(1, 2, 3, 4, 5, 6)),
                                       ("h", "F16", [4], b"\x00\x3c\x00\x40\x00\x42\x00\x44")],
                                      meta={"format": "pt"})
    yield "all_dtypes", safetensors([("a", "BF16", [2], b"\x80\x3f\x00\x40"), ("b", "F64", [1], struct.pack("<d", 1.5)),
                                     ("c", "I64", [1, 1], struct.pack("<q", -1)), ("d", "I32", [1], b"\1\0\0\0"),
                                     ("e", "I16", [1], b"\1\0"), ("f", "I8", [2], b"\1\2"), ("g", "U8", [1], b"\7"),
                                     ("h", "BOOL", [1], b"\1"), ("empty", "F32", [0, 5], b"")])
    yield "scalar", safetensors([("s", "F32", [], f32(3.0))])
    yield "no_tensors", safetensors([])
    yield "overlap", safetensors([], raw_header=b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                                 b'"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', data=f32(1))
    yield "hole", safetensors([], raw_header=b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', data=f32(1, 2))
    yield "shape_mismatch", safetensors([], raw_header=b'{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}',
                                        data=f32(1, 2))
    yield "huge_shape", safetensors([], raw_header=b'{"a":{"dtype":"F32","shape":[4611686018427387904,4],'
                                    b'"data_offsets":[0,0]}}', data=b"")
    yield "claimed_too_big", safetensors([("w", "F32", [1], f32(1))], claimed=1 << 40)
    yield "truncated", safetensors([("w", "F32", [4], f32(1, 2, 3, 4))])[:-5]
    yield "bad_dtype", safetensors([], raw_header=b'{"a":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}}', data=b"\0")


def arch_corpus():
    bert = {"model_type": "bert", "vocab_size": 100, "hidden_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 32, "hidden_act": "gelu", "max_position_embeddings": 32,
            "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0, "hidden_dropout_prob": 0.1,
            "id2label": {"0": "neg", "1": "pos"}, "label2id": {"neg": 0, "pos": 1}}
    yield "bert", bert
    yield "roberta", dict(bert, model_type="roberta", pad_token_id=1, bos_token_id=0, eos_token_id=2,
                          max_position_embeddings=34)
    yield "labels_mismatch", dict(bert, num_labels=3)
    yield "gpt2", {"model_type": "gpt2", "vocab_size": 100, "n_embd": 16, "n_layer": 2, "n_head": 2,
                   "n_positions": 32, "n_inner": None, "activation_function": "gelu_new",
                   "layer_norm_epsilon": 1e-5, "bos_token_id": 99, "eos_token_id": 99, "tie_word_embeddings": True}
    llama = {"model_type": "llama", "vocab_size": 100, "hidden_size": 16, "intermediate_size": 40,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
             "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "bos_token_id": 1,
             "eos_token_id": 2, "tie_word_embeddings": False, "attention_bias": False}
    yield "llama", llama
    yield "mistral", dict(llama, model_type="mistral", sliding_window=16)
    yield "qwen2", dict(llama, model_type="qwen2", use_sliding_window=False, sliding_window=32,
                        tie_word_embeddings=True, attention_bias=True)
    yield "eos_list", dict(llama, eos_token_id=[2, 3])
    bart = {"model_type": "bart", "vocab_size": 100, "d_model": 16, "encoder_layers": 2, "decoder_layers": 2,
            "encoder_attention_heads": 2, "decoder_attention_heads": 2, "encoder_ffn_dim": 32,
            "decoder_ffn_dim": 32, "activation_function": "gelu", "max_position_embeddings": 32,
            "scale_embedding": False, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
            "decoder_start_token_id": 2, "forced_eos_token_id": 2, "dropout": 0.1}
    yield "bart", bart
    yield "mbart", dict(bart, model_type="mbart", scale_embedding=True, forced_bos_token_id=5)
    yield "bad_heads", dict(bert, num_attention_heads=3)
    yield "bad_type", dict(bert, model_type="t5")
    yield "negative", dict(llama, num_key_value_heads=-1)
    yield "huge", dict(bert, hidden_size=999999936, intermediate_size=1000000000, num_hidden_layers=4096,
                       vocab_size=1000000000, num_attention_heads=2, max_position_embeddings=1000000000)


TOKEN = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}


def added(names, first=0):
    return [dict(TOKEN, id=first + i, content=n) for i, n in enumerate(names)]


def template(single, pair, specials):
    def piece(p):
        if p in ("A", "B"):
            return {"Sequence": {"id": p, "type_id": 1 if p == "B" else 0}}
        return {"SpecialToken": {"id": p, "type_id": 0}}
    return {"type": "TemplateProcessing", "single": [piece(p) for p in single], "pair": [piece(p) for p in pair],
            "special_tokens": {n: {"id": n, "ids": [i], "tokens": [n]} for n, i in specials}}


def tokenizer_corpus():
    wp_vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "the",
                                            "cat", "##s", "##at", "un", "##believ", "##able", ",", "."])}
    wordpiece = {"version": "1.0", "truncation": None, "padding": None,
                 "added_tokens": added(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]),
                 "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                                "strip_accents": None, "lowercase": True},
                 "pre_tokenizer": {"type": "BertPreTokenizer"},
                 "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
                 "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
                 "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                           "max_input_chars_per_word": 100, "vocab": wp_vocab}}
    bytes_to_chars = {}
    n = 0
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    for b in range(256):
        if b in printable:
            bytes_to_chars[b] = chr(b)
        else:
            bytes_to_chars[b] = chr(256 + n)
            n += 1
    bl_vocab = {bytes_to_chars[b]: b for b in range(256)}
    merges = [("l", "l"), ("H", "e"), ("He", "ll"), ("Hell", "o"), ("Ġ", "w"), ("o", "r"), ("Ġw", "or"),
              ("l", "d")]
    for i, (a, b) in enumerate(merges):
        bl_vocab[a + b] = 256 + i
    bytelevel = {"version": "1.0", "added_tokens": added(["<s>", "<pad>", "</s>", "<unk>", "<mask>"], 300),
                 "normalizer": None,
                 "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                                   "use_regex": True},
                 "post_processor": {"type": "RobertaProcessing", "sep": ["</s>", 302], "cls": ["<s>", 300],
                                    "trim_offsets": True, "add_prefix_space": True},
                 "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
                 "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                           "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                           "vocab": bl_vocab, "merges": [f"{a} {b}" for a, b in merges]}}
    fallback_vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        fallback_vocab[f"<0x{b:02X}>"] = 3 + b
    for i, t in enumerate(["▁", "H", "e", "l", "o", "▁H", "ll", "▁He", "▁Hell", "▁Hello"]):
        fallback_vocab[t] = 259 + i
    llama = {"version": "1.0", "added_tokens": added(["<unk>", "<s>", "</s>"]),
             "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                                                                {"type": "Replace", "pattern": {"String": " "},
                                                                 "content": "▁"}]},
             "pre_tokenizer": None,
             "post_processor": template(["<s>", "A"], ["<s>", "A", "<s>", "B"], [("<s>", 1)]),
             "decoder": {"type": "Sequence", "decoders": [
                 {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
                 {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
             "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                       "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "vocab": fallback_vocab,
                       "merges": [["▁", "H"], ["l", "l"], ["▁H", "e"], ["▁He", "ll"], ["▁Hell", "o"]]}}
    unigram = {"added_tokens": added(["<unk>"]) + [dict(TOKEN, id=2, content="</s>")],
               "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"},
                                                                  {"type": "StripAccents"}]},
               "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always",
                                 "split": True},
               "post_processor": template(["A", "</s>"], ["A", "</s>", "B", "</s>"], [("</s>", 2)]),
               "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
               "model": {"type": "Unigram", "unk_id": 0, "byte_fallback": True,
                         "vocab": [["<unk>", 0.0], ["<s>", 0.0], ["</s>", 0.0], ["▁", -2.0], ["▁a", -1.5],
                                   ["b", -2.0], ["ab", -1.0], ["▁ab", -3.2], ["a", -2.5], ["c", -2.0],
                                   ["<0x78>", 0.0]]}}
    wordlevel = {"added_tokens": added(["[UNK]", "[BOS]", "[EOS]"]),
                 "normalizer": {"type": "NFD"},
                 "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                     {"type": "WhitespaceSplit"}, {"type": "Digits", "individual_digits": True},
                     {"type": "Punctuation", "behavior": "Isolated"},
                     {"type": "Split", "pattern": {"Regex": "[a-c]+"}, "behavior": "MergedWithPrevious",
                      "invert": False}]},
                 "post_processor": template(["[BOS]", "A", "[EOS]"], ["[BOS]", "A", "B", "[EOS]"],
                                            [("[BOS]", 1), ("[EOS]", 2)]),
                 "decoder": {"type": "BPEDecoder", "suffix": "</w>"},
                 "model": {"type": "WordLevel", "unk_token": "[UNK]",
                           "vocab": {"[UNK]": 0, "[BOS]": 1, "[EOS]": 2, "a": 3, "b": 4, "1": 5, "2": 6, "!": 7}}}
    texts = ["Hello world, the cats sat.", "UNBELIEVABLE! héllo 12 ab\tc", "Hello <s> world</s>", "ab ab c x 1!2",
             "日本語のテキスト ﬁ ①", "[CLS] hello [MASK]"]
    for name, tok in [("wordpiece", wordpiece), ("bytelevel_bpe", bytelevel), ("llama_bpe", llama),
                      ("unigram", unigram), ("wordlevel", wordlevel)]:
        j = json.dumps(tok, ensure_ascii=False, separators=(",", ":")).encode()
        yield name, j + SEP + texts[len(name) % len(texts)].encode() + SEP + b"second part"
        yield name + "_single", j + SEP + texts[(len(name) + 1) % len(texts)].encode()
    yield "bad_model", b'{"model":{"type":"BPE","vocab":{"a":0,"b":1},"merges":["a c"]}}' + SEP + b"ab"
    yield "bad_regex", (b'{"pre_tokenizer":{"type":"Split","pattern":{"Regex":"(a|b"},"behavior":"Isolated",'
                        b'"invert":false},"model":{"type":"WordLevel","unk_token":"a","vocab":{"a":0}}}') + SEP + b"ab"
    for i, t in enumerate(texts):
        yield f"text{i}", t.encode()


def delta_corpus():
    for p in ["mam", "lora:r=16,a=32", "mam:l=16,r=16,s=2", "prefix:l=30", "adapter:r=64", "bitfit", "full",
              "pa:r=8,s=4", "lora"]:
        yield p.replace(":", "_").replace(",", "_").replace("=", ""), p.encode()
    yield "custom", json.dumps({"modules": [
        {"kind": "adapter", "at": "ffn", "insert": "parallel", "bottleneck": 64, "act": "relu", "compose": "scale",
         "scale": 4, "layers": "all", "stack": ["encoder"]},
        {"kind": "lora", "at": "q", "rank": 8, "alpha": 16, "layers": [0, 1, 3], "dropout": 0.1},
        {"kind": "prefix", "at": "attn", "length": 10, "reparam": 32, "stack": ["decoder", "cross"]},
        {"kind": "adapter", "at": "attn", "per_head": True, "bottleneck": 4, "compose": "gated", "init": "bert"}]})
    yield "saved_delta", json.dumps({"name": "mam", "spec": {"name": "mam", "modules": [
        {"kind": "bitfit"}, {"kind": "full", "layers": [0]}]}})
    yield "bad_at", b'{"modules":[{"kind":"lora","at":"ffn","rank":0}]}'
    yield "bad_layers", b'{"modules":[{"kind":"adapter","layers":[-1,300]}]}'


def dataset_corpus():
    # First byte: tests/fuzz/fuzz_dataset.c (bits 0-1 format: 0 jsonl, 1 csv, 2 tsv; 4 labels < 2; 8 skip_bad;
    # 16 labels required; 32 label names neg/pos; 64/128 max_len).
    yield "jsonl_text", b"\x00" + b'{"text": "the cat sat.", "label": 1}\n{"text": "Hello world", "label": "pos"}\n\n'
    yield "jsonl_pair", b"\x24" + (b'{"sentence1": "the cat", "sentence2": "sat", "label": "neg"}\r\n'
                                    b'{"premise": "a", "hypothesis": "b c", "label": 0}\n')
    yield "jsonl_ids", b"\x14" + b'{"input_ids": [2, 7, 8, 3], "label": 1}\n{"input_ids": [], "label": 0}\n'
    yield "jsonl_bad", b"\x08" + b'{"text": 5}\nnot json\n{"text": "a", "label": 9}\n{"input_ids": [99]}\n'
    yield "csv_quoted", b"\x41" + (b'text,label\n"the ""cat"", sat",pos\nplain,neg\n"multi\nline",1\n')
    yield "csv_pair", b"\x25" + b'question1,question2,label\r\nthe cat,sat,neg\r\n"a","b",pos\r\n'
    yield "csv_bad", b"\x09" + b'text,label\n"open,1\nx"y,0\n'
    yield "tsv_glue", b"\x82" + b'sentence\tlabel\nthe cat sat .\t1\n"quoted"\t0\n\t\n'
    yield "tsv_pair", b"\x26" + b'index\tquestion\tsentence\tlabel\n0\tthe cat?\tit sat.\tpos\n'


def lmdata_corpus():
    # First byte: tests/fuzz/fuzz_lmdata.c (bit 0 seq2seq, 1-2 add_bos, 3-4 add_eos, 2 pack, 16 skip_bad,
    # 64 shuffle, 32.. max_len).
    yield "causal_text", b"\x20" + b'{"text": "the cat sat."}\n{"text": "hello world"}\n\n{"text": "a b c"}\n'
    yield "causal_pack", b"\x44" + b'{"text": "the cat sat the cat sat"}\n{"prompt": "a", "completion": "b c"}\n'
    yield "prompt_completion", b"\x62" + b'{"prompt": "the cat", "completion": "sat."}\n{"prompt": "", "completion": "a"}\n'
    yield "seq2seq", b"\x41" + b'{"source": "the cat sat", "target": "a b"}\n{"source": "hello", "target": "world"}\n'
    yield "seq2seq_lang", b"\x81" + b'{"source": "a", "target": "b c"}\n'
    yield "bad_lines", b"\x10" + b'{"text": 5}\n[1]\n{"prompt": "a"}\n{"text": ""}\n{"text": "ok"}\n'


def main() -> int:
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    corpora = {"safetensors": st_corpus, "arch": arch_corpus, "tokenizer": tokenizer_corpus,
               "delta_spec": delta_corpus, "dataset": dataset_corpus, "lmdata": lmdata_corpus}
    for name, gen in corpora.items():
        folder = os.path.join(out, name)
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        for entry, content in gen():
            if not isinstance(content, (bytes, str)):
                content = json.dumps(content, indent=1)
            if isinstance(content, str):
                content = content.encode()
            with open(os.path.join(folder, entry), "wb") as f:
                f.write(content)
    return 0


if __name__ == "__main__":
    sys.exit(main())
