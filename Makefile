# Signet: the two commands that do all set-up are `make run` and `make test`.
PRESET ?= dev
BUILD  := build/$(PRESET)
JOBS   ?= 2

.PHONY: deps configure build test test-asan test-tsan bench-baseline format format-check clean

deps:
	scripts/install-deps

configure: deps
	cmake --preset $(PRESET)

build: configure
	cmake --build $(BUILD) -j$(JOBS)

# Installs dependencies, builds, and runs every test suite through ctest.
test: build
	ctest --test-dir $(BUILD) -j$(JOBS) --output-on-failure --no-tests=error

test-asan:
	$(MAKE) test PRESET=asan

test-tsan:
	$(MAKE) test PRESET=tsan

# Raw HSM signing rates (the baseline later benchmarks divide by), on a throw-away SoftHSM token.
bench-baseline:
	$(MAKE) build PRESET=release
	bench/with-softhsm build/release/bench/hsm_baseline $(BENCH_ARGS)

format:
	scripts/check-format --fix

format-check:
	scripts/check-format

clean:
	rm -rf build
