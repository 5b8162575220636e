# Two commands matter: `make run` and `make test`. Both install what is
# missing (Debian 12, apt-get), configure meson if needed, and build.
BUILD ?= build
MESON_TEST_ARGS ?=
# The sanitizer + fuzzing build (clang): host tests under ASan/UBSan and the
# libFuzzer harnesses of tests/fuzz. See README.md, "Reliability".
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 300
FUZZ_TEST_SECONDS ?= 15
export FUZZ_TEST_SECONDS
FUZZ_HARNESSES = $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))

.PHONY: all deps build run test bench clean bundled-model fuzz

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

$(FUZZ_BUILD)/build.ninja: | deps
	CC=clang meson setup $(FUZZ_BUILD) -Dsanitize=true -Dfuzz=true

# The main suite, then (same total) the host tests under ASan + UBSan and
# each fuzzer for FUZZ_TEST_SECONDS; meson test builds what they need.
test: build $(FUZZ_BUILD)/build.ninja
	python3 tools/run-tests.py $(BUILD) --sanitized $(FUZZ_BUILD) $(MESON_TEST_ARGS)

# Each fuzzer for FUZZ_SECONDS, growing its corpus in $(FUZZ_BUILD)/fuzz-work
# (kept between runs); a crash is saved there and fails the target.
fuzz: deps $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD) $(addprefix tests/fuzz/fuzz_,$(FUZZ_HARNESSES))
	@status=0; for h in $(FUZZ_HARNESSES); do \
	    python3 tests/fuzz/run-fuzzer.py $(FUZZ_BUILD)/tests/fuzz/fuzz_$$h --corpus tests/fuzz/corpus/$$h \
	        --regressions tests/fuzz/regressions/$$h --work $(FUZZ_BUILD)/fuzz-work/$$h \
	        --seconds $(FUZZ_SECONDS) --keep || status=1; \
	done; exit $$status

bench: build
	$(BUILD)/tools/vkpeft bench startup
	$(BUILD)/tools/vkpeft bench dispatch

# Rebuilds models/mini-bert and models/plausibility from nothing (about 25
# minutes on 2 CPU cores with lavapipe).
bundled-model: build
	tools/make-bundled-model.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD)
