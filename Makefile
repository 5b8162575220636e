# Two commands matter: `make run` and `make test`. Both install what is
# missing (Debian 12, apt-get), configure meson if needed, and build.
BUILD ?= build
MESON_TEST_ARGS ?=

.PHONY: all deps build run test bench clean

all: build

deps:
	@tools/install-deps.sh

$(BUILD)/build.ninja: | deps
	meson setup $(BUILD)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

# Until the bundled model lands, the main job shows the devices vkpeft sees.
run: build
	$(BUILD)/tools/vkpeft devices

test: build
	python3 tools/run-tests.py $(BUILD) $(MESON_TEST_ARGS)

bench: build
	$(BUILD)/tools/vkpeft bench startup
	$(BUILD)/tools/vkpeft bench dispatch

clean:
	rm -rf $(BUILD)
