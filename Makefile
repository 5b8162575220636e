# Two commands matter: `make run` and `make test`. Both install what is
# missing (Debian 12, apt-get), configure meson if needed, and build.
BUILD ?= build
MESON_TEST_ARGS ?=

.PHONY: all deps build run test bench clean bundled-model

all: build

deps:
	@tools/install-deps.sh

$(BUILD)/build.ninja: | deps
	meson setup $(BUILD)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

# The main job: fine-tune the bundled pretrained encoder (models/mini-bert)
# with the MAM adapter on the bundled plausibility task, on the best device
# (lavapipe when there is no GPU), then write the HTML report.
RUN_OUT ?= runs/mam
RUN_ARGS ?= --delta mam:l=16,r=128,s=4 --batch 32 --epochs 6 --lr 2e-3 --warmup 6% --max-len 32 --seed 1

run: build
	$(BUILD)/tools/vkpeft devices
	$(BUILD)/tools/vkpeft train --model models/mini-bert --data models/plausibility/train.jsonl \
	    --eval models/plausibility/dev.jsonl --out $(RUN_OUT) --overwrite $(RUN_ARGS)
	$(BUILD)/tools/vkpeft report $(RUN_OUT)
	@echo "delta: $(RUN_OUT)/delta.safetensors (+ delta.json)  log: $(RUN_OUT)/train.jsonl  report: $(RUN_OUT)/report.html"

test: build
	python3 tools/run-tests.py $(BUILD) $(MESON_TEST_ARGS)

bench: build
	$(BUILD)/tools/vkpeft bench startup
	$(BUILD)/tools/vkpeft bench dispatch

# Rebuilds models/mini-bert and models/plausibility from nothing (about 25
# minutes on 2 CPU cores with lavapipe).
bundled-model: build
	tools/make-bundled-model.sh $(BUILD)

clean:
	rm -rf $(BUILD)
