# Signet: the two commands that do all set-up are `make run` and `make test`.
PRESET ?= dev
BUILD  := build/$(PRESET)
JOBS   ?= 2

# HA: demo-pair starts a hot-standby pair (two signetd + three etcd members) on loopback.
.PHONY: demo-pair deps configure build run test test-asan test-tsan test-concurrency-tsan bench bench-ha bench-baseline format format-check clean

deps:
	scripts/install-deps

configure: deps
	cmake --preset $(PRESET)

build: configure
	cmake --build $(BUILD) -j$(JOBS)

# Installs dependencies, builds, creates ./var (SoftHSM tokens, PIN files, config) on first use and
# starts signetd on https://127.0.0.1:8443. The first start prints a one-time setup token.
run: build
	scripts/dev-setup
	SOFTHSM2_CONF=$(CURDIR)/var/softhsm2.conf $(BUILD)/daemon/signetd --config var/signetd.toml

# Two appliances in a pair on loopback with three etcd members (a's, b's, a witness), their own
# tokens, stores and ports (8443, 8444), HSMs paired; prints the URLs. Ctrl-C stops everything.
demo-pair: build
	BUILD=$(BUILD) scripts/demo-pair

# Installs dependencies, builds, and runs every test suite through ctest.
test: build
	ctest --test-dir $(BUILD) -j$(JOBS) --output-on-failure --no-tests=error $(CTEST_ARGS)

test-asan:
	$(MAKE) test PRESET=asan

test-tsan:
	$(MAKE) test PRESET=tsan

# The concurrency suites (label "concurrency": threads signing through the session pool, the HA
# role machine and nonce allocator with their threads, racing nonce, reservation and watermark
# clients against signetd) under ThreadSanitizer; signetd and the tests fail on any report
# (halt_on_error).
test-concurrency-tsan: deps
	cmake --preset tsan
	cmake --build build/tsan -j$(JOBS) --target pkcs11_concurrency_test daemon_nonce_concurrency_test ha_role_test ha_allocator_test signetd
	TSAN_OPTIONS="halt_on_error=1 $(TSAN_OPTIONS)" \
	  ctest --test-dir build/tsan -j$(JOBS) -L concurrency --output-on-failure --no-tests=error

# The standalone appliance benchmark (bench/standalone.sh): builds the release preset, then in one
# run measures the raw HSM rate, REST sign over HTTP and HTTPS, batch and nonce signing, start-up
# time and idle RSS with 10,000 keys, and prints a table of figures, ratios and targets. Only the
# three binaries it runs are built (not the test suites). Options: BENCH_ARGS="--seconds 3 --keys 500".
bench: deps
	cmake --preset release
	cmake --build build/release -j$(JOBS) --target signetd signetctl hsm_baseline
	bench/standalone.sh $(BENCH_ARGS)

# The appliance-pair benchmark (bench/ha.sh): builds the release signetd and signetctl, then on
# loopback with three etcd members measures hot-standby failover after kill -9 of the active (time
# to the first nonce-bearing signature on the new active, p50/p99 over --kills kills; no nonce may
# repeat) and nonce sign throughput standalone vs dual-active fast vs dual-active strict, and
# prints a table. Options: BENCH_ARGS="--kills 20 --seconds 10" (bench/ha.sh --help).
bench-ha: deps
	cmake --preset release
	cmake --build build/release -j$(JOBS) --target signetd signetctl
	bench/ha.sh $(BENCH_ARGS)

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
