#!/bin/sh
# Reproduces the bundled model and its downstream task from nothing:
#
#   tools/make-bundled-model.sh [BUILD_DIR]        (default build/)
#
# 1. tools/make-corpus.py writes the synthetic corpus (100,000 sentences, seed
#    1), a held-out corpus (2,000 sentences, seed 2) and the plausibility
#    task (train 2,000 / dev 500 with held-out words);
# 2. tools/make-tokenizer.py builds the WordPiece tokenizer.json from the corpus;
# 3. tools/init-model.py writes a random BERT (hidden 128, 4 layers, 4 heads,
#    FFN 512, 64 positions, seed 1);
# 4. `vkpeft pretrain` trains it with the masked-LM objective (`full`).
#
# The results replace models/mini-bert (config, weights, tokenizer, the
# pretraining log) and models/plausibility (train.jsonl, dev.jsonl). Every
# step is deterministic; the weights are bit-for-bit the same on the same
# device, and differ in the last bits between devices (float rounding).
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
vkpeft="$build/tools/vkpeft"
[ -x "$vkpeft" ] || { echo "make-bundled-model: $vkpeft is missing; run 'make build' first" >&2; exit 2; }
steps=${STEPS:-1500}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 tools/make-corpus.py --corpus "$work/corpus.txt" --task "$work/task" --sentences 100000 --seed 1 \
    --train 2000 --dev 500
python3 tools/make-corpus.py --corpus "$work/held.txt" --task "$work/unused" --sentences 2000 --seed 2 \
    --train 10 --dev 10
python3 tools/make-tokenizer.py "$work/corpus.txt" "$work/init" --max-length 64
vocab=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["model"]["vocab"]))' \
    "$work/init/tokenizer.json")
python3 tools/init-model.py "$work/init" --vocab-size "$vocab" --hidden 128 --layers 4 --heads 4 \
    --intermediate 512 --max-positions 64 --seed 1
"$vkpeft" pretrain --model "$work/init" --data "$work/corpus.txt" --eval "$work/held.txt" \
    --out "$work/pretrained" --max-len 32 --batch 64 --lr 1e-3 --warmup 5% --steps "$steps" \
    --eval-every 250 --seed 42

mkdir -p models/mini-bert models/plausibility
for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do
    cp "$work/pretrained/$f" "models/mini-bert/$f.tmp" && mv "models/mini-bert/$f.tmp" "models/mini-bert/$f"
done
cp "$work/pretrained/train.jsonl" models/mini-bert/pretrain.jsonl
cp "$work/pretrained/metrics.json" models/mini-bert/pretrain-metrics.json
cp "$work/task/train.jsonl" models/plausibility/train.jsonl
cp "$work/task/dev.jsonl" models/plausibility/dev.jsonl
echo "make-bundled-model: wrote models/mini-bert and models/plausibility"
