#!/usr/bin/env bash
# Run the hello guest as a container through a private containerd and the wasmcell shim.
# Usage: scripts/demo-containerd.sh BIN_DIR HELLO_WASM   (as root)
set -euo pipefail
bin_dir=$(realpath "$1")
hello=$(realpath "$2")

work=$(mktemp -d /tmp/wasmcell-demo-XXXXXX)
ctd_pid=""
cleanup() {
    if [ -n "$ctd_pid" ]; then
        kill -TERM "$ctd_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$ctd_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$ctd_pid" 2>/dev/null || true
    fi
    grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/config.toml" <<TOML
version = 2
root = "$work/root"
state = "$work/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/containerd.sock"
[ttrpc]
  address = "$work/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$work/opt"
TOML

PATH="$bin_dir:$PATH" containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
ctd_pid=$!
ctr=(ctr --address "$work/containerd.sock" --namespace wasmcell-demo)
for _ in $(seq 100); do "${ctr[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
"${ctr[@]}" version >/dev/null || { tail -20 "$work/containerd.log"; exit 1; }

"$bin_dir/wasmcell" image build -t wasmcell-demo/hello:latest -o "$work/hello.tar" "$hello"
"${ctr[@]}" images import --all-platforms "$work/hello.tar" >/dev/null
echo "== ctr run --rm --runtime io.containerd.wasmcell.v1 docker.io/wasmcell-demo/hello:latest"
"${ctr[@]}" run --rm --runtime io.containerd.wasmcell.v1 docker.io/wasmcell-demo/hello:latest demo
"${ctr[@]}" images rm docker.io/wasmcell-demo/hello:latest >/dev/null
