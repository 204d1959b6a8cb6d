# Everyday tasks. `make demo` and `make test` are the two README commands:
# each installs what it needs (the wasm32-wasip2 target, and for `make test`
# wasm32-wasip1 too) and builds the plugins.

CARGO ?= cargo
WASM_TARGET := wasm32-wasip2
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
WASM_OUT := $(TARGET_DIR)/$(WASM_TARGET)/plugin
PLUGIN_DIR := target/plugins
TEST_PLUGIN_DIR := target/test-plugins

# Plugins in other languages: every folder under examples/plugins/ has a
# build.sh that installs its own pinned toolchain and writes
# $(POLYGLOT_DIR)/<folder>.wasm; rebuilt when a file in the folder or the WIT changes.
POLYGLOT_DIR := target/plugins-polyglot
POLYGLOT := $(notdir $(wildcard examples/plugins/*))

# Built-in plugins: every crate under plugins/ (package `plugin-<dir>`),
# installed as $(PLUGIN_DIR)/<dir>.wasm.
BUILTIN := $(notdir $(wildcard plugins/*))

# Proxy-Wasm test filters: every crate under tests/proxy-wasm/ (package
# `proxywasm-<dir>`, the unmodified proxy-wasm SDK), built as core modules for
# wasm32-wasip1 and installed as $(TEST_PLUGIN_DIR)/proxywasm-<dir>.wasm.
PROXYWASM_TARGET := wasm32-wasip1
PROXYWASM_OUT := $(TARGET_DIR)/$(PROXYWASM_TARGET)/plugin
PROXYWASM := $(notdir $(wildcard tests/proxy-wasm/*))

.PHONY: dist demo test test-deps plugins proxywasm polyglot toolchain wasm-target proxywasm-target lint bench clean-plugins

demo: plugins
	$(CARGO) run --release -p wasmgate -- demo

# The build to ship, optimised as one unit (links for minutes): target/dist/wasmgate.
dist: plugins
	$(CARGO) build --profile dist -p wasmgate

# The benchmark's smoke mode runs too, so the script cannot rot.
test: test-deps plugins proxywasm polyglot
	$(CARGO) test --release --workspace
	SKIP_BUILD=1 bench/run.sh --smoke

# nginx, wrk, and the toolchains of the plugins in other languages; installs
# only what is missing and says what it installs.
test-deps:
	scripts/test-deps.sh

# The toolchain rust-toolchain.toml pins, installed if missing (also where
# RUSTUP_AUTO_INSTALL=0 stops rustup doing it on first use).
toolchain:
	@rustup toolchain install

wasm-target: toolchain
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

proxywasm-target: toolchain
	@rustup target list --installed | grep -qx $(PROXYWASM_TARGET) || rustup target add $(PROXYWASM_TARGET)

# Each file is copied then renamed into place, so the gateway's watcher never
# sees a half-written plugin.
define install_wasm
	cp $(1) $(2).tmp && mv -f $(2).tmp $(2)
endef

plugins: wasm-target
	mkdir -p $(PLUGIN_DIR) $(TEST_PLUGIN_DIR)
	$(CARGO) build --profile plugin --target $(WASM_TARGET) $(foreach p,$(BUILTIN),-p plugin-$(p)) -p plugin-probe -p plugin-hostile
	$(foreach p,$(BUILTIN),$(call install_wasm,$(WASM_OUT)/plugin_$(subst -,_,$(p)).wasm,$(PLUGIN_DIR)/$(p).wasm);)
	$(call install_wasm,$(WASM_OUT)/plugin_probe.wasm,$(TEST_PLUGIN_DIR)/probe.wasm)
	$(call install_wasm,$(WASM_OUT)/plugin_hostile.wasm,$(TEST_PLUGIN_DIR)/hostile.wasm)
	$(CARGO) build --profile plugin --target $(WASM_TARGET) -p plugin-probe --features plugin-probe/v2
	$(call install_wasm,$(WASM_OUT)/plugin_probe.wasm,$(TEST_PLUGIN_DIR)/probe-v2.wasm)
	$(CARGO) build --profile plugin --target $(WASM_TARGET) -p plugin-probe --features plugin-probe/caps
	$(call install_wasm,$(WASM_OUT)/plugin_probe.wasm,$(TEST_PLUGIN_DIR)/probe-caps.wasm)

proxywasm: proxywasm-target
	mkdir -p $(TEST_PLUGIN_DIR)
	$(CARGO) build --profile plugin --target $(PROXYWASM_TARGET) $(foreach p,$(PROXYWASM),-p proxywasm-$(p))
	$(foreach p,$(PROXYWASM),$(call install_wasm,$(PROXYWASM_OUT)/proxywasm_$(subst -,_,$(p)).wasm,$(TEST_PLUGIN_DIR)/proxywasm-$(p).wasm);)

polyglot: test-deps $(POLYGLOT:%=$(POLYGLOT_DIR)/%.wasm)

.SECONDEXPANSION:
$(POLYGLOT_DIR)/%.wasm: $$(wildcard examples/plugins/$$*/*.*) examples/plugins/$$*/build.sh wit/plugin.wit
	examples/plugins/$*/build.sh $@

lint: plugins
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	$(CARGO) clippy --release -p wasmgate --no-default-features --lib -- -D warnings

bench: plugins polyglot
	$(CARGO) bench -p wasmgate --bench plugin_call
	bench/run.sh
