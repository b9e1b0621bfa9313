# Berth. The README's two commands: `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
AGENT_TARGET := x86_64-unknown-linux-gnu
AGENT_BIN := target/$(AGENT_TARGET)/release/berth-agent
GUEST_DIR := target/release/guest
export CARGO_TERM_COLOR ?= never

.PHONY: all build setup ui ui-test host agent guest-image run test lint unit e2e package bench soak fuzz fuzz-tool fuzz-vmm fuzz-vmm-short clean

all: build

setup:
	@scripts/setup.sh

# The desktop app's web UI (Svelte, Vite): ui/dist, which berth-desktop embeds at compile time.
ui/node_modules/.installed: ui/package.json ui/package-lock.json
	cd ui && npm ci --no-audit --no-fund --loglevel=error
	touch $@

ui: setup ui/node_modules/.installed
	cd ui && npm run --silent build

ui-test: ui
	cd ui && npm run --silent check && npm run --silent test

# Host binaries in release mode: target/release/berth and target/release/berth-desktop.
host: setup ui
	$(CARGO) build --release -p berth-cli -p berth-desktop

# The agent runs as PID 1 in the guest: one static binary.
agent: setup
	CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
		$(CARGO) build --release -p berth-agent --target $(AGENT_TARGET)

guest-image: agent
	guest-image/build.sh $(AGENT_BIN) $(GUEST_DIR)

build: host guest-image

# The desktop app where there is a display; else the headless engine, which prints the socket.
run: build
	@if [ -n "$${DISPLAY:-}$${WAYLAND_DISPLAY:-}" ]; then \
		exec target/release/berth-desktop; \
	else \
		echo "no display: starting the headless engine"; exec target/release/berth engine; \
	fi

lint: setup ui
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit: setup ui
	$(CARGO) test --workspace --exclude berth-tests

# End to end against the real VM (qemu backend), one test at a time: each boots its own VM.
e2e: build
	$(CARGO) test -p berth-tests -- --test-threads=1

test: build lint unit ui-test fuzz-vmm-short package e2e

# The .deb (desktop app, CLI, guest image, vhost-device-vsock, virtiofsd) by the Tauri bundler, which setup
# cargo-installs: target/release/bundle/deb/Berth_<version>_amd64.deb. The AppImage is not built
# here: the bundler downloads linuxdeploy from GitHub for it (see packaging/README.md).
CARGO_BIN := $(or $(CARGO_HOME),$(HOME)/.cargo)/bin
package: build
	cd app/desktop && $(CARGO_BIN)/cargo-tauri bundle --bundles deb --config \
	  '{"bundle":{"linux":{"deb":{"files":{"/usr/lib/berth/bin/vhost-device-vsock":"$(CARGO_BIN)/vhost-device-vsock","/usr/lib/berth/bin/virtiofsd":"$(CARGO_BIN)/virtiofsd"}}}}}'
	@ls -l target/release/bundle/deb/*.deb

fuzz-vmm-short:
	$(MAKE) fuzz-vmm FUZZ_SECONDS=10

# Ratios against peers measured in the same run: bare qemu for boot, dockerd 20.10 (Debian's
# docker.io, installed by setup --bench) for containers.
bench: build
	scripts/setup.sh --bench
	$(CARGO) bench -p berth-tests --bench boot --bench engines --bench ports --bench desktop --bench files --bench hwvirt
	$(CARGO) test -p berth-vmm --release --lib -- --ignored --nocapture bench_

# The security suite's flood at full size: 2,000 published-port and 500 API connections held
# at once (make test runs it at 600 and 200); prints what it held and how soon service resumed.
soak: build
	BERTH_SOAK=1 $(CARGO) test -p berth-tests --test security -- --test-threads=1 --nocapture a_flood
	BERTH_CRASH_ROUNDS=12 $(CARGO) test -p berth-tests --test security -- --test-threads=1 --nocapture a_pull_killed

# libFuzzer over what Berth parses from outside, FUZZ_SECONDS each: the engine's and agent's
# targets (fuzz/) and the builtin VMM's (app/vmm/fuzz). cargo-fuzz drives nightly-only flags;
# RUSTC_BOOTSTRAP lets the stable toolchain take them.
FUZZ_SECONDS ?= 30
FUZZ_TARGET_DIR ?= $(HOME)/.cache/berth/fuzz-target
FUZZ_RUN = RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none --target-dir $(FUZZ_TARGET_DIR)
fuzz-tool: setup
	@cargo fuzz --version >/dev/null 2>&1 || $(CARGO) install --locked --version 0.13.2 cargo-fuzz

fuzz: fuzz-tool
	for t in api_bodies layer_unpack cp_tar docker_load build_context agent_docs; do \
		$(FUZZ_RUN) --fuzz-dir fuzz $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done
	$(MAKE) fuzz-vmm FUZZ_SECONDS=$(FUZZ_SECONDS)

# The builtin VMM's parsers, briefly, as part of `make test`.
fuzz-vmm: fuzz-tool
	for t in vsock_packet blk_discard net_stream; do \
		$(FUZZ_RUN) --fuzz-dir app/vmm/fuzz $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done

clean:
	$(CARGO) clean
