#!/usr/bin/env python3
"""Builds a BERT-style WordPiece tokenizer.json from a text corpus.

    python3 tools/make-tokenizer.py CORPUS OUT_DIR [--vocab-size 4096] [--max-length 128]

Writes OUT_DIR/tokenizer.json in the schema of Hugging Face `tokenizers`
(BertNormalizer with lowercasing, BertPreTokenizer, a WordPiece model with
"##" continuation pieces, TemplateProcessing "[CLS] $A [SEP]" and
"[CLS] $A [SEP] $B:1 [SEP]:1", a WordPiece decoder) and
OUT_DIR/tokenizer_config.json (model_max_length and the special tokens), each
atomically.

The vocabulary, in id order: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4; every
character seen in the corpus, alone and as a "##" piece (so every corpus word
can be encoded without [UNK]); the corpus words by falling frequency; then,
while room remains, frequent word prefixes and "##" suffixes (length 2 and
more), which give unseen words better pieces than single characters. Ties
break by the string, so the output depends only on the corpus and the
arguments. The vocabulary holds at most --vocab-size entries and fewer when
the corpus runs out of words and pieces.
"""
import argparse
import collections
import json
import os
import sys
import unicodedata

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def is_punctuation(ch):
    """BERT's test: ASCII symbols count as punctuation, as does Unicode P*."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def strip_accents(text):
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def words_of(line):
    """The words BertNormalizer (lowercase, accents stripped) and
    BertPreTokenizer make of a line: whitespace-separated, each punctuation
    character a word of its own. Control characters are dropped."""
    text = strip_accents(line.lower())
    out, cur = [], []
    for ch in text:
        if ch.isspace():
            if cur:
                out.append("".join(cur))
                cur = []
        elif unicodedata.category(ch) in ("Cc", "Cf") or ch == "\ufffd":
            continue
        elif is_punctuation(ch):
            if cur:
                out.append("".join(cur))
                cur = []
            out.append(ch)
        else:
            cur.append(ch)
    if cur:
        out.append("".join(cur))
    return out


def build_vocab(counts, size):
    vocab = list(SPECIALS)
    have = set(vocab)

    def add(token):
        if token not in have and len(vocab) < size:
            have.add(token)
            vocab.append(token)

    chars = {ch for w in counts for ch in w}
    alphabet = sorted(chars)
    for ch in alphabet:
        add(ch)
        add("##" + ch)
    if len(vocab) < len(SPECIALS) + 2 * len(alphabet):
        sys.exit("make-tokenizer: --vocab-size %d cannot hold the %d special tokens and every character" %
                 (size, len(SPECIALS)))
    for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        add(w)
    pieces = collections.Counter()
    for w, n in counts.items():
        for k in range(2, len(w)):
            pieces[w[:k]] += n
            pieces["##" + w[-k:]] += n
    for p, _ in sorted(pieces.items(), key=lambda kv: (-kv[1], kv[0])):
        add(p)
    return vocab


def tokenizer_json(vocab):
    ids = {t: i for i, t in enumerate(vocab)}

    def special(name, type_id):
        return {"SpecialToken": {"id": name, "type_id": type_id}}

    def seq(name, type_id):
        return {"Sequence": {"id": name, "type_id": type_id}}

    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": ids[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for t in SPECIALS],
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [special("[CLS]", 0), seq("A", 0), special("[SEP]", 0)],
            "pair": [special("[CLS]", 0), seq("A", 0), special("[SEP]", 0), seq("B", 1), special("[SEP]", 1)],
            "special_tokens": {t: {"id": t, "ids": [ids[t]], "tokens": [t]} for t in ("[CLS]", "[SEP]")},
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": ids},
    }


def config_json(max_length):
    return {
        "tokenizer_class": "BertTokenizerFast",
        "do_lower_case": True,
        "model_max_length": max_length,
        "pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
        "mask_token": "[MASK]",
    }


def write_atomic(path, obj):
    tmp = path + ".tmp%d" % os.getpid()
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus", help="UTF-8 text, one sentence per line")
    ap.add_argument("out", help="folder for tokenizer.json and tokenizer_config.json")
    ap.add_argument("--vocab-size", type=int, default=4096, help="most vocabulary entries (default 4096)")
    ap.add_argument("--max-length", type=int, default=128, help="model_max_length (default 128)")
    a = ap.parse_args()
    counts = collections.Counter()
    with open(a.corpus, encoding="utf-8") as f:
        for line in f:
            counts.update(w for w in words_of(line) if len(w) <= 100)
    if not counts:
        sys.exit("make-tokenizer: %s holds no words" % a.corpus)
    vocab = build_vocab(counts, a.vocab_size)
    os.makedirs(a.out, exist_ok=True)
    write_atomic(os.path.join(a.out, "tokenizer.json"), tokenizer_json(vocab))
    write_atomic(os.path.join(a.out, "tokenizer_config.json"), config_json(a.max_length))
    print("make-tokenizer: %d tokens (%d words) from %s" % (len(vocab), len(counts), a.corpus))


if __name__ == "__main__":
    main()
