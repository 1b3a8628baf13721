# wasmcell: `make demo` runs the main job end to end, `make test` runs every test.
CARGO ?= cargo
# libseccomp-dev: youki's libcontainer (wasmcell-oci) links libseccomp. podman (with conmon,
# containers-common, uidmap): wasmcell-oci's Podman tests. containernetworking-plugins, iproute2:
# the CRI tests' private pod network. fonts-dejavu-core: labels of the bench plot.
SYSTEM_PACKAGES ?= containerd runc busybox-static protobuf-compiler libseccomp-dev podman conmon uidmap containernetworking-plugins iproute2 fonts-dejavu-core
HELLO := target/guests/wasm32-wasip1/release/hello.wasm

.PHONY: all deps build demo test fmt clippy bench

all: build

deps:
	@./scripts/install-deps.sh $(SYSTEM_PACKAGES)

build: deps
	$(CARGO) build --release -p wasmcell-cli -p wasmcell-shim -p wasmcell-oci -p wasmcell-test-guests

demo: build
	@echo "== wasmcell run $(HELLO)"
	./target/release/wasmcell run $(HELLO)
	./scripts/demo-containerd.sh target/release $(HELLO)

fmt:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: deps fmt clippy
	$(CARGO) test --workspace

# Benchmarks (not part of `make test`): a private containerd; wasmcell vs runc + busybox (and a
# peer shim when PEER_SHIM=/path/to/containerd-shim-NAME-v1 is set), measured in the same run.
bench: deps
	@./scripts/install-deps.sh busybox-static wrk
	$(CARGO) build --release -p wasmcell-shim -p wasmcell-bench
	./target/release/wasmcell-bench
